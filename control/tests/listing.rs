//! What rvsd's listings show of a configuration (`rvs_control::listing`):
//! services with the counters rvsd hands in, local addresses, routes and
//! addresses.

mod common;

use common::{cpus, ip, BASE};
use rvs_control::config;
use rvs_control::health::HealthView;
use rvs_control::listing::{self, RealCounts};
use rvs_control::proto::{errors, AddressRole, RouteKind, ServiceKey, Stats};

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
fn addresses_list_ports_then_vips_then_local_addresses() {
    let addresses: Vec<_> = listing::addresses(&config())
        .into_iter()
        .map(|a| (a.addr, a.role, a.port, a.services.len()))
        .collect();
    assert_eq!(
        addresses,
        [
            (
                ip("10.0.0.254"),
                AddressRole::Port,
                Some("client".into()),
                0
            ),
            (
                ip("192.168.1.254"),
                AddressRole::Port,
                Some("dpdk0".into()),
                0
            ),
            (
                ip("192.168.1.250"),
                AddressRole::Port,
                Some("dpdk0".into()),
                0
            ),
            // Both services of 10.0.0.1, once each.
            (ip("10.0.0.1"), AddressRole::Vip, Some("client".into()), 2),
            // The mark group lists 10.0.0.5 twice (ports 80 and 443).
            (ip("10.0.0.5"), AddressRole::Vip, Some("client".into()), 1),
            (
                ip("192.168.1.250"),
                AddressRole::Laddr,
                Some("dpdk0".into()),
                1
            ),
        ]
    );
}
