//! What rvsd's listings show of a configuration: services and their reals
//! (`ipvsadm -L`, `-S`), local addresses (`--get-laddr`), routes and
//! addresses (`rvsctl routes`, `rvsctl addresses`). Pure functions of the
//! [`Config`]; the counters that listings also show come from rvsd through
//! a closure ([`RealCounts`]), so the listings are tested without one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::{Config, Real, Service};
use crate::health::HealthView;
use crate::proto::{
    self, errors, AddressRole, AddressView, LaddrEntry, LaddrInfo, LaddrSpec, Rates, RealSpec,
    RouteKind, RouteView, ServiceKey, ServiceSpec, Stats,
};

/// What rvsd counts of one real, for listings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealCounts {
    /// Since the last `-Z`.
    pub stats: Stats,
    pub rates: Rates,
    /// ActiveConn, InActConn and PersistConn as IPVS counts them.
    pub active: u32,
    pub inactive: u32,
    pub persist: u32,
}

/// `ipvsadm -L`: every service, or the one `key` names (refused with
/// ipvsadm's words if there is none), with `counts` of each real, as
/// `health` leaves it: failed reals absent (weight 0 when inhibited), the
/// sorry server in while the quorum is lost. A service's counters are its
/// listed reals' summed.
pub fn services(
    config: &Config,
    key: Option<&ServiceKey>,
    health: &HealthView,
    mut counts: impl FnMut(&Service, &Real) -> RealCounts,
) -> Result<Vec<proto::ServiceInfo>, String> {
    let chosen = chosen(config, key, errors::NO_SUCH_SERVICE)?;
    Ok(chosen
        .into_iter()
        .map(|service| service_info(&health.apply(service), &mut counts))
        .collect())
}

/// `--get-laddr`: the local addresses of every service that has some, or of
/// the one `key` names (refused if there is none).
pub fn laddrs(config: &Config, key: Option<&ServiceKey>) -> Result<Vec<LaddrInfo>, String> {
    let chosen = chosen(config, key, errors::SERVICE_NOT_DEFINED)?;
    Ok(chosen
        .into_iter()
        .filter(|s| !s.local_addresses.is_empty())
        .map(|s| LaddrInfo {
            service: ServiceKey::of(s),
            laddrs: s
                .local_addresses
                .iter()
                .map(|addr| LaddrEntry {
                    addr: *addr,
                    ifname: port_of(config, *addr),
                    conflicts: 0,
                    conns: 0,
                })
                .collect(),
        })
        .collect())
}

/// `rvsctl routes`: the connected subnets of the ports, then the static
/// routes.
pub fn routes(config: &Config) -> Vec<RouteView> {
    let connected = config.ports.iter().flat_map(|port| {
        port.addresses.iter().map(|net| RouteView {
            prefix: format!("{}/{}", net.network(), net.prefix_len()),
            via: None,
            port: port.name.clone(),
            kind: RouteKind::Connected,
        })
    });
    let routes = config.routes.iter().map(|route| RouteView {
        prefix: route.prefix.to_string(),
        via: Some(route.via),
        port: config
            .route_port(route)
            .map_or_else(|| "-".to_owned(), |index| config.ports[index].name.clone()),
        kind: RouteKind::Static,
    });
    connected.chain(routes).collect()
}

/// `rvsctl addresses`: the ports' addresses, then the VIPs and the local
/// addresses in the order services first use them, each with its services.
pub fn addresses(config: &Config) -> Vec<AddressView> {
    let mut views: Vec<AddressView> = config
        .ports
        .iter()
        .flat_map(|port| {
            port.addresses.iter().map(|net| AddressView {
                addr: net.addr(),
                role: AddressRole::Port,
                port: Some(port.name.clone()),
                prefix_len: Some(net.prefix_len()),
                services: Vec::new(),
            })
        })
        .collect();
    let mut vips = FirstUse::default();
    let mut laddrs = FirstUse::default();
    for service in &config.services {
        let key = ServiceKey::of(service);
        // A mark service answers on the VIPs its mark group lists.
        let service_vips: Vec<Ipv4Addr> = match service.mark {
            None => vec![service.vip],
            Some(mark) => config
                .marks
                .iter()
                .filter(|group| group.mark == mark)
                .flat_map(|group| group.matches.iter().map(|m| m.vip))
                .collect(),
        };
        for vip in service_vips {
            vips.add(vip, key, true);
        }
        for lip in &service.local_addresses {
            laddrs.add(*lip, key, false);
        }
    }
    for (addr, services) in vips.order {
        views.push(AddressView {
            addr,
            role: AddressRole::Vip,
            port: config
                .ports
                .iter()
                .find(|port| port.connects(addr))
                .map(|port| port.name.clone()),
            prefix_len: None,
            services,
        });
    }
    for (addr, services) in laddrs.order {
        views.push(AddressView {
            addr,
            role: AddressRole::Laddr,
            port: port_of(config, addr),
            prefix_len: None,
            services,
        });
    }
    views
}

/// Addresses in the order of their first use, each with its services.
#[derive(Default)]
struct FirstUse {
    order: Vec<(Ipv4Addr, Vec<ServiceKey>)>,
    index: BTreeMap<Ipv4Addr, usize>,
}

impl FirstUse {
    /// `once`: a service is listed once per address (a mark group may list
    /// a VIP on several ports).
    fn add(&mut self, addr: Ipv4Addr, key: ServiceKey, once: bool) {
        let order = &mut self.order;
        let at = *self.index.entry(addr).or_insert_with(|| {
            order.push((addr, Vec::new()));
            order.len() - 1
        });
        if !(once && self.order[at].1.contains(&key)) {
            self.order[at].1.push(key);
        }
    }
}

/// The services `key` chooses: the one it names, or all without a key.
fn chosen<'a>(
    config: &'a Config,
    key: Option<&ServiceKey>,
    missing: &str,
) -> Result<Vec<&'a Service>, String> {
    match key {
        Some(key) => {
            let index = key.index_in(config).ok_or_else(|| missing.to_owned())?;
            Ok(vec![&config.services[index]])
        }
        None => Ok(config.services.iter().collect()),
    }
}

/// The name of the port that owns `addr`.
fn port_of(config: &Config, addr: Ipv4Addr) -> Option<String> {
    config
        .ports
        .iter()
        .find(|p| p.addresses.iter().any(|a| a.addr() == addr))
        .map(|p| p.name.clone())
}

fn service_info(
    service: &Service,
    counts: &mut impl FnMut(&Service, &Real) -> RealCounts,
) -> proto::ServiceInfo {
    let mut stats = Stats::default();
    let mut rates = Rates::default();
    let reals = service
        .reals
        .iter()
        .map(|real| {
            let counted = counts(service, real);
            stats = stats + counted.stats;
            rates = rates + counted.rates;
            proto::RealInfo {
                spec: RealSpec::of(real, service.port),
                active_conns: counted.active,
                inact_conns: counted.inactive,
                persist_conns: counted.persist,
                stats: counted.stats,
                rates: counted.rates,
            }
        })
        .collect();
    proto::ServiceInfo {
        spec: ServiceSpec {
            key: ServiceKey::of(service),
            scheduler: service.scheduler.name().to_owned(),
            flags: service.flags.clone(),
            persistent: service.persistent,
            netmask: service.netmask.filter(|m| *m != Ipv4Addr::BROADCAST),
            ops: service.one_packet,
        },
        stats,
        rates,
        reals,
        laddrs: service
            .local_addresses
            .iter()
            .map(|addr| LaddrSpec {
                addr: *addr,
                ifname: None,
            })
            .collect(),
    }
}
