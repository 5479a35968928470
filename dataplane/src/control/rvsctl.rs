//! The rvsctl commands of the control protocol: applying a whole YAML
//! configuration (inline or uploaded in pieces), reloading rvsd's own file,
//! dumping the running configuration, and the views of ports, workers,
//! routes and addresses.
//!
//! An apply goes through [`ControlPlane::reload`], the same gate as SIGHUP:
//! the text is parsed and validated whole (errors name the file, the line
//! and the key path), refused if it changes anything that needs a restart,
//! and adopted in one step, so the workers get one new snapshot. A refused
//! apply leaves the running state exactly as it was.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rvs_control::config;
use rvs_control::proto::{
    AddressRole, AddressView, ApplyReport, Command, ConfigDump, PortView, RouteKind, RouteView,
    ServiceKey, Upload, WorkerView,
};
use rvs_control::rvsctl::{self as shared, diff};
use serde_json::Value;

use super::{to_json, ControlPlane};
use crate::counters::DropReason;

/// Uploads in progress at once.
const MAX_UPLOADS: usize = 4;
/// Largest configuration text, uploaded or inline (a config of 100,000
/// reals is about 5 MB).
const MAX_CONFIG_BYTES: usize = 64 << 20;
/// An upload not added to for this long is dropped.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// State of the rvsctl commands that outlives a request: the config file's
/// path and the uploads in progress. A field of [`ControlPlane`].
pub(super) struct State {
    config_path: Option<PathBuf>,
    uploads: Vec<PendingUpload>,
    next_upload: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            config_path: None,
            uploads: Vec::new(),
            next_upload: 1,
        }
    }
}

struct PendingUpload {
    id: u64,
    text: String,
    touched: Instant,
}

impl ControlPlane {
    /// The file `rvsctl reload` re-reads (rvsd's `--config`), also named by
    /// `rvsctl dump`.
    pub fn set_config_path(&mut self, path: &Path) {
        self.rvsctl.config_path = Some(path.to_owned());
    }

    /// Answers the commands of rvsctl (see [`Command`] for each result).
    pub(super) fn handle_rvsctl(&mut self, command: Command) -> Result<Value, String> {
        match command {
            Command::UploadConfig { upload, text } => to_json(&self.rvsctl.receive(upload, text)?),
            Command::ApplyConfig {
                file,
                text,
                upload,
                dry_run,
            } => {
                let text = match (text, upload) {
                    (Some(text), None) => text,
                    (None, Some(id)) => self.rvsctl.take_upload(id)?,
                    (Some(_), Some(_)) => {
                        return Err("apply_config: give `text` or `upload`, not both".to_owned())
                    }
                    (None, None) => return Err("apply_config: needs `text` or `upload`".to_owned()),
                };
                to_json(&self.apply_text(file, &text, dry_run)?)
            }
            Command::ReloadConfig { dry_run } => to_json(&self.reload_file(dry_run)?),
            Command::DumpConfig => to_json(&ConfigDump {
                file: self
                    .rvsctl
                    .config_path
                    .as_ref()
                    .map(|path| path.display().to_string()),
                yaml: shared::dump(&self.config)?,
            }),
            Command::ListPorts => to_json(&self.ports()),
            Command::ListWorkers => to_json(&self.workers()),
            Command::ListRoutes => to_json(&self.routes()),
            Command::ListAddresses => to_json(&self.addresses()),
            Command::ListNeighbours => to_json(&self.neighbours()),
            other => Err(format!("not an rvsctl command: {other:?}")),
        }
    }

    /// Re-reads the file given to [`Self::set_config_path`] and, unless
    /// `dry_run`, adopts it: `rvsctl reload`, and what SIGHUP should do.
    /// The file is validated against the CPUs rvsd saw at start, not those
    /// of the pinned control thread (which `config::load` would see).
    pub fn reload_file(&mut self, dry_run: bool) -> Result<ApplyReport, String> {
        let path = self.rvsctl.config_path.clone().ok_or_else(|| {
            "rvsd does not know the file it was started with; use `rvsctl apply FILE`".to_owned()
        })?;
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|err| format!("{file}: cannot read: {err}"))?;
        self.apply_text(file, &text, dry_run)
    }

    /// Parses, checks and (unless `dry_run`) adopts config `text`.
    fn apply_text(
        &mut self,
        file: String,
        text: &str,
        dry_run: bool,
    ) -> Result<ApplyReport, String> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(too_large(text.len()));
        }
        let next = config::parse_on(text, &file, &self.cpus).map_err(|err| err.to_string())?;
        diff::check_live_only(&self.config, &next, text, &file).map_err(|err| err.to_string())?;
        let diff = diff::diff(&self.config, &next);
        let applied = !dry_run && next != self.config;
        if applied {
            self.reload(next).map_err(|err| format!("{file}: {err}"))?;
        }
        Ok(ApplyReport {
            file,
            diff,
            applied,
        })
    }

    fn ports(&self) -> Vec<PortView> {
        let config = &self.config;
        config
            .ports
            .iter()
            .enumerate()
            .map(|(index, port)| PortView {
                name: port.name.clone(),
                device: port.device.clone(),
                mac: self
                    .macs
                    .get(index)
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                mtu: port.mtu,
                addresses: port.addresses.iter().map(ToString::to_string).collect(),
                rx_queues: config.rx_queues(index),
                tx_queues: config.tx_queues(),
                rx_descriptors: port.rx_descriptors,
                tx_descriptors: port.tx_descriptors,
            })
            .collect()
    }

    fn workers(&self) -> Vec<WorkerView> {
        self.config
            .workers
            .iter()
            .zip(&self.counters)
            .enumerate()
            .map(|(index, (worker, counters))| {
                let c = counters.read();
                let drop_reasons: Vec<(String, u64)> = DropReason::ALL
                    .iter()
                    .map(|reason| (reason.name().to_owned(), c.drops_of(*reason)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                WorkerView {
                    index: index as u32,
                    lcore: worker.lcore,
                    cpu: self.config.worker_cpu(worker),
                    queues: worker
                        .queues
                        .iter()
                        .map(|q| format!("{}:{}", q.port, q.queue))
                        .collect(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    conns: c.conns_current,
                    conns_created: c.conns_created,
                    conns_expired: c.conns_expired,
                    redirected: c.redirected,
                    drops: drop_reasons.iter().map(|(_, count)| count).sum(),
                    drop_reasons,
                }
            })
            .collect()
    }

    fn routes(&self) -> Vec<RouteView> {
        let config = &self.config;
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

    /// What the workers have resolved by ARP, one row per address.
    fn neighbours(&self) -> Vec<rvs_control::proto::NeighbourView> {
        let mut rows: std::collections::BTreeMap<
            std::net::Ipv4Addr,
            rvs_control::proto::NeighbourView,
        > = std::collections::BTreeMap::new();
        for (worker, entries) in self.worker_neighbours() {
            for (addr, mac, port, age) in entries {
                let row = rows
                    .entry(addr)
                    .or_insert_with(|| rvs_control::proto::NeighbourView {
                        addr,
                        mac: mac.to_string(),
                        port: self
                            .config()
                            .ports
                            .get(usize::from(port))
                            .map_or_else(|| port.to_string(), |p| p.name.clone()),
                        age_secs: age,
                        workers: Vec::new(),
                    });
                if age < row.age_secs {
                    row.age_secs = age;
                    row.mac = mac.to_string();
                }
                row.workers.push(worker);
            }
        }
        rows.into_values().collect()
    }

    fn addresses(&self) -> Vec<AddressView> {
        let config = &self.config;
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
        // In first-use order, each with the services using it.
        let mut vips: Vec<(Ipv4Addr, Vec<ServiceKey>)> = Vec::new();
        let mut laddrs: Vec<(Ipv4Addr, Vec<ServiceKey>)> = Vec::new();
        let mut vip_index = BTreeMap::new();
        let mut laddr_index = BTreeMap::new();
        for service in &config.services {
            let key = diff::key_of(service);
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
                let at = *vip_index.entry(vip).or_insert_with(|| {
                    vips.push((vip, Vec::new()));
                    vips.len() - 1
                });
                if !vips[at].1.contains(&key) {
                    vips[at].1.push(key);
                }
            }
            for lip in &service.local_addresses {
                let at = *laddr_index.entry(*lip).or_insert_with(|| {
                    laddrs.push((*lip, Vec::new()));
                    laddrs.len() - 1
                });
                laddrs[at].1.push(key);
            }
        }
        for (addr, services) in vips {
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
        for (addr, services) in laddrs {
            views.push(AddressView {
                addr,
                role: AddressRole::Laddr,
                port: config
                    .ports
                    .iter()
                    .find(|port| port.addresses.iter().any(|net| net.addr() == addr))
                    .map(|port| port.name.clone()),
                prefix_len: None,
                services,
            });
        }
        views
    }
}

impl State {
    /// Appends `text` to upload `upload`, or starts one.
    fn receive(&mut self, upload: Option<u64>, text: String) -> Result<Upload, String> {
        let state = self;
        let now = Instant::now();
        state
            .uploads
            .retain(|pending| now.duration_since(pending.touched) < UPLOAD_IDLE);
        let index = match upload {
            None => {
                if state.uploads.len() >= MAX_UPLOADS {
                    return Err(format!(
                        "{MAX_UPLOADS} configuration uploads are already in progress; try again \
                     once one is applied or left idle for {} s",
                        UPLOAD_IDLE.as_secs()
                    ));
                }
                let id = state.next_upload;
                state.next_upload += 1;
                state.uploads.push(PendingUpload {
                    id,
                    text: String::new(),
                    touched: now,
                });
                state.uploads.len() - 1
            }
            Some(id) => state
                .uploads
                .iter()
                .position(|pending| pending.id == id)
                .ok_or_else(|| unknown_upload(id))?,
        };
        let size = state.uploads[index].text.len() + text.len();
        if size > MAX_CONFIG_BYTES {
            state.uploads.remove(index);
            return Err(too_large(size));
        }
        let pending = &mut state.uploads[index];
        pending.text.push_str(&text);
        pending.touched = now;
        Ok(Upload {
            upload: pending.id,
            bytes: pending.text.len() as u64,
        })
    }

    /// Removes upload `id` and returns its text.
    fn take_upload(&mut self, id: u64) -> Result<String, String> {
        let state = self;
        let index = state
            .uploads
            .iter()
            .position(|pending| pending.id == id)
            .ok_or_else(|| unknown_upload(id))?;
        Ok(state.uploads.remove(index).text)
    }
}

fn unknown_upload(id: u64) -> String {
    format!(
        "no configuration upload {id}: never started, already applied, or dropped after {} s \
         without a piece",
        UPLOAD_IDLE.as_secs()
    )
}

fn too_large(size: usize) -> String {
    format!(
        "configuration text of {size} bytes is over rvsd's limit of {} MiB",
        MAX_CONFIG_BYTES >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{RealBook, WorkerCounters};
    use crate::wire::ethernet::MacAddr;
    use crate::worker::Mesh;
    use rvs_control::config::{CpuList, HostCpus};
    use rvs_control::proto::{ConfigDiff, RouteView, Timeouts};
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

    fn control_plane() -> ControlPlane {
        let config = config::parse_on(CONFIG, "start.yaml", &cpus()).expect("valid");
        ControlPlane::new(
            config,
            cpus(),
            vec![MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2])],
            Arc::new(Mesh::new(1)),
            vec![Arc::new(WorkerCounters::default())],
            Arc::new(RealBook::new(1, 1024)),
        )
        .expect("a control plane")
    }

    fn call<T: serde::de::DeserializeOwned>(control: &mut ControlPlane, command: Command) -> T {
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
        let mut control = control_plane();
        let dump: ConfigDump = call(&mut control, Command::DumpConfig);
        let report: ApplyReport = call(&mut control, apply("dump.yaml", &dump.yaml, false));
        assert_eq!(report.diff, ConfigDiff::default());
        assert!(!report.applied);
        assert!(!control.publishing(), "nothing to publish");
    }

    #[test]
    fn apply_reports_the_diff_and_adopts_in_one_step() {
        let mut control = control_plane();
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
        let timeouts: Timeouts = call(&mut control, Command::GetTimeouts);
        assert_eq!(timeouts.tcp, 30);
    }

    #[test]
    fn refusals_name_the_file_and_line_and_change_nothing() {
        let mut control = control_plane();
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
        let mut control = control_plane();
        let text = CONFIG.replace("scheduler: rr", "scheduler: lc");
        let mut upload = None;
        for piece in shared::upload_pieces(&text, 64) {
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
        let mut control = control_plane();
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
    fn views() {
        let mut control = control_plane();
        let routes: Vec<RouteView> = call(&mut control, Command::ListRoutes);
        let routes: Vec<(String, Option<Ipv4Addr>, String)> = routes
            .into_iter()
            .map(|r| (r.prefix, r.via, r.port))
            .collect();
        assert_eq!(
            routes,
            [
                ("10.99.1.0/24".into(), None, "client".into()),
                ("10.99.2.0/24".into(), None, "real".into()),
                (
                    "10.99.3.0/24".into(),
                    Some(Ipv4Addr::new(10, 99, 2, 254)),
                    "real".into()
                ),
            ]
        );
        let addresses: Vec<AddressView> = call(&mut control, Command::ListAddresses);
        let vip = &addresses[2];
        assert_eq!(
            (vip.addr, vip.role, vip.port.as_deref()),
            (
                Ipv4Addr::new(10, 99, 1, 100),
                AddressRole::Vip,
                Some("client")
            )
        );
        let ports: Vec<PortView> = call(&mut control, Command::ListPorts);
        assert_eq!(ports[1].mac, "02:00:00:00:00:02");
        assert_eq!((ports[1].rx_queues, ports[1].tx_queues), (1, 1));
        let workers: Vec<WorkerView> = call(&mut control, Command::ListWorkers);
        assert_eq!(workers[0].queues, ["client:0", "real:0"]);
    }

    #[test]
    fn uploads_join_pieces_and_are_consumed_once() {
        let mut state = State::default();
        let first = state.receive(None, "services:\n".to_owned()).unwrap();
        let second = state
            .receive(Some(first.upload), "  []\n".to_owned())
            .unwrap();
        assert_eq!(second.upload, first.upload);
        assert_eq!(second.bytes, 15);
        assert_eq!(
            state.take_upload(first.upload).unwrap(),
            "services:\n  []\n"
        );
        let again = state.take_upload(first.upload).unwrap_err();
        assert!(again.starts_with(&format!("no configuration upload {}", first.upload)));
        assert!(state.receive(Some(u64::MAX), String::new()).is_err());
    }
}
