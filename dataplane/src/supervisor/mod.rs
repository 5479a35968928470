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

mod build;
mod ids;
mod stats;
mod uploads;
mod views;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rvs_control::config::{self, Config, HostCpus, Real, Service, MAX_CONFIG_BYTES};
use rvs_control::edit::{self, Edit, Effect};
use rvs_control::listing::{self, RealCounts};
use rvs_control::proto::{
    self, ApplyReport, Command, ConfigDump, GlobalStats, Rates, Stats, VersionInfo,
};
use rvs_control::rvsctl;
use serde_json::Value;

use crate::counters::{CountersSnapshot, RealBook, WorkerCounters};
use crate::mesh::Mesh;
use crate::snapshot::{Purge, Snapshot};
use crate::wire::ethernet::MacAddr;
use build::Tables;
use ids::Ids;
use stats::Accounts;
use uploads::{too_large, Uploads};

/// The control thread's view of everything.
pub struct Supervisor {
    config: Config,
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
        let snapshot = Arc::new(build::snapshot(&config, &macs, &ids, &mut tables));
        Ok(Supervisor {
            pending: vec![None; counters.len()],
            config,
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
    /// result).
    pub fn handle(&mut self, command: Command) -> Result<Value, String> {
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
            | Command::Zero { .. }
            | Command::SetTimeouts { .. }
            | Command::AddLaddr { .. }
            | Command::DelLaddr { .. }) => {
                let edit = edit::apply(&self.config, &edit, &self.cpus)?;
                self.adopt(edit).map(|()| Value::Null)
            }
            Command::ListServices { service } => to_json(&listing::services(
                &self.config,
                service.as_ref(),
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
                let services = listing::services(&self.config, None, |service, real| {
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
            Command::ApplyConfig {
                file,
                text,
                upload,
                dry_run,
            } => {
                let text = match (text, upload) {
                    (Some(text), None) => text,
                    (None, Some(id)) => self.uploads.take(id)?,
                    (Some(_), Some(_)) => {
                        return Err("apply_config: give `text` or `upload`, not both".to_owned())
                    }
                    (None, None) => return Err("apply_config: needs `text` or `upload`".to_owned()),
                };
                to_json(&self.apply_text(file, &text, dry_run)?)
            }
            Command::ReloadConfig { dry_run } => to_json(&self.reload_file(dry_run)?),
            Command::DumpConfig {} => to_json(&ConfigDump {
                file: self
                    .config_path
                    .as_ref()
                    .map(|path| path.display().to_string()),
                yaml: rvsctl::dump(&self.config)?,
            }),
            Command::ListPorts {} => to_json(&self.ports()),
            Command::ListWorkers {} => to_json(&self.workers()),
            Command::ListRoutes {} => to_json(&listing::routes(&self.config)),
            Command::ListAddresses {} => to_json(&listing::addresses(&self.config)),
            Command::ListNeighbours {} => to_json(&self.neighbours()),
        }
    }

    /// Re-reads the file given to [`Self::set_config_path`] and, unless
    /// `dry_run`, adopts it: `rvsctl reload`, and what SIGHUP does. The
    /// file is validated against the CPUs rvsd saw at start, not those of
    /// the pinned control thread (which `config::load` would see).
    pub fn reload_file(&mut self, dry_run: bool) -> Result<ApplyReport, String> {
        let path = self.config_path.clone().ok_or_else(|| {
            "rvsd does not know the file it was started with; use `rvsctl apply FILE`".to_owned()
        })?;
        let text = config::read_file(&path).map_err(|err| err.to_string())?;
        self.apply_text(path.display().to_string(), &text, dry_run)
    }

    /// `rvsctl apply`: whole configuration `text`, named `file`, checked
    /// and (unless `dry_run`) adopted in one step.
    fn apply_text(
        &mut self,
        file: String,
        text: &str,
        dry_run: bool,
    ) -> Result<ApplyReport, String> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(too_large(text.len()));
        }
        let (next, diff) = edit::replace(&self.config, text, &file, &self.cpus)?;
        let applied = !dry_run && next != self.config;
        if applied {
            let edit = Edit {
                config: Some(next),
                effect: Effect::None,
            };
            self.adopt(edit).map_err(|err| format!("{file}: {err}"))?;
        }
        Ok(ApplyReport {
            file,
            diff,
            applied,
        })
    }

    /// Adopts what an accepted command does: its configuration, with ids
    /// for what it adds (refused, changing nothing, when the real ids run
    /// out), for the next snapshot, and its effect.
    fn adopt(&mut self, edit: Edit) -> Result<(), String> {
        if let Some(next) = edit.config {
            self.ids = self.ids.reassigned(&self.config, &next)?;
            self.config = next;
            self.dirty = true;
        }
        match edit.effect {
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
                for key in services {
                    let Some(index) = key.index_in(&self.config) else {
                        continue;
                    };
                    let service = &self.config.services[index];
                    let service_id = self.ids.service(service);
                    for real in &service.reals {
                        let id = self.ids.real(service_id, real, service.port);
                        self.accounts.zero(&self.book, id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Periodic work of the control loop: publishes an adopted change,
    /// frees retired snapshots, updates rate estimates.
    pub fn tick(&mut self) {
        if self.dirty {
            self.dirty = false;
            let mut snapshot =
                build::snapshot(&self.config, &self.macs, &self.ids, &mut self.tables);
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
        self.accounts.estimate(&self.book, self.ids.real_ids());
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

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{RealBook, WorkerCounters};
    use crate::wire::ethernet::MacAddr;
    use rvs_control::config::{self, CpuList, HostCpus};
    use rvs_control::proto::{ConfigDiff, PortView, Timeouts, Upload, WorkerView};
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

    fn call<T: serde::de::DeserializeOwned>(control: &mut Supervisor, command: Command) -> T {
        let value = control.handle(command).unwrap_or_else(|e| panic!("{e}"));
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
            let err = control.handle(apply("bad.yaml", &text, false)).unwrap_err();
            assert!(err.starts_with(error), "{err}");
            assert_eq!(control.config(), &before);
        }
    }

    #[test]
    fn uploaded_pieces_apply_like_inline_text() {
        let mut control = supervisor();
        let text = CONFIG.replace("scheduler: rr", "scheduler: lc");
        let mut upload = None;
        for piece in rvsctl::upload_pieces(&text, 64) {
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
        let report = control.reload_file(false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.file, path.display().to_string());
        assert!(report.applied);
        let _ = std::fs::remove_file(&path);
        let err = control.reload_file(false).unwrap_err();
        assert!(
            err.ends_with("cannot read: No such file or directory (os error 2)"),
            "{err}"
        );
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
            let (done, answer) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = done.send(control.reload_file(false).map(|report| report.applied));
            });
            let err = answer
                .recv_timeout(std::time::Duration::from_secs(2))
                .unwrap_or_else(|_| panic!("reload of {} still reading after 2 s", path.display()))
                .unwrap_err();
            assert_eq!(
                err,
                format!(
                    "{}: not a regular file ({what}); a configuration is read from a regular file",
                    path.display()
                )
            );
        }
        let _ = std::fs::remove_file(&fifo);
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
