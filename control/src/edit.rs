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
//!   leaves a timeout given as 0 unchanged; `--start-daemon` of a daemon
//!   that runs and `--stop-daemon` of one that does not are refused, and
//!   the master and the backup daemon may run at once.
//! - A sync daemon started or stopped is a change of `config.sync`, like
//!   any other: rvsd starts and stops its sockets from what the adopted
//!   configuration's `sync` says, whatever command (or `rvsctl apply`)
//!   changed it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::{self, Config, HostCpus, Real, Service, ValidationError};
use crate::proto::{
    errors, BatchRefusal, BatchReport, Command, ConfigDiff, LaddrSpec, RealSpec, ServiceKey,
    ServiceSpec,
};
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
    let mut work = Working::new(running.clone());
    let (effect, _) = work.step(command)?;
    if matches!(command, Command::Zero { .. }) {
        return Ok(Edit {
            config: None,
            effect,
        });
    }
    let next = work.finish();
    validate(&next, cpus)?;
    Ok(Edit {
        config: Some(next),
        effect,
    })
}

/// What a batch of commands did ([`apply_batch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEdit {
    /// The configuration to adopt, validated; `None` when no command
    /// changed it.
    pub config: Option<Config>,
    /// What rvsd does besides, in command order.
    pub effects: Vec<Effect>,
    /// The commands refused, by index, with why: each was skipped and the
    /// rest applied, as `ipvsadm -R` goes on past a refused line.
    pub refused: Vec<(usize, String)>,
}

impl BatchEdit {
    /// What the client is told: the refused commands.
    pub fn report(&self) -> BatchReport {
        BatchReport {
            refused: self
                .refused
                .iter()
                .map(|(index, error)| BatchRefusal {
                    index: *index as u32,
                    error: error.clone(),
                })
                .collect(),
        }
    }
}

/// `rvsadm -R`: applies `commands` in order to `running` as if one after
/// the other (each refused, or not, exactly as [`apply`] would against the
/// state the ones before it left), and returns the result to adopt in one
/// step. A batch of k commands on n services costs O(n + k): services are
/// found by key, a command is checked by the rules of the service it
/// touched (and those that count across services), and the whole result
/// is validated once. A command that is not an edit refuses the batch.
pub fn apply_batch(
    running: &Config,
    commands: &[Command],
    cpus: &HostCpus,
) -> Result<BatchEdit, String> {
    if let Some((index, other)) = commands.iter().enumerate().find(|(_, c)| !is_edit(c)) {
        return Err(format!(
            "batch: command {index} is not a command that edits the configuration: {other:?}"
        ));
    }
    let mut work = Working::new(running.clone());
    let mut effects = Vec::new();
    let mut refused = Vec::new();
    let mut changed = false;
    for (index, command) in commands.iter().enumerate() {
        let undo = work.save(command);
        let checked = work.step(command).and_then(|(effect, touched)| {
            work.check(touched)
                .map_err(|err| format!("{}: {}", err.key_path(), err.reason()))?;
            Ok(effect)
        });
        match checked {
            Ok(effect) => {
                changed |= !matches!(command, Command::Zero { .. });
                if effect != Effect::None {
                    effects.push(effect);
                }
            }
            Err(err) => {
                work.restore(undo);
                refused.push((index, err));
            }
        }
    }
    let config = if changed {
        let next = work.finish();
        // Each command was checked by the rules it can break; the whole
        // result must pass all of them. If it did not, a rule is missing
        // from `Working::check`: refuse rather than adopt.
        validate(&next, cpus).map_err(|err| {
            format!("batch: the result breaks a rule the commands were not checked by: {err}")
        })?;
        Some(next)
    } else {
        None
    };
    Ok(BatchEdit {
        config,
        effects,
        refused,
    })
}

/// Whether [`apply`] takes `command`.
fn is_edit(command: &Command) -> bool {
    matches!(
        command,
        Command::AddService { .. }
            | Command::EditService { .. }
            | Command::DeleteService { .. }
            | Command::Clear {}
            | Command::AddReal { .. }
            | Command::EditReal { .. }
            | Command::DeleteReal { .. }
            | Command::SetTimeouts { .. }
            | Command::AddLaddr { .. }
            | Command::DelLaddr { .. }
            | Command::Zero { .. }
            | Command::Drain { .. }
            | Command::Undrain { .. }
            | Command::StartDaemon { .. }
            | Command::StopDaemon { .. }
    )
}

/// A configuration under edit: services found by key, removed ones left in
/// place as gaps until [`Working::finish`], so that a command costs what it
/// touches and not the whole configuration.
struct Working {
    config: Config,
    /// Where each service is in `config.services`.
    index: HashMap<ServiceKey, usize>,
    /// `config.services[i]` is removed.
    removed: Vec<bool>,
    /// Reals over the services not removed.
    reals: usize,
}

/// What a command changed, for [`Working::check`].
enum Touched {
    Nothing,
    /// A service's settings, reals or local addresses.
    Service(usize),
    /// A new service.
    Added(usize),
    /// A real added to a service: the count over services too.
    RealAdded(usize),
    /// A local address added to a service: the port share too.
    LaddrAdded(usize),
    /// A sync daemon started.
    Sync,
}

/// How to take a refused command back.
enum Undo {
    Nothing,
    /// The service at this index as it was.
    Service(usize, Box<Service>),
    /// A service was appended, if the command got that far.
    Appended(usize),
    /// A removed service.
    Removed(usize),
    Timeouts(crate::model::Timeouts),
    Sync(config::Sync),
}

impl Working {
    fn new(config: Config) -> Self {
        let index = config
            .services
            .iter()
            .enumerate()
            .map(|(i, service)| (ServiceKey::of(service), i))
            .collect();
        let reals = config.services.iter().map(|s| s.reals.len()).sum();
        let removed = vec![false; config.services.len()];
        Working {
            config,
            index,
            removed,
            reals,
        }
    }

    /// The configuration, gaps closed.
    fn finish(self) -> Config {
        let Working {
            mut config,
            removed,
            ..
        } = self;
        if removed.iter().any(|&gone| gone) {
            let mut gone = removed.into_iter();
            config.services.retain(|_| !gone.next().unwrap_or(false));
        }
        config
    }

    /// Where the service `key` names is.
    fn find(&self, key: &ServiceKey, missing: &str) -> Result<usize, String> {
        self.index
            .get(key)
            .copied()
            .ok_or_else(|| missing.to_owned())
    }

    /// Where the real `addr:port` of the service `key` names is: (service,
    /// real) indices, or ipvsadm's refusal.
    fn find_real(
        &self,
        key: &ServiceKey,
        addr: Ipv4Addr,
        port: u16,
    ) -> Result<(usize, usize), String> {
        let i = self.find(key, errors::SERVICE_NOT_DEFINED)?;
        let position = position_of(&self.config.services[i], addr, port)
            .ok_or_else(|| errors::NO_SUCH_DESTINATION.to_owned())?;
        Ok((i, position))
    }

    /// What [`Self::restore`] needs to take `command` back.
    fn save(&self, command: &Command) -> Undo {
        let service = match command {
            Command::AddService { .. } => return Undo::Appended(self.config.services.len()),
            Command::DeleteService { service } => {
                return self
                    .index
                    .get(service)
                    .map_or(Undo::Nothing, |&i| Undo::Removed(i))
            }
            Command::SetTimeouts { .. } => return Undo::Timeouts(self.config.timeouts),
            Command::StartDaemon { .. } | Command::StopDaemon { .. } => {
                return Undo::Sync(self.config.sync.clone())
            }
            Command::EditService { service } => &service.key,
            Command::AddReal { service, .. }
            | Command::EditReal { service, .. }
            | Command::DeleteReal { service, .. }
            | Command::Drain { service, .. }
            | Command::Undrain { service, .. }
            | Command::AddLaddr { service, .. }
            | Command::DelLaddr { service, .. } => service,
            // Clear and -Z are never refused after changing anything.
            _ => return Undo::Nothing,
        };
        self.index.get(service).map_or(Undo::Nothing, |&i| {
            Undo::Service(i, Box::new(self.config.services[i].clone()))
        })
    }

    fn restore(&mut self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::Service(i, service) => {
                self.reals = self.reals + service.reals.len() - self.config.services[i].reals.len();
                self.config.services[i] = *service;
            }
            Undo::Appended(len) => {
                if self.config.services.len() > len {
                    let service = self.config.services.pop().expect("appended");
                    self.removed.pop();
                    self.index.remove(&ServiceKey::of(&service));
                }
            }
            Undo::Removed(i) => {
                if self.removed[i] {
                    self.removed[i] = false;
                    self.reals += self.config.services[i].reals.len();
                    self.index
                        .insert(ServiceKey::of(&self.config.services[i]), i);
                }
            }
            Undo::Timeouts(timeouts) => self.config.timeouts = timeouts,
            Undo::Sync(sync) => self.config.sync = sync,
        }
    }

    /// The index `services[i]` has once the gaps before it are closed.
    fn position(&self, i: usize) -> usize {
        i - self.removed[..i].iter().filter(|&&gone| gone).count()
    }

    /// The rules a command that touched `touched` can break, checked as
    /// validation would find them, the earlier in the file first.
    fn check(&self, touched: Touched) -> Result<(), ValidationError> {
        let config = &self.config;
        // Key paths name a service by its index once the gaps are closed;
        // counted only for a refusal.
        let service = |i: usize| {
            let service = &config.services[i];
            config
                .check_service(i, service)
                .or_else(|_| config.check_service(self.position(i), service))
        };
        match touched {
            Touched::Nothing => Ok(()),
            Touched::Service(i) => service(i),
            Touched::Added(i) => {
                service(i)?;
                let service = &config.services[i];
                config
                    .check_match_free(i, service)
                    .or_else(|_| config.check_match_free(self.position(i), service))
            }
            Touched::RealAdded(i) => {
                service(i)?;
                config.check_reals(self.reals)
            }
            Touched::LaddrAdded(i) => {
                service(i)?;
                config.check_local_port_share()
            }
            Touched::Sync => config.check_sync(),
        }
    }

    /// Applies the rules of `command` (ipvsadm's: what exists, what does
    /// not); what the configuration's rules say is [`Self::check`]'s. On
    /// a refusal the configuration may be changed: [`Self::restore`] it.
    fn step(&mut self, command: &Command) -> Result<(Effect, Touched), String> {
        let mut effect = Effect::None;
        let touched = match command {
            Command::AddService { service } => {
                if self.index.contains_key(&service.key) {
                    return Err(errors::SERVICE_EXISTS.to_owned());
                }
                let mut new = Service::unnamed();
                set_service(&mut new, service)?;
                let i = self.config.services.len();
                self.config.services.push(new);
                self.removed.push(false);
                self.index.insert(service.key, i);
                Touched::Added(i)
            }
            Command::EditService { service } => {
                let i = self.find(&service.key, errors::NO_SUCH_SERVICE)?;
                set_service(&mut self.config.services[i], service)?;
                Touched::Service(i)
            }
            Command::DeleteService { service } => {
                let i = self.find(service, errors::NO_SUCH_SERVICE)?;
                self.index.remove(service);
                self.removed[i] = true;
                self.reals -= self.config.services[i].reals.len();
                Touched::Nothing
            }
            Command::Clear {} => {
                self.index.clear();
                self.removed.iter_mut().for_each(|gone| *gone = true);
                self.reals = 0;
                Touched::Nothing
            }
            Command::AddReal { service, real } => {
                let i = self.find(service, errors::SERVICE_NOT_DEFINED)?;
                let svc = &mut self.config.services[i];
                if position_of(svc, real.addr, real.port).is_some() {
                    return Err(errors::DESTINATION_EXISTS.to_owned());
                }
                let new = real_from_spec(real, svc.port);
                // IPVS puts a new real at the head of the list.
                svc.reals.insert(0, new);
                self.reals += 1;
                Touched::RealAdded(i)
            }
            Command::EditReal { service, real } => {
                let (i, position) = self.find_real(service, real.addr, real.port)?;
                let svc = &mut self.config.services[i];
                let old = &mut svc.reals[position];
                // What ipvsadm has no words for (checks, notifiers) stays.
                *old = Real {
                    checks: std::mem::take(&mut old.checks),
                    inhibit_on_failure: old.inhibit_on_failure,
                    notify_up: old.notify_up.take(),
                    notify_down: old.notify_down.take(),
                    ..real_from_spec(real, svc.port)
                };
                Touched::Service(i)
            }
            Command::Drain {
                service,
                addr,
                port,
            } => {
                let (i, position) = self.find_real(service, *addr, *port)?;
                let real = &mut self.config.services[i].reals[position];
                // Draining a drained real changes nothing.
                if real.drained_from.is_none() {
                    real.drained_from = Some(real.weight);
                    real.weight = 0;
                }
                Touched::Service(i)
            }
            Command::Undrain {
                service,
                addr,
                port,
            } => {
                let (i, position) = self.find_real(service, *addr, *port)?;
                let real = &mut self.config.services[i].reals[position];
                real.weight = real.drained_from.take().ok_or_else(|| {
                    format!("real {addr}:{port} is not drained (rvsctl drain drains it)")
                })?;
                Touched::Service(i)
            }
            Command::DeleteReal {
                service,
                addr,
                port,
                purge,
            } => {
                let (i, position) = self.find_real(service, *addr, *port)?;
                let svc = &mut self.config.services[i];
                let removed = svc.reals.remove(position);
                self.reals -= 1;
                if *purge {
                    let configured = removed.port_or(svc.port);
                    effect = Effect::Purge(RealPurge {
                        service: *service,
                        address: *addr,
                        port: (configured != 0).then_some(configured),
                    });
                }
                Touched::Service(i)
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                let timeouts = &mut self.config.timeouts;
                for (value, setting) in [
                    (*tcp, &mut timeouts.tcp),
                    (*tcpfin, &mut timeouts.tcpfin),
                    (*udp, &mut timeouts.udp),
                ] {
                    if value != 0 {
                        *setting = value;
                    }
                }
                Touched::Nothing
            }
            Command::AddLaddr { service, laddr } => {
                let i = self.find(service, errors::SERVICE_NOT_DEFINED)?;
                check_ifname(&self.config, laddr)?;
                let svc = &mut self.config.services[i];
                if svc.local_addresses.contains(&laddr.addr) {
                    return Err(format!("local address {} already exists", laddr.addr));
                }
                svc.local_addresses.push(laddr.addr);
                Touched::LaddrAdded(i)
            }
            Command::DelLaddr { service, laddr } => {
                let i = self.find(service, errors::SERVICE_NOT_DEFINED)?;
                let svc = &mut self.config.services[i];
                let before = svc.local_addresses.len();
                svc.local_addresses.retain(|a| *a != laddr.addr);
                if svc.local_addresses.len() == before {
                    return Err(format!("no such local address {}", laddr.addr));
                }
                Touched::Service(i)
            }
            Command::StartDaemon { state, daemon } => {
                let running = self.config.sync.daemon_mut(*state);
                if running.is_some() {
                    return Err(errors::DAEMON_RUNNING.to_owned());
                }
                *running = Some(daemon.clone());
                Touched::Sync
            }
            Command::StopDaemon { state } => {
                if self.config.sync.daemon_mut(*state).take().is_none() {
                    return Err(errors::NO_DAEMON.to_owned());
                }
                Touched::Nothing
            }
            Command::Zero { service } => {
                let services = match service {
                    Some(key) => {
                        self.find(key, errors::NO_SUCH_SERVICE)?;
                        vec![*key]
                    }
                    None => self
                        .config
                        .services
                        .iter()
                        .zip(&self.removed)
                        .filter(|(_, &gone)| !gone)
                        .map(|(service, _)| ServiceKey::of(service))
                        .collect(),
                };
                effect = Effect::Zero(services);
                Touched::Nothing
            }
            other => {
                return Err(format!(
                    "not a command that edits the configuration: {other:?}"
                ))
            }
        };
        Ok((effect, touched))
    }
}

/// `rvsctl apply` and `rvsctl reload` (SIGHUP): the whole configuration in
/// `text`, named `file` in errors, replaces the running one if it validates
/// on `cpus` and changes only what may change while rvsd runs
/// ([`diff::LIVE_SECTIONS`]). Returns it with what it changes. Errors name
/// the file, the line and the key path.
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
    // A real edited (a weight set) is no longer drained.
    Real {
        port: (spec.port != service_port).then_some(spec.port),
        weight: spec.weight,
        forward: spec.forward,
        u_threshold: spec.u_threshold,
        l_threshold: spec.l_threshold,
        ..Real::at(spec.addr)
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
