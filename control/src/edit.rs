//! The rules of every command that changes the configuration, ipvsadm's
//! (rvsadm) and rvsctl's, as pure functions from the running [`Config`] to
//! the next one. rvsd adopts what they return; nothing here knows about
//! workers, ids or counters, so the rules are tested on their own.
//!
//! Promises:
//! - A command is applied to a copy of the running configuration, and the
//!   result is validated whole by the rules of the YAML file. A refusal
//!   returns an error and no configuration: the running one is untouched.
//! - Refusals use ipvsadm's words where ipvsadm has words for the condition
//!   ([`errors`]); a change that breaks a rule of the configuration names it
//!   as the YAML file would (`services[0].reals[1].address: reason`).
//! - What a command asks of rvsd beyond the new configuration — end the
//!   connections of a removed real, zero counters — comes back as an
//!   [`Effect`] for rvsd to carry out.
//! - ipvsadm's conventions hold: `-E` resets what it does not give to the
//!   defaults; a new real goes to the head of its service's list; `--set`
//!   leaves a timeout given as 0 unchanged.

use std::net::Ipv4Addr;

use crate::config::{self, Config, HostCpus, Real, Service};
use crate::model::SchedulerKind;
use crate::proto::{errors, Command, ConfigDiff, LaddrSpec, RealSpec, ServiceKey, ServiceSpec};
use crate::rvsctl::diff;

/// What an accepted command does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The configuration to adopt, validated; `None` when the command
    /// changes none (`-Z`).
    pub config: Option<Config>,
    /// What rvsd does besides.
    pub effect: Effect,
}

/// What rvsd does for a command besides adopting its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// End the established connections of a real just removed (`rvsctl
    /// remove-real --purge`); without it, they continue as in IPVS.
    Purge(RealPurge),
    /// Take the counters of these services and their reals as the new zero
    /// (`-Z`).
    Zero(Vec<ServiceKey>),
}

/// The connections a purge ends: those of `service` to `address`, on `port`
/// or, for `None` (port-zero and mark services), on any port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealPurge {
    pub service: ServiceKey,
    pub address: Ipv4Addr,
    pub port: Option<u16>,
}

/// Applies `command`, an ipvsadm command that changes the configuration
/// (or `-Z`), to `running`; validation checks lcore pinning against `cpus`.
/// Any other command is refused: it is not an edit.
pub fn apply(running: &Config, command: &Command, cpus: &HostCpus) -> Result<Edit, String> {
    let mut next = running.clone();
    let mut effect = Effect::None;
    match command {
        Command::AddService { service } => {
            if service.key.index_in(&next).is_some() {
                return Err(errors::SERVICE_EXISTS.to_owned());
            }
            let mut new = Service {
                vip: Ipv4Addr::UNSPECIFIED,
                port: 0,
                protocol: None,
                mark: None,
                scheduler: SchedulerKind::default(),
                reals: Vec::new(),
                local_addresses: Vec::new(),
                flags: Vec::new(),
                persistent: None,
                netmask: None,
                one_packet: false,
            };
            set_service(&mut new, service)?;
            next.services.push(new);
        }
        Command::EditService { service } => {
            let index = service
                .key
                .index_in(&next)
                .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
            set_service(&mut next.services[index], service)?;
        }
        Command::DeleteService { service } => {
            let index = service
                .index_in(&next)
                .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
            next.services.remove(index);
        }
        Command::Clear {} => next.services.clear(),
        Command::AddReal { service, real } => {
            let svc = defined(&mut next, service)?;
            if position_of(svc, real.addr, real.port).is_some() {
                return Err(errors::DESTINATION_EXISTS.to_owned());
            }
            let new = real_from_spec(real, svc.port);
            // IPVS puts a new real at the head of the list.
            svc.reals.insert(0, new);
        }
        Command::EditReal { service, real } => {
            let svc = defined(&mut next, service)?;
            let position = position_of(svc, real.addr, real.port)
                .ok_or_else(|| errors::NO_SUCH_DESTINATION.to_owned())?;
            svc.reals[position] = real_from_spec(real, svc.port);
        }
        Command::DeleteReal {
            service,
            addr,
            port,
            purge,
        } => {
            let svc = defined(&mut next, service)?;
            let position = position_of(svc, *addr, *port)
                .ok_or_else(|| errors::NO_SUCH_DESTINATION.to_owned())?;
            let removed = svc.reals.remove(position);
            if *purge {
                let configured = removed.port_or(svc.port);
                effect = Effect::Purge(RealPurge {
                    service: *service,
                    address: *addr,
                    port: (configured != 0).then_some(configured),
                });
            }
        }
        Command::SetTimeouts { tcp, tcpfin, udp } => {
            for (value, setting) in [
                (*tcp, &mut next.timeouts.tcp),
                (*tcpfin, &mut next.timeouts.tcpfin),
                (*udp, &mut next.timeouts.udp),
            ] {
                if value != 0 {
                    *setting = value;
                }
            }
        }
        Command::AddLaddr { service, laddr } => {
            let index = service
                .index_in(&next)
                .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
            check_ifname(&next, laddr)?;
            let svc = &mut next.services[index];
            if svc.local_addresses.contains(&laddr.addr) {
                return Err(format!("local address {} already exists", laddr.addr));
            }
            svc.local_addresses.push(laddr.addr);
        }
        Command::DelLaddr { service, laddr } => {
            let svc = defined(&mut next, service)?;
            let before = svc.local_addresses.len();
            svc.local_addresses.retain(|a| *a != laddr.addr);
            if svc.local_addresses.len() == before {
                return Err(format!("no such local address {}", laddr.addr));
            }
        }
        Command::Zero { service } => {
            let services = match service {
                Some(key) => {
                    key.index_in(running)
                        .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
                    vec![*key]
                }
                None => running.services.iter().map(ServiceKey::of).collect(),
            };
            return Ok(Edit {
                config: None,
                effect: Effect::Zero(services),
            });
        }
        other => {
            return Err(format!(
                "not a command that edits the configuration: {other:?}"
            ))
        }
    }
    validate(&next, cpus)?;
    Ok(Edit {
        config: Some(next),
        effect,
    })
}

/// `rvsctl apply` and `rvsctl reload` (SIGHUP): the whole configuration in
/// `text`, named `file` in errors, replaces the running one if it validates
/// on `cpus` and changes only what may change while rvsd runs (services,
/// timeouts, fullnat). Returns it with what it changes. Errors name the
/// file, the line and the key path.
pub fn replace(
    running: &Config,
    text: &str,
    file: &str,
    cpus: &HostCpus,
) -> Result<(Config, ConfigDiff), String> {
    let next = config::parse_on(text, file, cpus).map_err(|err| err.to_string())?;
    diff::check_live_only(running, &next, text, file).map_err(|err| err.to_string())?;
    let changes = diff::diff(running, &next);
    Ok((next, changes))
}

/// The whole configuration checked by the rules of the YAML file.
fn validate(config: &Config, cpus: &HostCpus) -> Result<(), String> {
    config
        .validate_on(cpus)
        .map_err(|e| format!("{}: {}", e.key_path(), e.reason()))
}

/// The service `key` names, for the commands on its reals and addresses.
fn defined<'a>(config: &'a mut Config, key: &ServiceKey) -> Result<&'a mut Service, String> {
    let index = key
        .index_in(config)
        .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
    Ok(&mut config.services[index])
}

/// Where real `addr:port` sits in `service`'s list.
fn position_of(service: &Service, addr: Ipv4Addr, port: u16) -> Option<usize> {
    service
        .reals
        .iter()
        .position(|r| r.address == addr && r.port_or(service.port) == port)
}

/// Sets every setting of `service` from `spec` (ipvsadm `-A`/`-E`: what is
/// not given takes its default).
fn set_service(service: &mut Service, spec: &ServiceSpec) -> Result<(), String> {
    match spec.key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => {
            service.protocol = Some(protocol);
            service.vip = addr;
            service.port = port;
            service.mark = None;
        }
        // rvs has no iptables: the mark's matches come from `marks` in the
        // config file (validation refuses an undefined mark).
        ServiceKey::Mark(mark) => {
            service.protocol = None;
            service.vip = Ipv4Addr::UNSPECIFIED;
            service.port = 0;
            service.mark = Some(mark);
        }
    }
    service.scheduler = spec
        .scheduler
        .parse()
        .map_err(|_| errors::SCHEDULER_NOT_FOUND.to_owned())?;
    service.flags = spec.flags.clone();
    service.persistent = spec.persistent;
    service.netmask = spec.netmask;
    service.one_packet = spec.ops;
    Ok(())
}

/// The configuration's real for `spec`: its port only if it differs from
/// the service's.
fn real_from_spec(spec: &RealSpec, service_port: u16) -> Real {
    Real {
        address: spec.addr,
        port: (spec.port != service_port).then_some(spec.port),
        weight: spec.weight,
        forward: spec.forward,
        u_threshold: spec.u_threshold,
        l_threshold: spec.l_threshold,
    }
}

/// DPVS's `-F ifname`: the local address must be an address of that port.
fn check_ifname(config: &Config, laddr: &LaddrSpec) -> Result<(), String> {
    if let Some(name) = &laddr.ifname {
        let port = config
            .ports
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| format!("no port named `{name}`"))?;
        if !port.addresses.iter().any(|a| a.addr() == laddr.addr) {
            return Err(format!("{} is not an address of port `{name}`", laddr.addr));
        }
    }
    Ok(())
}
