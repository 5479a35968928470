//! Shared by the control crate's tests: a running configuration to edit
//! (two ports, a mark group, no services), and rvsd's rules behind the
//! control socket's [`Handler`] seam, so that rvsadm and rvsctl are tested
//! against the rules rvsd applies rather than a stand-in for them.
#![allow(dead_code)]

use rvs_control::config::{self, Config, CpuList, HostCpus};
use rvs_control::edit::{self, Effect};
use rvs_control::listing;
use rvs_control::proto::{self, Command, ConnEntry, ConnPage, Protocol};
use rvs_control::server::{Handler, Reply};
use rvs_control::uploads::Uploads;
use serde_json::Value;
use std::net::Ipv4Addr;

/// Two ports: the VIPs' side (10.0.0.0/24) and the reals' (192.168.1.0/24,
/// where 192.168.1.250 can be a FullNAT local address); mark 5 groups
/// 10.0.0.5:80 and :443.
pub const BASE: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - { name: client, device: net_null0, addresses: [10.0.0.254/24] }
  - { name: dpdk0, device: net_null1, addresses: [192.168.1.254/24, 192.168.1.250/24] }
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: dpdk0, queue: 0 } ] }
marks:
  - mark: 5
    matches:
      - { vip: 10.0.0.5, port: 80, protocol: tcp }
      - { vip: 10.0.0.5, port: 443, protocol: tcp }
";

pub fn cpus() -> HostCpus {
    let list = CpuList::parse("0-1").expect("a CPU list");
    HostCpus {
        online: list.clone(),
        allowed: list,
    }
}

pub fn base() -> Config {
    config::parse_on(BASE, "base.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Connections [`Rules`] lists: enough for several pages.
pub const CONNECTIONS: u64 = 2500;

/// rvsd's part of the control protocol without its workers: commands
/// change the configuration by rvsd's own rules ([`edit::apply`],
/// [`edit::apply_batch`], with uploads as rvsd keeps them) and
/// listings show it ([`listing`]); the counters are those of an idle rvsd,
/// and the connection listing (which the workers answer in rvsd) is
/// [`CONNECTIONS`] made-up entries.
pub struct Rules {
    pub config: Config,
    uploads: Uploads,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            config: base(),
            uploads: Uploads::default(),
        }
    }
}

impl Handler for Rules {
    fn handle(&mut self, command: Command) -> Reply {
        Reply::Now(self.answer(command))
    }
}

impl Rules {
    fn answer(&mut self, command: Command) -> Result<Value, String> {
        match command {
            Command::ListServices { service } => json(&listing::services(
                &self.config,
                service.as_ref(),
                &rvs_control::health::HealthView::default(),
                |_, _| listing::RealCounts::default(),
            )?),
            Command::GetLaddr { service } => {
                json(&listing::laddrs(&self.config, service.as_ref())?)
            }
            Command::GetTimeouts {} => json(&self.config.timeouts),
            Command::ListDaemons {} => json(&listing::daemons(&self.config)),
            Command::Addresses {} => json(&listing::addresses(&self.config, &|_| None)),
            Command::ListConnections { cursor, limit } => json(&connections(cursor, limit)),
            Command::UploadConfig { upload, text } => json(&self.uploads.receive(upload, text)?),
            Command::Batch { commands, upload } => {
                let commands = match upload {
                    Some(id) => proto::decode_commands(&self.uploads.take(id)?)?,
                    None => commands,
                };
                let edit = edit::apply_batch(&self.config, &commands, &cpus())?;
                if let Some(config) = edit.config.clone() {
                    self.config = config;
                }
                json(&edit.report())
            }
            command => {
                let edit = edit::apply(&self.config, &command, &cpus())?;
                if let Some(config) = edit.config {
                    self.config = config;
                }
                match edit.effect {
                    Effect::None | Effect::Zero(_) | Effect::Purge(_) => Ok(Value::Null),
                }
            }
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn connections(cursor: Option<u64>, limit: u32) -> ConnPage {
    let start = cursor.unwrap_or(0);
    let end = (start + u64::from(limit)).min(CONNECTIONS);
    ConnPage {
        entries: (start..end)
            .map(|index| ConnEntry {
                protocol: Protocol::Tcp,
                client: ip("10.1.0.0"),
                client_port: index as u16,
                vip: ip("10.0.0.1"),
                vport: 80,
                real: ip("192.168.1.2"),
                real_port: 80,
                state: "ESTABLISHED".into(),
                expires_secs: 899,
            })
            .collect(),
        next: (end < CONNECTIONS).then_some(end),
    }
}
