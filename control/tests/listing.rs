//! What rvsd's listings show of a configuration (`rvs_control::listing`):
//! services with the counters rvsd hands in, local addresses, routes,
//! addresses with what the kernel holds, and sync daemons.

mod common;

use common::{cpus, ip, BASE};
use rvs_control::config::{self, SyncDaemon, SyncState};
use rvs_control::health::HealthView;
use rvs_control::listing::{self, RealCounts};
use rvs_control::proto::{errors, AddressKind, RouteKind, ServiceKey, Stats};

fn config() -> config::Config {
    let text = format!(
        "{BASE}\
routes:
  - {{ prefix: 172.16.0.0/16, via: 192.168.1.1 }}
services:
  - vip: 10.0.0.1
    port: 80
    protocol: tcp
    scheduler: wrr
    reals:
      - {{ address: 192.168.1.2, weight: 3 }}
      - {{ address: 192.168.1.3, port: 8080 }}
  - vip: 10.0.0.1
    port: 53
    protocol: udp
    local_addresses: [192.168.1.250]
    reals:
      - {{ address: 192.168.1.2, forward: fullnat }}
  - mark: 5
    scheduler: sh
    persistent: 60
    reals:
      - {{ address: 192.168.1.4, forward: dr }}
"
    );
    config::parse_on(&text, "listing.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn services_carry_rvsds_counts_summed_per_service() {
    let config = config();
    let listed = listing::services(&config, None, &HealthView::default(), |service, real| {
        RealCounts {
            stats: Stats {
                conns: u64::from(real.address.octets()[3]),
                in_pkts: u64::from(service.port),
                ..Stats::default()
            },
            active: 1,
            ..RealCounts::default()
        }
    })
    .unwrap();
    assert_eq!(listed.len(), 3);
    let web = &listed[0];
    assert_eq!(web.spec.key, ServiceKey::tcp(ip("10.0.0.1"), 80));
    assert_eq!(web.spec.scheduler, "wrr");
    let reals: Vec<_> = web
        .reals
        .iter()
        .map(|r| (r.spec.addr, r.spec.port, r.spec.weight))
        .collect();
    assert_eq!(
        reals,
        [(ip("192.168.1.2"), 80, 3), (ip("192.168.1.3"), 8080, 1)]
    );
    assert_eq!(
        web.stats.conns,
        2 + 3,
        "the service's counts are its reals'"
    );
    assert_eq!(web.stats.in_pkts, 80 + 80);
    assert_eq!(web.reals[1].active_conns, 1);
    assert_eq!(listed[1].laddrs[0].addr, ip("192.168.1.250"));
    assert_eq!(listed[2].spec.key, ServiceKey::Mark(5));
    assert_eq!(listed[2].spec.persistent, Some(60));

    let one = listing::services(
        &config,
        Some(&ServiceKey::Mark(5)),
        &HealthView::default(),
        |_, _| RealCounts::default(),
    );
    assert_eq!(one.unwrap().len(), 1);
    let missing = listing::services(
        &config,
        Some(&ServiceKey::Mark(6)),
        &HealthView::default(),
        |_, _| RealCounts::default(),
    );
    assert_eq!(missing.unwrap_err(), errors::NO_SUCH_SERVICE);
}

#[test]
fn local_addresses_name_their_port() {
    let config = config();
    let laddrs = listing::laddrs(&config, None).unwrap();
    assert_eq!(laddrs.len(), 1, "only services that have some");
    assert_eq!(laddrs[0].service, ServiceKey::udp(ip("10.0.0.1"), 53));
    assert_eq!(laddrs[0].laddrs[0].ifname.as_deref(), Some("dpdk0"));
    assert_eq!(
        listing::laddrs(&config, Some(&ServiceKey::Mark(6))).unwrap_err(),
        errors::SERVICE_NOT_DEFINED
    );
}

#[test]
fn routes_list_connected_subnets_then_static_routes() {
    let routes: Vec<_> = listing::routes(&config())
        .into_iter()
        .map(|r| (r.prefix, r.via, r.port, r.kind))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "10.0.0.0/24".into(),
                None,
                "client".into(),
                RouteKind::Connected
            ),
            (
                "192.168.1.0/24".into(),
                None,
                "dpdk0".into(),
                RouteKind::Connected
            ),
            (
                "192.168.1.0/24".into(),
                None,
                "dpdk0".into(),
                RouteKind::Connected
            ),
            (
                "172.16.0.0/16".into(),
                Some(ip("192.168.1.1")),
                "dpdk0".into(),
                RouteKind::Static
            ),
        ]
    );
}

#[test]
fn with_static_ownership_every_address_is_held_and_the_kernel_is_not_asked() {
    let addresses: Vec<_> = listing::addresses(&config(), &|addr| {
        panic!("static ownership asked the kernel about {addr}")
    })
    .into_iter()
    .map(|a| (a.address, a.kind, a.interface, a.held))
    .collect();
    assert_eq!(
        addresses,
        [
            // Both services of 10.0.0.1: one line.
            (ip("10.0.0.1"), AddressKind::Vip, None, true),
            // The mark group lists 10.0.0.5 twice (ports 80 and 443).
            (ip("10.0.0.5"), AddressKind::Vip, None, true),
            (ip("10.0.0.254"), AddressKind::Port, None, true),
            // A FullNAT local address is a port address.
            (ip("192.168.1.250"), AddressKind::Port, None, true),
            (ip("192.168.1.254"), AddressKind::Port, None, true),
        ]
    );
}

/// The client port with a kernel interface and a floating address, VIPs
/// owned by the kernel; a VIP only routed to; a mark group no service
/// serves.
fn kernel_config() -> config::Config {
    let text = format!(
        "{}\
ownership: kernel
services:
  - {{ vip: 10.0.0.1, port: 80, protocol: tcp, reals: [{{ address: 192.168.1.2 }}] }}
  - {{ vip: 10.9.9.9, port: 80, protocol: tcp, reals: [{{ address: 192.168.1.2 }}] }}
  - {{ mark: 5, persistent: 60, reals: [{{ address: 192.168.1.4, forward: dr }}] }}
",
        BASE.replace(
            "addresses: [10.0.0.254/24] }",
            "addresses: [10.0.0.254/24], kernel_interface: rvs-client, \
             floating_addresses: [10.0.0.253/24] }",
        )
        .replace(
            "marks:\n",
            "marks:\n  - { mark: 9, matches: [{ vip: 10.0.0.9, port: 80, protocol: tcp }] }\n",
        )
    );
    config::parse_on(&text, "kernel.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn with_kernel_ownership_a_vip_or_floating_address_is_held_where_the_kernel_has_it() {
    let present = |addr: std::net::Ipv4Addr| {
        [ip("10.0.0.1"), ip("10.9.9.9")]
            .contains(&addr)
            .then(|| "rvs-client".to_owned())
    };
    let addresses: Vec<_> = listing::addresses(&kernel_config(), &present)
        .into_iter()
        .map(|a| (a.address, a.kind, a.interface, a.held))
        .collect();
    let client = || Some("rvs-client".to_owned());
    assert_eq!(
        addresses,
        [
            (ip("10.0.0.1"), AddressKind::Vip, client(), true),
            // Not held: named where it is expected, its subnet's port.
            (ip("10.0.0.5"), AddressKind::Vip, client(), false),
            (ip("10.0.0.253"), AddressKind::Floating, client(), false),
            // A port's own address is held whatever the kernel says.
            (ip("10.0.0.254"), AddressKind::Port, client(), true),
            // Routed, not in a port's subnet: held where the kernel has it.
            (ip("10.9.9.9"), AddressKind::Vip, client(), true),
            (ip("192.168.1.250"), AddressKind::Port, None, true),
            (ip("192.168.1.254"), AddressKind::Port, None, true),
        ],
        "mark 9's 10.0.0.9 is served by no service, so it is not listed"
    );
    let everywhere = listing::addresses(&kernel_config(), &|_| Some("rvs-client".into()));
    assert!(everywhere.iter().all(|a| a.held));
    let nowhere = listing::addresses(&kernel_config(), &|_| None);
    let held: Vec<_> = nowhere
        .iter()
        .filter(|a| a.held)
        .map(|a| (a.address, a.kind))
        .collect();
    assert_eq!(
        held,
        [
            (ip("10.0.0.254"), AddressKind::Port),
            (ip("192.168.1.250"), AddressKind::Port),
            (ip("192.168.1.254"), AddressKind::Port),
        ]
    );
}

#[test]
fn daemons_are_listed_master_first() {
    let mut config = config();
    assert!(listing::daemons(&config).is_empty());
    config.sync.backup = Some(SyncDaemon::on("eth1"));
    config.sync.master = Some(SyncDaemon {
        syncid: 3,
        ..SyncDaemon::on("eth0")
    });
    let listed: Vec<_> = listing::daemons(&config)
        .into_iter()
        .map(|d| (d.state, d.daemon.mcast_interface, d.daemon.syncid))
        .collect();
    assert_eq!(
        listed,
        [
            (SyncState::Master, "eth0".to_owned(), 3),
            (SyncState::Backup, "eth1".to_owned(), 0),
        ]
    );
    config.sync.master = None;
    assert_eq!(listing::daemons(&config)[0].state, SyncState::Backup);
}
