//! What rvsd's listings show of a configuration: services and their reals
//! (`ipvsadm -L`, `-S`), local addresses (`--get-laddr`), sync daemons
//! (`-L --daemon`), routes and addresses (`rvsctl routes`, `rvsctl
//! addresses`). Pure functions of the [`Config`]; what listings also show
//! of rvsd's state (counters, the kernel's addresses) comes from rvsd
//! through a closure ([`RealCounts`], `present`), so the listings are
//! tested without one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::config::{Config, Ownership, Real, Service, SyncState};
use crate::health::HealthView;
use crate::proto::{
    self, errors, AddressInfo, AddressKind, DaemonInfo, LaddrEntry, LaddrInfo, LaddrSpec, Rates,
    RealSpec, RouteKind, RouteView, ServiceKey, ServiceSpec, Stats,
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

/// `ipvsadm -L --daemon`: the sync daemons `config` runs, master first.
pub fn daemons(config: &Config) -> Vec<DaemonInfo> {
    SyncState::ALL
        .into_iter()
        .filter_map(|state| {
            let daemon = config.sync.daemon(state)?.clone();
            Some(DaemonInfo { state, daemon })
        })
        .collect()
}

/// `rvsctl addresses`: every address rvs may serve, by address: each
/// port's own (always held), each VIP once (of the address services and of
/// the mark groups that a service serves) and each floating address. With
/// `ownership: static` all are held; with `kernel` a VIP or floating
/// address is held while `present` finds it on a kernel interface (and
/// says which), as rvsd serves it. An address not held names the kernel
/// interface it is expected on: a floating address its port's, a VIP that
/// of the port whose subnet holds it.
pub fn addresses(
    config: &Config,
    present: &dyn Fn(Ipv4Addr) -> Option<String>,
) -> Vec<AddressInfo> {
    let watched = |address: Ipv4Addr, kind: AddressKind, expected: Option<&String>| {
        let seen = match config.ownership {
            Ownership::Static => None,
            Ownership::Kernel => present(address),
        };
        AddressInfo {
            address,
            kind,
            held: config.ownership == Ownership::Static || seen.is_some(),
            interface: seen.or_else(|| expected.cloned()),
        }
    };
    let mut infos = Vec::new();
    for port in &config.ports {
        let interface = port.kernel_interface.as_ref();
        for net in &port.addresses {
            infos.push(AddressInfo {
                address: net.addr(),
                kind: AddressKind::Port,
                interface: interface.cloned(),
                held: true,
            });
        }
        for net in &port.floating_addresses {
            infos.push(watched(net.addr(), AddressKind::Floating, interface));
        }
    }
    let mut vips = BTreeSet::new();
    for service in &config.services {
        match service.mark {
            None => {
                vips.insert(service.vip);
            }
            Some(mark) => vips.extend(
                config
                    .marks
                    .iter()
                    .filter(|group| group.mark == mark)
                    .flat_map(|group| group.matches.iter().map(|m| m.vip)),
            ),
        }
    }
    for vip in vips {
        let expected = config
            .ports
            .iter()
            .find(|port| port.connects(vip))
            .and_then(|port| port.kernel_interface.as_ref());
        infos.push(watched(vip, AddressKind::Vip, expected));
    }
    infos.sort_by_key(|info| (u32::from(info.address), info.kind));
    infos
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
