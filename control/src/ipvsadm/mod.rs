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
//! - IPv4 only; no SCTP, persistence engines, GUE/GRE tunnels or kernel
//!   connection sync (`--start-daemon`...): those options are refused with
//!   a message saying so. `-L --daemon` prints nothing, as ipvsadm does when
//!   no sync daemon runs.
//! - DPVS's FullNAT: `--fullnat` as a forwarding method (DPVS spells it
//!   `-b`, which ipvsadm already uses for scheduler flags), and
//!   `--add-laddr`/`--del-laddr`/`--get-laddr` (`-P`/`-Q`/`-G`) with
//!   `-z LIP` and `-F IFNAME`.
//! - `-S` adds ` -x N`/` -y N` to a real whose thresholds are set (ipvsadm
//!   loses them), `--fullnat` for FullNAT reals, and one `--add-laddr` line
//!   per local address, so that `-S | -R` restores everything.
//! - `-R` parses every line before applying any, so a typo on line 50 does
//!   not leave half a configuration; blank lines and `#` comments are
//!   skipped.
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
    /// `-h`: print [`USAGE`].
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
    /// `-L --daemon`: kernel sync daemons; rvs has none, so nothing.
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

/// `rvsadm -h`.
pub const USAGE: &str = "\
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
  rvsadm --add-laddr|--del-laddr virtual-service -z local-address [-F ifname]
  rvsadm --get-laddr [virtual-service]
  rvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --add-laddr       -P        add a FullNAT local address to a service
  --del-laddr       -Q        delete a FullNAT local address
  --get-laddr       -G        list FullNAT local addresses
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh|twos,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           full NAT (needs local addresses, see --add-laddr)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     FullNAT local address
  --ifname       -F ifname            port the local address lives on
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports (always on)
  --sched-flags  -b flags             scheduler flags (comma-separated)

rvs options:
  --socket PATH                       rvsd's control socket (default: $RVS_SOCKET,
                                      else /run/rvs/rvsd.sock)
";
