//! The control thread's state: the running configuration, the stable ids of
//! services and reals, and the commands of the control protocol that change
//! or list them.
//!
//! Every change is made to a copy of the configuration, validated as a whole
//! by the same rules as the YAML file, and only then adopted; a refused
//! command leaves the running state exactly as it was. Adopted changes reach
//! the workers as a new immutable [`Snapshot`] through each worker's bounded
//! queue; workers swap at the top of their loop and hand the old snapshot
//! back to be freed here. Nothing here ever waits on a worker except a
//! connection listing, which waits a bounded time for one page.

mod rvsctl;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_control::config::{self, Config, HostCpus};
use rvs_control::model::{Protocol, SchedulerKind};
use rvs_control::proto::{
    self, errors, Command, ConnEntry, ConnPage, GlobalStats, LaddrEntry, LaddrInfo, LaddrSpec,
    Rates, RealSpec, ServiceKey, ServiceSpec, Stats, VersionInfo,
};
use serde_json::Value;

use crate::counters::{CountersSnapshot, RealBook, WorkerCounters};
use crate::sched::{SchedTable, TableReal};
use crate::snapshot::{Purge, Snapshot};
use crate::wire::ethernet::MacAddr;
use crate::worker::{DumpRequest, Mesh};

/// How long a connection listing waits for one worker's page.
const DUMP_WAIT: Duration = Duration::from_millis(500);
/// Bits of a listing cursor that hold the table position.
const CURSOR_POSITION_BITS: u32 = 40;

/// What identifies a service across changes: protocol, VIP, port, mark.
type ServiceTuple = (Option<Protocol>, Ipv4Addr, u16, u32);

/// Stable ids: what connections and counters know services and reals by.
struct Ids {
    services: HashMap<ServiceTuple, u32>,
    reals: HashMap<(u32, Ipv4Addr, u16), u32>,
    /// Per service id: bumped on every change to the service or its reals.
    versions: HashMap<u32, u64>,
    next_service: u32,
    next_real: u32,
    /// Ids of deleted reals, reused oldest first once fresh ids run out.
    free_reals: VecDeque<u32>,
    real_limit: u32,
    next_version: u64,
}

impl Ids {
    fn new(real_limit: u32) -> Self {
        Ids {
            services: HashMap::new(),
            reals: HashMap::new(),
            versions: HashMap::new(),
            next_service: 0,
            next_real: 0,
            free_reals: VecDeque::new(),
            real_limit,
            next_version: 1,
        }
    }

    /// Gives every service and real of `config` an id (keeping existing
    /// ones), bumps the version of services that differ from `old`, and
    /// releases the ids of what is gone. Fails if the real ids run out.
    fn assign(&mut self, old: Option<&Config>, config: &Config) -> Result<(), String> {
        let old_services: HashMap<ServiceTuple, &config::Service> = old
            .map(|c| c.services.iter().map(|s| (tuple(s), s)).collect())
            .unwrap_or_default();
        let mut live_services = HashMap::new();
        let mut live_reals = HashMap::new();
        for service in &config.services {
            let key = tuple(service);
            let id = match self.services.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.next_service;
                    self.next_service += 1;
                    id
                }
            };
            live_services.insert(key, id);
            if old_services.get(&key) != Some(&service) || !self.versions.contains_key(&id) {
                self.versions.insert(id, self.next_version);
                self.next_version += 1;
            }
            for real in &service.reals {
                let real_key = (id, real.address, real.port_or(service.port));
                let real_id = match self.reals.get(&real_key) {
                    Some(&real_id) => real_id,
                    None if self.next_real < self.real_limit => {
                        self.next_real += 1;
                        self.next_real - 1
                    }
                    None => match self.free_reals.pop_front() {
                        Some(real_id) => real_id,
                        None => return Err(errors::NO_MEMORY.to_owned()),
                    },
                };
                self.reals.insert(real_key, real_id);
                live_reals.insert(real_key, real_id);
            }
        }
        for (key, real_id) in &self.reals {
            if !live_reals.contains_key(key) {
                self.free_reals.push_back(*real_id);
            }
        }
        self.versions
            .retain(|id, _| live_services.values().any(|v| v == id));
        self.services = live_services;
        self.reals = live_reals;
        Ok(())
    }

    fn service(&self, service: &config::Service) -> u32 {
        self.services[&tuple(service)]
    }

    fn real(&self, service_id: u32, real: &config::Real, service_port: u16) -> u32 {
        self.reals[&(service_id, real.address, real.port_or(service_port))]
    }
}

fn tuple(service: &config::Service) -> ServiceTuple {
    (
        service.protocol,
        service.vip,
        service.port,
        service.mark.unwrap_or(0),
    )
}

/// Counter values a `-Z` took as the new zero.
#[derive(Clone, Copy, Default)]
struct Baseline(Stats);

/// IPVS-style rate estimate: sampled every 2 s, smoothed (avg += (rate -
/// avg) / 4).
#[derive(Clone, Copy, Default)]
struct Estimator {
    last: Stats,
    rates: Rates,
}

/// The control thread's view of everything.
pub struct ControlPlane {
    config: Config,
    /// The CPUs as seen before DPDK pinned this thread: what validation of
    /// `workers[].cpu` must check against.
    cpus: HostCpus,
    ids: Ids,
    macs: Vec<MacAddr>,
    mesh: Arc<Mesh>,
    counters: Vec<Arc<WorkerCounters>>,
    book: Arc<RealBook>,
    /// dh/sh/mh tables by service id, with the version they were built for.
    tables: HashMap<u32, (u64, Arc<SchedTable>)>,
    /// Each real's last non-zero weight (IPVS last_weight): a real quiesced
    /// to weight 0 keeps its Maglev slots.
    last_weights: HashMap<u32, u32>,
    snapshot: Arc<Snapshot>,
    /// Per worker: a snapshot its full queue could not take yet.
    pending: Vec<Option<Arc<Snapshot>>>,
    dirty: bool,
    /// Connections the next snapshot tells workers to end.
    purge: Vec<Purge>,
    /// rvsctl's config path and uploads in progress.
    rvsctl: rvsctl::State,
    baselines: HashMap<u32, Baseline>,
    estimators: HashMap<u32, Estimator>,
    last_estimate: Instant,
}

impl ControlPlane {
    /// The control plane for `config`, whose snapshot the workers are
    /// started with ([`Self::snapshot`]).
    pub fn new(
        config: Config,
        cpus: HostCpus,
        macs: Vec<MacAddr>,
        mesh: Arc<Mesh>,
        counters: Vec<Arc<WorkerCounters>>,
        book: Arc<RealBook>,
    ) -> Result<Self, String> {
        let mut ids = Ids::new(config.limits.reals);
        ids.assign(None, &config)?;
        let workers = counters.len();
        Ok(ControlPlane {
            config,
            cpus,
            ids,
            macs,
            mesh,
            counters,
            book,
            tables: HashMap::new(),
            last_weights: HashMap::new(),
            snapshot: Arc::new(Snapshot::new(
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Default::default(),
            )),
            pending: vec![None; workers],
            dirty: false,
            purge: Vec::new(),
            rvsctl: rvsctl::State::default(),
            baselines: HashMap::new(),
            estimators: HashMap::new(),
            last_estimate: Instant::now(),
        })
        .map(|mut control: ControlPlane| {
            control.snapshot = Arc::new(control.build_snapshot());
            control
        })
    }

    /// The snapshot of the running configuration, with stable ids and the
    /// schedulers' tables (dh/sh/mh tables rebuilt only for services whose
    /// version changed).
    fn build_snapshot(&mut self) -> Snapshot {
        // Each real's last non-zero weight (IPVS last_weight) first: mh
        // builds from it, so that a quiesced real keeps its slots.
        let mut last_weights = HashMap::new();
        for service in &self.config.services {
            let service_id = self.ids.service(service);
            for real in &service.reals {
                let id = self.ids.real(service_id, real, service.port);
                let last = if real.weight > 0 {
                    real.weight
                } else {
                    self.last_weights.get(&id).copied().unwrap_or(0)
                };
                last_weights.insert(id, last);
            }
        }
        self.last_weights = last_weights;
        let old_tables = std::mem::take(&mut self.tables);
        let mut tables = HashMap::new();
        let ids = &self.ids;
        let last_weights = &self.last_weights;
        let snapshot = crate::daemon::build_snapshot_with(
            &self.config,
            &self.macs,
            |service| {
                let id = ids.service(service);
                (id, ids.versions.get(&id).copied().unwrap_or(0))
            },
            |service_id, service, real| ids.real(service_id, real, service.port),
            |id, version, scheduler, reals| {
                let table = match old_tables.get(&id) {
                    Some((built_for, table))
                        if *built_for == version && table.kind() == scheduler =>
                    {
                        Arc::clone(table)
                    }
                    _ => {
                        let reals: Vec<TableReal> = reals
                            .iter()
                            .map(|r| TableReal {
                                last_weight: last_weights.get(&r.id).copied().unwrap_or(r.weight),
                                ..TableReal::new(r.address, r.port, r.weight)
                            })
                            .collect();
                        Arc::new(SchedTable::build(scheduler, &reals))
                    }
                };
                tables.insert(id, (version, Arc::clone(&table)));
                table
            },
        );
        self.tables = tables;
        snapshot
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adopts `next` if it validates; the running state is untouched if not.
    fn adopt(&mut self, next: Config) -> Result<(), String> {
        next.validate_on(&self.cpus)
            .map_err(|e| format!("{}: {}", e.key_path(), e.reason()))?;
        let mut ids = std::mem::replace(&mut self.ids, Ids::new(0));
        let assigned = ids.assign(Some(&self.config), &next);
        self.ids = ids;
        assigned?;
        self.config = next;
        self.dirty = true;
        Ok(())
    }

    /// Replaces the services, timeouts and FullNAT settings with those of
    /// `file` (SIGHUP, `rvsctl reload`); everything else needs a restart and
    /// must be unchanged.
    pub fn reload(&mut self, file: Config) -> Result<(), String> {
        let mut fixed = file.clone();
        fixed.services = self.config.services.clone();
        fixed.timeouts = self.config.timeouts;
        fixed.fullnat = self.config.fullnat.clone();
        if fixed != self.config {
            return Err(
                "only services, timeouts and fullnat change on reload; eal, mempool, ports, \
                 routes, workers, limits and control need a restart"
                    .to_owned(),
            );
        }
        self.adopt(file)
    }

    /// Periodic work of the control loop: publishes a pending change, frees
    /// retired snapshots, updates rate estimates.
    pub fn tick(&mut self) {
        if self.dirty {
            self.dirty = false;
            let mut snapshot = self.build_snapshot();
            snapshot.purge_reals = std::mem::take(&mut self.purge);
            self.snapshot = Arc::new(snapshot);
            for slot in &mut self.pending {
                *slot = Some(Arc::clone(&self.snapshot));
            }
        }
        for (worker, slot) in self.pending.iter_mut().enumerate() {
            if let Some(snapshot) = slot.take() {
                if let Err(snapshot) = self.mesh.snapshots[worker].push(snapshot) {
                    *slot = Some(snapshot);
                }
            }
        }
        while let Some(old) = self.mesh.retired.pop() {
            drop(old);
        }
        if self.last_estimate.elapsed() >= Duration::from_secs(2) {
            let seconds = self.last_estimate.elapsed().as_secs_f64();
            self.last_estimate = Instant::now();
            self.estimate(seconds);
        }
    }

    /// True while some worker has not taken the latest snapshot yet.
    pub fn publishing(&self) -> bool {
        self.dirty || self.pending.iter().any(Option::is_some)
    }

    /// Counters of real `real_id` summed over workers: stats, active and
    /// inactive connections.
    pub fn real_stats(&self, real_id: u32) -> (Stats, u64, u64) {
        let (stats, active, inactive, _) = self.real_counts(real_id);
        (stats, active, inactive)
    }

    /// [`Self::real_stats`] plus the persistence templates (PersistConn).
    fn real_counts(&self, real_id: u32) -> (Stats, u64, u64, u64) {
        let mut persist = 0;
        for worker in &self.book.workers {
            if let Some(c) = worker.get(real_id as usize) {
                persist += c.persist.load(Relaxed);
            }
        }
        let mut stats = Stats::default();
        let (mut active, mut inactive) = (0, 0);
        for worker in &self.book.workers {
            if let Some(c) = worker.get(real_id as usize) {
                stats.conns += c.conns.load(Relaxed);
                stats.in_pkts += c.in_packets.load(Relaxed);
                stats.out_pkts += c.out_packets.load(Relaxed);
                stats.in_bytes += c.in_bytes.load(Relaxed);
                stats.out_bytes += c.out_bytes.load(Relaxed);
                active += c.active.load(Relaxed);
                inactive += c.inactive.load(Relaxed);
            }
        }
        (stats, active, inactive, persist)
    }

    /// Counters of `real_id` since its last `-Z`.
    fn zeroed_stats(&self, real_id: u32) -> (Stats, u64, u64) {
        let (stats, active, inactive) = self.real_stats(real_id);
        let base = self
            .baselines
            .get(&real_id)
            .map_or(Stats::default(), |b| b.0);
        (minus(stats, base), active, inactive)
    }

    fn estimate(&mut self, seconds: f64) {
        let ids: Vec<u32> = self.ids.reals.values().copied().collect();
        for id in ids {
            let (now, _, _) = self.real_stats(id);
            let estimator = self.estimators.entry(id).or_default();
            let per_second = |new: u64, old: u64| (new.saturating_sub(old) as f64 / seconds) as u64;
            let smooth =
                |avg: u64, rate: u64| (avg as i64 + (rate as i64 - avg as i64) / 4).max(0) as u64;
            let sample = Rates {
                cps: per_second(now.conns, estimator.last.conns),
                inpps: per_second(now.in_pkts, estimator.last.in_pkts),
                outpps: per_second(now.out_pkts, estimator.last.out_pkts),
                inbps: per_second(now.in_bytes, estimator.last.in_bytes),
                outbps: per_second(now.out_bytes, estimator.last.out_bytes),
            };
            let r = &mut estimator.rates;
            r.cps = smooth(r.cps, sample.cps);
            r.inpps = smooth(r.inpps, sample.inpps);
            r.outpps = smooth(r.outpps, sample.outpps);
            r.inbps = smooth(r.inbps, sample.inbps);
            r.outbps = smooth(r.outbps, sample.outbps);
            estimator.last = now;
        }
        let live: std::collections::HashSet<u32> = self.ids.reals.values().copied().collect();
        self.estimators.retain(|id, _| live.contains(id));
    }

    /// Answers one control-protocol command.
    pub fn handle(&mut self, command: Command) -> Result<Value, String> {
        match command {
            command @ (Command::UploadConfig { .. }
            | Command::ApplyConfig { .. }
            | Command::ReloadConfig { .. }
            | Command::DumpConfig
            | Command::ListPorts
            | Command::ListWorkers
            | Command::ListRoutes
            | Command::ListAddresses
            | Command::ListNeighbours) => self.handle_rvsctl(command),
            Command::Version => to_json(&VersionInfo {
                daemon: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: proto::VERSION,
            }),
            Command::AddService { service } => {
                let mut next = self.config.clone();
                if find_service(&next, &service.key)?.is_some() {
                    return Err(errors::SERVICE_EXISTS.to_owned());
                }
                let mut new = config::Service {
                    vip: Ipv4Addr::UNSPECIFIED,
                    port: 0,
                    protocol: None,
                    scheduler: SchedulerKind::default(),
                    reals: Vec::new(),
                    local_addresses: Vec::new(),
                    flags: Vec::new(),
                    persistent: None,
                    netmask: None,
                    one_packet: false,
                    mark: None,
                };
                apply_spec(&mut new, &service)?;
                next.services.push(new);
                self.adopt(next).map(|()| Value::Null)
            }
            Command::EditService { service } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service.key)?
                    .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
                apply_spec(&mut next.services[index], &service)?;
                self.adopt(next).map(|()| Value::Null)
            }
            Command::DeleteService { service } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
                next.services.remove(index);
                self.adopt(next).map(|()| Value::Null)
            }
            Command::Clear => {
                let mut next = self.config.clone();
                next.services.clear();
                self.adopt(next).map(|()| Value::Null)
            }
            Command::AddReal { service, real } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                let svc = &mut next.services[index];
                if svc
                    .reals
                    .iter()
                    .any(|r| r.address == real.addr && r.port_or(svc.port) == real.port)
                {
                    return Err(errors::DESTINATION_EXISTS.to_owned());
                }
                let new = real_from_spec(&real, svc.port)?;
                // IPVS puts a new real at the head of the list.
                svc.reals.insert(0, new);
                self.adopt(next).map(|()| Value::Null)
            }
            Command::EditReal { service, real } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                let svc = &mut next.services[index];
                let port = svc.port;
                let position = svc
                    .reals
                    .iter()
                    .position(|r| r.address == real.addr && r.port_or(port) == real.port)
                    .ok_or_else(|| errors::NO_SUCH_DESTINATION.to_owned())?;
                svc.reals[position] = real_from_spec(&real, port)?;
                self.adopt(next).map(|()| Value::Null)
            }
            Command::DeleteReal {
                service,
                addr,
                port,
                purge,
            } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                let svc = &mut next.services[index];
                let service_port = svc.port;
                let removed = svc
                    .reals
                    .iter()
                    .find(|r| r.address == addr && r.port_or(service_port) == port)
                    .cloned()
                    .ok_or_else(|| errors::NO_SUCH_DESTINATION.to_owned())?;
                let service_id = self.ids.service(&self.config.services[index]);
                let configured_port = removed.port_or(service_port);
                svc.reals
                    .retain(|r| !(r.address == addr && r.port_or(service_port) == port));
                self.adopt(next)?;
                if purge {
                    self.purge.push(Purge {
                        service_id,
                        address: addr,
                        // Port 0 (port-zero and mark services): any port.
                        port: (configured_port != 0).then_some(configured_port),
                    });
                }
                Ok(Value::Null)
            }
            Command::ListServices { service } => {
                let services: Vec<&config::Service> = match &service {
                    Some(key) => {
                        let index = find_service(&self.config, key)?
                            .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
                        vec![&self.config.services[index]]
                    }
                    None => self.config.services.iter().collect(),
                };
                let infos: Vec<proto::ServiceInfo> =
                    services.into_iter().map(|s| self.service_info(s)).collect();
                to_json(&infos)
            }
            Command::ListConnections { cursor, limit } => {
                to_json(&self.list_connections(cursor.unwrap_or(0), limit)?)
            }
            Command::Zero { service } => {
                let services: Vec<config::Service> = match &service {
                    Some(key) => {
                        let index = find_service(&self.config, key)?
                            .ok_or_else(|| errors::NO_SUCH_SERVICE.to_owned())?;
                        vec![self.config.services[index].clone()]
                    }
                    None => self.config.services.clone(),
                };
                for svc in &services {
                    let service_id = self.ids.service(svc);
                    for real in &svc.reals {
                        let id = self.ids.real(service_id, real, svc.port);
                        let (stats, _, _) = self.real_stats(id);
                        self.baselines.insert(id, Baseline(stats));
                    }
                }
                Ok(Value::Null)
            }
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                let mut next = self.config.clone();
                if tcp != 0 {
                    next.timeouts.tcp = tcp;
                }
                if tcpfin != 0 {
                    next.timeouts.tcpfin = tcpfin;
                }
                if udp != 0 {
                    next.timeouts.udp = udp;
                }
                self.adopt(next).map(|()| Value::Null)
            }
            Command::GetTimeouts => to_json(&self.config.timeouts),
            Command::AddLaddr { service, laddr } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                check_ifname(&next, &laddr)?;
                let svc = &mut next.services[index];
                if svc.local_addresses.contains(&laddr.addr) {
                    return Err(format!("local address {} already exists", laddr.addr));
                }
                svc.local_addresses.push(laddr.addr);
                self.adopt(next).map(|()| Value::Null)
            }
            Command::DelLaddr { service, laddr } => {
                let mut next = self.config.clone();
                let index = find_service(&next, &service)?
                    .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                let svc = &mut next.services[index];
                let before = svc.local_addresses.len();
                svc.local_addresses.retain(|a| *a != laddr.addr);
                if svc.local_addresses.len() == before {
                    return Err(format!("no such local address {}", laddr.addr));
                }
                self.adopt(next).map(|()| Value::Null)
            }
            Command::GetLaddr { service } => {
                let services: Vec<&config::Service> = match &service {
                    Some(key) => {
                        let index = find_service(&self.config, key)?
                            .ok_or_else(|| errors::SERVICE_NOT_DEFINED.to_owned())?;
                        vec![&self.config.services[index]]
                    }
                    None => self.config.services.iter().collect(),
                };
                let infos: Vec<LaddrInfo> = services
                    .into_iter()
                    .filter(|s| !s.local_addresses.is_empty())
                    .map(|s| LaddrInfo {
                        service: key_of(s),
                        laddrs: s
                            .local_addresses
                            .iter()
                            .map(|addr| LaddrEntry {
                                addr: *addr,
                                ifname: self.port_of(*addr),
                                conflicts: 0,
                                conns: 0,
                            })
                            .collect(),
                    })
                    .collect();
                to_json(&infos)
            }
            Command::Stats => {
                let mut total = Stats::default();
                let mut rates = Rates::default();
                for svc in &self.config.services {
                    let info = self.service_info(svc);
                    total = plus(total, info.stats);
                    rates = plus_rates(rates, info.rates);
                }
                to_json(&GlobalStats {
                    stats: total,
                    rates,
                    connections: self.totals().conns_current,
                })
            }
        }
    }

    /// The sum of every worker's counters.
    pub fn totals(&self) -> CountersSnapshot {
        let mut total = CountersSnapshot::default();
        for c in &self.counters {
            total.add(&c.read());
        }
        total
    }

    fn port_of(&self, addr: Ipv4Addr) -> Option<String> {
        self.config
            .ports
            .iter()
            .find(|p| p.addresses.iter().any(|a| a.addr() == addr))
            .map(|p| p.name.clone())
    }

    fn service_info(&self, svc: &config::Service) -> proto::ServiceInfo {
        let service_id = self.ids.service(svc);
        let mut stats = Stats::default();
        let mut rates = Rates::default();
        let reals = svc
            .reals
            .iter()
            .map(|real| {
                let id = self.ids.real(service_id, real, svc.port);
                let (real_stats, active, inactive) = self.zeroed_stats(id);
                let real_rates = self
                    .estimators
                    .get(&id)
                    .map_or(Rates::default(), |e| e.rates);
                stats = plus(stats, real_stats);
                rates = plus_rates(rates, real_rates);
                proto::RealInfo {
                    spec: RealSpec {
                        addr: real.address,
                        port: real.port_or(svc.port),
                        forward: real.forward,
                        weight: real.weight,
                        u_threshold: real.u_threshold,
                        l_threshold: real.l_threshold,
                    },
                    active_conns: active as u32,
                    inact_conns: inactive as u32,
                    persist_conns: self.real_counts(id).3 as u32,
                    stats: real_stats,
                    rates: real_rates,
                }
            })
            .collect();
        proto::ServiceInfo {
            spec: ServiceSpec {
                key: key_of(svc),
                scheduler: svc.scheduler.name().to_owned(),
                flags: svc.flags.clone(),
                persistent: svc.persistent,
                netmask: svc.netmask.filter(|m| *m != Ipv4Addr::BROADCAST),
                ops: svc.one_packet,
            },
            stats,
            rates,
            reals,
            laddrs: svc
                .local_addresses
                .iter()
                .map(|addr| LaddrSpec {
                    addr: *addr,
                    ifname: None,
                })
                .collect(),
        }
    }

    /// One page of the connection listing. The cursor holds the worker in its
    /// high bits and the table position in the low ones.
    fn list_connections(&self, cursor: u64, limit: u32) -> Result<ConnPage, String> {
        let limit = limit.clamp(1, proto::MAX_CONNECTION_PAGE) as usize;
        let mut worker = (cursor >> CURSOR_POSITION_BITS) as usize;
        let mut from = (cursor & ((1 << CURSOR_POSITION_BITS) - 1)) as usize;
        let mut entries = Vec::new();
        while worker < self.counters.len() && entries.len() < limit {
            let dump = self.dump(worker, from, limit - entries.len())?;
            entries.extend(
                dump.entries
                    .into_iter()
                    .map(|(conn, expires)| conn_entry(&conn, expires)),
            );
            match dump.next {
                Some(next) => {
                    let cursor = (worker as u64) << CURSOR_POSITION_BITS | next as u64;
                    return Ok(ConnPage {
                        entries,
                        next: Some(cursor),
                    });
                }
                None => {
                    worker += 1;
                    from = 0;
                }
            }
        }
        let next = (worker < self.counters.len())
            .then_some((worker as u64) << CURSOR_POSITION_BITS | from as u64);
        Ok(ConnPage { entries, next })
    }

    /// Every worker's neighbour table, each asked for and awaited a bounded
    /// time (a worker that does not answer in time is left out).
    fn worker_neighbours(&self) -> Vec<(u16, Vec<crate::worker::NeighbourEntry>)> {
        let workers = self.counters.len();
        for worker in 0..workers {
            while self.mesh.neighbour_replies[worker].pop().is_some() {}
            let _ = self.mesh.neighbour_requests[worker].push(());
        }
        let deadline = Instant::now() + DUMP_WAIT;
        let mut answers = Vec::new();
        let mut pending: Vec<usize> = (0..workers).collect();
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|&worker| match self.mesh.neighbour_replies[worker].pop() {
                Some(entries) => {
                    answers.push((worker as u16, entries));
                    false
                }
                None => true,
            });
            if !pending.is_empty() {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        for worker in pending {
            while self.mesh.neighbour_requests[worker].pop().is_some() {}
        }
        answers
    }

    /// Asks worker `worker` for a page and waits a bounded time for it.
    fn dump(
        &self,
        worker: usize,
        from: usize,
        limit: usize,
    ) -> Result<crate::engine::ConnDump, String> {
        // A reply left over from a request that timed out is stale.
        while self.mesh.dump_replies[worker].pop().is_some() {}
        if self.mesh.dump_requests[worker]
            .push(DumpRequest { from, limit })
            .is_err()
        {
            return Err(format!(
                "worker {worker} is busy with another listing; try again"
            ));
        }
        let deadline = Instant::now() + DUMP_WAIT;
        loop {
            if let Some(page) = self.mesh.dump_replies[worker].pop() {
                return Ok(page);
            }
            if Instant::now() >= deadline {
                while self.mesh.dump_requests[worker].pop().is_some() {}
                return Err(format!(
                    "worker {worker} did not answer the connection listing in time"
                ));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn conn_entry(conn: &crate::conn::Conn, expires: u32) -> ConnEntry {
    ConnEntry {
        protocol: if conn.proto == Protocol::Tcp.number() {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        client: conn.client,
        client_port: conn.client_port,
        vip: conn.vip,
        vport: conn.vport,
        real: conn.real,
        real_port: conn.real_port,
        state: conn.state_name().to_owned(),
        expires_secs: expires,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

fn minus(a: Stats, b: Stats) -> Stats {
    Stats {
        conns: a.conns.saturating_sub(b.conns),
        in_pkts: a.in_pkts.saturating_sub(b.in_pkts),
        out_pkts: a.out_pkts.saturating_sub(b.out_pkts),
        in_bytes: a.in_bytes.saturating_sub(b.in_bytes),
        out_bytes: a.out_bytes.saturating_sub(b.out_bytes),
    }
}

fn plus(a: Stats, b: Stats) -> Stats {
    Stats {
        conns: a.conns + b.conns,
        in_pkts: a.in_pkts + b.in_pkts,
        out_pkts: a.out_pkts + b.out_pkts,
        in_bytes: a.in_bytes + b.in_bytes,
        out_bytes: a.out_bytes + b.out_bytes,
    }
}

fn plus_rates(a: Rates, b: Rates) -> Rates {
    Rates {
        cps: a.cps + b.cps,
        inpps: a.inpps + b.inpps,
        outpps: a.outpps + b.outpps,
        inbps: a.inbps + b.inbps,
        outbps: a.outbps + b.outbps,
    }
}

fn key_of(service: &config::Service) -> ServiceKey {
    ServiceKey::of(service)
}

/// The index of the service `key` names; an error for kinds rvs lacks.
fn find_service(config: &Config, key: &ServiceKey) -> Result<Option<usize>, String> {
    let (protocol, addr, port) = match *key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => (protocol, addr, port),
        ServiceKey::Mark(mark) => {
            return Ok(config.services.iter().position(|s| s.mark == Some(mark)))
        }
    };
    Ok(config
        .services
        .iter()
        .position(|s| s.protocol == Some(protocol) && s.vip == addr && s.port == port))
}

/// Sets every setting of `service` from `spec` (ipvsadm `-A`/`-E`: what is
/// not given takes its default).
fn apply_spec(service: &mut config::Service, spec: &ServiceSpec) -> Result<(), String> {
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
        .parse::<SchedulerKind>()
        .map_err(|_| errors::SCHEDULER_NOT_FOUND.to_owned())?;
    service.flags = spec.flags.clone();
    service.persistent = spec.persistent;
    service.netmask = spec.netmask;
    service.one_packet = spec.ops;
    Ok(())
}

fn real_from_spec(spec: &RealSpec, service_port: u16) -> Result<config::Real, String> {
    Ok(config::Real {
        u_threshold: spec.u_threshold,
        l_threshold: spec.l_threshold,
        address: spec.addr,
        port: (spec.port != service_port).then_some(spec.port),
        weight: spec.weight,
        forward: spec.forward,
    })
}

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
