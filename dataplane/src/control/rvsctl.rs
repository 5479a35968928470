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
use std::sync::{Mutex, MutexGuard};
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
/// path and the uploads in progress.
///
/// It is per process rather than a field of [`ControlPlane`]: rvsd runs
/// exactly one control plane, on its control thread, so the mutex is never
/// contended; it only makes the static sound.
struct State {
    config_path: Option<PathBuf>,
    uploads: Vec<PendingUpload>,
    next_upload: u64,
}

struct PendingUpload {
    id: u64,
    text: String,
    touched: Instant,
}

static STATE: Mutex<State> = Mutex::new(State {
    config_path: None,
    uploads: Vec::new(),
    next_upload: 1,
});

fn state() -> MutexGuard<'static, State> {
    // A panic while holding the lock leaves plain data behind: still usable.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ControlPlane {
    /// The file `rvsctl reload` re-reads (rvsd's `--config`), also named by
    /// `rvsctl dump`.
    pub fn set_config_path(&mut self, path: &Path) {
        state().config_path = Some(path.to_owned());
    }

    /// Answers the commands of rvsctl (see [`Command`] for each result).
    pub(super) fn handle_rvsctl(&mut self, command: Command) -> Result<Value, String> {
        match command {
            Command::UploadConfig { upload, text } => to_json(&receive(upload, text)?),
            Command::ApplyConfig {
                file,
                text,
                upload,
                dry_run,
            } => {
                let text = match (text, upload) {
                    (Some(text), None) => text,
                    (None, Some(id)) => take_upload(id)?,
                    (Some(_), Some(_)) => {
                        return Err("apply_config: give `text` or `upload`, not both".to_owned())
                    }
                    (None, None) => return Err("apply_config: needs `text` or `upload`".to_owned()),
                };
                to_json(&self.apply_text(file, &text, dry_run)?)
            }
            Command::ReloadConfig { dry_run } => {
                let path = state().config_path.clone().ok_or_else(|| {
                    "rvsd does not know the file it was started with; use `rvsctl apply FILE`"
                        .to_owned()
                })?;
                let file = path.display().to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|err| format!("{file}: cannot read: {err}"))?;
                to_json(&self.apply_text(file, &text, dry_run)?)
            }
            Command::DumpConfig => to_json(&ConfigDump {
                file: state()
                    .config_path
                    .as_ref()
                    .map(|path| path.display().to_string()),
                yaml: shared::dump(&self.config)?,
            }),
            Command::ListPorts => to_json(&self.ports()),
            Command::ListWorkers => to_json(&self.workers()),
            Command::ListRoutes => to_json(&self.routes()),
            Command::ListAddresses => to_json(&self.addresses()),
            other => Err(format!("not an rvsctl command: {other:?}")),
        }
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
            let at = *vip_index.entry(service.vip).or_insert_with(|| {
                vips.push((service.vip, Vec::new()));
                vips.len() - 1
            });
            vips[at].1.push(key);
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

/// Appends `text` to upload `upload`, or starts one.
fn receive(upload: Option<u64>, text: String) -> Result<Upload, String> {
    let mut state = state();
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
fn take_upload(id: u64) -> Result<String, String> {
    let mut state = state();
    let index = state
        .uploads
        .iter()
        .position(|pending| pending.id == id)
        .ok_or_else(|| unknown_upload(id))?;
    Ok(state.uploads.remove(index).text)
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

    #[test]
    fn uploads_join_pieces_and_are_consumed_once() {
        let first = receive(None, "services:\n".to_owned()).unwrap();
        let second = receive(Some(first.upload), "  []\n".to_owned()).unwrap();
        assert_eq!(second.upload, first.upload);
        assert_eq!(second.bytes, 15);
        assert_eq!(take_upload(first.upload).unwrap(), "services:\n  []\n");
        let again = take_upload(first.upload).unwrap_err();
        assert!(again.starts_with(&format!("no configuration upload {}", first.upload)));
        assert!(receive(Some(u64::MAX), String::new()).is_err());
    }
}
