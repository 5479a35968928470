//! Connection sync through the packet path: what a master's workers hand
//! to the sync daemon and when (the kernel's rules), and what a backup's
//! worker makes of a received connection, in every forwarding mode; and
//! VIP ownership (`ownership: kernel`): an address not held is not served.

mod common;

use std::sync::Arc;

use common::*;
use rvs_control::model::{Forward, SchedulerKind};
use rvs_control::sync::{self as wire, flags, SyncConn};
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::wire::arp::ArpOperation;
use rvs_dataplane::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use rvs_dataplane::wire::tcp::TcpFlags;

fn master(forward: Forward, setup: Setup) -> Harness {
    let mut h = harness_with(
        SchedulerKind::Rr,
        &[
            real_via(forward, r1(), 8080, 1),
            real_via(forward, r2(), 8080, 1),
        ],
        setup,
    );
    let snapshot = (**h.engine.snapshot()).clone().with_sync_master(true);
    h.engine.swap_snapshot(Arc::new(snapshot));
    h
}

fn client_segment(sport: u16, flags: TcpFlags) -> Vec<u8> {
    from_client(tcp(client(), sport, vip(), 80, flags, b"x"))
}

#[test]
fn a_master_syncs_on_the_third_client_packet_and_on_closing_states() {
    let mut h = master(Forward::Nat, Setup::default());
    h.rx(CLIENT_PORT, syn(4000));
    let (_, to_real) = h.io.take().pop().unwrap();
    let (real, _) = destination(&to_real);
    let real_mac = if real == r1() { R1_MAC } else { R2_MAC };
    h.rx(REAL_PORT, syn_ack(real_mac, real, 4000));
    h.rx(CLIENT_PORT, client_segment(4000, TcpFlags::ACK));
    assert!(h.io.synced.is_empty(), "two client packets: nothing yet");
    h.rx(
        CLIENT_PORT,
        client_segment(4000, TcpFlags::ACK | TcpFlags::PSH),
    );
    assert_eq!(h.io.synced.len(), 1, "the third client packet syncs it");
    let record = h.io.synced[0];
    assert_eq!(
        record,
        SyncConn {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            caddr: client(),
            cport: 4000,
            vaddr: vip(),
            vport: 80,
            daddr: real,
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            seq: None,
            local: None,
        }
    );
    // Established: again on packet 53, not before.
    for _ in 4..53 {
        h.rx(CLIENT_PORT, client_segment(4000, TcpFlags::ACK));
    }
    assert_eq!(h.io.synced.len(), 1);
    h.rx(CLIENT_PORT, client_segment(4000, TcpFlags::ACK));
    assert_eq!(h.io.synced.len(), 2, "packet 53");
    // The client's FIN (IPVS's input table: CLOSE_WAIT): at once, once.
    h.rx(
        CLIENT_PORT,
        client_segment(4000, TcpFlags::FIN | TcpFlags::ACK),
    );
    assert_eq!(h.io.synced.len(), 3);
    assert_eq!(h.io.synced[2].state, 7, "CLOSE_WAIT");
    assert_eq!(h.io.synced[2].flags, flags::MASQ | flags::INACTIVE);
    assert_eq!(h.io.synced[2].timeout, 60, "IPVS's close_wait timeout");
    h.rx(CLIENT_PORT, client_segment(4000, TcpFlags::ACK));
    assert_eq!(h.io.synced.len(), 3, "still CLOSE_WAIT: not again");
    assert_eq!(
        h.counters
            .sync_queued
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // The wire form is the kernel's (control/src/sync.rs has the goldens).
    let datagrams = wire::encode(1, &h.io.synced, wire::DEFAULT_MAXLEN);
    assert_eq!(datagrams.len(), 1);
    assert_eq!(wire::decode(&datagrams[0], 1).unwrap().conns, h.io.synced);
}

#[test]
fn without_sync_nothing_is_handed_over() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 64);
    for flags in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK, TcpFlags::ACK] {
        h.rx(CLIENT_PORT, client_segment(4001, flags));
    }
    assert!(h.io.synced.is_empty());
}

fn record(forward: Forward, real: std::net::Ipv4Addr) -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: match forward {
            Forward::Dr => flags::DROUTE,
            Forward::Tun => flags::TUNNEL,
            _ => flags::MASQ,
        },
        state: 1,
        caddr: client(),
        cport: 5000,
        vaddr: vip(),
        vport: 80,
        daddr: real,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        seq: None,
        local: (forward == Forward::FullNat).then_some((lip(), 1030)),
    }
}

/// A backup of `forward` reals, with the record installed.
fn backup_with(forward: Forward) -> Harness {
    let mut h = harness_with(
        SchedulerKind::Rr,
        &[
            real_via(forward, r1(), 8080, 1),
            real_via(forward, r2(), 8080, 1),
        ],
        Setup::default(),
    );
    h.engine.install_synced(&record(forward, r2()));
    assert_eq!(h.engine.connections().len(), 1);
    assert_eq!(
        h.counters
            .sync_installed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h
}

#[test]
fn a_backup_carries_a_synced_connection_on_mid_stream_in_every_mode() {
    for forward in [Forward::Nat, Forward::Dr, Forward::Tun, Forward::FullNat] {
        let mut h = backup_with(forward);
        // A mid-stream segment, no SYN: without the synced entry it would
        // be dropped (no_conn); with it, it goes to the real the master
        // chose (r2), never to the scheduler's next pick.
        let (port, frame) = h.one(CLIENT_PORT, client_segment(5000, TcpFlags::ACK));
        assert_eq!(port, REAL_PORT, "{forward:?}");
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst(), R2_MAC, "{forward:?}: to the synced real");
        assert_eq!(h.drops(DropReason::NoConn), 0, "{forward:?}");
        assert_checksums_valid(&frame[if forward == Forward::Tun { 20 } else { 0 }..]);
    }
}

#[test]
fn a_backup_translates_the_replies_of_synced_nat_and_fullnat_connections() {
    let mut h = backup_with(Forward::Nat);
    let reply = from_real(R2_MAC, tcp(r2(), 8080, client(), 5000, TcpFlags::ACK, b"y"));
    let (port, frame) = h.one(REAL_PORT, reply);
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(source_of(&frame), (vip(), 80), "NAT reply from the VIP");

    let mut h = backup_with(Forward::FullNat);
    let reply = from_real(R2_MAC, tcp(r2(), 8080, lip(), 1030, TcpFlags::ACK, b"y"));
    let (port, frame) = h.one(REAL_PORT, reply);
    assert_eq!(port, CLIENT_PORT);
    assert_eq!(source_of(&frame), (vip(), 80));
    assert_eq!(
        destination(&frame),
        (client(), 5000),
        "FullNAT reply to the client"
    );
}

fn source_of(frame: &[u8]) -> (std::net::Ipv4Addr, u16) {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    (
        std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        u16::from_be_bytes([ip[ihl], ip[ihl + 1]]),
    )
}

#[test]
fn a_record_updates_the_connection_it_names_and_what_is_unknown_is_counted() {
    let mut h = backup_with(Forward::Nat);
    let closing = SyncConn {
        state: 4,
        flags: flags::MASQ | flags::INACTIVE,
        timeout: 120,
        ..record(Forward::Nat, r2())
    };
    h.engine.install_synced(&closing);
    assert_eq!(h.engine.connections().len(), 1, "updated, not added");
    let (_, conn) = h.engine.connections().iter().next().unwrap();
    assert_eq!(conn.state_name(), "FIN_WAIT");
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    assert_eq!(h.counters.sync_updated.load(relaxed), 1);

    // No such service, no such real, a FullNAT record without its local
    // address (a kernel master): counted, nothing installed.
    let no_service = SyncConn {
        vport: 81,
        ..record(Forward::Nat, r2())
    };
    let no_real = SyncConn {
        cport: 5001,
        daddr: ip("10.99.2.99"),
        ..record(Forward::Nat, r2())
    };
    for r in [no_service, no_real] {
        h.engine.install_synced(&r);
    }
    let mut fullnat = harness_with(
        SchedulerKind::Rr,
        &[real_via(Forward::FullNat, r1(), 8080, 1)],
        Setup::default(),
    );
    fullnat.engine.install_synced(&SyncConn {
        local: None,
        ..record(Forward::FullNat, r1())
    });
    assert_eq!(h.engine.connections().len(), 1);
    assert_eq!(h.counters.sync_unbound.load(relaxed), 2);
    assert_eq!(fullnat.engine.connections().len(), 0);
    assert_eq!(fullnat.counters.sync_unbound.load(relaxed), 1);
}

#[test]
fn a_persistent_clients_template_travels_before_its_connection_and_binds_the_backup() {
    let setup = Setup {
        persistent: Some(300),
        ..Setup::default()
    };
    let mut m = master(Forward::Nat, setup);
    for flags in [TcpFlags::SYN, TcpFlags::ACK, TcpFlags::ACK] {
        m.rx(CLIENT_PORT, client_segment(4100, flags));
    }
    let sent = std::mem::take(&mut m.io.synced);
    assert_eq!(sent.len(), 2, "template, then connection: {sent:?}");
    assert_ne!(sent[0].flags & flags::TEMPLATE, 0);
    assert_eq!((sent[0].cport, sent[0].timeout), (0, 300));
    assert_eq!(sent[1].flags & flags::TEMPLATE, 0);
    let chosen = sent[1].daddr;

    let mut b = harness_with(
        SchedulerKind::Rr,
        &[
            real_via(Forward::Nat, r1(), 8080, 1),
            real_via(Forward::Nat, r2(), 8080, 1),
        ],
        setup,
    );
    for r in &sent {
        b.engine.install_synced(r);
    }
    // New connections of the same client on the backup follow the
    // template to the master's real, whatever rr would pick.
    for sport in [4101, 4102, 4103] {
        let (_, frame) = b.one(CLIENT_PORT, syn(sport));
        assert_eq!(destination(&frame).0, chosen, "port {sport}");
    }
}

#[test]
fn an_address_not_held_is_not_answered_nor_served() {
    let mut h = harness(SchedulerKind::Rr, &[real(r1(), 8080, 1)], 64);
    let unheld = (**h.engine.snapshot()).clone().with_unheld([vip()]);
    h.engine.swap_snapshot(Arc::new(unheld));
    let who_has_vip = arp_frame(
        ArpOperation::REQUEST,
        CLIENT_MAC,
        client(),
        MacAddr::ZERO,
        vip(),
    );
    h.rx(CLIENT_PORT, who_has_vip.clone());
    assert!(h.io.take().is_empty(), "no ARP answer for a VIP not held");
    h.rx(CLIENT_PORT, syn(4200));
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::NotHeld), 1);

    // Held again (keepalived put it back): answered and served.
    let held = (**h.engine.snapshot()).clone().with_unheld([]);
    h.engine.swap_snapshot(Arc::new(held));
    let (_, answer) = h.one(CLIENT_PORT, who_has_vip);
    assert_eq!(
        EthernetFrame::new_checked(&answer[..]).unwrap().ethertype(),
        EtherType::ARP
    );
    let (port, _) = h.one(CLIENT_PORT, syn(4201));
    assert_eq!(port, REAL_PORT);
}
