//! Multi-step behaviour of the packet path, on in-memory buffers: orders of
//! scheduling, a full table, expiry, ARP resolution, FullNAT local ports,
//! hand-overs between workers, and robustness against any bytes. Single
//! packets and their exact output are in the tables of `packets.rs`.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use rvs_control::model::{Forward, SchedulerKind};
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::engine::WorkerPlace;
use rvs_dataplane::snapshot::PortRange;
use rvs_dataplane::wire::arp::{ArpOperation, ArpPacket};
use rvs_dataplane::wire::ethernet::{EthernetFrame, MacAddr};
use rvs_dataplane::wire::ipv4::Ipv4Packet;
use rvs_dataplane::wire::tcp::TcpFlags;

#[test]
fn a_new_connection_is_counted_once_to_its_real() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 16);
    h.one(CLIENT_PORT, syn(40000));
    h.one(
        CLIENT_PORT,
        from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, b"x")),
    );
    assert_eq!(h.counters.read().conns_created, 1);
    let real = &h.real_counters[0];
    assert_eq!(real.conns.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        real.in_packets.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

fn source(frame: &[u8]) -> (Ipv4Addr, u16) {
    let packet = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let l4 = packet.payload();
    (packet.src(), u16::from_be_bytes([l4[0], l4[1]]))
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
fn an_arp_storm_from_random_senders_does_not_stop_resolution() {
    let fresh = ip("10.99.2.50");
    let mut h = harness(SchedulerKind::Rr, &[real(fresh, 80, 1)], 16);
    // 10,000 requests for the VIP from senders all over the address space,
    // each from its own MAC (what filled the table before).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..10_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let sender = Ipv4Addr::from(state as u32);
        let mac = MacAddr([2, (state >> 32) as u8, (state >> 40) as u8, 1, 2, 3]);
        h.rx(
            CLIENT_PORT,
            arp_frame(ArpOperation::REQUEST, mac, sender, MacAddr::ZERO, vip()),
        );
    }
    h.io.take();
    // A next hop never seen before still resolves: the SYN waits, the
    // real answers the request, the SYN goes out.
    h.rx(CLIENT_PORT, syn(40000));
    let sent = h.io.take();
    assert_eq!(sent.len(), 1, "only the ARP request goes out");
    let request = ArpPacket::new_checked(&sent[0].1[14..]).unwrap();
    assert_eq!(request.target_ip(), fresh);
    let real_mac = MacAddr([2, 0, 0, 0, 0, 0x50]);
    h.rx(
        REAL_PORT,
        arp_frame(
            ArpOperation::REPLY,
            real_mac,
            fresh,
            DIR_MAC1,
            ip("10.99.2.1"),
        ),
    );
    let sent = h.io.take();
    assert_eq!(sent.len(), 1, "the held SYN is released");
    assert_eq!(destination(&sent[0].1), (fresh, 80));
    assert!(
        h.counters.read().arp_refused > 9_000,
        "off-subnet senders refused"
    );
}

#[test]
fn a_flood_of_spoofed_datagrams_cannot_take_the_room_of_answered_connections() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 64);
    let spoofed = |n: u32| {
        let source = Ipv4Addr::from(0xc633_6400 + n); // 198.51.100.0/22
        let sport = 1024 + (n % 60000) as u16;
        from_client(udp(source, sport, vip(), 53, b"flood", true))
    };
    let handshake = |h: &mut Harness, sport| {
        let (_, out) = h.one(CLIENT_PORT, syn(sport));
        assert_eq!(destination(&out), (r1(), 80));
        let synack = tcp(
            r1(),
            80,
            client(),
            sport,
            TcpFlags::SYN | TcpFlags::ACK,
            &[],
        );
        h.one(REAL_PORT, from_real(R1_MAC, synack));
        let ack = tcp(client(), sport, vip(), 80, TcpFlags::ACK, &[]);
        h.one(CLIENT_PORT, from_client(ack));
    };
    // A connection whose client completed its handshake: verified.
    handshake(&mut h, 40000);
    // A flood ten times the table, each source sending one datagram (what
    // the reals answer goes to addresses that never answer back).
    for n in 0..640 {
        h.rx(CLIENT_PORT, spoofed(n));
    }
    h.io.take();
    assert_eq!(
        h.drops(DropReason::ConnTableFull),
        0,
        "the flood evicts its own kind"
    );
    assert!(h.counters.read().conns_evicted > 500);
    // New clients are still served, every one of them...
    for sport in 41000..41020 {
        handshake(&mut h, sport);
    }
    // ...while the flood goes on, and the connections verified before it
    // keep flowing.
    for n in 640..1280 {
        h.rx(CLIENT_PORT, spoofed(n));
    }
    h.io.take();
    for sport in std::iter::once(40000).chain(41000..41020) {
        let data = from_client(tcp(client(), sport, vip(), 80, TcpFlags::ACK, b"x"));
        assert_eq!(destination(&h.one(CLIENT_PORT, data).1), (r1(), 80));
    }
    assert_eq!(h.drops(DropReason::NoConn), 0);
}

#[test]
fn a_full_connection_table_drops_new_connections_and_keeps_old_ones() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 80, 1)], 2);
    // Both verified by the client's second packet, so neither is evicted
    // to make room.
    for sport in [40000, 40001] {
        h.one(CLIENT_PORT, syn(sport));
        let ack = tcp(client(), sport, vip(), 80, TcpFlags::ACK, &[]);
        h.one(CLIENT_PORT, from_client(ack));
    }
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
    let local = &h.engine.book().local.workers[0];
    assert_eq!(local.ports.load(Relaxed), 2);
    assert_eq!(local.in_use[0].load(Relaxed), 2, "both ports in use");
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
    let local = Arc::clone(&h.engine.book().local.workers[0]);
    assert_eq!(
        local.in_use[0].load(Relaxed),
        1,
        "one port, two connections"
    );
    // Both half-open connections expire (SYN_RECV: 60 s): the port is free.
    h.engine.set_now(120);
    h.engine.tick(&mut h.io);
    assert_eq!(h.engine.connections().len(), 0);
    assert_eq!(local.in_use[0].load(Relaxed), 0);
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

/// Frames as a worker receives them: bursts of up to 32 from one port,
/// each packet of a burst possibly about a connection an earlier one of
/// the same burst opened, closed or reused.
fn mixed_bursts() -> Vec<(u16, Vec<Vec<u8>>)> {
    let mut bursts = Vec::new();
    let mut opening = Vec::new();
    for sport in 1000..1024u16 {
        opening.push(syn(sport));
        if sport % 4 == 0 {
            // The client's next packet in the same burst as its SYN.
            opening.push(from_client(tcp(
                client(),
                sport,
                vip(),
                80,
                TcpFlags::ACK,
                b"x",
            )));
        }
    }
    opening.push(syn(1003)); // a retransmitted SYN
    opening.push(from_client(tcp(
        client(),
        2000,
        vip(),
        80,
        TcpFlags::ACK,
        &[],
    ))); // no connection
    opening.push(vec![0xff; 20]); // malformed
    opening.push(from_client(udp(client(), 5353, vip(), 53, b"q", true)));
    for chunk in opening.chunks(32) {
        bursts.push((CLIENT_PORT, chunk.to_vec()));
    }
    let mut replies = Vec::new();
    for sport in 1000..1024u16 {
        for (mac, addr) in [(R1_MAC, r1()), (R2_MAC, r2())] {
            replies.push(syn_ack(mac, addr, sport));
        }
    }
    for chunk in replies.chunks(32) {
        bursts.push((REAL_PORT, chunk.to_vec()));
    }
    let mut closing = Vec::new();
    for sport in 1000..1024u16 {
        closing.push(from_client(tcp(
            client(),
            sport,
            vip(),
            80,
            TcpFlags::ACK,
            b"y",
        )));
        closing.push(from_client(tcp(
            client(),
            sport,
            vip(),
            80,
            TcpFlags::FIN | TcpFlags::ACK,
            &[],
        )));
        if sport % 3 == 0 {
            // Closed, then reused by a new SYN in the same burst.
            closing.push(from_client(tcp(
                client(),
                sport,
                vip(),
                80,
                TcpFlags::RST,
                &[],
            )));
            closing.push(syn(sport));
        }
    }
    for chunk in closing.chunks(32) {
        bursts.push((CLIENT_PORT, chunk.to_vec()));
    }
    bursts
}

/// `handle_burst` is a faster way to do what `handle` does packet by
/// packet: the same frames out, in the same order, and the same counters,
/// in every forwarding mode.
#[test]
fn a_burst_is_handled_exactly_as_its_packets_one_by_one() {
    for forward in [Forward::Nat, Forward::FullNat, Forward::Dr, Forward::Tun] {
        let reals = [
            real_via(forward, r1(), 8080, 1),
            real_via(forward, r2(), 8080, 1),
        ];
        let mut single = harness(SchedulerKind::Rr, &reals, 64);
        let mut staged = harness(SchedulerKind::Rr, &reals, 64);
        for (port, frames) in mixed_bursts() {
            for frame in &frames {
                single.rx(port, frame.clone());
            }
            staged.engine.handle_burst(
                frames.iter().map(|f| rvs_dataplane::buf::VecBuf::new(f)),
                port,
                &mut staged.io,
            );
        }
        let (one, many) = (single.counters.read(), staged.counters.read());
        assert!(one.conns_created >= 24, "{forward:?}: {one:?}");
        assert!(
            single.io.sent.len() > 60,
            "{forward:?}: {}",
            single.io.sent.len()
        );
        assert_eq!(single.io.sent, staged.io.sent, "{forward:?}");
        assert_eq!(single.io.kernel, staged.io.kernel, "{forward:?}");
        assert_eq!(format!("{one:?}"), format!("{many:?}"), "{forward:?}");
    }
}

/// Packets to a real reuse its route and MAC, but the moment the real is
/// heard at another MAC (it moved, or failed over), the next packet goes
/// there; and time past the neighbour's reachable period brings the
/// refresh (an ARP request) back, as without the reuse.
#[test]
fn a_real_heard_at_a_new_mac_gets_the_next_packet_there() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 16);
    let dst_mac = |frame: &[u8]| EthernetFrame::new_checked(frame).unwrap().dst();
    let (_, out) = h.one(CLIENT_PORT, syn(40000));
    assert_eq!(dst_mac(&out), R1_MAC);
    let ack = || from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, b"x"));
    assert_eq!(dst_mac(&h.one(CLIENT_PORT, ack()).1), R1_MAC);
    let moved = MacAddr([0x02, 0x11, 0, 0, 0, 0x99]);
    h.rx(
        REAL_PORT,
        arp_frame(ArpOperation::REQUEST, moved, r1(), MacAddr::ZERO, r2()),
    );
    h.io.take();
    assert_eq!(dst_mac(&h.one(CLIENT_PORT, ack()).1), moved);
    assert_eq!(dst_mac(&h.one(CLIENT_PORT, ack()).1), moved);
    // Past the reachable period: still sent there, and an ARP request asks.
    h.engine
        .set_now(1 + rvs_dataplane::neigh::REACHABLE_SECS + 1);
    h.rx(CLIENT_PORT, ack());
    let sent = h.io.take();
    assert_eq!(sent.len(), 2, "the packet and a refresh: {sent:?}");
    assert!(sent.iter().any(|(_, f)| dst_mac(f) == moved));
    assert!(sent.iter().any(
        |(_, f)| EthernetFrame::new_checked(&f[..]).unwrap().ethertype()
            == rvs_dataplane::wire::ethernet::EtherType::ARP
    ));
}
