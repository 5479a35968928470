//! Schedulers, persistence and thresholds in the packet path, on in-memory
//! buffers: which real each new connection lands on.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;

use common::*;
use rvs_control::model::SchedulerKind;
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::engine::WorkerPlace;
use rvs_dataplane::wire::tcp::TcpFlags;

fn syn_from(client: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    from_client(tcp(client, sport, vip(), dport, TcpFlags::SYN, &[]))
}

/// The real a new connection from `client:sport` to VIP:`dport` went to.
fn real_of(h: &mut Harness, client: Ipv4Addr, sport: u16, dport: u16) -> Ipv4Addr {
    let (_, out) = h.one(CLIENT_PORT, syn_from(client, sport, dport));
    destination(&out).0
}

fn two_reals() -> [Real; 2] {
    [real(r1(), 80, 1), real(r2(), 80, 1)]
}

#[test]
fn a_persistent_client_keeps_its_real_while_others_spread() {
    let setup = Setup {
        persistent: Some(300),
        ..Setup::default()
    };
    let mut h = harness_with(SchedulerKind::Rr, &two_reals(), setup);
    let first = real_of(&mut h, client(), 40000, 80);
    for sport in 40001..40010 {
        assert_eq!(
            real_of(&mut h, client(), sport, 80),
            first,
            "same client, same real"
        );
    }
    // Another client is scheduled: rr moves on to the other real.
    let other = real_of(&mut h, ip("10.99.1.3"), 40000, 80);
    assert_ne!(other, first);
    // Templates count as PersistConn, one per client network.
    let persist: u64 = (0..2)
        .map(|r| h.real_counters[r].persist.load(Relaxed))
        .sum();
    assert_eq!(persist, 2);
}

#[test]
fn templates_outlive_their_timeout_while_they_control_connections() {
    let setup = Setup {
        persistent: Some(10),
        ..Setup::default()
    };
    let mut h = harness_with(SchedulerKind::Rr, &two_reals(), setup);
    let first = real_of(&mut h, client(), 40000, 80);
    // The connection (SYN_RECV, 60 s) outlives the 10 s template timeout;
    // the template stays because it controls it.
    h.engine.set_now(30);
    h.engine.tick(&mut h.io);
    assert_eq!(real_of(&mut h, client(), 40001, 80), first);
    // Once every connection and the re-armed template are gone, the client
    // is scheduled afresh (rr moves on).
    h.engine.set_now(500);
    for _ in 0..4 {
        h.engine.tick(&mut h.io);
    }
    assert_eq!(h.engine.connections().len(), 0);
    let persist: u64 = (0..2)
        .map(|r| h.real_counters[r].persist.load(Relaxed))
        .sum();
    assert_eq!(persist, 0, "template expired");
}

#[test]
fn a_port_zero_service_ties_every_port_of_the_vip_together() {
    let setup = Setup {
        persistent: Some(300),
        port_zero: true,
        ..Setup::default()
    };
    let reals = [real(r1(), 0, 1), real(r2(), 0, 1)];
    let mut h = harness_with(SchedulerKind::Rr, &reals, setup);
    let (_, http) = h.one(CLIENT_PORT, syn_from(client(), 40000, 80));
    let (_, https) = h.one(CLIENT_PORT, syn_from(client(), 40001, 443));
    assert_eq!(
        destination(&http),
        (destination(&http).0, 80),
        "real port = the port asked for"
    );
    assert_eq!(
        destination(&https),
        (destination(&http).0, 443),
        "same real for :443"
    );
}

#[test]
fn an_overloaded_real_gets_no_new_connections_until_it_drains() {
    let setup = Setup {
        thresholds: (2, 1),
        ..Setup::default()
    };
    let mut h = harness_with(SchedulerKind::Rr, &two_reals(), setup);
    let picks: Vec<Ipv4Addr> = (0..4)
        .map(|i| real_of(&mut h, client(), 41000 + i, 80))
        .collect();
    assert_eq!(picks, [r1(), r2(), r1(), r2()]);
    // Both reals hold 2 connections = the upper threshold: both overloaded.
    h.rx(CLIENT_PORT, syn_from(client(), 41010, 80));
    assert!(h.io.take().is_empty());
    assert_eq!(h.drops(DropReason::NoReal), 1);
    // Everything expires: below the lower threshold again.
    h.engine.set_now(200);
    h.engine.tick(&mut h.io);
    assert_eq!(h.engine.connections().len(), 0);
    assert!(h.io.take().is_empty());
    let _ = real_of(&mut h, client(), 41011, 80);
}

#[test]
fn source_hashing_sends_a_client_to_the_same_real_across_connections() {
    for kind in [SchedulerKind::Sh, SchedulerKind::Mh] {
        let mut h = harness(kind, &two_reals(), 256);
        let mut seen = std::collections::BTreeMap::new();
        for c in 2..40u8 {
            let client = Ipv4Addr::new(10, 99, 1, c);
            h.rx(
                CLIENT_PORT,
                common::arp_frame(
                    rvs_dataplane::wire::arp::ArpOperation::REQUEST,
                    CLIENT_MAC,
                    client,
                    rvs_dataplane::wire::ethernet::MacAddr::ZERO,
                    vip(),
                ),
            );
            h.io.take();
            let a = real_of(&mut h, client, 40000, 80);
            let b = real_of(&mut h, client, 40001, 80);
            assert_eq!(a, b, "{kind}: client {client} moved");
            *seen.entry(a).or_insert(0) += 1;
        }
        assert_eq!(
            seen.len(),
            2,
            "{kind}: clients spread over both reals: {seen:?}"
        );
    }
}

#[test]
fn maglev_picks_the_same_real_on_two_directors() {
    let mut a = harness(SchedulerKind::Mh, &two_reals(), 64);
    let mut b = harness(SchedulerKind::Mh, &two_reals(), 64);
    for sport in 40000..40020 {
        assert_eq!(
            real_of(&mut a, client(), sport, 80),
            real_of(&mut b, client(), sport, 80)
        );
    }
}

#[test]
fn least_connection_schedulers_count_every_workers_connections() {
    // Worker 1 of 2; worker 0's counters say r1 already has 5 active
    // connections, so wlc on worker 1 must pick r2.
    let place = WorkerPlace { index: 1, count: 2 };
    let setup = Setup {
        place,
        ..Setup::default()
    };
    let mine = client_owned_by(place, 1);
    let mut h = harness_with(SchedulerKind::Wlc, &two_reals(), setup);
    h.engine.book().workers[0][0].active.store(5, Relaxed);
    assert_eq!(real_of(&mut h, mine, 40000, 80), r2());
    h.engine.book().workers[0][0].active.store(0, Relaxed);
    h.engine.book().workers[0][1].active.store(5, Relaxed);
    assert_eq!(real_of(&mut h, mine, 40001, 80), r1());
}

/// A new snapshot like `h`'s but without real `gone` in service 0; `purge`
/// asks workers to end that real's connections.
fn without_real(
    h: &Harness,
    gone: u32,
    purge: bool,
) -> std::sync::Arc<rvs_dataplane::snapshot::Snapshot> {
    let old = h.engine.snapshot();
    let mut services = old.services.clone();
    services[0].reals.retain(|r| r.id != gone);
    services[0].version += 1;
    let mut snapshot = rvs_dataplane::snapshot::Snapshot::new(
        old.ports.clone(),
        Vec::new(),
        services,
        old.timeouts,
    );
    if purge {
        let real = &old.services[0].reals.iter().find(|r| r.id == gone).unwrap();
        snapshot.purge_reals = vec![rvs_dataplane::snapshot::Purge {
            service_id: old.services[0].id,
            address: real.address,
            port: Some(real.port),
        }];
    }
    std::sync::Arc::new(snapshot)
}

#[test]
fn removing_a_real_keeps_its_connections_unless_purged() {
    for purge in [false, true] {
        let mut h = harness(SchedulerKind::Rr, &two_reals(), 64);
        for sport in 40000..40006 {
            h.one(CLIENT_PORT, syn_from(client(), sport, 80));
        }
        let new = without_real(&h, 0, purge);
        h.engine.swap_snapshot(new);
        h.engine.tick(&mut h.io);
        let left = h.engine.connections().len();
        // An established connection to r1 (port 40000 went to r1) still flows
        // unless purged.
        h.rx(
            CLIENT_PORT,
            from_client(tcp(client(), 40000, vip(), 80, TcpFlags::ACK, b"x")),
        );
        let sent = h.io.take();
        if purge {
            assert_eq!(left, 3, "r1's three connections ended");
            assert!(sent.is_empty());
            assert_eq!(h.drops(DropReason::NoConn), 1);
        } else {
            assert_eq!(left, 6);
            assert_eq!(destination(&sent[0].1), (r1(), 80));
        }
        // New connections only go to r2 either way.
        assert_eq!(real_of(&mut h, client(), 41000, 80), r2());
    }
}
