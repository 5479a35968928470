//! rvsadm, the ipvsadm 1.31-compatible front end: its command-line grammar
//! ([`parse`]) and its listings ([`format`]).
//!
//! Scripts written for ipvsadm should run against rvsadm unchanged but for
//! the command name, and its listings should parse the same way. Where rvs
//! differs, the difference is deliberate and listed here:
//!
//! - Addresses and ports are always printed numerically, as with `-n`:
//!   resolving names through DNS in a load balancer's admin tool stalls when
//!   DNS is what is broken. `-n` is accepted and changes nothing. Input
//!   accepts dotted quads and port numbers, plus port names from
//!   `/etc/services`; host names are not resolved.
//! - IPv4 only; no SCTP, persistence engines or GUE/GRE tunnels: those
//!   options are refused with a message saying so, as is an IPv6
//!   `--mcast-group`.
//! - `--start-daemon`/`--stop-daemon` start and stop rvsd's own IPVS sync
//!   daemons (`sync:` in the YAML), which speak the kernel's sync protocol;
//!   `-L --daemon` lists them as ipvsadm 1.31 does on a kernel that reports
//!   every setting (Linux 4.3 and later): `master sync daemon (mcast=eth0,
//!   syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)`.
//! - DPVS's FullNAT: `--fullnat` as a forwarding method (DPVS spells it
//!   `-b`, which ipvsadm already uses for scheduler flags), and
//!   `--add-laddr`/`--del-laddr`/`--get-laddr` (`-P`/`-Q`/`-G`) with
//!   `-z LIP` and `-F IFNAME`.
//! - `-S` adds ` -x N`/` -y N` to a real whose thresholds are set (ipvsadm
//!   loses them), `--fullnat` for FullNAT reals, and one `--add-laddr` line
//!   per local address, so that `-S | -R` restores everything.
//! - `-R` parses every line before applying any, so a typo on line 50 does
//!   not leave half a configuration; blank lines and `#` comments are
//!   skipped. The lines then go to rvsd in batches (`proto::Command::Batch`):
//!   each line is refused, or not, as if it came alone, and a batch is
//!   adopted in one step, so that 100,000 lines take seconds where one by
//!   one they took over an hour.
//! - Exit status: 0 success, 1 a refusal by rvsd or no rvsd to talk to, 2 a
//!   command-line error (ipvsadm uses 2 for most of those and 255 for some).
//! - Services are sorted by mark, protocol, address and port as numbers
//!   (ipvsadm's comparison overflows for addresses more than 2^31 apart).

pub mod format;
pub mod parse;

pub use parse::{parse, parse_restore_line, ParseError};

use crate::proto::{Command, ServiceKey};

/// What one rvsadm invocation (or one `-R` line) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this command; print nothing on success.
    Apply(Command),
    /// Fetch and print a listing.
    List(Listing),
    /// `-S`: print the configuration as rvsadm commands.
    Save,
    /// `-R`: read `-S` lines from stdin and apply them.
    Restore,
    /// `-h`: print [`usage`].
    Help,
    /// `-v`.
    Version,
}

/// The listings of `-L` and `--get-laddr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// `-L [service]`.
    Services {
        service: Option<ServiceKey>,
        format: Format,
    },
    /// `-L -c`.
    Connections { format: Format },
    /// `-L --timeout`.
    Timeouts,
    /// `-L --daemon`: the sync daemons rvsd runs.
    Daemons,
    /// `--get-laddr [service]`.
    Laddrs { service: Option<ServiceKey> },
}

/// Listing options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// `-n`; listings are numeric either way.
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    /// `--exact`: no K/M/G/T abbreviation.
    pub exact: bool,
    /// `--nosort`: daemon order.
    pub nosort: bool,
}

/// `rvsadm -v`.
pub const VERSION_TEXT: &str = concat!(
    "rvsadm v",
    env!("CARGO_PKG_VERSION"),
    " (ipvsadm v1.31 compatible, rvs control protocol v1)"
);

/// The synopsis `rvsadm -h` starts with.
const SYNOPSIS: &str = "\
Usage:
  rvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  rvsadm -D virtual-service
  rvsadm -C
  rvsadm -R
  rvsadm -S [-n]
  rvsadm -a|e virtual-service -r server-address [options]
  rvsadm -d virtual-service -r server-address
  rvsadm -L|l [virtual-service] [options]
  rvsadm -Z [virtual-service]
  rvsadm --set tcp tcpfin udp
  rvsadm --start-daemon {master|backup} [daemon-options]
  rvsadm --stop-daemon {master|backup}
  rvsadm --add-laddr|--del-laddr virtual-service -z local-address [-F ifname]
  rvsadm --get-laddr [virtual-service]
  rvsadm -h
";

/// rvsadm's own option, which rvsadm takes off the command line before the
/// ipvsadm grammar reads it.
const RVS_OPTIONS: &str = "
rvs options:
  --socket PATH                       rvsd's control socket (default: $RVS_SOCKET,
                                      else /run/rvs/rvsd.sock)
";

/// `rvsadm -h`: the synopsis, every option of the grammar's table with its
/// help ([`parse::options_help`]), then rvsadm's `--socket`.
pub fn usage() -> String {
    format!("{SYNOPSIS}{}{RVS_OPTIONS}", parse::options_help())
}
