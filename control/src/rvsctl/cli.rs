//! rvsctl's command line: the one clap definition rvsctl parses its
//! arguments with and prints its help, errors and `--version` from, and from
//! which its completions and man pages are generated ([`crate::cli`]).
//!
//! `--socket` and `--json` are accepted before or after the command. An
//! option given twice takes its last value. Exit status 2 for a command-line
//! error, 0 for `--help` and `--version` (clap's own).

use crate::cli::Generate;
use crate::model::CONN_STATES;
use crate::proto::{Protocol, ServiceKey};
use crate::rvsctl::ConnFilter;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueHint};
use std::ffi::OsString;
use std::net::Ipv4Addr;

/// Where `--socket` and `--json` are listed, in every command's help.
const GLOBAL: &str = "Global options";

const AFTER_HELP: &str =
    "Exit status: 0 success, 1 refused by rvsd or no rvsd, 2 a command-line error.";

/// Control a running rvsd beyond ipvsadm's words: apply, dump, reload and
/// views
///
/// rvsctl talks to rvsd's control socket. `apply` and `reload` validate the
/// whole configuration, print what changes and adopt it in one step; a
/// refused change leaves the running state as it was. rvsadm speaks
/// ipvsadm's commands to the same socket.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "rvsctl",
    version,
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true,
    args_override_self = true
)]
pub struct Cli {
    /// rvsd's control socket [default: $RVS_SOCKET, else /run/rvs/rvsd.sock]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        value_hint = ValueHint::FilePath,
        help_heading = GLOBAL
    )]
    pub socket: Option<String>,
    /// Print rvsd's answer as JSON (conns: one JSON object a line)
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    // Always empty in an `Invocation::Run`: see `parse`.
    #[command(flatten)]
    pub generate: Generate,
    #[command(subcommand)]
    pub action: Action,
}

/// rvsctl's commands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Action {
    /// Validate FILE, print what it changes against the running state and
    /// apply it in one step
    Apply {
        /// The YAML configuration; - for standard input
        #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
        file: String,
        /// Only print the changes
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// The running configuration, as YAML that apply takes back
    Dump,
    /// Re-read rvsd's own configuration file and apply it (as SIGHUP does)
    Reload {
        /// Only print the changes
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Replace the running services by those of a keepalived.conf, printing
    /// what changes as apply does
    ///
    /// Reads FILE's virtual_server, virtual_server_group, real_server and
    /// checker blocks, with its includes, and global_defs' lvs_sync_daemon
    /// (as both sync daemons, master and backup); all else of the running
    /// configuration (marks: groups included) is kept. VRRP blocks and the
    /// rest of global_defs are skipped with a note; what rvs cannot honour
    /// is refused with FILE:LINE and the reason, and nothing changes.
    ImportKeepalived {
        /// keepalived's configuration, e.g. /etc/keepalived/keepalived.conf
        #[arg(value_name = "FILE", value_hint = ValueHint::FilePath)]
        file: String,
        /// Only print the changes
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Ports: device, MAC, MTU, queues, addresses
    Ports,
    /// Workers: lcore, CPU, queues and counters
    Workers,
    /// Connected subnets and static routes
    Routes,
    /// Port addresses, VIPs and floating addresses: which kernel interface
    /// holds each and whether rvs serves it now
    ///
    /// With `ownership: kernel` a VIP or floating address is served (held)
    /// only while a port's kernel interface holds it, where keepalived's
    /// VRRP puts it; a port's own addresses are held at all times.
    Addresses,
    /// Next hops resolved by ARP, over all workers
    #[command(alias = "neighbors")]
    Neighbours,
    /// Health-checked reals: each checker's state, since when, last result
    /// and consecutive failures
    Health,
    /// A live view refreshed every second: rates per service and real,
    /// worker load, top drop reasons; q quits
    ///
    /// When standard output is not a terminal, prints the same as plain
    /// text every second instead.
    Top {
        /// Stop after N refreshes (default: until q, or forever as text)
        #[arg(long, value_name = "N")]
        iterations: Option<u64>,
    },
    /// FullNAT local addresses and their use, of one service or all
    Laddrs {
        #[command(flatten)]
        service: Service,
    },
    /// Remove a real like rvsadm -d; with --purge its established
    /// connections end too
    ///
    /// Without --purge they continue until they close, as in IPVS.
    #[command(group(ArgGroup::new("service_required").args(["tcp", "udp"]).required(true)))]
    RemoveReal {
        #[command(flatten)]
        service: Service,
        /// The real; without a port, on the service port (as in ipvsadm)
        #[arg(short = 'r', value_name = "RIP[:PORT]", value_parser = real)]
        real: (Ipv4Addr, Option<u16>),
        /// End the real's established connections too
        #[arg(long)]
        purge: bool,
    },
    /// Drain a real for a rolling release: weight 0, no new connections,
    /// its persistence templates no longer followed
    ///
    /// The weight it had is kept for undrain. With --wait, returns once
    /// its active connections are gone (exit 0), or at --timeout with what
    /// is left (exit 1).
    Drain {
        #[command(flatten)]
        real: DrainTarget,
        /// Wait until the real has no active connection
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after SECONDS (default: wait as long as it takes)
        #[arg(long, value_name = "SECONDS", requires = "wait")]
        timeout: Option<u64>,
    },
    /// Give a drained real back the weight it had
    Undrain {
        #[command(flatten)]
        real: DrainTarget,
    },
    /// Tracked connections, streamed; every filter given must match
    Conns {
        #[command(flatten)]
        filter: ConnFilter,
    },
    /// rvsctl's and rvsd's versions (--version: rvsctl's only)
    Version,
}

/// `-t|-u VIP:PORT`: a service by protocol, VIP and port, optional unless
/// the command makes it required.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
#[group(multiple = false)]
pub struct Service {
    /// The TCP service VIP:PORT
    #[arg(short = 't', long = "tcp", value_name = "VIP:PORT", value_parser = tcp_service)]
    tcp: Option<ServiceKey>,
    /// The UDP service VIP:PORT
    #[arg(short = 'u', long = "udp", value_name = "VIP:PORT", value_parser = udp_service)]
    udp: Option<ServiceKey>,
}

impl Service {
    /// The service given, if any (never both: clap refuses `-t` with `-u`).
    pub fn key(&self) -> Option<ServiceKey> {
        self.tcp.or(self.udp)
    }
}

/// `VIP:PORT REAL [--protocol tcp|udp]`: a real of a service.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct DrainTarget {
    /// The service
    #[arg(value_name = "VIP:PORT", value_parser = vip_port)]
    service: (Ipv4Addr, u16),
    /// The real; without a port, on the service port (as in ipvsadm)
    #[arg(value_name = "RIP[:PORT]", value_parser = real)]
    real: (Ipv4Addr, Option<u16>),
    /// The service's protocol
    #[arg(long, value_name = "PROTOCOL", value_parser = protocol(), default_value = "tcp")]
    protocol: Protocol,
}

impl DrainTarget {
    /// The service, the real's address and its port.
    pub fn parts(&self) -> (ServiceKey, Ipv4Addr, u16) {
        let (addr, port) = self.service;
        let service = ServiceKey::Inet {
            protocol: self.protocol,
            addr,
            port,
        };
        (service, self.real.0, self.real.1.unwrap_or(port))
    }
}

fn vip_port(text: &str) -> Result<(Ipv4Addr, u16), String> {
    match service(Protocol::Tcp, text)? {
        ServiceKey::Inet { addr, port, .. } => Ok((addr, port)),
        ServiceKey::Mark(_) => unreachable!("service() makes an address service"),
    }
}

/// What one rvsctl command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// A command for rvsd.
    Run(Cli),
    /// `--completions SHELL` or `--man DIR`: generated files, no rvsd.
    Generate(Generate),
}

/// Parses rvsctl's command line, the program name first.
///
/// The definition requires a command, so that help, man page and
/// completions say so; `--completions` and `--man` are the exception (they
/// take nothing else), read in a second pass only when the command is
/// missing.
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) if cli.generate.is_requested() => Err(Cli::command().error(
            ErrorKind::ArgumentConflict,
            "--completions and --man take no command",
        )),
        Ok(cli) => Ok(Invocation::Run(cli)),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let matches = Cli::command()
                .subcommand_required(false)
                .arg_required_else_help(false)
                .try_get_matches_from(&args)?;
            let generate = Generate::from_arg_matches(&matches)?;
            if generate.is_requested() {
                Ok(Invocation::Generate(generate))
            } else {
                Err(err)
            }
        }
        Err(err) => Err(err),
    }
}

/// `--protocol tcp|udp`.
pub(crate) fn protocol() -> impl TypedValueParser<Value = Protocol> {
    PossibleValuesParser::new(["tcp", "udp"]).map(|name| match name.as_str() {
        "tcp" => Protocol::Tcp,
        _ => Protocol::Udp,
    })
}

/// `--state NAME`: one of IPVS's state names, in any case; the value is
/// the name as IPVS spells it.
pub(crate) fn conn_state() -> PossibleValuesParser {
    PossibleValuesParser::new(CONN_STATES)
}

fn tcp_service(text: &str) -> Result<ServiceKey, String> {
    service(Protocol::Tcp, text)
}

fn udp_service(text: &str) -> Result<ServiceKey, String> {
    service(Protocol::Udp, text)
}

fn service(protocol: Protocol, text: &str) -> Result<ServiceKey, String> {
    let (addr, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected VIP:PORT".to_owned())?;
    Ok(ServiceKey::Inet {
        protocol,
        addr: ipv4(addr)?,
        port: port_number(port)?,
    })
}

/// `-r RIP[:PORT]`.
fn real(text: &str) -> Result<(Ipv4Addr, Option<u16>), String> {
    match text.rsplit_once(':') {
        Some((addr, port)) => Ok((ipv4(addr)?, Some(port_number(port)?))),
        None => Ok((ipv4(text)?, None)),
    }
}

pub(crate) fn ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not an IPv4 address"))
}

fn port_number(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port number"))
}
