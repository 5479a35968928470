//! Golden packet tests of DR, TUN and FullNAT, steering between workers and
//! ICMP error translation, on in-memory buffers.

mod common;

use std::net::Ipv4Addr;

use common::*;
use rvs_control::model::Forward;
use rvs_control::model::SchedulerKind;
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::engine::WorkerPlace;
use rvs_dataplane::snapshot::PortRange;
use rvs_dataplane::wire::ethernet::{EtherType, EthernetFrame};
use rvs_dataplane::wire::icmp::{self, IcmpPacket};
use rvs_dataplane::wire::ipv4::{protocol, Ipv4Packet};
use rvs_dataplane::wire::tcp::TcpFlags;

fn source(frame: &[u8]) -> (Ipv4Addr, u16) {
    let packet = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let l4 = packet.payload();
    (packet.src(), u16::from_be_bytes([l4[0], l4[1]]))
}

#[test]
fn dr_rewrites_only_the_mac_addresses() {
    let mut h = harness(SchedulerKind::Rr, &[real_via(Forward::Dr, r1(), 80, 1)], 16);
    let ip_packet = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    let (port, out) = h.one(CLIENT_PORT, from_client(ip_packet.clone()));
    assert_eq!(port, REAL_PORT);
    assert_eq!(out, ethernet(DIR_MAC1, R1_MAC, EtherType::IPV4, &ip_packet));
    // Replies do not come back in DR; the client's next segments still flow.
    let ack = tcp(client(), 40000, vip(), 80, TcpFlags::ACK, b"data");
    let (_, out) = h.one(CLIENT_PORT, from_client(ack.clone()));
    assert_eq!(out, ethernet(DIR_MAC1, R1_MAC, EtherType::IPV4, &ack));
}

#[test]
fn tun_wraps_the_packet_in_an_outer_header_to_the_real() {
    let mut h = harness(
        SchedulerKind::Rr,
        &[real_via(Forward::Tun, r1(), 80, 1)],
        16,
    );
    let inner = tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[]);
    let (port, out) = h.one(CLIENT_PORT, from_client(inner.clone()));
    assert_eq!(port, REAL_PORT);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(
        (eth.src(), eth.dst(), eth.ethertype()),
        (DIR_MAC1, R1_MAC, EtherType::IPV4)
    );
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(outer.verify_checksum());
    assert_eq!((outer.src(), outer.dst()), (ip("10.99.2.1"), r1()));
    assert_eq!(outer.protocol(), protocol::IPIP);
    assert_eq!(outer.ttl(), 64);
    assert!(outer.dont_frag(), "DF copied from the inner packet");
    assert_eq!(usize::from(outer.total_len()), 20 + inner.len());
    assert_eq!(outer.payload(), &inner[..], "inner packet untouched");
}

#[test]
fn tun_too_big_with_df_answers_fragmentation_needed() {
    let setup = Setup {
        real_port_mtu: 1000,
        ..Setup::default()
    };
    let mut h = harness_with(
        SchedulerKind::Rr,
        &[real_via(Forward::Tun, r1(), 53, 1)],
        setup,
    );
    let big = udp(client(), 5000, vip(), 53, &[7u8; 1000 - 20 - 8], true); // 1000 bytes, DF
    let original = from_client(big.clone());
    let (port, error) = h.one(CLIENT_PORT, original);
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(h.drops(DropReason::FragNeeded), 1);
    assert_eq!(h.counters.read().icmp_errors_sent, 1);
    let packet = Ipv4Packet::new_checked(&error[14..]).unwrap();
    assert!(packet.verify_checksum());
    assert_eq!((packet.src(), packet.dst()), (ip("10.99.1.1"), client()));
    assert_eq!(packet.protocol(), protocol::ICMP);
    let message = IcmpPacket::new_checked(packet.payload()).unwrap();
    assert!(message.verify_checksum());
    assert_eq!(
        (message.msg_type(), message.code()),
        (icmp::DEST_UNREACHABLE, icmp::code::FRAG_NEEDED)
    );
    assert_eq!(
        message.rest_of_header() & 0xffff,
        980,
        "next-hop MTU = 1000 - 20"
    );
    assert_eq!(
        &message.payload()[..28],
        &big[..28],
        "quotes the offending header and 8 bytes"
    );

    // The same datagram that fits is encapsulated.
    let small = udp(client(), 5001, vip(), 53, &[7u8; 1000 - 20 - 8 - 20], true);
    let (port, _) = h.one(CLIENT_PORT, from_client(small));
    assert_eq!(port, REAL_PORT);
}

#[test]
fn fullnat_rewrites_both_addresses_both_ways() {
    let mut h = harness(
        SchedulerKind::Rr,
        &[real_via(Forward::FullNat, r1(), 8080, 1)],
        16,
    );
    let (port, out) = h.one(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 80, TcpFlags::SYN, &[])),
    );
    assert_eq!(port, REAL_PORT);
    let (lip_addr, lport) = source(&out);
    assert_eq!(lip_addr, lip());
    assert!(lport >= 1024);
    let expected = ethernet(
        DIR_MAC1,
        R1_MAC,
        EtherType::IPV4,
        &tcp(lip(), lport, r1(), 8080, TcpFlags::SYN, &[]),
    );
    assert_eq!(out, expected);

    let reply = tcp(r1(), 8080, lip(), lport, TcpFlags::SYN | TcpFlags::ACK, &[]);
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
}

#[test]
fn fullnat_port_exhaustion_drops_new_connections_and_keeps_old_ones() {
    let setup = Setup {
        lip_ports: PortRange {
            min: 20000,
            max: 20001,
        },
        ..Setup::default()
    };
    let mut h = harness_with(
        SchedulerKind::Rr,
        &[real_via(Forward::FullNat, r1(), 80, 1)],
        setup,
    );
    let mut ports = vec![];
    for sport in [41000, 41001] {
        let (_, out) = h.one(CLIENT_PORT, syn(sport));
        ports.push(source(&out).1);
    }
    ports.sort_unstable();
    assert_eq!(ports, [20000, 20001]);
    h.rx(CLIENT_PORT, syn(41002));
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::LaddrExhausted), 1);
    let (_, out) = h.one(
        CLIENT_PORT,
        from_client(tcp(client(), 41000, vip(), 80, TcpFlags::ACK, b"x")),
    );
    assert_eq!(
        source(&out).0,
        lip(),
        "an established connection still flows"
    );
}

#[test]
fn one_local_port_serves_different_reals_at_once() {
    let setup = Setup {
        lip_ports: PortRange {
            min: 20000,
            max: 20000,
        },
        ..Setup::default()
    };
    let reals = [
        real_via(Forward::FullNat, r1(), 80, 1),
        real_via(Forward::FullNat, r2(), 80, 1),
    ];
    let mut h = harness_with(SchedulerKind::Rr, &reals, setup);
    let (_, a) = h.one(CLIENT_PORT, syn(41000));
    let (_, b) = h.one(CLIENT_PORT, syn(41001));
    assert_eq!(source(&a), (lip(), 20000));
    assert_eq!(source(&b), (lip(), 20000));
    assert_ne!(destination(&a).0, destination(&b).0);
}

#[test]
fn each_worker_allocates_only_its_own_local_ports() {
    let setup = Setup {
        place: WorkerPlace { index: 1, count: 2 },
        ..Setup::default()
    };
    let mut h = harness_with(
        SchedulerKind::Rr,
        &[real_via(Forward::FullNat, r1(), 80, 1)],
        setup,
    );
    let mut handled = 0;
    for i in 0..100 {
        let client = Ipv4Addr::new(10, 99, 1, 2 + i);
        h.rx(
            CLIENT_PORT,
            from_client(tcp(client, 41000, vip(), 80, TcpFlags::SYN, &[])),
        );
        for (_, out) in h.io.take() {
            assert_eq!(source(&out).1 % 2, 1, "worker 1 of 2 owns the odd ports");
            handled += 1;
        }
    }
    assert!(handled > 20, "about half the clients belong to worker 1");
    assert_eq!(h.io.redirected.len() + handled, 100);
    assert!(h.io.redirected.iter().all(|(worker, _)| *worker == 0));
}

#[test]
fn packets_of_another_workers_connection_are_redirected_both_ways() {
    let place = WorkerPlace { index: 0, count: 2 };
    let other = client_owned_by(place, 1);
    let sport = 40000;
    let setup = Setup {
        place,
        ..Setup::default()
    };
    let mut h = harness_with(SchedulerKind::Rr, &[real(r1(), 80, 1)], setup);
    h.rx(
        CLIENT_PORT,
        from_client(tcp(other, sport, vip(), 80, TcpFlags::SYN, &[])),
    );
    // The reply of that connection (NAT: real → client:sport) too.
    h.rx(
        REAL_PORT,
        from_real(
            R1_MAC,
            tcp(r1(), 80, other, sport, TcpFlags::SYN | TcpFlags::ACK, &[]),
        ),
    );
    assert!(h.io.take().is_empty());
    assert_eq!(h.io.redirected.len(), 2);
    assert!(h.io.redirected.iter().all(|(worker, _)| *worker == 1));
    assert_eq!(h.counters.read().redirected, 2);
    assert_eq!(
        h.engine.connections().len(),
        0,
        "worker 0 tracks nothing of it"
    );

    h.io.rings_full = true;
    h.rx(
        CLIENT_PORT,
        from_client(tcp(other, sport, vip(), 80, TcpFlags::SYN, &[])),
    );
    assert_eq!(h.drops(DropReason::RedirectFull), 1);
}

#[test]
fn redirected_packets_are_handled_without_steering_again() {
    let place = WorkerPlace { index: 1, count: 2 };
    let other = client_owned_by(place, 0);
    let setup = Setup {
        place,
        ..Setup::default()
    };
    let mut h = harness_with(SchedulerKind::Rr, &[real(r1(), 80, 1)], setup);
    h.engine.handle_redirected(
        rvs_dataplane::buf::VecBuf::new(&from_client(tcp(
            other,
            40000,
            vip(),
            80,
            TcpFlags::SYN,
            &[],
        ))),
        CLIENT_PORT,
        &mut h.io,
    );
    let sent = h.io.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(destination(&sent[0].1), (r1(), 80));
}

/// An ICMP error from `from` to `to` quoting `quoted` (an IP packet).
fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, msg_type: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut message = vec![0u8; 8 + quoted.len()];
    message[0] = msg_type;
    message[1] = code;
    message[8..].copy_from_slice(quoted);
    IcmpPacket::new_checked(&mut message[..])
        .unwrap()
        .fill_checksum();
    ipv4(from, to, protocol::ICMP, &message)
}

fn quoted_tuple(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let outer = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(outer.verify_checksum());
    let message = IcmpPacket::new_checked(outer.payload()).unwrap();
    assert!(message.verify_checksum());
    let inner = Ipv4Packet::new_checked_quoted(message.payload()).unwrap();
    assert!(inner.verify_checksum());
    let ports = inner.payload();
    (
        inner.src(),
        u16::from_be_bytes([ports[0], ports[1]]),
        inner.dst(),
        u16::from_be_bytes([ports[2], ports[3]]),
    )
}

#[test]
fn icmp_errors_about_nat_connections_are_translated_both_ways() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 16);
    let (_, to_real) = h.one(
        CLIENT_PORT,
        from_client(udp(client(), 5000, vip(), 53, b"q", true)),
    );
    // r1 answers "port unreachable", quoting what it received.
    let error = icmp_error(
        r1(),
        client(),
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        &to_real[14..14 + 28],
    );
    let (port, out) = h.one(REAL_PORT, from_real(R1_MAC, error));
    assert_eq!(port, CLIENT_PORT);
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (vip(), client()));
    assert_eq!(
        quoted_tuple(&out),
        (client(), 5000, vip(), 53),
        "the client's own datagram"
    );

    // The client answers a reply with an error: it reaches the real as the
    // real's own datagram.
    let (_, to_client) = h.one(
        REAL_PORT,
        from_real(R1_MAC, udp(r1(), 8080, client(), 5000, b"a", true)),
    );
    let error = icmp_error(
        client(),
        vip(),
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        &to_client[14..14 + 28],
    );
    let (port, out) = h.one(CLIENT_PORT, from_client(error));
    assert_eq!(port, REAL_PORT);
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (client(), r1()));
    assert_eq!(quoted_tuple(&out), (r1(), 8080, client(), 5000));
    assert_eq!(h.counters.read().icmp_errors_forwarded, 2);
}

#[test]
fn icmp_errors_about_fullnat_connections_are_translated() {
    let mut h = harness(
        SchedulerKind::Rr,
        &[real_via(Forward::FullNat, r1(), 8080, 1)],
        16,
    );
    let (_, to_real) = h.one(
        CLIENT_PORT,
        from_client(udp(client(), 5000, vip(), 53, b"q", true)),
    );
    let (lip_addr, lport) = source(&to_real);
    let error = icmp_error(
        r1(),
        lip_addr,
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        &to_real[14..14 + 28],
    );
    let (port, out) = h.one(REAL_PORT, from_real(R1_MAC, error));
    assert_eq!(port, CLIENT_PORT);
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (vip(), client()));
    assert_eq!(quoted_tuple(&out), (client(), 5000, vip(), 53));

    let (_, to_client) = h.one(
        REAL_PORT,
        from_real(R1_MAC, udp(r1(), 8080, lip_addr, lport, b"a", true)),
    );
    let error = icmp_error(
        client(),
        vip(),
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        &to_client[14..14 + 28],
    );
    let (port, out) = h.one(CLIENT_PORT, from_client(error));
    assert_eq!(port, REAL_PORT);
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (lip_addr, r1()));
    assert_eq!(quoted_tuple(&out), (r1(), 8080, lip_addr, lport));
}

#[test]
fn icmp_errors_never_create_connections() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 16);
    let stray = udp(client(), 5000, vip(), 53, b"q", true);
    let error = icmp_error(
        client(),
        vip(),
        icmp::DEST_UNREACHABLE,
        icmp::code::PORT_UNREACHABLE,
        &stray[..28],
    );
    h.rx(CLIENT_PORT, from_client(error));
    assert!(h.io.take().is_empty());
    assert_eq!(h.engine.connections().len(), 0);
    assert_eq!(h.drops(DropReason::NotForUs), 1);
}
