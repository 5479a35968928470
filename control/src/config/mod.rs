//! The YAML configuration of rvsd. `conf/rvs.yaml` is the annotated reference
//! of every key; this module is its typed model.
//!
//! [`load`] and [`parse`] return a [`Config`] that has been validated: every
//! name it refers to exists, every address it must reach is reachable, the
//! lcore/CPU map is usable on this machine and the mempool is large enough.
//! Any refusal is a [`ConfigError`] naming the file, the position, the key
//! path and the reason. Unknown keys are refused everywhere, so that a typo
//! cannot silently fall back to a default.

mod check;
mod cpus;
mod error;
mod net;
mod read;
mod tree;
mod validate;

pub use check::{
    Check, CheckKind, Probe, ProbeUrl, Seconds, SorryServer, StatusCodes, Url, MAX_SECONDS,
};
pub use cpus::{CpuList, HostCpus};
pub use error::{ConfigError, ValidationError};
pub use net::{Ipv4Net, ParseIpv4NetError};
pub use read::{read_file, read_stream, MAX_CONFIG_BYTES};
pub use validate::{sorry_forward, MAX_CONNECTIONS, MAX_LCORE, MAX_WEIGHT, MEMPOOL_CACHE_MAX};

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{as_text, from_text};
pub use crate::model::{Forward, Protocol, SchedulerKind, Timeouts};
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

/// Reads ([`read_file`]: a regular file of at most [`MAX_CONFIG_BYTES`]),
/// parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read_file(path)?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config `text`, at most [`MAX_CONFIG_BYTES`];
/// `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_on(text, file, &HostCpus::detect())
}

/// [`parse`], validating lcore pinning against `cpus` rather than this
/// machine's.
pub fn parse_on(text: &str, file: &str, cpus: &HostCpus) -> Result<Config, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            file,
            String::new(),
            read::too_large(text.len() as u64),
        ));
    }
    let first = tree::FirstError::default();
    let mut track = serde_path_to_error::Track::new();
    let events = tree::Tree::new(serde_yaml::Deserializer::from_str(text), &first);
    let parsed =
        Option::<Config>::deserialize(serde_path_to_error::Deserializer::new(events, &mut track));
    let config = match parsed {
        Ok(Some(config)) => config,
        Ok(None) => {
            return Err(ConfigError::new(
                file,
                String::new(),
                "the file is empty; it needs at least `ports` and `workers`".to_owned(),
            ))
        }
        Err(err) => {
            // What the YAML itself breaks is reported first, wherever it is.
            if let Err(err) = tree::check_document(text) {
                let (reason, position) = error::yaml_syntax(&err);
                return Err(ConfigError::new(file, String::new(), reason).at(position));
            }
            return Err(match first.take() {
                Some(message) => {
                    let reworded = error::reword(error::key_path(&track.path()), &message);
                    let position = error::locate(text, &reworded.position_of, reworded.at_key);
                    ConfigError::new(file, reworded.key_path, reworded.reason).at(position)
                }
                // Raised by the YAML parser itself: syntax, not meaning.
                None => {
                    let (reason, position) = error::yaml_syntax(&err);
                    ConfigError::new(file, String::new(), reason).at(position)
                }
            });
        }
    };
    config.validate_on(cpus).map_err(|err| {
        let position = error::locate(text, &err.key_path, false);
        ConfigError::new(file, err.key_path, err.reason).at(position)
    })?;
    Ok(config)
}

/// A refusal of the node at `key_path` of config `text` (named `file`),
/// placed at its line like the errors of [`parse`]: for checks made outside
/// this module on a parsed config, such as rvsd refusing to change at run
/// time what needs a restart.
pub fn refusal(text: &str, file: &str, key_path: &str, reason: String) -> ConfigError {
    let position = error::locate(text, key_path, true);
    ConfigError::new(file, key_path.to_owned(), reason).at(position)
}

/// RX and TX descriptors of a kernel interface's TAP port.
pub const KERNEL_DESCRIPTORS: u16 = 512;
/// Frames waiting in one ring to or from the kernel interfaces, at most.
pub const KERNEL_RING: usize = 1024;

/// The whole configuration. `ports` and `workers` are required; every other
/// section defaults as documented in conf/rvs.yaml.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: Eal,
    #[serde(default)]
    pub mempool: Mempool,
    pub ports: Vec<Port>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub worker_idle: WorkerIdle,
    pub workers: Vec<Worker>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub fullnat: FullNat,
    #[serde(default)]
    pub control: Control,
    #[serde(default, skip_serializing_if = "Metrics::is_off")]
    pub metrics: Metrics,
    /// IPVS's expire_quiescent_template: a persistence template whose real
    /// has weight 0 is dropped, so the client is scheduled anew.
    #[serde(default)]
    pub expire_quiescent_template: bool,
    /// What a TCP SYN or UDP datagram to an address of rvs (a VIP, a
    /// port's) on a port with no service gets.
    #[serde(default)]
    pub closed_ports: ClosedPorts,
    /// Who decides that a VIP or a floating address is served: always
    /// (`static`), or the kernel interfaces holding it (`kernel`, where
    /// keepalived's VRRP moves it).
    #[serde(default, skip_serializing_if = "Ownership::is_static")]
    pub ownership: Ownership,
    /// IPVS connection sync daemons (`ipvsadm --start-daemon`).
    #[serde(default, skip_serializing_if = "Sync::is_off")]
    pub sync: Sync,
    /// Mark groups for `mark` services.
    #[serde(default)]
    pub marks: Vec<Mark>,
    #[serde(default)]
    pub services: Vec<Service>,
}

/// Who decides whether rvs serves a VIP or a port's floating address
/// (answers ARP for it, forwards its traffic). A port's own `addresses`
/// are served at all times either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Every VIP at all times (a director alone, or behind ECMP).
    #[default]
    Static,
    /// A VIP or floating address only while a kernel interface of a port
    /// holds it: keepalived's VRRP adds and removes it there
    /// (`virtual_ipaddress`), and rvs follows. rvsd never puts a VIP or a
    /// floating address on a kernel interface itself.
    Kernel,
}

impl Ownership {
    fn is_static(&self) -> bool {
        *self == Ownership::Static
    }
}

/// The IPVS sync daemons rvsd runs (REFERENCE.md §10): `master` sends the
/// connections this director serves, `backup` takes those a peer sends.
/// Both may run at once, as the kernel allows.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sync {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<SyncDaemon>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<SyncDaemon>,
}

impl Sync {
    /// No daemon runs.
    pub fn is_off(&self) -> bool {
        self.master.is_none() && self.backup.is_none()
    }

    /// The daemon of `state`, if it runs.
    pub fn daemon(&self, state: SyncState) -> Option<&SyncDaemon> {
        match state {
            SyncState::Master => self.master.as_ref(),
            SyncState::Backup => self.backup.as_ref(),
        }
    }

    /// Where the daemon of `state` is kept.
    pub fn daemon_mut(&mut self, state: SyncState) -> &mut Option<SyncDaemon> {
        match state {
            SyncState::Master => &mut self.master,
            SyncState::Backup => &mut self.backup,
        }
    }
}

/// One sync daemon's settings, as `ipvsadm --start-daemon` takes them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemon {
    /// The kernel interface the multicast goes out of (master) or is
    /// joined on (backup): a Linux interface name.
    pub mcast_interface: String,
    /// Sent in every message (master); the only one taken (backup), or 0
    /// for any.
    #[serde(default)]
    pub syncid: u8,
    /// Largest datagram payload, bytes.
    #[serde(default = "default_sync_maxlen")]
    pub sync_maxlen: u16,
    #[serde(default = "default_mcast_group", deserialize_with = "ipv4")]
    pub mcast_group: Ipv4Addr,
    #[serde(default = "default_mcast_port")]
    pub mcast_port: u16,
    #[serde(default = "default_mcast_ttl")]
    pub mcast_ttl: u8,
}

impl SyncDaemon {
    /// A daemon on `interface` with every other setting at ipvsadm's and
    /// the kernel's defaults: syncid 0, 1472 bytes, 224.0.0.81:8848, TTL 1.
    pub fn on(interface: impl Into<String>) -> SyncDaemon {
        SyncDaemon {
            mcast_interface: interface.into(),
            syncid: 0,
            sync_maxlen: default_sync_maxlen(),
            mcast_group: default_mcast_group(),
            mcast_port: default_mcast_port(),
            mcast_ttl: default_mcast_ttl(),
        }
    }
}

fn default_sync_maxlen() -> u16 {
    crate::sync::DEFAULT_MAXLEN as u16
}

fn default_mcast_group() -> Ipv4Addr {
    crate::sync::DEFAULT_GROUP
}

fn default_mcast_port() -> u16 {
    crate::sync::DEFAULT_PORT
}

fn default_mcast_ttl() -> u8 {
    1
}

/// Which of the two sync daemons (`ipvsadm --start-daemon master|backup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    Master,
    Backup,
}

impl SyncState {
    /// Master first, as the kernel lists them.
    pub const ALL: [SyncState; 2] = [SyncState::Master, SyncState::Backup];

    /// `master` or `backup`, ipvsadm's word.
    pub fn name(self) -> &'static str {
        match self {
            SyncState::Master => "master",
            SyncState::Backup => "backup",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a packet to a closed port of rvs's own addresses gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClosedPorts {
    /// Nothing: the client waits its full timeout (IPVS without a local
    /// stack behind the VIP).
    #[default]
    Drop,
    /// A TCP RST, or for UDP an ICMP port unreachable, as the director's
    /// own stack would answer; at most a thousand a second per worker.
    Reject,
}

/// The control socket rvsadm and rvsctl talk to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Unix socket path.
    pub socket: String,
    /// Group (name or number) whose members may use the socket besides root;
    /// none: root only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: "/run/rvs/rvsd.sock".to_owned(),
            group: None,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Address and port `GET /metrics` is served on; none: no endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
    /// Also the node_exporter IPVS collector's `node_ipvs_*` series.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ipvs_compat: bool,
}

impl Metrics {
    fn is_off(&self) -> bool {
        *self == Metrics::default()
    }
}

/// FullNAT local-address ports: each LIP lends the ports `port_min..=port_max`,
/// split between workers by their low bits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FullNat {
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for FullNat {
    fn default() -> Self {
        FullNat {
            port_min: 1024,
            port_max: 65535,
        }
    }
}

/// DPDK's Environment Abstraction Layer.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Eal {
    /// lcore of the control thread.
    pub main_lcore: u32,
    /// CPU the main lcore is pinned to; `None`: the CPU numbered like the lcore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_cpu: Option<u32>,
    /// Extra EAL arguments, appended after the derived ones.
    pub args: Vec<String>,
}

/// The one packet-buffer pool.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mempool {
    pub mbufs: u32,
    /// Per-lcore cache.
    pub cache: u32,
}

impl Default for Mempool {
    fn default() -> Self {
        Mempool {
            mbufs: 16383,
            cache: 256,
        }
    }
}

/// One DPDK port: a NIC port or a virtual device.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Name used by routes and workers.
    pub name: String,
    /// PCI address (passed as `-a`) or vdev string (passed as `--vdev`).
    pub device: String,
    /// Addresses owned by the port; each adds a connected subnet.
    #[serde(default)]
    pub addresses: Vec<Ipv4Net>,
    /// With `ownership: kernel`: addresses of the port that rvs serves only
    /// while its kernel interface holds them (where VRRP puts them), each
    /// in a subnet of `addresses`; they add no connected subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating_addresses: Vec<Ipv4Net>,
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: u16,
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: u16,
    /// Layer-3 MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// A kernel network interface of this name sharing the port (the
    /// exception path): it carries the port's MAC, MTU and addresses, the
    /// kernel gets every frame the dataplane does not own, and what the
    /// kernel sends leaves through the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_interface: Option<String>,
}

fn default_descriptors() -> u16 {
    1024
}

fn default_mtu() -> u16 {
    1500
}

impl Port {
    /// Whether `addr` lies in one of this port's connected subnets.
    pub fn connects(&self, addr: Ipv4Addr) -> bool {
        self.addresses.iter().any(|net| net.contains(addr))
    }
}

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix, without host bits.
    pub prefix: Ipv4Net,
    /// Next hop, in a connected subnet.
    #[serde(deserialize_with = "ipv4")]
    pub via: Ipv4Addr,
    /// Port to send through; `None`: the port whose subnet holds `via`
    /// (see [`Config::route_port`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// How an idle worker backs off: it spins through `idle_polls` empty
/// polls, then sleeps `min_sleep_us`, twice as long after each further
/// empty poll, up to `sleep_us`; a poll that finds packets starts over.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerIdle {
    /// Consecutive empty polls of all its queues before a worker sleeps.
    pub idle_polls: u32,
    /// The longest sleep in microseconds; 0 = pure busy polling.
    pub sleep_us: u32,
    /// The first sleep in microseconds (at most `sleep_us`; equal to it:
    /// every sleep is `sleep_us`, no back-off).
    pub min_sleep_us: u32,
}

impl Default for WorkerIdle {
    fn default() -> Self {
        WorkerIdle {
            idle_polls: 64,
            sleep_us: 100,
            min_sleep_us: 5,
        }
    }
}

/// A worker lcore and the RX queues it polls.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    pub lcore: u32,
    /// `None`: the CPU numbered like the lcore (see [`Config::worker_cpu`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    pub queues: Vec<QueueRef>,
}

/// RX queue `queue` of the port named `port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRef {
    pub port: String,
    pub queue: u16,
}

/// Bounds, per worker.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Reals over all services, at most (per-real counters are allocated at
    /// start for this many).
    pub reals: u32,
    /// Tracked connections per worker.
    pub connections: u32,
    /// Packets held per worker while ARP resolves their next hop.
    pub arp_pending: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reals: 131072,
            connections: 262144,
            arp_pending: 256,
        }
    }
}

/// A virtual service: (protocol, vip, port), or a mark group, and its reals.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Required unless `mark` is given.
    #[serde(
        default = "unspecified",
        deserialize_with = "ipv4",
        skip_serializing_if = "Ipv4Addr::is_unspecified"
    )]
    pub vip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    /// Required unless `mark` is given (a mark's matches name their
    /// protocols).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// A firewall-mark-like service (ipvsadm `-f MARK`): it serves every
    /// VIP:port:protocol that `marks` lists under this number, as one service
    /// (one scheduler, one set of persistence templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    #[serde(default)]
    pub scheduler: SchedulerKind,
    /// In list order, the order schedulers scan them.
    #[serde(default)]
    pub reals: Vec<Real>,
    /// FullNAT local addresses (LIPs): sources of the connections to the
    /// reals. Each must be an address of some port.
    #[serde(
        default,
        deserialize_with = "ipv4_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub local_addresses: Vec<Ipv4Addr>,
    /// Scheduler flags by ipvsadm's `-b` names (sh-fallback, sh-port,
    /// mh-fallback, mh-port, flag-1..3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Persistence timeout in seconds (ipvsadm `-p`); none: not persistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<u32>,
    /// Persistence granularity (ipvsadm `-M`); none: 255.255.255.255.
    #[serde(
        default,
        deserialize_with = "ipv4_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub netmask: Option<Ipv4Addr>,
    /// One-packet scheduling (ipvsadm `-o`): every datagram scheduled anew,
    /// no connection kept. UDP only.
    #[serde(default)]
    pub one_packet: bool,
    /// Health checks of every real that has none of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// keepalived's quorum: the weight the live reals must add up to
    /// (default 1); below it the sorry server takes over.
    #[serde(default = "default_quorum", skip_serializing_if = "is_one")]
    pub quorum: u32,
    /// Quorum is gained at `quorum + hysteresis`, lost below
    /// `quorum - hysteresis`.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub hysteresis: u32,
    /// Commands run (by `/bin/sh -c`) when the quorum is gained and lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<SorryServer>,
    /// While the quorum holds, the sorry server is listed with weight 0
    /// rather than absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorry_server_inhibit: bool,
    /// Every checked real starts down until its first good check.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alpha: bool,
    /// On shutdown, run the reals' `notify_down` and the `quorum_down`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omega: bool,
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Real {
    #[serde(deserialize_with = "ipv4")]
    pub address: Ipv4Addr,
    /// `None`: the service port (see [`Real::port_or`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 0..=65535 ([`MAX_WEIGHT`]); 0 quiesces the real.
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub forward: Forward,
    /// Upper connection threshold (ipvsadm `-x`); 0: none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (ipvsadm `-y`); 0: none.
    #[serde(default)]
    pub l_threshold: u32,
    /// Drained (`rvsctl drain`): the weight `rvsctl undrain` restores;
    /// `weight` is 0 meanwhile and persistence templates to the real are
    /// no longer followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_from: Option<u32>,
    /// Health checks; none: the service's `checks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// A failed check quiesces the real (weight 0) instead of removing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inhibit_on_failure: bool,
    /// Commands run (by `/bin/sh -c`) when the real comes up and goes down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
}

fn default_weight() -> u32 {
    1
}

fn default_quorum() -> u32 {
    1
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

impl Real {
    /// The real's port: its own, or else the service's.
    pub fn port_or(&self, service_port: u16) -> u16 {
        self.port.unwrap_or(service_port)
    }

    /// The checks the real runs: its own, else its service's.
    pub fn checks_in<'a>(&'a self, service: &'a Service) -> &'a [Check] {
        if self.checks.is_empty() {
            &service.checks
        } else {
            &self.checks
        }
    }
}

impl Real {
    /// A real at `address` with every other key at its default: the
    /// service's port, weight 1, nat, no thresholds, no checks.
    pub fn at(address: Ipv4Addr) -> Real {
        Real {
            address,
            port: None,
            weight: default_weight(),
            forward: Forward::default(),
            u_threshold: 0,
            l_threshold: 0,
            drained_from: None,
            checks: Vec::new(),
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
        }
    }
}

impl Service {
    /// A service with no address, no reals and every key at its default;
    /// its identity (vip, port, protocol or mark) is the caller's to set.
    pub fn unnamed() -> Service {
        Service {
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
            checks: Vec::new(),
            quorum: default_quorum(),
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry_server: None,
            sorry_server_inhibit: false,
            alpha: false,
            omega: false,
        }
    }

    /// Whether any real of the service is health-checked.
    pub fn is_checked(&self) -> bool {
        self.reals
            .iter()
            .any(|real| !real.checks_in(self).is_empty())
    }
}

/// One group of VIP:port:protocol matches that a mark service serves: rvs's
/// stand-in for the iptables rules that set a firewall mark for IPVS.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub mark: u32,
    pub matches: Vec<MarkMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MarkMatch {
    #[serde(deserialize_with = "ipv4")]
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

fn unspecified() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

impl Config {
    /// Index of the port named `name` in [`Config::ports`], which is also the
    /// order in which rvsd hands the ports to DPDK.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|port| port.name == name)
    }

    /// CPU the worker's lcore is pinned to.
    pub fn worker_cpu(&self, worker: &Worker) -> u32 {
        worker.cpu.unwrap_or(worker.lcore)
    }

    /// CPU the main lcore is pinned to.
    pub fn main_cpu(&self) -> u32 {
        self.eal.main_cpu.unwrap_or(self.eal.main_lcore)
    }

    /// Index of the port a route sends through: its `port`, or else the first
    /// port with a connected subnet holding `via`. Always `Some` on a
    /// validated config.
    pub fn route_port(&self, route: &Route) -> Option<usize> {
        match &route.port {
            Some(name) => self.port_index(name),
            None => self.ports.iter().position(|port| port.connects(route.via)),
        }
    }

    /// Number of RX queues of port `port` (an index): the workers poll queues
    /// 0..n-1 of it.
    pub fn rx_queues(&self, port: usize) -> u16 {
        let name = &self.ports[port].name;
        let count = self
            .workers
            .iter()
            .flat_map(|worker| &worker.queues)
            .filter(|queue| &queue.port == name)
            .count();
        u16::try_from(count).unwrap_or(u16::MAX)
    }

    /// Number of TX queues of every port: one per worker.
    pub fn tx_queues(&self) -> u16 {
        u16::try_from(self.workers.len()).unwrap_or(u16::MAX)
    }

    /// The mbufs the configuration can hold at once: every RX and TX ring
    /// full, every worker's mempool cache full, a burst in flight per port in
    /// each direction per worker, and every worker's ARP queue full.
    pub fn mbufs_needed(&self) -> u64 {
        let workers = self.workers.len() as u64;
        // Per kernel interface its two descriptor rings; once, the rings
        // from every worker to the kernel and the one back.
        let kernels = self
            .ports
            .iter()
            .filter(|p| p.kernel_interface.is_some())
            .count() as u64;
        let kernel = if kernels == 0 {
            0
        } else {
            kernels * 2 * u64::from(KERNEL_DESCRIPTORS)
                + (workers + 1) * KERNEL_RING as u64
                + 2 * validate::BURST * kernels
        };
        let rings: u64 = (0..self.ports.len())
            .map(|index| {
                let port = &self.ports[index];
                u64::from(self.rx_queues(index)) * u64::from(port.rx_descriptors)
                    + workers * u64::from(port.tx_descriptors)
            })
            .sum();
        let per_worker = u64::from(self.mempool.cache)
            + 2 * validate::BURST * self.ports.len() as u64
            + u64::from(self.limits.arp_pending);
        rings + workers * per_worker + kernel
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(
            deserializer,
            "an IPv4 prefix in CIDR form, like 10.0.0.0/24",
        )
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        as_text(self, serializer)
    }
}

/// An IPv4 address in dotted-quad form (serde's own impl says only "invalid
/// IP address syntax").
fn ipv4_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Ipv4Addr>, D::Error> {
    ipv4(deserializer).map(Some)
}

fn ipv4_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Ipv4Addr>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|_| serde::de::Error::custom(format!("invalid IPv4 address \"{text}\"")))
        })
        .collect()
}

fn ipv4<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ipv4Addr, D::Error> {
    struct Addr(Ipv4Addr);
    impl FromStr for Addr {
        type Err = String;
        fn from_str(text: &str) -> Result<Self, String> {
            text.parse()
                .map(Addr)
                .map_err(|_| format!("invalid IPv4 address \"{text}\""))
        }
    }
    from_text(deserializer, "an IPv4 address like 10.0.0.1").map(|Addr(addr)| addr)
}
