//! Golden packet tests of the NAT packet path, run on in-memory buffers: each
//! case feeds the engine frames and checks the exact frames it sends (or the
//! drop reason it counts). No DPDK involved.

mod common;

use std::net::Ipv4Addr;

use common::*;
use proptest::prelude::*;
use rvs_control::model::SchedulerKind;
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::wire::arp::{ArpOperation, ArpPacket};
use rvs_dataplane::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use rvs_dataplane::wire::icmp::{self, IcmpPacket};
use rvs_dataplane::wire::ipv4::{protocol, Ipv4Packet};
use rvs_dataplane::wire::tcp::TcpFlags;
use rvs_dataplane::wire::udp::UdpPacket;

#[test]
fn arp_request_for_the_vip_is_answered_on_the_client_port_only() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    let (port, reply) = h.one(
        CLIENT_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            CLIENT_MAC,
            client(),
            MacAddr::ZERO,
            vip(),
        ),
    );
    assert_eq!(port, CLIENT_PORT);
    let expected = arp_frame(ArpOperation::REPLY, DIR_MAC0, vip(), CLIENT_MAC, client());
    assert_eq!(reply, expected);

    h.rx(
        REAL_PORT,
        arp_frame(ArpOperation::REQUEST, R1_MAC, r1(), MacAddr::ZERO, vip()),
    );
    assert!(
        h.io.take().is_empty(),
        "the VIP is not in the real port's subnet"
    );
    h.rx(
        CLIENT_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            CLIENT_MAC,
            client(),
            MacAddr::ZERO,
            ip("10.99.1.77"),
        ),
    );
    assert!(h.io.take().is_empty(), "not an address of ours");
}

#[test]
fn ping_to_the_vip_and_to_a_port_address_is_answered() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    for target in [vip(), ip("10.99.1.1")] {
        let mut echo = [0u8; 16];
        echo[0] = icmp::ECHO_REQUEST;
        echo[4..8].copy_from_slice(&[0, 7, 0, 1]);
        echo[8..].copy_from_slice(b"rvs-ping");
        IcmpPacket::new_checked(&mut echo[..])
            .unwrap()
            .fill_checksum();
        let (port, reply) = h.one(
            CLIENT_PORT,
            from_client(ipv4(client(), target, protocol::ICMP, &echo)),
        );
        assert_eq!(port, CLIENT_PORT);
        let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
        assert_eq!((eth.src(), eth.dst()), (DIR_MAC0, CLIENT_MAC));
        let packet = Ipv4Packet::new_checked(&reply[14..]).unwrap();
        assert_eq!((packet.src(), packet.dst()), (target, client()));
        assert!(packet.verify_checksum());
        let message = IcmpPacket::new_checked(packet.payload()).unwrap();
        assert_eq!(message.msg_type(), icmp::ECHO_REPLY);
        assert!(message.verify_checksum());
        assert_eq!(message.payload(), b"rvs-ping");
    }
}

#[test]
fn nat_rewrites_both_directions_byte_for_byte() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 16);
    let request = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    let (port, out) = h.one(CLIENT_PORT, from_client(request));
    assert_eq!(port, REAL_PORT);
    // Golden: the same segment addressed to the real, port mapped 80 → 8080,
    // from the director's real-side MAC to r1's.
    let expected = ethernet(
        DIR_MAC1,
        R1_MAC,
        EtherType::IPV4,
        &tcp(client(), 40000, r1(), 8080, TcpFlags::SYN, &[]),
    );
    assert_eq!(out, expected);

    let reply = tcp(
        r1(),
        8080,
        client(),
        40000,
        TcpFlags::SYN | TcpFlags::ACK,
        &[],
    );
    let (port, back) = h.one(REAL_PORT, from_real(R1_MAC, reply));
    assert_eq!(port, CLIENT_PORT);
    let expected = ethernet(
        DIR_MAC0,
        CLIENT_MAC,
        EtherType::IPV4,
        &tcp(
            vip(),
            80,
            client(),
            40000,
            TcpFlags::SYN | TcpFlags::ACK,
            &[],
        ),
    );
    assert_eq!(back, expected);

    let data = tcp(
        client(),
        40000,
        vip(),
        80,
        TcpFlags::ACK | TcpFlags::PSH,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let (_, out) = h.one(CLIENT_PORT, from_client(data));
    let expected = ethernet(
        DIR_MAC1,
        R1_MAC,
        EtherType::IPV4,
        &tcp(
            client(),
            40000,
            r1(),
            8080,
            TcpFlags::ACK | TcpFlags::PSH,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
    );
    assert_eq!(out, expected);
    assert_eq!(h.counters.read().conns_created, 1);
    assert_eq!(
        h.real_counters[0]
            .conns
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn udp_nat_keeps_a_zero_checksum_zero_and_fixes_a_real_one() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 5353, 1)], 16);
    let (_, out) = h.one(
        CLIENT_PORT,
        from_client(udp(client(), 1111, vip(), 53, b"query", true)),
    );
    assert_eq!(
        out,
        ethernet(
            DIR_MAC1,
            R1_MAC,
            EtherType::IPV4,
            &udp(client(), 1111, r1(), 5353, b"query", true)
        )
    );
    assert_checksums_valid(&out);

    let (_, out) = h.one(
        CLIENT_PORT,
        from_client(udp(client(), 2222, vip(), 53, b"query", false)),
    );
    let packet = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        UdpPacket::new_checked(packet.payload()).unwrap().checksum(),
        0
    );

    let (port, back) = h.one(
        REAL_PORT,
        from_real(R1_MAC, udp(r1(), 5353, client(), 1111, b"answer", true)),
    );
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(
        back,
        ethernet(
            DIR_MAC0,
            CLIENT_MAC,
            EtherType::IPV4,
            &udp(vip(), 53, client(), 1111, b"answer", true)
        )
    );
}

#[test]
fn ip_options_are_carried_and_checksums_stay_valid() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    let plain = tcp(client(), 40001, vip(), 80, TcpFlags::SYN, &[]);
    // Insert a 4-byte option (NOP NOP NOP EOL): IHL 6.
    let mut with_options = plain[..20].to_vec();
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    with_options.extend_from_slice(&plain[20..]);
    with_options[0] = 0x46;
    let total = with_options.len() as u16;
    with_options[2..4].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_checked(&mut with_options[..])
        .unwrap()
        .fill_checksum();
    let (_, out) = h.one(CLIENT_PORT, from_client(with_options));
    assert_checksums_valid(&out);
    let packet = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(packet.header_len(), 24);
    assert_eq!(packet.options(), &[1, 1, 1, 0]);
    assert_eq!(destination(&out), (r1(), 80));
}

#[test]
fn rr_alternates_and_weight_zero_gets_nothing() {
    let mut h = harness(
        SchedulerKind::Rr,
        &[real(r1(), 80, 1), real(r2(), 80, 1)],
        64,
    );
    let picks: Vec<Ipv4Addr> = (0..4)
        .map(|i| destination(&h.one(CLIENT_PORT, syn(41000 + i)).1).0)
        .collect();
    assert_eq!(picks, [r1(), r2(), r1(), r2()]);

    let mut h = harness(
        SchedulerKind::Rr,
        &[real(r1(), 80, 0), real(r2(), 80, 1)],
        64,
    );
    for i in 0..10 {
        assert_eq!(destination(&h.one(CLIENT_PORT, syn(42000 + i)).1).0, r2());
    }
}

#[test]
fn wrr_follows_ipvs_order() {
    let r3 = ip("10.99.2.13");
    let mut h = harness(
        SchedulerKind::Wrr,
        &[real(r1(), 80, 4), real(r2(), 80, 3), real(r3, 80, 2)],
        64,
    );
    // r3 is unresolved; only the picks matter, so read them off the counters.
    let mut order = vec![];
    for i in 0..9 {
        h.rx(CLIENT_PORT, syn(43000 + i));
        h.io.take();
        let counts: Vec<u64> = (0..3)
            .map(|r| {
                h.real_counters[r]
                    .conns
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .collect();
        order.push(counts);
    }
    let picked: String = order
        .iter()
        .scan(vec![0u64; 3], |prev, now| {
            let i = (0..3).find(|&r| now[r] != prev[r]).unwrap();
            *prev = now.clone();
            Some(["A", "B", "C"][i])
        })
        .collect();
    assert_eq!(picked, "AABABCABC");
}

#[test]
fn no_usable_real_is_dropped_and_counted() {
    let mut h = harness(SchedulerKind::Wlc, &[real(r1(), 80, 0)], 16);
    h.rx(CLIENT_PORT, syn(40000));
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::NoReal), 1);
}

#[test]
fn tcp_without_syn_and_unknown_services_do_not_create_connections() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    h.rx(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, &[])),
    );
    h.rx(
        CLIENT_PORT,
        from_client(tcp(
            client(),
            40000,
            vip(),
            80,
            TcpFlags::SYN | TcpFlags::RST,
            &[],
        )),
    );
    h.rx(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 81, TcpFlags::SYN, &[])),
    );
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::NoConn), 2);
    assert_eq!(h.drops(DropReason::NoService), 1);
    assert_eq!(h.counters.read().conns_created, 0);
}

#[test]
fn a_full_connection_table_drops_new_connections_and_keeps_old_ones() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 2);
    h.one(CLIENT_PORT, syn(40000));
    h.one(CLIENT_PORT, syn(40001));
    h.rx(CLIENT_PORT, syn(40002));
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::ConnTableFull), 1);
    let (_, out) = h.one(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, &[])),
    );
    assert_eq!(
        destination(&out),
        (r1(), 80),
        "an established connection still flows"
    );
}

#[test]
fn connections_expire_on_the_ipvs_timeouts() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    h.one(CLIENT_PORT, syn(40000)); // SYN_RECV: 60 s
    h.engine.set_now(60);
    h.engine.tick(&mut h.io);
    assert_eq!(h.engine.connections().len(), 1);
    h.engine.set_now(62);
    h.engine.tick(&mut h.io);
    assert_eq!(h.engine.connections().len(), 0);
    let c = h.counters.read();
    assert_eq!((c.conns_expired, c.conns_current), (1, 0));
    // The late ACK no longer belongs to anything.
    h.rx(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, &[])),
    );
    assert_eq!(h.drops(DropReason::NoConn), 1);
}

#[test]
fn unresolved_next_hop_holds_the_packet_and_arps() {
    let mut h = harness(SchedulerKind::Rr, &[real(ip("10.99.2.50"), 80, 1)], 16);
    h.rx(CLIENT_PORT, syn(40000));
    let sent = h.io.take();
    assert_eq!(sent.len(), 1, "only the ARP request goes out");
    let (port, request) = &sent[0];
    assert_eq!(*port, REAL_PORT);
    let arp = ArpPacket::new_checked(&request[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOperation::REQUEST);
    assert_eq!(
        (arp.sender_ip(), arp.target_ip()),
        (ip("10.99.2.1"), ip("10.99.2.50"))
    );
    assert_eq!(
        EthernetFrame::new_checked(&request[..]).unwrap().dst(),
        MacAddr::BROADCAST
    );

    let real_mac = MacAddr([2, 0, 0, 0, 0, 0x50]);
    h.rx(
        REAL_PORT,
        arp_frame(
            ArpOperation::REPLY,
            real_mac,
            ip("10.99.2.50"),
            DIR_MAC1,
            ip("10.99.2.1"),
        ),
    );
    let sent = h.io.take();
    assert_eq!(sent.len(), 1, "the held SYN is released");
    assert_eq!(
        EthernetFrame::new_checked(&sent[0].1[..]).unwrap().dst(),
        real_mac
    );
    assert_eq!(destination(&sent[0].1), (ip("10.99.2.50"), 80));
}

#[test]
fn malformed_and_unsupported_frames_are_counted() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    let good = syn(40000);

    let mut fragment = good.clone();
    fragment[14 + 6] |= 0x20; // MF
    Ipv4Packet::new_checked(&mut fragment[14..])
        .unwrap()
        .fill_checksum();
    let mut bad_checksum = good.clone();
    bad_checksum[14 + 10] ^= 0xff;
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut too_long = good.clone();
    too_long[14 + 2..14 + 4].copy_from_slice(&1500u16.to_be_bytes());
    let truncated = good[..14 + 20 + 10].to_vec();
    let ipv6 = ethernet(CLIENT_MAC, DIR_MAC0, EtherType::IPV6, &[0x60; 40]);
    let other_mac = ethernet(
        CLIENT_MAC,
        MacAddr([2, 9, 9, 9, 9, 9]),
        EtherType::IPV4,
        &good[14..],
    );

    for frame in [
        fragment,
        bad_checksum,
        bad_ihl,
        too_long,
        truncated,
        ipv6,
        other_mac,
        vec![],
        vec![0xff; 13],
    ] {
        h.rx(CLIENT_PORT, frame);
    }
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::IpFragment), 1);
    assert_eq!(h.drops(DropReason::BadChecksum), 1);
    assert_eq!(h.drops(DropReason::Malformed), 5);
    assert_eq!(h.drops(DropReason::Unsupported), 1);
    assert_eq!(h.drops(DropReason::NotForUs), 1);
    // And the path still works.
    assert_eq!(destination(&h.one(CLIENT_PORT, good).1), (r1(), 80));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes at all: the engine never panics.
    #[test]
    fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in 0u16..3) {
        let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
        h.rx(port, bytes);
    }

    /// Valid frames with a few bytes changed: never a panic, and whatever
    /// goes out is well-formed.
    #[test]
    fn mutated_frames_never_panic(flips in proptest::collection::vec((0usize..74, any::<u8>()), 1..6)) {
        let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
        let mut frame = syn(40000);
        let len = frame.len();
        for (at, value) in flips {
            frame[at % len] = value;
        }
        h.rx(CLIENT_PORT, frame);
        for (_, out) in h.io.take() {
            prop_assert!(EthernetFrame::new_checked(&out[..]).is_ok());
        }
    }
}
