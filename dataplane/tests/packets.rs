//! Golden packet tables, one per feature, in katran's shape: (description,
//! frame in, what must come of it: frames out byte for byte, the drop
//! counted, the worker it is handed to), all run by `common::run_table` on
//! a fresh in-memory engine per case. No DPDK involved. Multi-step
//! behaviour (scheduling orders, expiry, exhaustion, persistence, swaps)
//! is in the scenario tests.

mod common;

use std::net::Ipv4Addr;

use common::*;
use rvs_control::model::{Forward, SchedulerKind};
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::engine::WorkerPlace;
use rvs_dataplane::wire::arp::ArpOperation;
use rvs_dataplane::wire::ethernet::{EtherType, MacAddr};
use rvs_dataplane::wire::icmp;
use rvs_dataplane::wire::ipv4::{protocol, Ipv4Packet};
use rvs_dataplane::wire::tcp::TcpFlags;

/// Who claims addresses that are not theirs.
const EVIL_MAC: MacAddr = MacAddr([0x02, 0xde, 0xad, 0xbe, 0xef, 0x01]);

/// The scheduler of every table: each case has one real, or one client.
const SCHEDULER: SchedulerKind = SchedulerKind::Rr;
/// The real of every table but the steering ones: r1, port-mapped to 8080.
const RPORT: u16 = 8080;
/// The first local port a single worker allocates.
const LPORT: u16 = 1024;

fn nat_engine() -> Harness {
    harness(SCHEDULER, &[real(r1(), RPORT, 1)], 16)
}

fn via(forward: Forward) -> impl Fn() -> Harness {
    move || harness(SCHEDULER, &[real_via(forward, r1(), RPORT, 1)], 16)
}

fn from_r1(ip_packet: Vec<u8>) -> Vec<u8> {
    from_real(R1_MAC, ip_packet)
}

/// A frame rvs sends on the real side to r1, or on the client side to the
/// client.
fn to_r1(ip_packet: Vec<u8>) -> Vec<u8> {
    ethernet(DIR_MAC1, R1_MAC, EtherType::IPV4, &ip_packet)
}

fn to_client(ip_packet: Vec<u8>) -> Vec<u8> {
    ethernet(DIR_MAC0, CLIENT_MAC, EtherType::IPV4, &ip_packet)
}

fn syn_to(vport: u16) -> Vec<u8> {
    from_client(tcp(client(), 40000, vip(), vport, TcpFlags::SYN, &[]))
}

fn synack() -> TcpFlags {
    TcpFlags::SYN | TcpFlags::ACK
}

fn echo(msg_type: u8, payload: &[u8]) -> Vec<u8> {
    icmp_message(msg_type, 0, 0x0007_0001, payload)
}

/// An ICMP error from `from` to `to` quoting `quoted` (an IP packet's
/// first bytes).
fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let message = icmp_message(
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        0,
        quoted,
    );
    ipv4(from, to, protocol::ICMP, &message)
}

/// The first 28 bytes of a UDP datagram `src:sport → dst:dport` of payload
/// `q`, carrying the UDP checksum of `checksum_of` (an ICMP error's quote is
/// translated, its transport checksum left as quoted).
fn quote(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, checksum_of: &[u8]) -> Vec<u8> {
    let mut quoted = udp(src, sport, dst, dport, b"q", false)[..28].to_vec();
    quoted[26..28].copy_from_slice(&checksum_of[26..28]);
    quoted
}

/// `packet` with its IPv4 header grown by the options NOP NOP NOP EOL.
fn with_ip_options(packet: Vec<u8>) -> Vec<u8> {
    let mut grown = packet[..20].to_vec();
    grown.extend_from_slice(&[1, 1, 1, 0]);
    grown.extend_from_slice(&packet[20..]);
    grown[0] = 0x46;
    let total = grown.len() as u16;
    grown[2..4].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_checked(&mut grown[..])
        .unwrap()
        .fill_checksum();
    grown
}

/// `frame` (Ethernet + a 20-byte IPv4 header) changed by `edit` on its
/// IPv4 header, whose checksum is then computed again.
fn edited(mut frame: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let header = &mut frame[14..34];
    edit(header);
    header[10..12].fill(0);
    let checksum = rvs_dataplane::wire::checksum::compute(header);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame
}

#[test]
fn arp() {
    let request = |sender_mac, sender_ip, target| {
        arp_frame(
            ArpOperation::REQUEST,
            sender_mac,
            sender_ip,
            MacAddr::ZERO,
            target,
        )
    };
    let mut other_hardware = request(CLIENT_MAC, client(), vip());
    other_hardware[14..16].copy_from_slice(&6u16.to_be_bytes());
    #[rustfmt::skip]
    let table = vec![
        Case::new("a request for the VIP is answered on the client port",
            CLIENT_PORT, request(CLIENT_MAC, client(), vip()),
            Expect::sent(CLIENT_PORT, arp_frame(ArpOperation::REPLY, DIR_MAC0, vip(), CLIENT_MAC, client()))),
        Case::new("a request for a port address is answered",
            REAL_PORT, request(R1_MAC, r1(), ip("10.99.2.1")),
            Expect::sent(REAL_PORT, arp_frame(ArpOperation::REPLY, DIR_MAC1, ip("10.99.2.1"), R1_MAC, r1()))),
        Case::new("a request for the VIP on a port whose subnet does not hold it",
            REAL_PORT, request(R1_MAC, r1(), vip()), Expect::dropped(DropReason::NotForUs)),
        Case::new("a request for an address not ours",
            CLIENT_PORT, request(CLIENT_MAC, client(), ip("10.99.1.77")), Expect::dropped(DropReason::NotForUs)),
        Case::new("a reply is learned from, not answered",
            REAL_PORT, arp_frame(ArpOperation::REPLY, R2_MAC, r2(), DIR_MAC1, ip("10.99.2.1")),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("ARP to another MAC",
            CLIENT_PORT, ethernet(CLIENT_MAC, MacAddr([2, 9, 9, 9, 9, 9]), EtherType::ARP, &request(CLIENT_MAC, client(), vip())[14..]),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("a truncated ARP packet",
            CLIENT_PORT, ethernet(CLIENT_MAC, MacAddr::BROADCAST, EtherType::ARP, &[0; 10]),
            Expect::dropped(DropReason::Malformed)),
        Case::new("ARP for another hardware type",
            CLIENT_PORT, other_hardware, Expect::dropped(DropReason::Unsupported)),
        Case::new("a reply on the client port claiming a real of the other segment is not learned",
            CLIENT_PORT, syn_to(80),
            Expect::sent(REAL_PORT, to_r1(tcp(client(), 40000, r1(), RPORT, TcpFlags::SYN, &[]))))
            .after(vec![(CLIENT_PORT, arp_frame(ArpOperation::REPLY, EVIL_MAC, r1(), DIR_MAC0, ip("10.99.1.1")))]),
        Case::new("a request from a sender off the port's subnets is answered, not learned",
            CLIENT_PORT, request(EVIL_MAC, r1(), vip()),
            Expect::sent(CLIENT_PORT, arp_frame(ArpOperation::REPLY, DIR_MAC0, vip(), EVIL_MAC, r1()))),
        Case::new("and the real it claimed is still reached at its own MAC",
            CLIENT_PORT, syn_to(80),
            Expect::sent(REAL_PORT, to_r1(tcp(client(), 40000, r1(), RPORT, TcpFlags::SYN, &[]))))
            .after(vec![(CLIENT_PORT, request(EVIL_MAC, r1(), vip()))]),
    ];
    run_table(table, nat_engine);
}

#[test]
fn icmp_echo() {
    let request = echo(icmp::ECHO_REQUEST, b"rvs-ping");
    let mut bad_checksum = request.clone();
    bad_checksum[2] ^= 0xff;
    #[rustfmt::skip]
    let table = vec![
        Case::new("an echo request to the VIP is answered",
            CLIENT_PORT, from_client(ipv4(client(), vip(), protocol::ICMP, &request)),
            Expect::sent(CLIENT_PORT, to_client(ipv4(vip(), client(), protocol::ICMP, &echo(icmp::ECHO_REPLY, b"rvs-ping"))))),
        Case::new("an echo request to a port address is answered",
            CLIENT_PORT, from_client(ipv4(client(), ip("10.99.1.1"), protocol::ICMP, &request)),
            Expect::sent(CLIENT_PORT, to_client(ipv4(ip("10.99.1.1"), client(), protocol::ICMP, &echo(icmp::ECHO_REPLY, b"rvs-ping"))))),
        Case::new("an echo request with a bad ICMP checksum",
            CLIENT_PORT, from_client(ipv4(client(), vip(), protocol::ICMP, &bad_checksum)),
            Expect::dropped(DropReason::BadChecksum)),
        Case::new("an echo request to an address not ours",
            CLIENT_PORT, from_client(ipv4(client(), ip("10.99.1.77"), protocol::ICMP, &request)),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("another ICMP message to the VIP (timestamp)",
            CLIENT_PORT, from_client(ipv4(client(), vip(), protocol::ICMP, &icmp_message(13, 0, 0, &[0; 12]))),
            Expect::dropped(DropReason::Unsupported)),
        Case::new("a truncated ICMP message",
            CLIENT_PORT, from_client(ipv4(client(), vip(), protocol::ICMP, &[8, 0, 0])),
            Expect::dropped(DropReason::Malformed)),
    ];
    run_table(table, nat_engine);
}

#[test]
fn icmp_errors() {
    let query = || from_client(udp(client(), 5000, vip(), 53, b"q", true));
    // NAT: what rvs sent r1 and what it sent the client back.
    let nat_to_r1 = udp(client(), 5000, r1(), RPORT, b"q", true);
    let nat_to_client = udp(vip(), 53, client(), 5000, b"a", true);
    let nat_reply = || from_r1(udp(r1(), RPORT, client(), 5000, b"a", true));
    // FullNAT: the same from the local address.
    let full_to_r1 = udp(lip(), LPORT, r1(), RPORT, b"q", true);
    let full_reply = || from_r1(udp(r1(), RPORT, lip(), LPORT, b"a", true));
    let stray = udp(client(), 5000, vip(), 53, b"q", true);
    let about_icmp = ipv4(
        client(),
        vip(),
        protocol::ICMP,
        &echo(icmp::ECHO_REQUEST, b"x"),
    );
    #[rustfmt::skip]
    let nat_table = vec![
        Case::new("NAT: r1's error about what rvs sent it reaches the client, about the client's own datagram",
            REAL_PORT, from_r1(icmp_error(r1(), client(), &nat_to_r1[..28])),
            Expect::sent(CLIENT_PORT, to_client(icmp_error(vip(), client(), &quote(client(), 5000, vip(), 53, &nat_to_r1)))))
            .after(vec![(CLIENT_PORT, query())]),
        Case::new("NAT: a router's error from the real side keeps its source",
            REAL_PORT, from_r1(icmp_error(ip("10.99.2.254"), client(), &nat_to_r1[..28])),
            Expect::sent(CLIENT_PORT, to_client(icmp_error(ip("10.99.2.254"), client(), &quote(client(), 5000, vip(), 53, &nat_to_r1)))))
            .after(vec![(CLIENT_PORT, query())]),
        Case::new("NAT: the client's error about a reply reaches r1, about r1's own datagram",
            CLIENT_PORT, from_client(icmp_error(client(), vip(), &nat_to_client[..28])),
            Expect::sent(REAL_PORT, to_r1(icmp_error(client(), r1(), &quote(r1(), RPORT, client(), 5000, &nat_to_client)))))
            .after(vec![(CLIENT_PORT, query()), (REAL_PORT, nat_reply())]),
        Case::new("an error about no tracked connection creates none",
            CLIENT_PORT, from_client(icmp_error(client(), vip(), &stray[..28])),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("an error quoting an ICMP message",
            CLIENT_PORT, from_client(icmp_error(client(), vip(), &about_icmp[..28])),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("an error quoting less than an IPv4 header",
            CLIENT_PORT, from_client(icmp_error(client(), vip(), &stray[..12])),
            Expect::dropped(DropReason::Malformed)),
    ];
    run_table(nat_table, nat_engine);
    #[rustfmt::skip]
    let fullnat_table = vec![
        Case::new("FullNAT: r1's error to the local address reaches the client, about the client's own datagram",
            REAL_PORT, from_r1(icmp_error(r1(), lip(), &full_to_r1[..28])),
            Expect::sent(CLIENT_PORT, to_client(icmp_error(vip(), client(), &quote(client(), 5000, vip(), 53, &full_to_r1)))))
            .after(vec![(CLIENT_PORT, query())]),
        Case::new("FullNAT: the client's error about a reply reaches r1 from the local address",
            CLIENT_PORT, from_client(icmp_error(client(), vip(), &nat_to_client[..28])),
            Expect::sent(REAL_PORT, to_r1(icmp_error(lip(), r1(), &quote(r1(), RPORT, lip(), LPORT, &nat_to_client)))))
            .after(vec![(CLIENT_PORT, query()), (REAL_PORT, full_reply())]),
    ];
    run_table(fullnat_table, via(Forward::FullNat));
}

#[test]
fn nat() {
    let data = b"GET / HTTP/1.0\r\n\r\n";
    let push = TcpFlags::ACK | TcpFlags::PSH;
    let mut padded = syn_to(80);
    padded.extend_from_slice(&[0; 6]);
    #[rustfmt::skip]
    let table = vec![
        Case::new("a SYN to the VIP goes to the real, port mapped 80 → 8080",
            CLIENT_PORT, syn_to(80),
            Expect::sent(REAL_PORT, to_r1(tcp(client(), 40000, r1(), RPORT, TcpFlags::SYN, &[])))),
        Case::new("the real's SYN/ACK leaves from VIP:80",
            REAL_PORT, from_r1(tcp(r1(), RPORT, client(), 40000, synack(), &[])),
            Expect::sent(CLIENT_PORT, to_client(tcp(vip(), 80, client(), 40000, synack(), &[]))))
            .after(vec![(CLIENT_PORT, syn_to(80))]),
        Case::new("the client's data follows the connection",
            CLIENT_PORT, from_client(tcp(client(), 40000, vip(), 80, push, data)),
            Expect::sent(REAL_PORT, to_r1(tcp(client(), 40000, r1(), RPORT, push, data))))
            .after(vec![(CLIENT_PORT, syn_to(80)), (REAL_PORT, from_r1(tcp(r1(), RPORT, client(), 40000, synack(), &[])))]),
        Case::new("a UDP datagram's checksum is patched",
            CLIENT_PORT, from_client(udp(client(), 1111, vip(), 53, b"query", true)),
            Expect::sent(REAL_PORT, to_r1(udp(client(), 1111, r1(), RPORT, b"query", true)))),
        Case::new("a UDP datagram without checksum keeps none",
            CLIENT_PORT, from_client(udp(client(), 2222, vip(), 53, b"query", false)),
            Expect::sent(REAL_PORT, to_r1(udp(client(), 2222, r1(), RPORT, b"query", false)))),
        Case::new("a UDP answer leaves from VIP:53",
            REAL_PORT, from_r1(udp(r1(), RPORT, client(), 1111, b"answer", true)),
            Expect::sent(CLIENT_PORT, to_client(udp(vip(), 53, client(), 1111, b"answer", true))))
            .after(vec![(CLIENT_PORT, from_client(udp(client(), 1111, vip(), 53, b"query", true)))]),
        Case::new("IP options are carried",
            CLIENT_PORT, from_client(with_ip_options(tcp(client(), 40001, vip(), 80, TcpFlags::SYN, &[]))),
            Expect::sent(REAL_PORT, to_r1(with_ip_options(tcp(client(), 40001, r1(), RPORT, TcpFlags::SYN, &[]))))),
        Case::new("Ethernet padding does not travel on",
            CLIENT_PORT, padded,
            Expect::sent(REAL_PORT, to_r1(tcp(client(), 40000, r1(), RPORT, TcpFlags::SYN, &[])))),
        Case::new("an ACK of no connection starts none",
            CLIENT_PORT, from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, &[])),
            Expect::dropped(DropReason::NoConn)),
        Case::new("a SYN with RST starts none",
            CLIENT_PORT, from_client(tcp(client(), 40000, vip(), 80, TcpFlags::SYN | TcpFlags::RST, &[])),
            Expect::dropped(DropReason::NoConn)),
        Case::new("a SYN to a port of the VIP with no service",
            CLIENT_PORT, syn_to(81), Expect::dropped(DropReason::NoService)),
        Case::new("a SYN to a port address",
            CLIENT_PORT, from_client(tcp(client(), 40000, ip("10.99.1.1"), 80, TcpFlags::SYN, &[])),
            Expect::dropped(DropReason::NoService)),
        Case::new("a packet in transit to an address not ours",
            CLIENT_PORT, from_client(tcp(client(), 40000, ip("10.99.9.9"), 80, TcpFlags::SYN, &[])),
            Expect::dropped(DropReason::NotForUs)),
    ];
    run_table(table, nat_engine);
}

#[test]
fn malformed_and_foreign_frames() {
    let good = syn_to(80);
    let ipv6 = ethernet(CLIENT_MAC, DIR_MAC0, EtherType::IPV6, &[0x60; 40]);
    let gre = from_client(ipv4(client(), vip(), 47, &[0; 8]));
    let gre_transit = from_client(ipv4(client(), ip("10.99.9.9"), 47, &[0; 8]));
    #[rustfmt::skip]
    let table = vec![
        Case::new("an IP fragment (MF)", CLIENT_PORT, edited(good.clone(), |ip| ip[6] |= 0x20), Expect::dropped(DropReason::IpFragment)),
        Case::new("an IP fragment (offset)", CLIENT_PORT, edited(good.clone(), |ip| ip[7] = 8), Expect::dropped(DropReason::IpFragment)),
        Case::new("a bad IPv4 header checksum", CLIENT_PORT, { let mut f = good.clone(); f[14 + 10] ^= 0xff; f }, Expect::dropped(DropReason::BadChecksum)),
        Case::new("an IHL below 20 bytes", CLIENT_PORT, { let mut f = good.clone(); f[14] = 0x44; f }, Expect::dropped(DropReason::Malformed)),
        Case::new("an IPv4 version other than 4", CLIENT_PORT, edited(good.clone(), |ip| ip[0] = 0x65), Expect::dropped(DropReason::Malformed)),
        Case::new("a total length beyond the frame", CLIENT_PORT, edited(good.clone(), |ip| ip[2..4].copy_from_slice(&1500u16.to_be_bytes())), Expect::dropped(DropReason::Malformed)),
        Case::new("a truncated TCP header", CLIENT_PORT, good[..14 + 20 + 10].to_vec(), Expect::dropped(DropReason::Malformed)),
        Case::new("IPv6", CLIENT_PORT, ipv6, Expect::dropped(DropReason::Unsupported)),
        Case::new("another IP protocol to the VIP (GRE)", CLIENT_PORT, gre, Expect::dropped(DropReason::Unsupported)),
        Case::new("another IP protocol in transit", CLIENT_PORT, gre_transit, Expect::dropped(DropReason::NotForUs)),
        Case::new("a frame to another MAC", CLIENT_PORT, ethernet(CLIENT_MAC, MacAddr([2, 9, 9, 9, 9, 9]), EtherType::IPV4, &good[14..]), Expect::dropped(DropReason::NotForUs)),
        Case::new("our own frame seen again", CLIENT_PORT, ethernet(DIR_MAC0, DIR_MAC0, EtherType::IPV4, &good[14..]), Expect::dropped(DropReason::NotForUs)),
        Case::new("a frame on a port rvs does not have", 7, good.clone(), Expect::dropped(DropReason::NotForUs)),
        Case::new("an empty frame", CLIENT_PORT, vec![], Expect::dropped(DropReason::Malformed)),
        Case::new("less than an Ethernet header", CLIENT_PORT, vec![0xff; 13], Expect::dropped(DropReason::Malformed)),
    ];
    run_table(table, nat_engine);
}

/// A bare TCP header (no options, no payload) with its checksum.
fn segment(
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: TcpFlags,
) -> Vec<u8> {
    let mut header = vec![0u8; 20];
    header[12] = 5 << 4;
    let mut t = rvs_dataplane::wire::tcp::TcpPacket::new_checked(&mut header[..]).unwrap();
    t.set_src_port(sport);
    t.set_dst_port(dport);
    t.set_seq(seq);
    t.set_ack(ack);
    t.set_flags(flags);
    t.fill_checksum(src, dst);
    header
}

#[test]
fn sources_options_and_checksums_no_host_may_send() {
    let syn_from = |src| from_client(tcp(src, 40000, vip(), 80, TcpFlags::SYN, &[]));
    let mut lsrr = with_ip_options(tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]));
    lsrr[20..24].copy_from_slice(&[0x83, 3, 4, 0]); // LSRR, then EOL
    let mut ssrr = lsrr.clone();
    ssrr[20] = 0x89;
    let mut route_record = lsrr.clone();
    route_record[20] = 0x07;
    for packet in [&mut lsrr, &mut ssrr, &mut route_record] {
        Ipv4Packet::new_checked(&mut packet[..])
            .unwrap()
            .fill_checksum();
    }
    let mut bad_tcp = syn_to(80);
    bad_tcp[14 + 20 + 16] ^= 0x55;
    let mut bad_udp = from_client(udp(client(), 5000, vip(), 53, b"q", true));
    bad_udp[14 + 20 + 6] ^= 0x55;
    let too_long = from_client(udp(client(), 5000, vip(), 53, &[0; 1500 - 28 + 1], true));
    #[rustfmt::skip]
    let mut table: Vec<Case> = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "240.0.0.1",
                                 "255.255.255.255", "10.99.1.0", "10.99.1.255", "10.99.1.100",
                                 "10.99.1.1", "10.99.2.100"]
        .into_iter()
        .map(|src| Case::new("a martian source starts no connection", CLIENT_PORT, syn_from(ip(src)),
                             Expect::dropped(DropReason::Martian)))
        .collect();
    #[rustfmt::skip]
    table.extend([
        Case::new("loose source routing", CLIENT_PORT, from_client(lsrr), Expect::dropped(DropReason::SourceRoute)),
        Case::new("strict source routing", CLIENT_PORT, from_client(ssrr), Expect::dropped(DropReason::SourceRoute)),
        Case::new("other options (record route) pass", CLIENT_PORT, from_client(route_record.clone()),
            Expect::sent(REAL_PORT, to_r1({
                let mut out = route_record.clone();
                out[16..20].copy_from_slice(&r1().octets());
                out[20 + 4 + 2..20 + 4 + 4].copy_from_slice(&RPORT.to_be_bytes());
                let mut ip = Ipv4Packet::new_checked(&mut out[..]).unwrap();
                ip.fill_checksum();
                let (src, dst) = (ip.src(), ip.dst());
                rvs_dataplane::wire::tcp::TcpPacket::new_checked(ip.payload_mut()).unwrap().fill_checksum(src, dst);
                out
            }))),
        Case::new("a SYN with a wrong TCP checksum starts no connection", CLIENT_PORT, bad_tcp,
            Expect::dropped(DropReason::BadL4Checksum)),
        Case::new("a datagram with a wrong UDP checksum starts no connection", CLIENT_PORT, bad_udp,
            Expect::dropped(DropReason::BadL4Checksum)),
        Case::new("a frame longer than the port's MTU", CLIENT_PORT, too_long, Expect::dropped(DropReason::Oversize)),
    ]);
    run_table(table, nat_engine);
}

#[test]
fn a_packet_too_big_for_the_egress_port() {
    // The real side's MTU is smaller than the client side's.
    let setup = || {
        let small = Setup {
            real_port_mtu: 1000,
            ..Setup::default()
        };
        harness_with(SCHEDULER, &[real(r1(), RPORT, 1)], small)
    };
    let big = udp(client(), 5000, vip(), 53, &[7; 1200 - 28], true);
    let big_no_df = edited(from_client(big.clone()), |ip| ip[6] &= !0x40);
    let frag_needed = icmp_message(
        icmp::DEST_UNREACHABLE,
        icmp::code::FRAG_NEEDED,
        1000,
        &big[..548],
    );
    #[rustfmt::skip]
    let table = vec![
        Case::new("with DF: its sender is told the MTU, about the packet it sent",
            CLIENT_PORT, from_client(big),
            Expect::sent(CLIENT_PORT, to_client(ipv4_from(ip("10.99.1.1"), client(), protocol::ICMP, 1, false, &frag_needed)))
                .and_dropped(DropReason::FragNeeded)),
        Case::new("without DF: dropped (rvs does not fragment)",
            CLIENT_PORT, big_no_df, Expect::dropped(DropReason::FragNeeded)),
        Case::new("what fits goes",
            CLIENT_PORT, from_client(udp(client(), 5001, vip(), 53, &[7; 1000 - 28], true)),
            Expect::sent(REAL_PORT, to_r1(udp(client(), 5001, r1(), RPORT, &[7; 1000 - 28], true)))),
    ];
    run_table(table, setup);
}

#[test]
fn kernel_interface() {
    let shared = || {
        let kernel = Setup {
            kernel: true,
            reject_closed_ports: true,
            ..Setup::default()
        };
        harness_with(SCHEDULER, &[real(r1(), RPORT, 1)], kernel)
    };
    let port_address = ip("10.99.1.1");
    let ssh = from_client(tcp(client(), 40000, port_address, 22, TcpFlags::SYN, &[]));
    let to_kernel_only = from_client(tcp(
        client(),
        40000,
        ip("10.99.1.2"),
        22,
        TcpFlags::SYN,
        &[],
    ));
    let vrrp = ethernet(
        CLIENT_MAC,
        MacAddr([0x01, 0x00, 0x5e, 0, 0, 0x12]),
        EtherType::IPV4,
        &ipv4(client(), ip("224.0.0.18"), 112, &[0x21; 20]),
    );
    let ipv6 = ethernet(CLIENT_MAC, DIR_MAC0, EtherType::IPV6, &[0x60; 40]);
    let reply = arp_frame(
        ArpOperation::REPLY,
        CLIENT_MAC,
        client(),
        DIR_MAC0,
        port_address,
    );
    let request = arp_frame(
        ArpOperation::REQUEST,
        CLIENT_MAC,
        client(),
        MacAddr::ZERO,
        port_address,
    );
    let echo_reply = from_r1(ipv4(
        r1(),
        ip("10.99.2.1"),
        protocol::ICMP,
        &icmp_message(icmp::ECHO_REPLY, 0, 0x0001_0001, b"ping"),
    ));
    let unknown_error = from_r1(icmp_error(
        r1(),
        ip("10.99.2.1"),
        &udp(ip("10.99.2.1"), 50000, r1(), 9999, b"q", false)[..28],
    ));
    #[rustfmt::skip]
    let table = vec![
        Case::new("TCP to a port address with no service is the kernel's",
            CLIENT_PORT, ssh.clone(), Expect::to_kernel(CLIENT_PORT)),
        Case::new("TCP to an address rvs does not own is the kernel's",
            CLIENT_PORT, to_kernel_only, Expect::to_kernel(CLIENT_PORT)),
        Case::new("a closed port of the VIP stays rvs's: reset, not handed over",
            CLIENT_PORT, syn_to(81),
            Expect::sent(CLIENT_PORT, to_client(ipv4_from(vip(), client(), protocol::TCP, 1, true,
                &segment((vip(), 81), (client(), 40000), 0, 1001, TcpFlags::RST | TcpFlags::ACK))))
                .and_dropped(DropReason::NoService)),
        Case::new("multicast (VRRP) is the kernel's", CLIENT_PORT, vrrp, Expect::to_kernel(CLIENT_PORT)),
        Case::new("another ethertype (IPv6) is the kernel's", CLIENT_PORT, ipv6, Expect::to_kernel(CLIENT_PORT)),
        Case::new("an ARP reply (to the kernel's request) is the kernel's",
            CLIENT_PORT, reply, Expect::to_kernel(CLIENT_PORT)),
        Case::new("an ARP request for a port address is answered by rvs alone",
            CLIENT_PORT, request,
            Expect::sent(CLIENT_PORT, arp_frame(ArpOperation::REPLY, DIR_MAC0, port_address, CLIENT_MAC, client()))),
        Case::new("an echo reply (to the kernel's ping) is the kernel's",
            REAL_PORT, echo_reply, Expect::to_kernel(REAL_PORT)),
        Case::new("an ICMP error about no tracked connection is the kernel's",
            REAL_PORT, unknown_error, Expect::to_kernel(REAL_PORT)),
        Case::new("a frame to another MAC is nobody's",
            CLIENT_PORT, ethernet(CLIENT_MAC, MacAddr([2, 9, 9, 9, 9, 9]), EtherType::IPV4, &ssh[14..]),
            Expect::dropped(DropReason::NotForUs)),
        Case::new("our own frame seen again is nobody's",
            CLIENT_PORT, ethernet(DIR_MAC0, DIR_MAC0, EtherType::IPV4, &ssh[14..]),
            Expect::dropped(DropReason::NotForUs)),
    ];
    run_table(table, shared);
    // The service's own traffic stays the dataplane's.
    let mut h = shared();
    let (port, _) = h.one(CLIENT_PORT, syn_to(80));
    assert_eq!(port, REAL_PORT);
    assert!(h.io.kernel.is_empty());
    // Without a kernel interface the same frames are dropped as before.
    #[rustfmt::skip]
    let alone = vec![
        Case::new("TCP to a port address, no kernel interface", CLIENT_PORT, ssh, Expect::dropped(DropReason::NoService)),
    ];
    run_table(alone, nat_engine);
}

#[test]
fn closed_ports() {
    let rejecting = || {
        let reject = Setup {
            reject_closed_ports: true,
            ..Setup::default()
        };
        harness_with(SCHEDULER, &[real(r1(), RPORT, 1)], reject)
    };
    let datagram = udp(client(), 5000, vip(), 54, b"q", true);
    let unreachable = icmp_message(
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        0,
        &datagram,
    );
    let ack_to_closed = from_client(tcp(client(), 40000, vip(), 81, TcpFlags::ACK, b"hello"));
    #[rustfmt::skip]
    let table = vec![
        Case::new("a SYN to a closed port of the VIP is reset",
            CLIENT_PORT, syn_to(81),
            Expect::sent(CLIENT_PORT, to_client(ipv4_from(vip(), client(), protocol::TCP, 1, true,
                &segment((vip(), 81), (client(), 40000), 0, 1001, TcpFlags::RST | TcpFlags::ACK))))
                .and_dropped(DropReason::NoService)),
        Case::new("a datagram to a closed port is answered port unreachable, from the VIP",
            CLIENT_PORT, from_client(datagram.clone()),
            Expect::sent(CLIENT_PORT, to_client(ipv4_from(vip(), client(), protocol::ICMP, 1, false, &unreachable)))
                .and_dropped(DropReason::NoService)),
        Case::new("a segment of no connection to a closed port is not answered (only SYNs)",
            CLIENT_PORT, ack_to_closed, Expect::dropped(DropReason::NoService)),
        Case::new("a RST is never answered",
            CLIENT_PORT, from_client(tcp(client(), 40000, vip(), 81, TcpFlags::RST, &[])),
            Expect::dropped(DropReason::NoService)),
        Case::new("a martian source is never answered",
            CLIENT_PORT, from_client(tcp(ip("10.99.1.255"), 40000, vip(), 81, TcpFlags::SYN, &[])),
            Expect::dropped(DropReason::NoService)),
    ];
    run_table(table, rejecting);
    // Without `closed_ports: reject`, nothing is answered.
    let dropping = vec![Case::new(
        "a SYN to a closed port, by default",
        CLIENT_PORT,
        syn_to(81),
        Expect::dropped(DropReason::NoService),
    )];
    run_table(dropping, nat_engine);
}

#[test]
fn dr() {
    let syn = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    let ack = tcp(client(), 40000, vip(), 80, TcpFlags::ACK, b"data");
    let setup = || harness(SCHEDULER, &[real_via(Forward::Dr, r1(), 80, 1)], 16);
    #[rustfmt::skip]
    let table = vec![
        Case::new("a SYN changes only its MAC addresses",
            CLIENT_PORT, from_client(syn.clone()), Expect::sent(REAL_PORT, to_r1(syn.clone()))),
        Case::new("the client's next segments too",
            CLIENT_PORT, from_client(ack.clone()), Expect::sent(REAL_PORT, to_r1(ack)))
            .after(vec![(CLIENT_PORT, from_client(syn.clone()))]),
        Case::new("a reply of a real routing back through rvs leaves from the VIP, as NAT's",
            REAL_PORT, from_r1(tcp(r1(), 80, client(), 40000, synack(), &[])),
            Expect::sent(CLIENT_PORT, to_client(tcp(vip(), 80, client(), 40000, synack(), &[]))))
            .after(vec![(CLIENT_PORT, from_client(syn))]),
    ];
    run_table(table, setup);
}

#[test]
fn tun() {
    let setup = || {
        let small_mtu = Setup {
            real_port_mtu: 1000,
            ..Setup::default()
        };
        harness_with(SCHEDULER, &[real_via(Forward::Tun, r1(), 53, 1)], small_mtu)
    };
    let syn = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    // 1000 bytes with DF: 20 too many once wrapped.
    let big = udp(client(), 5000, vip(), 53, &[7; 1000 - 20 - 8], true);
    let big_no_df = edited(from_client(big.clone()), |ip| ip[6] &= !0x40);
    let fits = udp(client(), 5001, vip(), 53, &[7; 1000 - 20 - 8 - 20], true);
    let frag_needed = icmp_message(
        icmp::DEST_UNREACHABLE,
        icmp::code::FRAG_NEEDED,
        1000 - 20,
        &big[..576 - 20 - 8],
    );
    #[rustfmt::skip]
    let table = vec![
        Case::new("a SYN is wrapped in IPv4 from rvs to the real (TTL 64, DF copied)",
            CLIENT_PORT, from_client(syn.clone()),
            Expect::sent(REAL_PORT, to_r1(ipv4_from(ip("10.99.2.1"), r1(), protocol::IPIP, 1, true, &syn)))),
        Case::new("a datagram that fits once wrapped",
            CLIENT_PORT, from_client(fits.clone()),
            Expect::sent(REAL_PORT, to_r1(ipv4_from(ip("10.99.2.1"), r1(), protocol::IPIP, 1, true, &fits)))),
        Case::new("too big with DF: its sender is told the MTU that fits",
            CLIENT_PORT, from_client(big),
            Expect::sent(CLIENT_PORT, to_client(ipv4_from(ip("10.99.1.1"), client(), protocol::ICMP, 1, false, &frag_needed)))
                .and_dropped(DropReason::FragNeeded)),
        Case::new("too big without DF: dropped (rvs does not fragment)",
            CLIENT_PORT, big_no_df, Expect::dropped(DropReason::FragNeeded)),
    ];
    run_table(table, setup);
}

#[test]
fn fullnat() {
    let syn = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    #[rustfmt::skip]
    let table = vec![
        Case::new("a SYN leaves from the local address to the real",
            CLIENT_PORT, from_client(syn.clone()),
            Expect::sent(REAL_PORT, to_r1(tcp(lip(), LPORT, r1(), RPORT, TcpFlags::SYN, &[])))),
        Case::new("the real's reply to the local address reaches the client from VIP:80",
            REAL_PORT, from_r1(tcp(r1(), RPORT, lip(), LPORT, synack(), &[])),
            Expect::sent(CLIENT_PORT, to_client(tcp(vip(), 80, client(), 40000, synack(), &[]))))
            .after(vec![(CLIENT_PORT, from_client(syn.clone()))]),
        Case::new("a reply to a local port of no connection",
            REAL_PORT, from_r1(tcp(r1(), RPORT, lip(), LPORT + 1, synack(), &[])),
            Expect::dropped(DropReason::NoService))
            .after(vec![(CLIENT_PORT, from_client(syn))]),
        Case::new("a UDP datagram too",
            CLIENT_PORT, from_client(udp(client(), 5000, vip(), 53, b"q", true)),
            Expect::sent(REAL_PORT, to_r1(udp(lip(), LPORT, r1(), RPORT, b"q", true)))),
    ];
    run_table(table, via(Forward::FullNat));
}

#[test]
fn steering() {
    let place = WorkerPlace { index: 0, count: 2 };
    let mine = client_owned_by(place, 0);
    let theirs = client_owned_by(place, 1);
    let two_workers = |forward, rings_full| {
        move || {
            let setup = Setup {
                place,
                ..Setup::default()
            };
            let mut h = harness_with(SCHEDULER, &[real_via(forward, r1(), RPORT, 1)], setup);
            h.io.rings_full = rings_full;
            h
        }
    };
    let syn_from = |client| from_client(tcp(client, 40000, vip(), 80, TcpFlags::SYN, &[]));
    let their_reply = udp(vip(), 53, theirs, 5000, b"a", true);
    #[rustfmt::skip]
    let nat_table = vec![
        Case::new("a SYN of a client this worker owns is handled here",
            CLIENT_PORT, syn_from(mine),
            Expect::sent(REAL_PORT, to_r1(tcp(mine, 40000, r1(), RPORT, TcpFlags::SYN, &[])))),
        Case::new("a SYN of another worker's client goes to that worker",
            CLIENT_PORT, syn_from(theirs), Expect::redirected(1)),
        Case::new("a NAT reply to another worker's client goes to that worker",
            REAL_PORT, from_r1(tcp(r1(), RPORT, theirs, 40000, synack(), &[])), Expect::redirected(1)),
        Case::new("an ICMP error about another worker's connection goes to that worker",
            CLIENT_PORT, from_client(icmp_error(theirs, vip(), &their_reply[..28])), Expect::redirected(1)),
        Case::new("ARP is answered where it arrives",
            CLIENT_PORT, arp_frame(ArpOperation::REQUEST, CLIENT_MAC, theirs, MacAddr::ZERO, vip()),
            Expect::sent(CLIENT_PORT, arp_frame(ArpOperation::REPLY, DIR_MAC0, vip(), CLIENT_MAC, theirs))),
    ];
    run_table(nat_table, two_workers(Forward::Nat, false));
    #[rustfmt::skip]
    let full_rings = vec![
        Case::new("with the owner's ring full, the packet is dropped and counted",
            CLIENT_PORT, syn_from(theirs), Expect::dropped(DropReason::RedirectFull)),
    ];
    run_table(full_rings, two_workers(Forward::Nat, true));
    #[rustfmt::skip]
    let fullnat_table = vec![
        Case::new("a FullNAT reply to an odd local port goes to worker 1",
            REAL_PORT, from_r1(tcp(r1(), RPORT, lip(), 1025, synack(), &[])), Expect::redirected(1)),
        Case::new("a FullNAT reply to an even local port is this worker's",
            REAL_PORT, from_r1(tcp(r1(), RPORT, lip(), LPORT, synack(), &[])),
            Expect::sent(CLIENT_PORT, to_client(tcp(vip(), 80, mine, 40000, synack(), &[]))))
            .after(vec![
                (CLIENT_PORT, arp_frame(ArpOperation::REQUEST, CLIENT_MAC, mine, MacAddr::ZERO, vip())),
                (CLIENT_PORT, syn_from(mine)),
            ]),
    ];
    run_table(fullnat_table, two_workers(Forward::FullNat, false));
}
