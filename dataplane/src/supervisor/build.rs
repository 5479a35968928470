//! The snapshot of a configuration: what the workers read, with the stable
//! ids of services and reals and every service's scheduling table, built
//! here, off the packet path.
//!
//! dh, sh and mh tables are built from the reals' addresses (in address
//! order for mh, so that two directors with the same reals build the same
//! table) and kept while their service's version stays; mh builds from
//! each real's last non-zero weight (IPVS last_weight), so that quiescing
//! a real to weight 0 keeps its slots.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_control::config::{ClosedPorts, Config};
use rvs_control::health::HealthView;
use rvs_control::model::SchedFlags;

use super::ids::Ids;
use crate::sched::{SchedTable, TableReal, Thresholds};
use crate::snapshot::{PortInfo, PortRange, Prefix, RealInfo, Route, ServiceInfo, Snapshot};
use crate::tcp_state::StateTimeouts;
use crate::wire::ethernet::MacAddr;

/// What one snapshot's build leaves for the next.
#[derive(Clone, Default)]
pub(super) struct Tables {
    /// By service id: the table and the service version it was built for.
    built: HashMap<u32, (u64, Arc<SchedTable>)>,
    /// By real id: its last non-zero weight.
    last_weights: HashMap<u32, u32>,
}

/// The snapshot of `config` for ports whose MACs are `macs`, with the ids
/// `ids` gave its services and reals, and the reals `health` took out or
/// put in.
pub(super) fn snapshot(
    config: &Config,
    macs: &[MacAddr],
    ids: &Ids,
    tables: &mut Tables,
    health: &HealthView,
) -> Snapshot {
    let ports = config
        .ports
        .iter()
        .zip(macs)
        .map(|(p, mac)| PortInfo {
            name: p.name.clone(),
            mac: *mac,
            addresses: p
                .addresses
                .iter()
                .map(|a| Prefix::new(a.addr(), a.prefix_len()))
                .collect(),
            mtu: p.mtu,
            kernel: p.kernel_interface.is_some(),
            floating: p.floating_addresses.iter().map(|a| a.addr()).collect(),
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|r| Route {
            prefix: Prefix::new(r.prefix.addr(), r.prefix.prefix_len()),
            port: config.route_port(r).unwrap_or(0) as u16,
            via: Some(r.via),
        })
        .collect();
    let mut last_weights = HashMap::new();
    let mut built = HashMap::new();
    let services = config
        .services
        .iter()
        .map(|s| {
            let s = &*health.apply(s);
            let id = ids.service(s);
            let version = ids.version(id);
            let scheduler = s.scheduler;
            let reals: Vec<RealInfo> = s
                .reals
                .iter()
                .map(|r| RealInfo {
                    address: r.address,
                    port: r.port_or(s.port),
                    weight: r.weight,
                    forward: r.forward,
                    id: ids.real(id, r, s.port),
                    thresholds: Thresholds {
                        upper: r.u_threshold,
                        lower: r.l_threshold,
                    },
                    drained: r.drained_from.is_some(),
                })
                .collect();
            for real in &reals {
                let last = match real.weight {
                    0 => tables.last_weights.get(&real.id).copied().unwrap_or(0),
                    weight => weight,
                };
                last_weights.insert(real.id, last);
            }
            let table = match tables.built.get(&id) {
                Some((built_for, table)) if *built_for == version && table.kind() == scheduler => {
                    Arc::clone(table)
                }
                _ => {
                    let table_reals: Vec<TableReal> = reals
                        .iter()
                        .map(|r| TableReal {
                            last_weight: last_weights[&r.id],
                            ..TableReal::new(r.address, r.port, r.weight)
                        })
                        .collect();
                    Arc::new(SchedTable::build(scheduler, &table_reals))
                }
            };
            built.insert(id, (version, Arc::clone(&table)));
            ServiceInfo {
                id,
                version,
                // 0 for a mark service: its matches name their protocols.
                protocol: s.protocol.map_or(0, |p| p.number()),
                mark: s.mark,
                matches: config
                    .marks
                    .iter()
                    .filter(|m| Some(m.mark) == s.mark)
                    .flat_map(|m| &m.matches)
                    .map(|m| (m.protocol.number(), m.vip, m.port))
                    .collect(),
                vip: s.vip,
                port: s.port,
                scheduler,
                flags: SchedFlags::parse(scheduler, &s.flags.join(","))
                    .expect("validation refuses flags the scheduler does not take"),
                table,
                persistent: s.persistent,
                netmask: s.netmask.unwrap_or(Ipv4Addr::BROADCAST),
                one_packet: s.one_packet,
                reals,
                local_addresses: s.local_addresses.iter().map(|lip| (*lip, 0)).collect(),
            }
        })
        .collect();
    *tables = Tables {
        built,
        last_weights,
    };
    Snapshot::new(
        ports,
        routes,
        services,
        StateTimeouts::from(&config.timeouts),
    )
    .with_lip_ports(PortRange {
        min: config.fullnat.port_min,
        max: config.fullnat.port_max,
    })
    .with_expire_quiescent_template(config.expire_quiescent_template)
    .with_reject_closed_ports(config.closed_ports == ClosedPorts::Reject)
}
