//! The control protocol between rvsd and its clients (rvsadm, rvsctl).
//!
//! Newline-delimited JSON over a Unix stream socket. Each request is one line
//!
//! ```text
//! {"v":1,"id":7,"cmd":{"op":"add_service","service":{...}}}
//! ```
//!
//! and gets exactly one response line carrying the same `id`:
//!
//! ```text
//! {"v":1,"id":7,"ok":true,"result":null}
//! {"v":1,"id":7,"ok":false,"error":"Service already exists"}
//! ```
//!
//! Promises:
//! - The wire format is defined by the serde types below, not by any Rust
//!   struct layout of the daemon; fields are named, enums are tagged by
//!   lower-case names, addresses are dotted quads.
//! - `v` is [`VERSION`]. A daemon refuses any other version with an error
//!   response; a later version may add optional fields and new commands, but
//!   never changes the meaning of an existing one without bumping `v`.
//! - Requests are read strictly: every object has exactly the fields its
//!   type names, at every depth (a command without fields takes none:
//!   `{"op":"clear","dry_run":true}` is refused), and no object has a key
//!   twice. A refused request changes nothing.
//! - A request line is at most [`MAX_REQUEST`] bytes including its newline.
//!   Responses have no such bound (a service listing can be large); a
//!   connection listing is paged by [`Command::ListConnections`] instead.
//! - Responses come back in request order, so a client may pipeline.
//! - Error strings are for people. Where ipvsadm has a message for the same
//!   condition, the daemon uses ipvsadm's words ([`errors`]), so that rvsadm
//!   prints what ipvsadm would.

use crate::config;
pub use crate::config::{SyncDaemon, SyncState};
pub use crate::model::{Forward, Protocol, Timeouts};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::net::Ipv4Addr;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// Largest request line, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Largest page a [`Command::ListConnections`] may ask for; a daemon clamps
/// larger limits to this.
pub const MAX_CONNECTION_PAGE: u32 = 10_000;

/// Messages ipvsadm prints for conditions the daemon detects; the daemon
/// returns these exact strings as [`Response::error`].
pub mod errors {
    pub const SERVICE_EXISTS: &str = "Service already exists";
    /// `-A`/`-E` with a scheduler the daemon does not know.
    pub const SCHEDULER_NOT_FOUND: &str = "Scheduler or persistence engine not found";
    /// `-E`, `-D`, `-Z`, `-L service` on a missing service.
    pub const NO_SUCH_SERVICE: &str = "No such service";
    /// `-a`, `-e`, `-d` on a missing service.
    pub const SERVICE_NOT_DEFINED: &str = "Service not defined";
    pub const DESTINATION_EXISTS: &str = "Destination already exists";
    pub const NO_SUCH_DESTINATION: &str = "No such destination";
    pub const PERMISSION_DENIED: &str = "Permission denied (you must be root)";
    pub const INVALID_OPERATION: &str =
        "Invalid operation.  Possibly wrong module version, address not unicast, ...";
    /// A table is full (services, reals, local addresses).
    pub const NO_MEMORY: &str = "Memory allocation problem";
    /// `--start-daemon` of a state whose daemon runs (the kernel's EEXIST).
    pub const DAEMON_RUNNING: &str = "Daemon has already run";
    /// `--stop-daemon` of a state whose daemon does not run (ESRCH).
    pub const NO_DAEMON: &str = "No daemon is running";
}

/// One request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u32,
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    pub cmd: Command,
}

impl Request {
    pub fn new(id: u64, cmd: Command) -> Self {
        Request {
            v: VERSION,
            id,
            cmd,
        }
    }
}

/// One response line: `result` when `ok`, else `error`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    /// The request's id; 0 when the request was too malformed to carry one.
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn success(id: u64, result: Value) -> Self {
        Response {
            v: VERSION,
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn failure(id: u64, error: impl Into<String>) -> Self {
        Response {
            v: VERSION,
            id,
            ok: false,
            result: None,
            error: Some(error.into()),
        }
    }

    /// The response as `Ok(result)` or `Err(error)`.
    pub fn into_result(self) -> Result<Value, String> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(self
                .error
                .unwrap_or_else(|| "error without a message".to_owned()))
        }
    }
}

/// What a request asks for. Tagged by `op`, e.g. `{"op":"clear"}`.
///
/// The result of each command, in `Response::result`, is noted per variant;
/// "null" for commands that only change state. A command takes exactly its
/// fields: the ones without any are empty struct variants (`Clear {}`, still
/// `{"op":"clear"}` on the wire) so that `deny_unknown_fields` refuses
/// `{"op":"clear","dry_run":true}` as it refuses an unknown field anywhere
/// else; a unit variant would ignore it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Daemon and protocol versions. Result: [`VersionInfo`].
    Version {},
    /// `ipvsadm -A`. Result: null.
    AddService { service: ServiceSpec },
    /// `ipvsadm -E`: replaces every setting of the service (ipvsadm resets
    /// omitted options to their defaults); reals and counters stay. Result: null.
    EditService { service: ServiceSpec },
    /// `ipvsadm -D`. Result: null.
    DeleteService { service: ServiceKey },
    /// `ipvsadm -C`: every service, real and local address. Result: null.
    Clear {},
    /// `ipvsadm -a`. Result: null.
    AddReal { service: ServiceKey, real: RealSpec },
    /// `ipvsadm -e`: replaces every setting of the real. Result: null.
    EditReal { service: ServiceKey, real: RealSpec },
    /// `rvsctl drain`: the real's weight to 0, the weight it had kept for
    /// `Undrain`, its persistence templates no longer followed. Draining a
    /// drained real changes nothing. Result: null.
    Drain {
        service: ServiceKey,
        addr: Ipv4Addr,
        port: u16,
    },
    /// `rvsctl undrain`: the weight the real had before `Drain`. Result:
    /// null.
    Undrain {
        service: ServiceKey,
        addr: Ipv4Addr,
        port: u16,
    },
    /// `ipvsadm -d`. Result: null.
    DeleteReal {
        service: ServiceKey,
        addr: Ipv4Addr,
        port: u16,
        /// Also end the real's established connections (`rvsctl
        /// remove-real --purge`). Without it, as in IPVS, they continue until
        /// they close or expire.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        purge: bool,
    },
    /// `ipvsadm -L`: every service, or the one named. Result:
    /// `[ServiceInfo]`, in the daemon's order (rvsadm sorts).
    ListServices {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<ServiceKey>,
    },
    /// `ipvsadm -L -c`, one page: up to `limit` entries (clamped to
    /// [`MAX_CONNECTION_PAGE`]) starting at `cursor` (none: the start).
    /// Result: [`ConnPage`]; its `next` is the cursor of the following page,
    /// none at the end. A cursor is opaque to clients; a listing taken while
    /// traffic flows may miss or repeat connections that move meanwhile.
    ListConnections {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<u64>,
        limit: u32,
    },
    /// `ipvsadm -Z`: counters of one service and its reals, or of all.
    /// Result: null.
    Zero {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<ServiceKey>,
    },
    /// `ipvsadm --set tcp tcpfin udp`; 0 leaves a timeout unchanged.
    /// Result: null.
    SetTimeouts { tcp: u32, tcpfin: u32, udp: u32 },
    /// `ipvsadm -L --timeout`. Result: [`Timeouts`].
    GetTimeouts {},
    /// DPVS `ipvsadm --add-laddr`: a FullNAT local address for a service.
    /// Result: null.
    AddLaddr {
        service: ServiceKey,
        laddr: LaddrSpec,
    },
    /// DPVS `ipvsadm --del-laddr`. Result: null.
    DelLaddr {
        service: ServiceKey,
        laddr: LaddrSpec,
    },
    /// DPVS `ipvsadm --get-laddr`: of one service or of all. Result:
    /// `[LaddrInfo]`.
    GetLaddr {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<ServiceKey>,
    },
    /// Totals over all services. Result: [`GlobalStats`].
    Stats {},
    /// `rvsctl apply` of a file too large for one request line: appends
    /// `text` to upload `upload`, or starts a new upload when none. Uploads
    /// are bounded in number and size and dropped when left idle (see
    /// rvsd's docs); [`Command::ApplyConfig`] consumes one. Result:
    /// [`Upload`].
    UploadConfig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<u64>,
        text: String,
    },
    /// `rvsctl apply FILE`: parses a whole YAML configuration (`text`, or
    /// the finished upload `upload`; exactly one), checks that it changes
    /// only what may change while rvsd runs (services, timeouts, fullnat,
    /// sync), validates it as a whole and, unless `dry_run`, adopts it in
    /// one step.
    /// Errors name `file`, the line and the key path. Result:
    /// [`ApplyReport`].
    ApplyConfig {
        /// How errors and the report name the text, e.g. its path.
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<u64>,
        #[serde(default)]
        dry_run: bool,
    },
    /// `rvsctl reload` (what SIGHUP does): re-reads rvsd's own config file
    /// and applies it as [`Command::ApplyConfig`] does. Result:
    /// [`ApplyReport`].
    ReloadConfig {
        #[serde(default)]
        dry_run: bool,
    },
    /// `rvsctl dump`: the running configuration as YAML that
    /// [`Command::ApplyConfig`] takes back unchanged. Result: [`ConfigDump`].
    DumpConfig {},
    /// `rvsctl ports`. Result: `[PortView]`.
    ListPorts {},
    /// `rvsctl workers`. Result: `[WorkerView]`.
    ListWorkers {},
    /// `rvsctl routes`: connected subnets, then static routes. Result:
    /// `[RouteView]`.
    ListRoutes {},
    /// `ipvsadm --start-daemon`: runs the sync daemon of `state` with
    /// `daemon`'s settings (config `sync.master` or `sync.backup`),
    /// refused with [`errors::DAEMON_RUNNING`] while that one runs; the
    /// other may run at once. Result: null.
    StartDaemon {
        state: SyncState,
        daemon: SyncDaemon,
    },
    /// `ipvsadm --stop-daemon`: stops the sync daemon of `state`, refused
    /// with [`errors::NO_DAEMON`] if it does not run. Result: null.
    StopDaemon { state: SyncState },
    /// `ipvsadm -L --daemon`: the sync daemons that run, master first.
    /// Result: `[DaemonInfo]`.
    ListDaemons {},
    /// `rvsctl addresses`: every address rvs may serve (its ports' own,
    /// the VIPs, the floating addresses), by address, and whether rvs
    /// holds each now. Result: `[AddressInfo]`.
    Addresses {},
    /// `rvsctl neighbours`: next hops resolved by ARP, merged over the
    /// workers. Result: `[NeighbourView]`.
    ListNeighbours {},
    /// `rvsctl health`: every health-checked real, its checkers and their
    /// last results. Result: [`crate::health::HealthReport`].
    Health {},
    /// `rvsadm -R`: the commands above that change the configuration (and
    /// `zero`), in order, as one unit: each is refused, or not, exactly as
    /// on its own against what the ones before it left, and what is
    /// accepted is adopted in one step. The commands are `commands`, or the
    /// finished upload `upload` (see [`Command::UploadConfig`]) holding them
    /// as a JSON array, for more than a request line holds; not both.
    /// Result: [`BatchReport`].
    Batch {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        commands: Vec<Command>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<u64>,
    },
}

impl ServiceKey {
    /// The index in `config.services` of the service this key names.
    pub fn index_in(&self, config: &config::Config) -> Option<usize> {
        config
            .services
            .iter()
            .position(|s| ServiceKey::of(s) == *self)
    }

    /// The identity of a configured service: `-t/-u VIP:PORT`, or `-f MARK`.
    pub fn of(service: &config::Service) -> Self {
        match (service.mark, service.protocol) {
            (Some(mark), _) => ServiceKey::Mark(mark),
            (None, Some(Protocol::Udp)) => ServiceKey::udp(service.vip, service.port),
            // Validation refuses a service with neither mark nor protocol.
            (None, _) => ServiceKey::tcp(service.vip, service.port),
        }
    }
}

/// Identity of a virtual service: `(protocol, vip, port)` or a firewall mark.
///
/// On the wire `{"protocol":"tcp","addr":"10.0.0.1","port":80}` or
/// `{"protocol":"fwmark","mark":5}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ServiceKeyRepr", into = "ServiceKeyRepr")]
pub enum ServiceKey {
    Inet {
        protocol: Protocol,
        addr: Ipv4Addr,
        port: u16,
    },
    /// A firewall-mark service; marks are 1..=u32::MAX.
    Mark(u32),
}

impl ServiceKey {
    pub fn tcp(addr: Ipv4Addr, port: u16) -> Self {
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr,
            port,
        }
    }

    pub fn udp(addr: Ipv4Addr, port: u16) -> Self {
        ServiceKey::Inet {
            protocol: Protocol::Udp,
            addr,
            port,
        }
    }

    /// The service port; 0 for a mark service.
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Inet { port, .. } => *port,
            ServiceKey::Mark(_) => 0,
        }
    }

    /// ipvsadm's sort key: mark, protocol number, address, port. Address
    /// services (mark 0) come before mark services.
    pub fn sort_key(&self) -> (u32, u8, u32, u16) {
        match *self {
            ServiceKey::Inet {
                protocol,
                addr,
                port,
            } => (0, protocol.number(), u32::from(addr), port),
            // ipvsadm gives mark services protocol TCP and address 0.
            ServiceKey::Mark(mark) => (mark, Protocol::Tcp.number(), 0, 0),
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `tcp 10.0.0.1:80` or `fwmark 5`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Inet {
                protocol,
                addr,
                port,
            } => {
                let name = match protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                write!(f, "{name} {addr}:{port}")
            }
            ServiceKey::Mark(mark) => write!(f, "fwmark {mark}"),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceKeyRepr {
    protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addr: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<u32>,
}

impl TryFrom<ServiceKeyRepr> for ServiceKey {
    type Error = String;

    fn try_from(repr: ServiceKeyRepr) -> Result<Self, String> {
        let protocol = match repr.protocol.as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "fwmark" => {
                if repr.addr.is_some() || repr.port.is_some() {
                    return Err("a fwmark service has `mark` only, no `addr` or `port`".into());
                }
                return match repr.mark {
                    Some(0) => Err("fwmark 0 is not a mark; marks are 1..4294967295".into()),
                    Some(mark) => Ok(ServiceKey::Mark(mark)),
                    None => Err("a fwmark service needs `mark`".into()),
                };
            }
            other => {
                return Err(format!(
                    "unknown service protocol `{other}`; expected tcp, udp or fwmark"
                ))
            }
        };
        if repr.mark.is_some() {
            return Err(format!("a {} service has no `mark`", repr.protocol));
        }
        let addr = repr
            .addr
            .ok_or_else(|| format!("a {} service needs `addr`", repr.protocol))?;
        let port = repr
            .port
            .ok_or_else(|| format!("a {} service needs `port`", repr.protocol))?;
        Ok(ServiceKey::Inet {
            protocol,
            addr,
            port,
        })
    }
}

impl From<ServiceKey> for ServiceKeyRepr {
    fn from(key: ServiceKey) -> Self {
        match key {
            ServiceKey::Inet {
                protocol,
                addr,
                port,
            } => ServiceKeyRepr {
                protocol: match protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                }
                .to_owned(),
                addr: Some(addr),
                port: Some(port),
                mark: None,
            },
            ServiceKey::Mark(mark) => ServiceKeyRepr {
                protocol: "fwmark".to_owned(),
                addr: None,
                port: None,
                mark: Some(mark),
            },
        }
    }
}

/// Every setting of a virtual service, as `ipvsadm -A`/`-E` sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    /// IPVS scheduler name (`rr`, `wlc`, `mh`...); the daemon refuses names
    /// it does not implement with [`errors::SCHEDULER_NOT_FOUND`].
    pub scheduler: String,
    /// Scheduler flags by ipvsadm's names (`sh-fallback`, `mh-port`,
    /// `flag-1`...), without repeats.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Persistence timeout in seconds; none: not persistent.
    #[serde(default)]
    pub persistent: Option<u32>,
    /// Persistence granularity; none: /32 (255.255.255.255).
    #[serde(default)]
    pub netmask: Option<Ipv4Addr>,
    /// One-packet scheduling (UDP and mark services only).
    #[serde(default)]
    pub ops: bool,
}

impl ServiceSpec {
    /// ipvsadm's defaults: wlc, not persistent.
    pub fn new(key: ServiceKey) -> Self {
        ServiceSpec {
            key,
            scheduler: "wlc".to_owned(),
            flags: Vec::new(),
            persistent: None,
            netmask: None,
            ops: false,
        }
    }
}

/// Every setting of a real, as `ipvsadm -a`/`-e` sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealSpec {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// ipvsadm's words: `masq`, `route`, `tunnel`, `fullnat`.
    #[serde(with = "crate::model::forward_on_the_wire")]
    pub forward: Forward,
    /// 0..=65535; 0 quiesces the real.
    pub weight: u32,
    /// Upper connection threshold; 0: none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold; 0: none.
    #[serde(default)]
    pub l_threshold: u32,
}

impl RealSpec {
    /// A configured real of a service on `service_port`, as the protocol
    /// describes it.
    pub fn of(real: &config::Real, service_port: u16) -> Self {
        RealSpec {
            addr: real.address,
            port: real.port_or(service_port),
            forward: real.forward,
            weight: real.weight,
            u_threshold: real.u_threshold,
            l_threshold: real.l_threshold,
        }
    }
}

/// A FullNAT local address of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaddrSpec {
    pub addr: Ipv4Addr,
    /// The port the address lives on (DPVS `-F`); none: the port whose
    /// subnet holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
}

/// Cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl std::ops::Add for Stats {
    type Output = Stats;

    fn add(self, other: Stats) -> Stats {
        Stats {
            conns: self.conns + other.conns,
            in_pkts: self.in_pkts + other.in_pkts,
            out_pkts: self.out_pkts + other.out_pkts,
            in_bytes: self.in_bytes + other.in_bytes,
            out_bytes: self.out_bytes + other.out_bytes,
        }
    }
}

impl Stats {
    /// The counts since `base` was taken (`ipvsadm -Z`).
    pub fn since(self, base: Stats) -> Stats {
        Stats {
            conns: self.conns.saturating_sub(base.conns),
            in_pkts: self.in_pkts.saturating_sub(base.in_pkts),
            out_pkts: self.out_pkts.saturating_sub(base.out_pkts),
            in_bytes: self.in_bytes.saturating_sub(base.in_bytes),
            out_bytes: self.out_bytes.saturating_sub(base.out_bytes),
        }
    }
}

/// Estimated rates per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl std::ops::Add for Rates {
    type Output = Rates;

    fn add(self, other: Rates) -> Rates {
        Rates {
            cps: self.cps + other.cps,
            inpps: self.inpps + other.inpps,
            outpps: self.outpps + other.outpps,
            inbps: self.inbps + other.inbps,
            outbps: self.outbps + other.outbps,
        }
    }
}

/// A service in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub spec: ServiceSpec,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub rates: Rates,
    #[serde(default)]
    pub reals: Vec<RealInfo>,
    /// FullNAT local addresses, so that `rvsadm -S` can save them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub laddrs: Vec<LaddrSpec>,
}

/// A real in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealInfo {
    pub spec: RealSpec,
    #[serde(default)]
    pub active_conns: u32,
    #[serde(default)]
    pub inact_conns: u32,
    #[serde(default)]
    pub persist_conns: u32,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub rates: Rates,
}

/// One tracked connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnEntry {
    pub protocol: Protocol,
    pub client: Ipv4Addr,
    pub client_port: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub real: Ipv4Addr,
    pub real_port: u16,
    /// IPVS's state name: `ESTABLISHED`, `SYN_RECV`, `FIN_WAIT`,
    /// `TIME_WAIT`, `CLOSE`, ... for TCP, `UDP` for UDP, `NONE` for a
    /// persistence template.
    pub state: String,
    /// Seconds until the entry expires.
    pub expires_secs: u32,
}

/// A page of [`Command::ListConnections`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnPage {
    pub entries: Vec<ConnEntry>,
    /// Cursor of the next page; none: this was the last.
    #[serde(default)]
    pub next: Option<u64>,
}

/// Local addresses of one service in [`Command::GetLaddr`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaddrInfo {
    pub service: ServiceKey,
    pub laddrs: Vec<LaddrEntry>,
}

/// One local address and its use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaddrEntry {
    pub addr: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Times a port was found taken when allocating (DPVS's CONFLICTS).
    #[serde(default)]
    pub conflicts: u64,
    /// Connections using the address now.
    #[serde(default)]
    pub conns: u64,
}

/// Result of [`Command::Stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalStats {
    pub stats: Stats,
    pub rates: Rates,
    /// Connections tracked now, all workers together.
    #[serde(default)]
    pub connections: u64,
}

/// Result of [`Command::Version`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// rvsd's version, e.g. `0.1.0`.
    pub daemon: String,
    pub protocol: u32,
}

/// Result of [`Command::UploadConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Names the upload in the next [`Command::UploadConfig`] and in
    /// [`Command::ApplyConfig`].
    pub upload: u64,
    /// Bytes received so far.
    pub bytes: u64,
}

/// Result of [`Command::ApplyConfig`] and [`Command::ReloadConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The file as the request (or rvsd, on reload) named it.
    pub file: String,
    /// What the file changes against the running state.
    pub diff: ConfigDiff,
    /// True when the change was adopted (one new snapshot for the workers);
    /// false for a dry run or an empty diff.
    pub applied: bool,
}

/// What one configuration changes against another. Services are known by
/// (protocol, vip, port), reals by (address, port); settings are compared
/// key by key with the names they have in the YAML file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigDiff {
    /// Changed settings outside services: `timeouts.tcp`, `fullnat.port_min`...
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services_added: Vec<ServiceSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services_removed: Vec<ServiceSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services_changed: Vec<ServiceChange>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.services_added.is_empty()
            && self.services_removed.is_empty()
            && self.services_changed.is_empty()
    }
}

/// One setting's old and new value, as YAML scalars (`none` for absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChange {
    pub key: String,
    pub from: String,
    pub to: String,
}

/// A service added or removed whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub service: ServiceKey,
    pub scheduler: String,
    pub reals: u32,
}

/// A service present on both sides whose settings or reals differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: ServiceKey,
    /// `scheduler`, `local_addresses`...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<SettingChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reals_added: Vec<RealSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reals_removed: Vec<RealSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reals_changed: Vec<RealChange>,
    /// The reals kept are listed in another order (schedulers scan them in
    /// list order).
    #[serde(default)]
    pub reals_reordered: bool,
}

/// A real present on both sides whose settings differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealChange {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// `weight`, `forward`...
    pub settings: Vec<SettingChange>,
}

/// Result of [`Command::DumpConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDump {
    /// The file rvsd was started with, when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub yaml: String,
}

/// A port in [`Command::ListPorts`], as configured and as DPDK reported
/// it at start (the MAC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    /// PCI address or vdev string, as configured.
    pub device: String,
    pub mac: String,
    pub mtu: u16,
    /// CIDR, e.g. `10.99.1.1/24`.
    pub addresses: Vec<String>,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
}

/// A worker in [`Command::ListWorkers`], with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    /// Position in `workers` of the config.
    pub index: u32,
    pub lcore: u32,
    pub cpu: u32,
    /// RX queues polled, as `port:queue`.
    pub queues: Vec<String>,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub conns: u64,
    pub conns_created: u64,
    pub conns_expired: u64,
    /// Packets handed to another worker (the connection is that worker's).
    pub redirected: u64,
    /// Packets dropped, all reasons together; `drop_reasons` the non-zero
    /// ones.
    pub drops: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_reasons: Vec<(String, u64)>,
    /// Rounds of the worker's loop, and those that found work.
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub busy_polls: u64,
}

/// A route in [`Command::ListRoutes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// CIDR destination.
    pub prefix: String,
    /// Next hop; none for a connected subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
    /// The port packets leave through.
    pub port: String,
    pub kind: RouteKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// A port's own subnet: neighbours are reached directly.
    Connected,
    /// From `routes` of the config.
    Static,
}

/// A resolved neighbour in [`Command::ListNeighbours`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourView {
    pub addr: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The port it was learned on.
    pub port: String,
    /// Seconds since an ARP packet last confirmed it (the freshest worker).
    pub age_secs: u32,
    /// The workers that know it.
    pub workers: Vec<u16>,
}

/// A sync daemon in [`Command::ListDaemons`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub state: SyncState,
    pub daemon: SyncDaemon,
}

/// An address in [`Command::Addresses`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInfo {
    pub address: Ipv4Addr,
    pub kind: AddressKind,
    /// The kernel interface the address was seen on, or else where it is
    /// expected (its port's kernel interface); none where there is none.
    #[serde(default)]
    pub interface: Option<String>,
    /// rvs serves the address now: answers ARP for it and forwards its
    /// traffic. A port's own address always; a VIP or floating address
    /// always with `ownership: static`, else while a kernel interface
    /// holds it.
    pub held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    /// A virtual service address (of a service, or of a mark group a
    /// service serves).
    Vip,
    /// A port's floating address (`ports[].floating_addresses`).
    Floating,
    /// A port's own address (`ports[].addresses`), FullNAT local addresses
    /// included.
    Port,
}

impl AddressKind {
    /// `vip`, `floating` or `port`, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AddressKind::Vip => "vip",
            AddressKind::Floating => "floating",
            AddressKind::Port => "port",
        }
    }
}

/// Result of [`Command::Batch`]: the commands refused (and so skipped), by
/// their index in the batch, with why in ipvsadm's words or the YAML
/// file's, as each would have been alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<BatchRefusal>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRefusal {
    pub index: u32,
    pub error: String,
}

/// The commands of a [`Command::Batch`] upload: a JSON array read as
/// strictly as a request (exactly each command's fields, no key twice).
pub fn decode_commands(text: &str) -> Result<Vec<Command>, String> {
    let envelope =
        Envelope::scan(text.as_bytes()).map_err(|err| format!("batch: not JSON: {err}"))?;
    if envelope.kind != "an array" {
        return Err(format!(
            "batch: expected a JSON array of commands, found {}",
            envelope.kind
        ));
    }
    if let Some(key) = envelope.duplicate {
        return Err(format!("batch: duplicate key `{key}`"));
    }
    serde_json::from_str(text).map_err(|err| format!("batch: {err}"))
}

/// Why a request line could not be turned into a [`Request`]. The message
/// says what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The request's id when the line got far enough to carry one, else 0.
    pub id: u64,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one request line (without its newline).
///
/// Checks in order: JSON syntax, an object, `v` equal to [`VERSION`], no
/// key twice in any object (JSON leaves duplicates to the reader; a last
/// one winning would let `"cmd"` twice run the second), then the command,
/// which takes exactly its fields; a failure after the id has been read
/// carries the id, so the client can match the error to its request.
pub fn decode_request(line: &[u8]) -> Result<Request, DecodeError> {
    let envelope = Envelope::scan(line).map_err(|err| DecodeError {
        id: 0,
        message: format!("malformed request: not JSON: {err}"),
    })?;
    if envelope.kind != "an object" {
        return Err(DecodeError {
            id: 0,
            message: format!(
                "malformed request: expected a JSON object {{\"v\":{VERSION},\"id\":N,\"cmd\":{{...}}}}, found {}",
                envelope.kind
            ),
        });
    }
    let id = envelope.id.unwrap_or(0);
    match &envelope.version {
        Some(Value::Number(v)) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(other) => {
            return Err(DecodeError {
                id,
                message: format!(
                    "unsupported protocol version {other}; this rvsd speaks version {VERSION}"
                ),
            })
        }
        None => {
            return Err(DecodeError {
                id,
                message: format!("malformed request: missing `v` (protocol version {VERSION})"),
            })
        }
    }
    if let Some(key) = envelope.duplicate {
        return Err(DecodeError {
            id,
            message: format!("invalid request: duplicate key `{key}`"),
        });
    }
    serde_json::from_slice(line).map_err(|err| DecodeError {
        id,
        message: format!("invalid request: {}", without_position(&err)),
    })
}

/// serde_json's message without the " at line L column C" it appends: a
/// request is one line, and the message names the field.
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// What a request line's first pass finds: the kind of its top-level
/// value, its `v` and `id`, and the first key given twice in any object.
#[derive(Default)]
struct Envelope {
    kind: &'static str,
    version: Option<Value>,
    id: Option<u64>,
    /// Dotted path of the first duplicate key, e.g. `cmd.service.addr`.
    duplicate: Option<String>,
}

impl Envelope {
    fn scan(line: &[u8]) -> Result<Envelope, serde_json::Error> {
        let mut envelope = Envelope::default();
        let mut de = serde_json::Deserializer::from_slice(line);
        serde::de::DeserializeSeed::deserialize(
            Scan {
                path: None,
                envelope: &mut envelope,
            },
            &mut de,
        )?;
        de.end()?;
        Ok(envelope)
    }
}

/// Walks one JSON value keeping nothing but what [`Envelope`] records;
/// `path` is where the value sits (none: the top level).
struct Scan<'a> {
    path: Option<&'a str>,
    envelope: &'a mut Envelope,
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl Scan<'_> {
    fn found(self, kind: &'static str) {
        if self.path.is_none() {
            self.envelope.kind = kind;
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.found("null");
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.found("a boolean");
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.found("a number");
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.found("a number");
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.found("a number");
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.found("a string");
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let path = format!("{}[]", self.path.unwrap_or(""));
        let path = path.as_str();
        if self.path.is_none() {
            self.envelope.kind = "an array";
        }
        while seq
            .next_element_seed(Scan {
                path: Some(path),
                envelope: self.envelope,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let top = self.path.is_none();
        if top {
            self.envelope.kind = "an object";
        }
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = match self.path {
                None | Some("") => key.clone(),
                Some(parent) => format!("{parent}.{key}"),
            };
            if keys.contains(&key) && self.envelope.duplicate.is_none() {
                self.envelope.duplicate = Some(path.clone());
            }
            match (top, key.as_str()) {
                (true, "v") => self.envelope.version = Some(map.next_value()?),
                (true, "id") => {
                    let id: Value = map.next_value()?;
                    self.envelope.id = self.envelope.id.or(id.as_u64());
                }
                _ => map.next_value_seed(Scan {
                    path: Some(&path),
                    envelope: self.envelope,
                })?,
            }
            keys.insert(key);
        }
        Ok(())
    }
}

/// Encodes a request as one line, newline included.
pub fn encode_request(request: &Request) -> Vec<u8> {
    let mut line = serde_json::to_vec(request).expect("a Request always serialises");
    line.push(b'\n');
    line
}

/// Encodes a success whose result is already JSON (encoded off the thread
/// that sends it) as one line, newline included: the same line
/// [`encode_response`] writes for [`Response::success`] of that result.
pub fn encode_encoded_success(id: u64, result: &serde_json::value::RawValue) -> Vec<u8> {
    let mut line = format!(r#"{{"v":{VERSION},"id":{id},"ok":true,"result":"#).into_bytes();
    line.extend_from_slice(result.get().as_bytes());
    line.extend_from_slice(b"}\n");
    line
}

/// Encodes a response as one line, newline included.
pub fn encode_response(response: &Response) -> Vec<u8> {
    let mut line = serde_json::to_vec(response).expect("a Response always serialises");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vip() -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, 1)
    }

    fn real() -> RealSpec {
        RealSpec {
            addr: Ipv4Addr::new(192, 168, 1, 2),
            port: 80,
            forward: Forward::Nat,
            weight: 3,
            u_threshold: 10,
            l_threshold: 5,
        }
    }

    fn every_command() -> Vec<Command> {
        let key = ServiceKey::tcp(vip(), 80);
        let mut spec = ServiceSpec::new(key);
        spec.persistent = Some(360);
        spec.netmask = Some(Ipv4Addr::new(255, 255, 255, 0));
        spec.flags = vec!["sh-port".into()];
        let laddr = LaddrSpec {
            addr: Ipv4Addr::new(192, 168, 1, 254),
            ifname: Some("dpdk0".into()),
        };
        vec![
            Command::Version {},
            Command::AddService {
                service: spec.clone(),
            },
            Command::EditService {
                service: ServiceSpec::new(ServiceKey::Mark(7)),
            },
            Command::DeleteService {
                service: ServiceKey::udp(vip(), 53),
            },
            Command::Clear {},
            Command::AddReal {
                service: key,
                real: real(),
            },
            Command::EditReal {
                service: key,
                real: real(),
            },
            Command::DeleteReal {
                service: key,
                addr: Ipv4Addr::new(192, 168, 1, 2),
                port: 80,
                purge: false,
            },
            Command::DeleteReal {
                service: key,
                addr: Ipv4Addr::new(192, 168, 1, 2),
                port: 80,
                purge: true,
            },
            Command::ListServices { service: None },
            Command::ListServices { service: Some(key) },
            Command::ListConnections {
                cursor: None,
                limit: 1000,
            },
            Command::ListConnections {
                cursor: Some(u64::MAX),
                limit: 1,
            },
            Command::Zero { service: None },
            Command::Zero { service: Some(key) },
            Command::SetTimeouts {
                tcp: 30,
                tcpfin: 5,
                udp: 60,
            },
            Command::GetTimeouts {},
            Command::AddLaddr {
                service: key,
                laddr: laddr.clone(),
            },
            Command::DelLaddr {
                service: key,
                laddr,
            },
            Command::GetLaddr { service: None },
            Command::Stats {},
            Command::StartDaemon {
                state: SyncState::Master,
                daemon: SyncDaemon::on("eth1"),
            },
            Command::StartDaemon {
                state: SyncState::Backup,
                daemon: SyncDaemon {
                    syncid: 7,
                    sync_maxlen: 9000,
                    mcast_group: Ipv4Addr::new(239, 1, 2, 3),
                    mcast_port: 9999,
                    mcast_ttl: 2,
                    ..SyncDaemon::on("rvs-client")
                },
            },
            Command::StopDaemon {
                state: SyncState::Backup,
            },
            Command::ListDaemons {},
            Command::Batch {
                commands: vec![
                    Command::Clear {},
                    Command::AddReal {
                        service: key,
                        real: real(),
                    },
                ],
                upload: None,
            },
            Command::Batch {
                commands: Vec::new(),
                upload: Some(2),
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        for (index, cmd) in every_command().into_iter().enumerate() {
            let request = Request::new(index as u64, cmd);
            let line = encode_request(&request);
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(!line[..line.len() - 1].contains(&b'\n'));
            let decoded = decode_request(&line[..line.len() - 1]).unwrap();
            assert_eq!(decoded, request);
        }
    }

    #[test]
    fn wire_shapes_are_stable() {
        let request = Request::new(
            7,
            Command::AddReal {
                service: ServiceKey::tcp(vip(), 80),
                real: real(),
            },
        );
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"v":1,"id":7,"cmd":{"op":"add_real",
                "service":{"protocol":"tcp","addr":"10.0.0.1","port":80},
                "real":{"addr":"192.168.1.2","port":80,"forward":"masq","weight":3,
                        "u_threshold":10,"l_threshold":5}}})
        );
        assert_eq!(
            serde_json::to_value(ServiceKey::Mark(5)).unwrap(),
            json!({"protocol":"fwmark","mark":5})
        );
        assert_eq!(
            serde_json::to_value(Command::Clear {}).unwrap(),
            json!({"op":"clear"})
        );
        assert_eq!(
            serde_json::to_string(&Response::success(3, Value::Null)).unwrap(),
            r#"{"v":1,"id":3,"ok":true,"result":null}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::failure(3, "No such service")).unwrap(),
            r#"{"v":1,"id":3,"ok":false,"error":"No such service"}"#
        );
        assert_eq!(
            serde_json::to_value(Forward::FullNat).unwrap(),
            json!("fullnat")
        );
        assert_eq!(
            serde_json::to_value(Command::StartDaemon {
                state: SyncState::Master,
                daemon: SyncDaemon {
                    syncid: 1,
                    ..SyncDaemon::on("eth0")
                },
            })
            .unwrap(),
            json!({"op":"start_daemon","state":"master","daemon":{
                "mcast_interface":"eth0","syncid":1,"sync_maxlen":1472,
                "mcast_group":"224.0.0.81","mcast_port":8848,"mcast_ttl":1}})
        );
        assert_eq!(
            serde_json::to_value(Command::StopDaemon {
                state: SyncState::Backup
            })
            .unwrap(),
            json!({"op":"stop_daemon","state":"backup"})
        );
    }

    #[test]
    fn a_daemon_given_only_its_interface_takes_ipvsadm_s_defaults() {
        let line = br#"{"v":1,"id":2,"cmd":{"op":"start_daemon","state":"backup","daemon":{"mcast_interface":"eth1"}}}"#;
        assert_eq!(
            decode_request(line).unwrap().cmd,
            Command::StartDaemon {
                state: SyncState::Backup,
                daemon: SyncDaemon {
                    mcast_interface: "eth1".into(),
                    syncid: 0,
                    sync_maxlen: 1472,
                    mcast_group: Ipv4Addr::new(224, 0, 0, 81),
                    mcast_port: 8848,
                    mcast_ttl: 1,
                },
            }
        );
        for (line, error) in [
            (
                r#"{"v":1,"id":2,"cmd":{"op":"start_daemon","state":"primary","daemon":{"mcast_interface":"eth1"}}}"#,
                "invalid request: unknown variant `primary`, expected `master` or `backup`",
            ),
            (
                r#"{"v":1,"id":2,"cmd":{"op":"start_daemon","state":"master","daemon":{}}}"#,
                "invalid request: missing field `mcast_interface`",
            ),
            (
                r#"{"v":1,"id":2,"cmd":{"op":"start_daemon","state":"master","daemon":{"mcast_interface":"eth1","mcast_ttl":256}}}"#,
                "invalid request: invalid value: integer `256`, expected u8",
            ),
            (
                r#"{"v":1,"id":2,"cmd":{"op":"stop_daemon","state":"master","syncid":3}}"#,
                "invalid request: unknown field `syncid`, expected `state`",
            ),
        ] {
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert_eq!(err.message, error, "{line}");
        }
    }

    #[test]
    fn address_and_daemon_listings_round_trip() {
        let addresses = vec![
            AddressInfo {
                address: Ipv4Addr::new(10, 0, 0, 1),
                kind: AddressKind::Vip,
                interface: Some("rvs-client".into()),
                held: true,
            },
            AddressInfo {
                address: Ipv4Addr::new(10, 0, 0, 2),
                kind: AddressKind::Floating,
                interface: None,
                held: false,
            },
        ];
        let text = serde_json::to_string(&addresses).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap()[1],
            json!({"address":"10.0.0.2","kind":"floating","interface":null,"held":false})
        );
        assert_eq!(
            serde_json::from_str::<Vec<AddressInfo>>(&text).unwrap(),
            addresses
        );
        let daemons = vec![DaemonInfo {
            state: SyncState::Master,
            daemon: SyncDaemon::on("eth0"),
        }];
        let text = serde_json::to_string(&daemons).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<DaemonInfo>>(&text).unwrap(),
            daemons
        );
    }

    #[test]
    fn an_encoded_result_makes_the_same_line() {
        let result = json!({"file":"x.yaml","applied":true,"diff":{}});
        let raw = serde_json::value::to_raw_value(&result).unwrap();
        assert_eq!(
            encode_encoded_success(9, &raw),
            encode_response(&Response::success(9, result))
        );
    }

    #[test]
    fn listing_types_round_trip() {
        let info = ServiceInfo {
            spec: ServiceSpec::new(ServiceKey::udp(vip(), 53)),
            stats: Stats {
                conns: 1,
                in_pkts: 2,
                out_pkts: 3,
                in_bytes: 4,
                out_bytes: u64::MAX,
            },
            rates: Rates {
                cps: 5,
                inpps: 6,
                outpps: 7,
                inbps: 8,
                outbps: 9,
            },
            reals: vec![RealInfo {
                spec: real(),
                active_conns: 1,
                inact_conns: 2,
                persist_conns: 3,
                stats: Stats::default(),
                rates: Rates::default(),
            }],
            laddrs: vec![],
        };
        let text = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<ServiceInfo>(&text).unwrap(), info);
        let page = ConnPage {
            entries: vec![ConnEntry {
                protocol: Protocol::Tcp,
                client: Ipv4Addr::new(10, 0, 0, 2),
                client_port: 40000,
                vip: vip(),
                vport: 80,
                real: Ipv4Addr::new(192, 168, 1, 2),
                real_port: 80,
                state: "ESTABLISHED".into(),
                expires_secs: 899,
            }],
            next: Some(12),
        };
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<ConnPage>(&text).unwrap(), page);
    }

    #[test]
    fn decode_errors_are_precise() {
        let cases: &[(&str, u64, &str)] = &[
            ("hello", 0, "malformed request: not JSON: expected value at line 1 column 1"),
            ("[1,2]", 0, "malformed request: expected a JSON object {\"v\":1,\"id\":N,\"cmd\":{...}}, found an array"),
            (r#"{"id":4,"cmd":{"op":"clear"}}"#, 4, "malformed request: missing `v` (protocol version 1)"),
            (r#"{"v":2,"id":5,"cmd":{"op":"clear"}}"#, 5, "unsupported protocol version 2; this rvsd speaks version 1"),
            (r#"{"v":1,"id":6,"cmd":{"op":"explode"}}"#, 6, "invalid request: unknown variant `explode`, expected one of"),
            (r#"{"v":1,"id":8,"cmd":{"op":"delete_service","service":{"protocol":"sctp","addr":"1.2.3.4","port":1}}}"#, 8,
             "invalid request: unknown service protocol `sctp`; expected tcp, udp or fwmark"),
            (r#"{"v":1,"id":9,"cmd":{"op":"delete_service","service":{"protocol":"fwmark","mark":0}}}"#, 9,
             "invalid request: fwmark 0 is not a mark"),
            (r#"{"v":1,"id":10,"cmd":{"op":"clear"},"extra":1}"#, 10, "invalid request: unknown field `extra`"),
        ];
        for (line, id, message) in cases {
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert_eq!(err.id, *id, "{line}");
            assert!(
                err.message.starts_with(message),
                "{line}: got {:?}, want prefix {message:?}",
                err.message
            );
        }
    }

    #[test]
    fn a_command_takes_exactly_its_fields() {
        // Each command without fields, given one: refused, never run.
        for op in [
            "version",
            "clear",
            "get_timeouts",
            "stats",
            "dump_config",
            "list_ports",
            "list_workers",
            "list_routes",
            "addresses",
            "list_neighbours",
            "list_daemons",
        ] {
            let line = format!(r#"{{"v":1,"id":3,"cmd":{{"op":"{op}","dry_run":true}}}}"#);
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert_eq!(
                (err.id, err.message.as_str()),
                (
                    3,
                    "invalid request: unknown field `dry_run`, there are no fields"
                ),
                "{op}"
            );
            let plain = format!(r#"{{"v":1,"id":3,"cmd":{{"op":"{op}"}}}}"#);
            assert!(decode_request(plain.as_bytes()).is_ok(), "{op}");
        }
        let service = r#"{"protocol":"tcp","addr":"10.0.0.1","port":80}"#;
        let real = r#"{"addr":"192.168.1.2","port":80,"forward":"masq","weight":1}"#;
        for (cmd, unknown) in [
            (format!(r#"{{"op":"delete_service","service":{service},"purge":true}}"#), "purge"),
            (
                r#"{"op":"delete_service","service":{"protocol":"tcp","addr":"10.0.0.1","port":80,"mark":1,"x":1}}"#.to_owned(),
                "x",
            ),
            (
                format!(r#"{{"op":"add_real","service":{service},"real":{{"addr":"192.168.1.2","port":80,"forward":"masq","weight":1,"down":true}}}}"#),
                "down",
            ),
            (
                format!(r#"{{"op":"add_service","service":{{"key":{service},"scheduler":"rr","sticky":1}}}}"#),
                "sticky",
            ),
            (
                format!(r#"{{"op":"add_laddr","service":{service},"laddr":{{"addr":"192.168.1.9","port":1}}}}"#),
                "port",
            ),
            (format!(r#"{{"op":"edit_real","service":{service},"real":{real},"weight":2}}"#), "weight"),
        ] {
            let line = format!(r#"{{"v":1,"id":4,"cmd":{cmd}}}"#);
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert!(
                err.message
                    .starts_with(&format!("invalid request: unknown field `{unknown}`")),
                "{cmd}: {}",
                err.message
            );
        }
    }

    #[test]
    fn a_batch_upload_is_read_as_strictly_as_a_request() {
        let commands = vec![Command::Clear {}, Command::Zero { service: None }];
        let text = serde_json::to_string(&commands).unwrap();
        assert_eq!(decode_commands(&text).unwrap(), commands);
        for (text, error) in [
            (
                r#"[{"op":"clear","op":"version"}]"#,
                "batch: duplicate key `[].op`",
            ),
            (
                r#"[{"op":"clear","force":true}]"#,
                "batch: unknown field `force`, there are no fields",
            ),
            (
                r#"{"op":"clear"}"#,
                "batch: expected a JSON array of commands, found an object",
            ),
            ("[", "batch: not JSON: EOF while parsing a list"),
        ] {
            let err = decode_commands(text).unwrap_err();
            assert!(err.starts_with(error), "{text}: {err}");
        }
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        let service = r#"{"protocol":"tcp","addr":"10.0.0.1","port":80}"#;
        for (line, id, key) in [
            (
                r#"{"v":1,"id":5,"cmd":{"op":"version"},"cmd":{"op":"clear"}}"#.to_owned(),
                5,
                "cmd",
            ),
            (r#"{"v":1,"v":1,"id":5,"cmd":{"op":"clear"}}"#.to_owned(), 5, "v"),
            (r#"{"v":1,"id":5,"id":6,"cmd":{"op":"clear"}}"#.to_owned(), 5, "id"),
            (
                r#"{"v":1,"id":5,"cmd":{"op":"version","op":"clear"}}"#.to_owned(),
                5,
                "cmd.op",
            ),
            (
                format!(r#"{{"v":1,"id":5,"cmd":{{"op":"delete_service","service":{service},"service":{service}}}}}"#),
                5,
                "cmd.service",
            ),
            (
                r#"{"v":1,"id":5,"cmd":{"op":"delete_service","service":{"protocol":"tcp","addr":"10.0.0.1","addr":"10.0.0.2","port":80}}}"#.to_owned(),
                5,
                "cmd.service.addr",
            ),
            (
                r#"{"v":1,"id":5,"cmd":{"op":"add_service","service":{"key":{"protocol":"tcp","addr":"10.0.0.1","port":80},"scheduler":"rr","flags":["sh-port"],"flags":[]}}}"#.to_owned(),
                5,
                "cmd.service.flags",
            ),
        ] {
            let err = decode_request(line.as_bytes()).unwrap_err();
            assert_eq!(
                (err.id, err.message),
                (id, format!("invalid request: duplicate key `{key}`")),
                "{line}"
            );
        }
        // The first pass reads the line as JSON does: its syntax errors are
        // JSON's, trailing garbage included.
        let err = decode_request(br#"{"v":1,"id":1,"cmd":{"op":"clear"}} x"#).unwrap_err();
        assert_eq!(
            err.message,
            "malformed request: not JSON: trailing characters at line 1 column 37"
        );
    }

    #[test]
    fn rvsctl_commands_round_trip() {
        let commands = [
            Command::UploadConfig {
                upload: None,
                text: "services:\n".into(),
            },
            Command::UploadConfig {
                upload: Some(3),
                text: "  []\n".into(),
            },
            Command::ApplyConfig {
                file: "new.yaml".into(),
                text: Some("services: []\n".into()),
                upload: None,
                dry_run: true,
            },
            Command::ApplyConfig {
                file: "big.yaml".into(),
                text: None,
                upload: Some(3),
                dry_run: false,
            },
            Command::ReloadConfig { dry_run: false },
            Command::DumpConfig {},
            Command::ListPorts {},
            Command::ListWorkers {},
            Command::ListRoutes {},
            Command::Addresses {},
            Command::ListNeighbours {},
            Command::Health {},
        ];
        for (index, cmd) in commands.into_iter().enumerate() {
            let request = Request::new(index as u64, cmd);
            let line = encode_request(&request);
            assert_eq!(decode_request(&line[..line.len() - 1]).unwrap(), request);
        }
        assert_eq!(
            serde_json::to_value(Command::ApplyConfig {
                file: "big.yaml".into(),
                text: None,
                upload: Some(3),
                dry_run: false,
            })
            .unwrap(),
            json!({"op":"apply_config","file":"big.yaml","upload":3,"dry_run":false})
        );
        let decoded = decode_request(br#"{"v":1,"id":1,"cmd":{"op":"reload_config"}}"#).unwrap();
        assert_eq!(decoded.cmd, Command::ReloadConfig { dry_run: false });
    }

    #[test]
    fn service_keys_sort_like_ipvsadm() {
        let mut keys = vec![
            ServiceKey::Mark(2),
            ServiceKey::udp(Ipv4Addr::new(10, 0, 0, 1), 53),
            ServiceKey::tcp(Ipv4Addr::new(200, 0, 0, 1), 80),
            ServiceKey::Mark(1),
            ServiceKey::tcp(Ipv4Addr::new(10, 0, 0, 1), 443),
            ServiceKey::tcp(Ipv4Addr::new(10, 0, 0, 1), 80),
        ];
        keys.sort_by_key(ServiceKey::sort_key);
        assert_eq!(
            keys,
            vec![
                ServiceKey::tcp(Ipv4Addr::new(10, 0, 0, 1), 80),
                ServiceKey::tcp(Ipv4Addr::new(10, 0, 0, 1), 443),
                ServiceKey::tcp(Ipv4Addr::new(200, 0, 0, 1), 80),
                ServiceKey::udp(Ipv4Addr::new(10, 0, 0, 1), 53),
                ServiceKey::Mark(1),
                ServiceKey::Mark(2),
            ]
        );
    }
}
