//! The control thread's state: the supervisor of the workers. It holds the
//! running configuration and the stable ids of its services and reals,
//! answers the control protocol (rvsadm, rvsctl, SIGHUP), publishes every
//! adopted change to the workers as one new immutable snapshot, and sums
//! the workers' counters for listings.
//!
//! What a command changes is decided by the control crate's rules
//! ([`rvs_control::edit`], pure functions of the configuration); what is
//! here needs the running rvsd: ids, snapshots, counters and the workers
//! themselves. A refused command leaves the running state exactly as it
//! was. Snapshots reach the workers through each worker's bounded queue;
//! workers swap at the top of their loop and hand the old snapshot back to
//! be freed here. Nothing here waits on a worker except the listings only
//! workers can answer (connections, neighbours), each a bounded time.
//!
//! Whole-configuration work (apply, reload, SIGHUP, dump) runs on a helper
//! thread ([`jobs`]) and is answered later ([`Reply::Later`]); the control
//! thread swaps its result in. Afterwards the memory a large change freed
//! is returned to the OS once the workers have let go of the old snapshot
//! (glibc would keep it: [`dpdk::return_free_heap`]).

mod build;
mod ha;
mod ids;
mod jobs;
mod stats;
mod views;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use rvs_control::config::{Config, HostCpus, Real, Service};
use rvs_control::edit::{self, Edit, Effect};
use rvs_control::health::{self, Health, HealthView, RealKey, RealState};
use rvs_control::listing::{self, RealCounts};
use rvs_control::proto::{
    self, ApplyReport, Command, GlobalStats, Rates, ServiceKey, Stats, VersionInfo,
};
use rvs_control::rvsctl::diff;
use rvs_control::server::{Handler, Reply, Ticket};
use rvs_control::uploads::Uploads;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::counters::{CountersSnapshot, RealBook, WorkerCounters};
use crate::dpdk;
use crate::mesh::Mesh;
use crate::metrics;
use crate::snapshot::{Purge, Snapshot};
use crate::wire::ethernet::MacAddr;
use build::Tables;
use ids::Ids;
use jobs::{
    Built, Commands, Done, Helper, Job, Origin, Outcome, Prepared, PreparedBatch, Source, Start,
    Task,
};
use stats::Accounts;

/// The control thread's view of everything.
pub struct Supervisor {
    config: Arc<Config>,
    /// Configurations adopted since start: tells a job's result whether
    /// the configuration it started from still runs.
    generation: u64,
    /// The CPUs as seen before DPDK pinned this thread: what validation of
    /// `workers[].cpu` must check against.
    cpus: HostCpus,
    ids: Ids,
    macs: Vec<MacAddr>,
    mesh: Arc<Mesh>,
    counters: Vec<Arc<WorkerCounters>>,
    book: Arc<RealBook>,
    tables: Tables,
    snapshot: Arc<Snapshot>,
    /// Per worker: a snapshot its full queue could not take yet.
    pending: Vec<Option<Arc<Snapshot>>>,
    /// A change adopted but not yet published.
    dirty: bool,
    /// Connections the next snapshot tells workers to end.
    purge: Vec<Purge>,
    /// The file `rvsctl reload` and SIGHUP re-read (rvsd's `--config`).
    config_path: Option<PathBuf>,
    uploads: Uploads,
    accounts: Accounts,
    helper: Helper,
    /// Jobs waiting for the helper, in arrival order.
    jobs: VecDeque<Job>,
    /// A job is on the helper.
    job_running: bool,
    next_ticket: u64,
    /// A large change was adopted: return the freed heap once the workers
    /// have let go of the snapshot it replaced.
    trim_after: Option<Weak<Snapshot>>,
    trim_wanted: bool,
    /// The checker thread.
    health: Health,
    /// The health of the checked reals, as snapshots and listings apply it.
    view: Arc<HealthView>,
    /// The generation whose checked reals the checker follows.
    followed: u64,
    /// The view the running job builds with.
    job_view: Option<Arc<HealthView>>,
    /// Checks with no kernel interface toward their real, last counted.
    unbound: usize,
    /// The last reload of rvsd's file (SIGHUP, `rvsctl reload`): adopted or
    /// refused, and its Unix time.
    last_reload: Option<(bool, f64)>,
    /// The addresses this director holds and its sync daemons.
    ha: ha::Ha,
}

/// Work the control thread finished for someone waiting.
#[derive(Debug)]
pub enum Finished {
    /// The answer to a request the server was told [`Reply::Later`] for,
    /// its result encoded (see [`rvs_control::server::Server::complete`]).
    Answer(Ticket, Result<Box<RawValue>, String>),
    /// The outcome of a SIGHUP reload ([`Supervisor::reload`]), for the
    /// log.
    Reloaded(Result<ApplyReport, String>),
}

impl Supervisor {
    /// The supervisor of `config`, whose snapshot the workers are started
    /// with ([`Self::snapshot`]).
    pub fn new(
        config: Config,
        cpus: HostCpus,
        macs: Vec<MacAddr>,
        mesh: Arc<Mesh>,
        counters: Vec<Arc<WorkerCounters>>,
        book: Arc<RealBook>,
    ) -> Result<Self, String> {
        let ids = Ids::new(&config, config.limits.reals)?;
        let mut tables = Tables::default();
        let health =
            Health::start().map_err(|e| format!("cannot start the health checker: {e}"))?;
        // The checked reals as they start: up, or down under `alpha`.
        let targets = health::targets(&config);
        let unbound = unbound_checks(&targets);
        let states: HashMap<RealKey, RealState> = targets
            .iter()
            .map(|t| {
                let state = RealState {
                    alive: !t.alpha,
                    weight: None,
                };
                (t.key, state)
            })
            .collect();
        health.follow(targets);
        let mut view = HealthView::default();
        let (_, events) = view.update(&config, states);
        for event in &events {
            quorum_event(&health, event);
        }
        let ha = ha::Ha::new(&config, Arc::clone(&mesh), counters.len() as u16)?;
        let snapshot = build::snapshot(&config, &macs, &ids, &mut tables, &view)
            .with_sync_master(config.sync.master.is_some())
            .with_unheld(ha.unheld(&config));
        let snapshot = Arc::new(snapshot);
        Ok(Supervisor {
            ha,
            pending: vec![None; counters.len()],
            config: Arc::new(config),
            generation: 0,
            cpus,
            ids,
            macs,
            mesh,
            counters,
            book,
            tables,
            snapshot,
            dirty: false,
            purge: Vec::new(),
            config_path: None,
            uploads: Uploads::default(),
            accounts: Accounts::new(),
            helper: Helper::start(),
            jobs: VecDeque::new(),
            job_running: false,
            next_ticket: 0,
            trim_after: None,
            trim_wanted: false,
            health,
            view: Arc::new(view),
            followed: 0,
            job_view: None,
            unbound,
            last_reload: None,
        })
    }

    /// The snapshot of the running configuration.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The file `rvsctl reload` re-reads (rvsd's `--config`), also named by
    /// `rvsctl dump`.
    pub fn set_config_path(&mut self, path: &Path) {
        self.config_path = Some(path.to_owned());
    }

    /// Answers one control-protocol command (see [`Command`] for each
    /// result); whole-configuration work is answered later, through
    /// [`Self::finished`].
    pub fn handle(&mut self, command: Command) -> Reply {
        let task = match command {
            Command::ApplyConfig {
                file,
                text,
                upload,
                dry_run,
            } => {
                let text = match (text, upload) {
                    (Some(text), None) => text,
                    (None, Some(id)) => match self.uploads.take(id) {
                        Ok(text) => text,
                        Err(err) => return Reply::Now(Err(err)),
                    },
                    (Some(_), Some(_)) => {
                        return Reply::Now(Err(
                            "apply_config: give `text` or `upload`, not both".to_owned()
                        ))
                    }
                    (None, None) => {
                        return Reply::Now(Err("apply_config: needs `text` or `upload`".to_owned()))
                    }
                };
                Task::Replace {
                    file,
                    source: Source::Text(text),
                    dry_run,
                }
            }
            Command::ReloadConfig { dry_run } => match self.reload_task(dry_run) {
                Ok(task) => task,
                Err(err) => return Reply::Now(Err(err)),
            },
            Command::Batch { commands, upload } => match (commands.is_empty(), upload) {
                (_, None) => Task::Batch(Commands::Sent(commands)),
                (true, Some(id)) => match self.uploads.take(id) {
                    Ok(text) => Task::Batch(Commands::Uploaded(text)),
                    Err(err) => return Reply::Now(Err(err)),
                },
                (false, Some(_)) => {
                    return Reply::Now(Err(
                        "batch: give `commands` or `upload`, not both".to_owned()
                    ))
                }
            },
            Command::DumpConfig {} => Task::Dump {
                file: self
                    .config_path
                    .as_ref()
                    .map(|path| path.display().to_string()),
            },
            other => return Reply::Now(self.answer(other)),
        };
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        self.jobs.push_back(Job {
            origin: Origin::Client(ticket),
            task,
        });
        Reply::Later(ticket)
    }

    /// What SIGHUP does: re-reads the file given to
    /// [`Self::set_config_path`] and adopts it, on the helper; the outcome
    /// comes out of [`Self::finished`] as [`Finished::Reloaded`].
    pub fn reload(&mut self) -> Result<(), String> {
        let task = self.reload_task(false).inspect_err(|_| {
            self.last_reload = Some((false, health::unix_seconds(std::time::SystemTime::now())));
        })?;
        self.jobs.push_back(Job {
            origin: Origin::Signal,
            task,
        });
        Ok(())
    }

    /// Re-reading rvsd's own file, on the helper: validated against the
    /// CPUs rvsd saw at start, not those of the pinned control thread
    /// (which `config::load` would see).
    fn reload_task(&self, dry_run: bool) -> Result<Task, String> {
        let path = self.config_path.clone().ok_or_else(|| {
            "rvsd does not know the file it was started with; use `rvsctl apply FILE`".to_owned()
        })?;
        Ok(Task::Replace {
            file: path.display().to_string(),
            source: Source::File(path),
            dry_run,
        })
    }

    /// Work finished since the last call, adopted here: answers for the
    /// server to deliver, SIGHUP outcomes to log.
    pub fn finished(&mut self) -> Vec<Finished> {
        let mut finished = Vec::new();
        while let Some(done) = self.helper.finished() {
            self.job_running = false;
            finished.push(self.adopt_job(done));
        }
        finished
    }

    /// True while whole-configuration work is queued or running.
    pub fn busy(&self) -> bool {
        self.job_running || !self.jobs.is_empty()
    }

    /// Every command answered at once.
    fn answer(&mut self, command: Command) -> Result<Value, String> {
        match command {
            Command::Version {} => to_json(&VersionInfo {
                daemon: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: proto::VERSION,
            }),
            edit @ (Command::AddService { .. }
            | Command::EditService { .. }
            | Command::DeleteService { .. }
            | Command::Clear {}
            | Command::AddReal { .. }
            | Command::EditReal { .. }
            | Command::DeleteReal { .. }
            | Command::Drain { .. }
            | Command::Undrain { .. }
            | Command::Zero { .. }
            | Command::SetTimeouts { .. }
            | Command::AddLaddr { .. }
            | Command::DelLaddr { .. }
            | Command::StopDaemon { .. }) => {
                let edit = edit::apply(&self.config, &edit, &self.cpus)?;
                self.adopt(edit).map(|()| Value::Null)
            }
            Command::StartDaemon { state, daemon } => {
                // Refused, changing nothing, when the daemon cannot run
                // (as ipvsadm is refused for a missing interface).
                crate::sync::check_interface(&ha::spec(&daemon))?;
                let command = Command::StartDaemon { state, daemon };
                let edit = edit::apply(&self.config, &command, &self.cpus)?;
                self.adopt(edit)?;
                self.ha.follow(&self.config).map(|()| Value::Null)
            }
            Command::ListDaemons {} => to_json(&listing::daemons(&self.config)),
            Command::Addresses {} => to_json(&self.ha.addresses(&self.config)),
            Command::ListServices { service } => to_json(&listing::services(
                &self.config,
                service.as_ref(),
                &self.view,
                |service, real| self.counts_of(service, real),
            )?),
            Command::ListConnections { cursor, limit } => {
                to_json(&self.connections(cursor.unwrap_or(0), limit)?)
            }
            Command::GetTimeouts {} => to_json(&self.config.timeouts),
            Command::GetLaddr { service } => {
                to_json(&listing::laddrs(&self.config, service.as_ref())?)
            }
            Command::Stats {} => {
                let services =
                    listing::services(&self.config, None, &self.view, |service, real| {
                        self.counts_of(service, real)
                    })?;
                let (stats, rates) = services.iter().fold(
                    (Stats::default(), Rates::default()),
                    |(stats, rates), info| (stats + info.stats, rates + info.rates),
                );
                to_json(&GlobalStats {
                    stats,
                    rates,
                    connections: self.totals().conns_current,
                })
            }
            Command::UploadConfig { upload, text } => to_json(&self.uploads.receive(upload, text)?),
            Command::ListPorts {} => to_json(&self.ports()),
            Command::ListWorkers {} => to_json(&self.workers()),
            Command::ListRoutes {} => to_json(&listing::routes(&self.config)),
            Command::ListNeighbours {} => to_json(&self.neighbours()),
            Command::Health {} => to_json(&self.health.report()),
            Command::ApplyConfig { .. }
            | Command::ReloadConfig { .. }
            | Command::DumpConfig {}
            | Command::Batch { .. } => {
                unreachable!("whole-configuration commands go to the helper")
            }
        }
    }

    /// Hands the next queued job to the helper, from the published state
    /// (so that the ids and tables it starts from are those of the
    /// snapshot the workers run).
    fn start_job(&mut self) {
        if self.job_running || self.dirty {
            return;
        }
        let Some(job) = self.jobs.pop_front() else {
            return;
        };
        let start = Start {
            running: Arc::clone(&self.config),
            generation: self.generation,
            cpus: self.cpus.clone(),
            ids: self.ids.clone(),
            tables: self.tables.clone(),
            macs: self.macs.clone(),
            health: Arc::clone(&self.view),
        };
        self.job_view = Some(Arc::clone(&self.view));
        self.helper.submit(job, start);
        self.job_running = true;
    }

    /// Adopts what a finished job prepared and says how it went.
    fn adopt_job(&mut self, done: Done) -> Finished {
        let answer = match done.outcome {
            Outcome::Dumped(answer) => answer,
            Outcome::Replaced {
                file,
                dry_run,
                reload,
                result,
            } => {
                let adopted = result.and_then(|prepared| {
                    self.adopt_replacement(file, dry_run, done.generation, prepared)
                });
                if reload && !dry_run {
                    self.last_reload = Some((
                        adopted.is_ok(),
                        health::unix_seconds(std::time::SystemTime::now()),
                    ));
                }
                match done.origin {
                    Origin::Signal => return Finished::Reloaded(adopted.map(|(report, _)| report)),
                    Origin::Client(_) => adopted.map(|(_, answer)| answer),
                }
            }
            Outcome::Batched(result) => {
                result.and_then(|prepared| self.adopt_batch(done.generation, prepared))
            }
        };
        match done.origin {
            Origin::Client(ticket) => Finished::Answer(ticket, answer),
            Origin::Signal => unreachable!("only reloads are signalled"),
        }
    }

    /// Adopts a whole configuration prepared from generation `generation`:
    /// swapped in as prepared if that still runs, else redone against what
    /// runs now. Returns the report and the answer that encodes it.
    fn adopt_replacement(
        &mut self,
        file: String,
        dry_run: bool,
        generation: u64,
        prepared: Box<Prepared>,
    ) -> Result<(ApplyReport, Box<RawValue>), String> {
        let Prepared {
            next,
            diff,
            built,
            answer,
        } = *prepared;
        if generation == self.generation {
            let applied = built.is_some();
            if let Some(built) = built {
                self.adopt_built(next, built);
            }
            let report = ApplyReport {
                file,
                diff,
                applied,
            };
            return Ok((report, answer));
        }
        let diff = diff::diff(&self.config, &next);
        let applied = !dry_run && next != *self.config;
        if applied {
            let edit = Edit {
                config: Some(next),
                effect: Effect::None,
            };
            self.adopt(edit).map_err(|err| format!("{file}: {err}"))?;
            self.trim_wanted = true;
        }
        let report = ApplyReport {
            file,
            diff,
            applied,
        };
        let answer = jobs::to_raw(&report)?;
        Ok((report, answer))
    }

    /// Adopts a batch prepared from generation `generation`: swapped in as
    /// prepared if that still runs, else its commands applied again to what
    /// runs now. Returns the encoded [`BatchReport`].
    fn adopt_batch(
        &mut self,
        generation: u64,
        prepared: Box<PreparedBatch>,
    ) -> Result<Box<RawValue>, String> {
        let PreparedBatch {
            commands,
            edit,
            built,
            answer,
        } = *prepared;
        let (edit, answer) = if generation == self.generation {
            if let (Some(next), Some(built)) = (edit.config.clone(), built) {
                self.adopt_built(next, built);
            }
            (edit, answer)
        } else {
            let edit = edit::apply_batch(&self.config, &commands, &self.cpus)?;
            if let Some(next) = edit.config.clone() {
                self.adopt(Edit {
                    config: Some(next),
                    effect: Effect::None,
                })?;
            }
            let answer = jobs::to_raw(&edit.report())?;
            (edit, answer)
        };
        for effect in edit.effects {
            self.carry_out(effect);
        }
        Ok(answer)
    }

    /// Swaps in a configuration and what the helper built for it, in O(1).
    fn adopt_built(&mut self, next: Config, built: Built) {
        let Built {
            ids,
            tables,
            snapshot,
        } = built;
        self.config = Arc::new(next);
        self.ids = ids;
        self.tables = tables;
        self.generation += 1;
        self.trim_wanted = true;
        self.publish(snapshot);
        let built_with = self.job_view.take();
        if built_with.is_some_and(|view| !Arc::ptr_eq(&view, &self.view)) {
            // Health changed while the job built: what it checks, anew.
            let checked: Vec<u32> = self
                .config
                .services
                .iter()
                .filter(|s| s.is_checked() || s.sorry_server.is_some())
                .map(|s| self.ids.service(s))
                .collect();
            for id in checked {
                self.ids.bump(id);
            }
            self.dirty = true;
        }
    }

    /// Adopts what an accepted command does: its configuration, with ids
    /// for what it adds (refused, changing nothing, when the real ids run
    /// out), for the next snapshot, and its effect.
    fn adopt(&mut self, edit: Edit) -> Result<(), String> {
        if let Some(next) = edit.config {
            self.ids = self.ids.reassigned(&self.config, &next)?;
            self.config = Arc::new(next);
            self.generation += 1;
            self.dirty = true;
        }
        self.carry_out(edit.effect);
        Ok(())
    }

    /// What an adopted command does besides changing the configuration.
    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Purge(purge) => {
                if let Some(service_id) = self.ids.service_of(&purge.service) {
                    self.purge.push(Purge {
                        service_id,
                        address: purge.address,
                        port: purge.port,
                    });
                }
            }
            Effect::Zero(services) => {
                // One pass over the services, not a search per key: `-Z` of
                // every one of 100,000 services was quadratic.
                let wanted: HashSet<ServiceKey> = services.into_iter().collect();
                let zeroed = self
                    .config
                    .services
                    .iter()
                    .filter(|service| wanted.contains(&ServiceKey::of(service)));
                for service in zeroed {
                    let service_id = self.ids.service(service);
                    for real in &service.reals {
                        let id = self.ids.real(service_id, real, service.port);
                        self.accounts.zero(&self.book, id);
                    }
                }
            }
        }
    }

    /// Periodic work of the control loop: publishes an adopted change,
    /// frees retired snapshots (and returns the heap a large change freed
    /// once the last is gone), starts queued whole-configuration work,
    /// updates rate estimates.
    pub fn tick(&mut self) {
        if self.followed != self.generation {
            self.followed = self.generation;
            let targets = health::targets(&self.config);
            let unbound = unbound_checks(&targets);
            if unbound > 0 && unbound != self.unbound {
                eprintln!(
                    "rvsd: health: {unbound} checks reach their reals by the kernel's own \
                     routes: no port with a kernel_interface reaches them"
                );
            }
            self.unbound = unbound;
            self.health.follow(targets);
            // Quorum settings may have changed with the configuration.
            self.adopt_health(self.health.states());
            if let Err(e) = self.ha.follow(&self.config) {
                eprintln!("rvsd: {e}");
            }
        } else if let Some(states) = self.health.changes() {
            self.adopt_health(states);
        }
        if self.ha.poll(&self.config) {
            self.dirty = true;
        }
        if self.dirty {
            let snapshot = build::snapshot(
                &self.config,
                &self.macs,
                &self.ids,
                &mut self.tables,
                &self.view,
            );
            self.publish(snapshot);
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
        if self
            .trim_after
            .as_ref()
            .is_some_and(|old| old.strong_count() == 0)
        {
            self.trim_after = None;
            dpdk::return_free_heap();
        }
        self.start_job();
        self.accounts.estimate(&self.book, self.ids.real_ids());
    }

    /// Adopts the checker's states of the checked reals: the services whose
    /// schedule changes get a new version and the next snapshot; quorum
    /// transitions are logged and run their commands.
    fn adopt_health(&mut self, states: HashMap<RealKey, RealState>) {
        let mut view = (*self.view).clone();
        let (changed, events) = view.update(&self.config, states);
        for event in &events {
            quorum_event(&self.health, event);
        }
        if view == *self.view {
            return;
        }
        for key in &changed {
            if let Some(id) = self.ids.service_of(key) {
                self.ids.bump(id);
            }
        }
        self.view = Arc::new(view);
        self.dirty = true;
    }

    /// The services and reals as a scrape labels them, with what health
    /// made of them ([`crate::metrics::Frame`]).
    pub fn metrics_rows(&self) -> (Vec<metrics::ServiceRow>, Vec<metrics::RealRow>) {
        let mut services = Vec::with_capacity(self.config.services.len());
        let mut reals = Vec::new();
        for service in &self.config.services {
            let key = proto::ServiceKey::of(service);
            let effective = self.view.apply(service);
            let service_id = self.ids.service(service);
            let index = services.len();
            services.push(metrics::ServiceRow {
                key,
                usable: effective.reals.iter().filter(|r| r.weight > 0).count() as u64,
                quorum_up: service.is_checked().then(|| !self.view.quorum_lost(&key)),
            });
            let scheduled = |address, port| {
                effective
                    .reals
                    .iter()
                    .find(|r| r.address == address && r.port_or(service.port) == port)
                    .map_or(0, |r| r.weight)
            };
            for real in &service.reals {
                let port = real.port_or(service.port);
                reals.push(metrics::RealRow {
                    service: index,
                    address: real.address,
                    port,
                    forward: real.forward,
                    id: self.ids.real(service_id, real, service.port),
                    weight: match &effective {
                        std::borrow::Cow::Borrowed(_) => real.weight,
                        std::borrow::Cow::Owned(_) => scheduled(real.address, port),
                    },
                    up: self
                        .view
                        .real(&health::real_key(service, real))
                        .map(|state| state.alive),
                });
            }
            // The sorry server while it serves (or is listed, inhibited).
            if let Some(sorry) = effective.reals.iter().find(|r| {
                !service.reals.iter().any(|c| {
                    c.address == r.address && c.port_or(service.port) == r.port_or(service.port)
                })
            }) {
                reals.push(metrics::RealRow {
                    service: index,
                    address: sorry.address,
                    port: sorry.port_or(service.port),
                    forward: sorry.forward,
                    id: self.ids.real(service_id, sorry, service.port),
                    weight: sorry.weight,
                    up: None,
                });
            }
        }
        (services, reals)
    }

    /// The workers' counters and the per-real book, for the metrics thread.
    pub fn counters(&self) -> (Vec<Arc<WorkerCounters>>, Arc<RealBook>) {
        (self.counters.clone(), Arc::clone(&self.book))
    }

    /// The last reload's outcome and Unix time, if any.
    pub fn last_reload(&self) -> Option<(bool, f64)> {
        self.last_reload
    }

    /// Configurations adopted since start.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The checker's table, for the metrics thread.
    pub fn health_reader(&self) -> rvs_control::health::HealthReader {
        self.health.reader()
    }

    /// What rvsd's stop does for services with `omega`: the `notify_down`
    /// of their live reals and their `quorum_down`, started before the
    /// checker goes.
    pub fn stopping(&self) {
        for service in self.config.services.iter().filter(|s| s.omega) {
            let key = proto::ServiceKey::of(service);
            for real in &service.reals {
                let alive = self
                    .view
                    .real(&health::real_key(service, real))
                    .is_none_or(|state| state.alive);
                if let (true, Some(command)) = (alive, &real.notify_down) {
                    self.health.run(command);
                }
            }
            if let (false, Some(command)) = (self.view.quorum_lost(&key), &service.quorum_down) {
                self.health.run(command);
            }
        }
    }

    /// Makes `snapshot` the one every worker takes next, with the purges
    /// asked for since the last.
    fn publish(&mut self, snapshot: Snapshot) {
        let mut snapshot = snapshot
            .with_sync_master(self.config.sync.master.is_some())
            .with_unheld(self.ha.unheld(&self.config));
        snapshot.purge_reals = std::mem::take(&mut self.purge);
        let old = std::mem::replace(&mut self.snapshot, Arc::new(snapshot));
        if std::mem::take(&mut self.trim_wanted) {
            self.trim_after = Some(Arc::downgrade(&old));
        }
        self.dirty = false;
        for slot in &mut self.pending {
            *slot = Some(Arc::clone(&self.snapshot));
        }
    }

    /// The sync daemons' counters.
    pub fn sync_counters(&self) -> &crate::sync::SyncCounters {
        &self.ha.counters
    }

    /// True while some worker has not taken the latest snapshot yet.
    pub fn publishing(&self) -> bool {
        self.dirty || self.pending.iter().any(Option::is_some)
    }

    /// The sum of every worker's counters.
    pub fn totals(&self) -> CountersSnapshot {
        let mut total = CountersSnapshot::default();
        for c in &self.counters {
            total.add(&c.read());
        }
        total
    }

    /// Counters of real `real_id` summed over workers: traffic, active and
    /// inactive connections.
    pub fn real_stats(&self, real_id: u32) -> (Stats, u64, u64) {
        let (stats, active, inactive, _) = stats::real_totals(&self.book, real_id);
        (stats, active, inactive)
    }

    /// What listings show of `real` of `service`.
    fn counts_of(&self, service: &Service, real: &Real) -> RealCounts {
        let id = self.ids.real(self.ids.service(service), real, service.port);
        self.accounts.counts(&self.book, id)
    }
}

/// Checks that leave by the kernel's own routes, not from a port's address.
fn unbound_checks(targets: &[health::Target]) -> usize {
    targets
        .iter()
        .flat_map(|t| &t.probes)
        .filter(|p| p.bind.is_none() && p.kind != rvs_control::config::CheckKind::MiscCheck)
        .count()
}

/// Logs a quorum transition and runs its command.
fn quorum_event(health: &Health, event: &health::QuorumEvent) {
    let health_word = if event.up { "gained" } else { "lost" };
    eprintln!(
        "rvsd: {} {health_word} its quorum: live weight {}, quorum {}",
        event.service, event.weight, event.quorum
    );
    if let Some(command) = &event.command {
        health.run(command);
    }
}

impl Handler for Supervisor {
    fn handle(&mut self, command: Command) -> Reply {
        Supervisor::handle(self, command)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{RealBook, WorkerCounters};
    use crate::wire::ethernet::MacAddr;
    use rvs_control::config::{self, CpuList, HostCpus};
    use rvs_control::proto::{
        BatchReport, ConfigDiff, ConfigDump, PortView, Timeouts, Upload, WorkerView,
    };
    use std::sync::Arc;

    const CONFIG: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - { name: client, device: net_null0, addresses: [10.99.1.1/24] }
  - { name: real, device: net_null1, addresses: [10.99.2.1/24] }
routes:
  - { prefix: 10.99.3.0/24, via: 10.99.2.254 }
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: real, queue: 0 } ] }
services:
  - vip: 10.99.1.100
    port: 80
    protocol: tcp
    scheduler: rr
    reals:
      - { address: 10.99.2.11 }
      - { address: 10.99.2.12 }
";

    fn cpus() -> HostCpus {
        let list = CpuList::parse("0-1").expect("a CPU list");
        HostCpus {
            online: list.clone(),
            allowed: list,
        }
    }

    fn supervisor() -> Supervisor {
        let config = config::parse_on(CONFIG, "start.yaml", &cpus()).expect("valid");
        Supervisor::new(
            config,
            cpus(),
            vec![MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])],
            Arc::new(Mesh::new(1)),
            vec![Arc::new(WorkerCounters::default())],
            Arc::new(RealBook::new(1, 1024)),
        )
        .expect("a supervisor")
    }

    /// What the daemon's loop does for one request: the answer now, or
    /// later once the helper is done (ticking meanwhile).
    fn answer(control: &mut Supervisor, command: Command) -> Result<Value, String> {
        let ticket = match control.handle(command) {
            Reply::Now(result) => return result,
            Reply::Later(ticket) => ticket,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            control.tick();
            for finished in control.finished() {
                if let Finished::Answer(done, result) = finished {
                    assert_eq!(done, ticket, "one request at a time here");
                    return decoded(result);
                }
            }
            assert!(std::time::Instant::now() < deadline, "no answer in 10 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// A later answer as the client reads it.
    fn decoded(answer: Result<Box<RawValue>, String>) -> Result<Value, String> {
        answer.map(|raw| serde_json::from_str(raw.get()).expect("an encoded answer"))
    }

    fn call<T: serde::de::DeserializeOwned>(control: &mut Supervisor, command: Command) -> T {
        let value = answer(control, command).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_value(value).expect("the documented result")
    }

    fn apply(file: &str, text: &str, dry_run: bool) -> Command {
        Command::ApplyConfig {
            file: file.to_owned(),
            text: Some(text.to_owned()),
            upload: None,
            dry_run,
        }
    }

    #[test]
    fn dump_then_apply_is_a_no_op() {
        let mut control = supervisor();
        let dump: ConfigDump = call(&mut control, Command::DumpConfig {});
        let report: ApplyReport = call(&mut control, apply("dump.yaml", &dump.yaml, false));
        assert_eq!(report.diff, ConfigDiff::default());
        assert!(!report.applied);
        assert!(!control.publishing(), "nothing to publish");
    }

    #[test]
    fn apply_reports_the_diff_and_adopts_in_one_step() {
        let mut control = supervisor();
        let text = CONFIG.replace("scheduler: rr", "scheduler: wrr") + "timeouts: { tcp: 30 }\n";
        let dry: ApplyReport = call(&mut control, apply("new.yaml", &text, true));
        assert!(!dry.applied);
        assert_eq!(dry.diff.settings.len(), 1);
        assert_eq!(dry.diff.services_changed[0].settings[0].to, "wrr");
        assert!(!control.publishing(), "a dry run changes nothing");
        let report: ApplyReport = call(&mut control, apply("new.yaml", &text, false));
        assert!(report.applied);
        assert_eq!(report.diff, dry.diff);
        assert!(control.publishing(), "one new snapshot to publish");
        let timeouts: Timeouts = call(&mut control, Command::GetTimeouts {});
        assert_eq!(timeouts.tcp, 30);
    }

    #[test]
    fn refusals_name_the_file_and_line_and_change_nothing() {
        let mut control = supervisor();
        let before = control.config().clone();
        for (text, error) in [
            (
                CONFIG.replace("10.99.2.12 }", "10.99.2.300 }"),
                "bad.yaml:16:20: services[0].reals[1].address: invalid IPv4 address",
            ),
            (
                CONFIG.replace("device: net_null1", "device: net_null7"),
                "bad.yaml:4:19: ports[1].device: \"net_null1\" in the running rvsd, \
                 \"net_null7\" here; `ports` changes only with a restart",
            ),
        ] {
            let err = answer(&mut control, apply("bad.yaml", &text, false)).unwrap_err();
            assert!(err.starts_with(error), "{err}");
            assert_eq!(control.config(), &before);
        }
    }

    #[test]
    fn uploaded_pieces_apply_like_inline_text() {
        let mut control = supervisor();
        let text = CONFIG.replace("scheduler: rr", "scheduler: lc");
        let mut upload = None;
        for piece in rvs_control::rvsctl::upload_pieces(&text, 64) {
            let answer: Upload = call(
                &mut control,
                Command::UploadConfig {
                    upload,
                    text: piece.to_owned(),
                },
            );
            upload = Some(answer.upload);
        }
        let report: ApplyReport = call(
            &mut control,
            Command::ApplyConfig {
                file: "up.yaml".into(),
                text: None,
                upload,
                dry_run: false,
            },
        );
        assert!(report.applied);
        assert_eq!(control.config().services[0].scheduler.to_string(), "lc");
    }

    #[test]
    fn reload_reads_the_file_rvsd_was_started_with() {
        let mut control = supervisor();
        let path = std::env::temp_dir().join(format!("rvsctl-reload-{}.yaml", std::process::id()));
        std::fs::write(&path, CONFIG.replace("scheduler: rr", "scheduler: sh")).unwrap();
        control.set_config_path(&path);
        let report: ApplyReport = call(&mut control, Command::ReloadConfig { dry_run: false });
        assert_eq!(report.file, path.display().to_string());
        assert!(report.applied);
        // SIGHUP: the same, its outcome for the log.
        std::fs::write(&path, CONFIG).unwrap();
        let report = reloaded(&mut control).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.applied);
        assert_eq!(control.config().services[0].scheduler.to_string(), "rr");
        let _ = std::fs::remove_file(&path);
        let err = reloaded(&mut control).unwrap_err();
        assert!(
            err.ends_with("cannot read: No such file or directory (os error 2)"),
            "{err}"
        );
    }

    /// SIGHUP's reload, ticking until it is done (at most 2 s).
    fn reloaded(control: &mut Supervisor) -> Result<ApplyReport, String> {
        control.reload().unwrap_or_else(|e| panic!("{e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            control.tick();
            match control.finished().pop() {
                Some(Finished::Reloaded(outcome)) => return outcome,
                Some(other) => panic!("{other:?}"),
                None => {}
            }
            assert!(std::time::Instant::now() < deadline, "no reload in 2 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn reload_refuses_what_is_not_a_regular_file_at_once() {
        let fifo = std::env::temp_dir().join(format!("rvsctl-reload-{}.fifo", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.expect("mkfifo runs").success());
        for (path, what) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
        ] {
            let mut control = supervisor();
            control.set_config_path(path);
            let before = control.config().clone();
            assert_eq!(
                reloaded(&mut control).unwrap_err(),
                format!(
                    "{}: not a regular file ({what}); a configuration is read from a regular file",
                    path.display()
                )
            );
            assert_eq!(control.config(), &before);
        }
        let _ = std::fs::remove_file(&fifo);
    }

    /// `CONFIG` with `services` more services of one real each.
    fn with_services(services: usize) -> String {
        let mut text = CONFIG.to_owned();
        for i in 0..services {
            text.push_str(&format!(
                "  - {{ vip: 10.98.{}.{}, port: 80, protocol: tcp, reals: [ {{ address: 10.99.2.{} }} ] }}\n",
                i / 250,
                i % 250 + 1,
                i % 200 + 20
            ));
        }
        text
    }

    #[test]
    fn others_are_answered_while_a_big_apply_is_parsed() {
        let mut control = supervisor();
        let text = with_services(5_000);
        let ticket = match control.handle(apply("big.yaml", &text, false)) {
            Reply::Later(ticket) => ticket,
            other => panic!("{other:?}"),
        };
        let mut served = 0;
        let report = loop {
            control.tick();
            if let Some(finished) = control.finished().pop() {
                match finished {
                    Finished::Answer(done, result) if done == ticket => break decoded(result),
                    other => panic!("{other:?}"),
                }
            }
            let started = std::time::Instant::now();
            match control.handle(Command::GetTimeouts {}) {
                Reply::Now(Ok(_)) => served += 1,
                other => panic!("{other:?}"),
            }
            assert!(started.elapsed() < std::time::Duration::from_millis(100));
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let report: ApplyReport = serde_json::from_value(report.unwrap()).unwrap();
        assert!(report.applied);
        assert_eq!(control.config().services.len(), 5_001);
        assert!(served > 0, "nobody was answered during the apply");
        assert!(
            control.publishing(),
            "the prepared snapshot goes to the workers"
        );
    }

    #[test]
    fn an_edit_during_an_apply_is_replaced_and_reported() {
        let mut control = supervisor();
        let text = CONFIG.replace("scheduler: rr", "scheduler: wrr");
        let ticket = match control.handle(apply("new.yaml", &text, false)) {
            Reply::Later(ticket) => ticket,
            other => panic!("{other:?}"),
        };
        // The job starts from the published state, then an edit is adopted
        // before it is done.
        control.tick();
        let mut added = proto::ServiceSpec::new(proto::ServiceKey::udp(
            std::net::Ipv4Addr::new(10, 99, 1, 100),
            53,
        ));
        added.scheduler = "rr".into();
        assert_eq!(
            answer(&mut control, Command::AddService { service: added }),
            Ok(Value::Null)
        );
        let result = loop {
            if let Some(Finished::Answer(done, result)) = control.finished().pop() {
                assert_eq!(done, ticket);
                break decoded(result);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        let report: ApplyReport = serde_json::from_value(result.unwrap()).unwrap();
        assert!(report.applied);
        assert_eq!(
            report.diff.services_removed.len(),
            1,
            "the diff is against what ran when the file was adopted"
        );
        assert_eq!(control.config().services.len(), 1);
        assert_eq!(control.config().services[0].scheduler.to_string(), "wrr");
    }

    #[test]
    fn a_batch_is_checked_line_by_line_and_adopted_in_one_step() {
        let web = proto::ServiceKey::tcp(std::net::Ipv4Addr::new(10, 99, 1, 100), 80);
        let real = |addr: [u8; 4]| proto::RealSpec {
            addr: addr.into(),
            port: 80,
            forward: rvs_control::model::Forward::Nat,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let commands = vec![
            Command::AddReal {
                service: web,
                real: real([10, 99, 2, 13]),
            },
            Command::AddReal {
                service: web,
                real: real([10, 99, 2, 13]),
            },
            Command::AddReal {
                service: web,
                real: real([172, 16, 0, 1]),
            },
            Command::Zero { service: None },
        ];
        for race in [false, true] {
            let mut control = supervisor();
            let batch = Command::Batch {
                commands: commands.clone(),
                upload: None,
            };
            let ticket = match control.handle(batch) {
                Reply::Later(ticket) => ticket,
                other => panic!("{other:?}"),
            };
            control.tick();
            if race {
                // Adopted while the batch is on the helper: the batch is
                // applied again, to this.
                assert_eq!(
                    answer(
                        &mut control,
                        Command::SetTimeouts {
                            tcp: 77,
                            tcpfin: 0,
                            udp: 0
                        }
                    ),
                    Ok(Value::Null)
                );
            }
            let result = loop {
                if let Some(Finished::Answer(done, result)) = control.finished().pop() {
                    assert_eq!(done, ticket);
                    break decoded(result);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            let report: BatchReport = serde_json::from_value(result.unwrap()).unwrap();
            let refused: Vec<(u32, &str)> = report
                .refused
                .iter()
                .map(|r| (r.index, r.error.as_str()))
                .collect();
            assert_eq!(
                refused,
                [
                    (1, "Destination already exists"),
                    (
                        2,
                        "services[0].reals[0].address: real 172.16.0.1 is not reachable: no \
                         connected subnet or route covers it"
                    )
                ],
                "race {race}"
            );
            assert_eq!(control.config().services[0].reals.len(), 3, "race {race}");
            assert_eq!(control.config().timeouts.tcp == 77, race);
            assert!(control.publishing(), "one snapshot for the whole batch");
        }
    }

    #[test]
    fn applies_are_adopted_in_the_order_they_came() {
        let mut control = supervisor();
        let first = CONFIG.replace("scheduler: rr", "scheduler: wrr");
        let second = CONFIG.replace("scheduler: rr", "scheduler: lc");
        let tickets: Vec<Ticket> = [first, second]
            .iter()
            .map(|text| match control.handle(apply("x.yaml", text, false)) {
                Reply::Later(ticket) => ticket,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut answered = Vec::new();
        while answered.len() < 2 {
            control.tick();
            for finished in control.finished() {
                match finished {
                    Finished::Answer(ticket, result) => {
                        assert!(result.is_ok());
                        answered.push(ticket)
                    }
                    other => panic!("{other:?}"),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(answered, tickets);
        assert_eq!(control.config().services[0].scheduler.to_string(), "lc");
    }

    #[test]
    fn views_of_the_running_ports_and_workers() {
        let mut control = supervisor();
        let ports: Vec<PortView> = call(&mut control, Command::ListPorts {});
        assert_eq!(ports[1].mac, "02:00:00:00:00:02", "the MAC DPDK reported");
        assert_eq!((ports[1].rx_queues, ports[1].tx_queues), (1, 1));
        let workers: Vec<WorkerView> = call(&mut control, Command::ListWorkers {});
        assert_eq!(workers[0].queues, ["client:0", "real:0"]);
        let routes: Vec<rvs_control::proto::RouteView> = call(&mut control, Command::ListRoutes {});
        assert_eq!(routes.len(), 3, "connected subnets and the static route");
    }
}
