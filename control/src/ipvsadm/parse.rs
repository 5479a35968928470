//! ipvsadm's command-line grammar.
//!
//! Follows ipvsadm 1.31 (popt): the first option must be a command; short
//! options cluster (`-Ln`, `-At VIP:80`); an argument may be attached
//! (`-w3`, `--weight=3`) or the next word; `-p`'s timeout is optional and
//! taken from the next word only when that does not start with `-`. After
//! the options are read, each command is checked against ipvsadm's table of
//! legal options, then the service rules (port zero needs persistence,
//! one-packet scheduling is UDP only). Error texts are ipvsadm's.
//!
//! The table of options the tokenizer reads also holds each option's help:
//! [`options_help`] writes the options part of `rvsadm -h` from it.

use super::{Action, Format, Listing};
use crate::model::{SchedFlagError, SchedFlags, SchedulerKind};
use crate::proto::{
    Command, Forward, LaddrSpec, Protocol, RealSpec, ServiceKey, ServiceSpec, SyncDaemon, SyncState,
};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// ipvsadm's ceiling for timeouts: 31 days.
const MAX_TIMEOUT: u32 = 86400 * 31;

/// ipvsadm's persistence timeout for a bare `-p`.
const DEFAULT_PERSISTENCE: u32 = 360;

/// ipvsadm's `--mcast-interface` when `--start-daemon` names none.
const DEFAULT_MCAST_INTERFACE: &str = "eth0";

/// The largest `--sync-maxlen` ipvsadm takes: a UDP datagram's payload.
const MAX_SYNC_MAXLEN: u32 = crate::sync::MAX_MAXLEN as u32;

/// A refused command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong, in ipvsadm's words; empty when ipvsadm only prints
    /// its "Try ... -h" line.
    pub message: String,
    /// Whether to follow with "Try `rvsadm -h' or 'rvsadm --help' for more
    /// information."
    pub try_help: bool,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            try_help: false,
        }
    }

    fn try_help() -> Self {
        ParseError {
            message: String::new(),
            try_help: true,
        }
    }

    fn unsupported(option: &str, why: &str) -> Self {
        ParseError::new(format!("rvsadm: {option}: {why}"))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses rvsadm's arguments (without the program name). No arguments at
/// all means `-L`, as with ipvsadm.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Action, ParseError> {
    if args.is_empty() {
        return Ok(Action::List(Listing::Services {
            service: None,
            format: Format::default(),
        }));
    }
    parse_words(args, false)
}

/// Parses one line of `-R` input: `None` for a blank line or a `#` comment.
pub fn parse_restore_line(line: &str) -> Result<Option<Action>, ParseError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    parse_words(&words, true).map(Some)
}

/// ipvsadm's commands, named as in its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Delete,
    Flush,
    List,
    AddDest,
    DeleteDest,
    EditDest,
    Set,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    AddLaddr,
    DelLaddr,
    GetLaddr,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Delete => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DeleteDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Set => "set",
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::AddLaddr => "add-laddr",
            Cmd::DelLaddr => "del-laddr",
            Cmd::GetLaddr => "get-laddr",
        }
    }

    /// ipvsadm's table of legal options: `+` compulsory, `x` illegal, `1`
    /// at most one of the `1`s, ` ` optional.
    fn rule(self, opt: Opt) -> char {
        use Opt::*;
        match self {
            Cmd::Add | Cmd::Edit => match opt {
                Service => '+',
                Scheduler | Persistent | Netmask | Ops | SchedFlags => ' ',
                _ => 'x',
            },
            Cmd::Delete => match opt {
                Service => '+',
                _ => 'x',
            },
            Cmd::List => match opt {
                Connection | Service | Timeout | Daemon => '1',
                Numeric | Stats | Rate | Thresholds | PersistentConn | NoSort | SyncId | Exact => {
                    ' '
                }
                _ => 'x',
            },
            Cmd::AddDest | Cmd::EditDest => match opt {
                Service | Server => '+',
                Forward | Weight | UThreshold | LThreshold | TunType => ' ',
                _ => 'x',
            },
            Cmd::DeleteDest => match opt {
                Service | Server => '+',
                _ => 'x',
            },
            Cmd::StartDaemon => match opt {
                Mcast | SyncId | McastGroup | McastPort | McastTtl | SyncMaxlen => ' ',
                _ => 'x',
            },
            Cmd::StopDaemon => match opt {
                SyncId => ' ',
                _ => 'x',
            },
            Cmd::Save => match opt {
                Numeric => ' ',
                _ => 'x',
            },
            Cmd::Zero => match opt {
                Service => ' ',
                _ => 'x',
            },
            Cmd::AddLaddr | Cmd::DelLaddr => match opt {
                Service | Laddr => '+',
                Ifname => ' ',
                _ => 'x',
            },
            Cmd::GetLaddr => match opt {
                Service | Numeric => ' ',
                _ => 'x',
            },
            Cmd::Flush | Cmd::Set | Cmd::Restore => 'x',
        }
    }
}

/// ipvsadm's options, in the order of its table (which fixes which option
/// its messages name first), then rvs's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    Ops,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunType,
    Laddr,
    Ifname,
}

const ALL_OPTS: [Opt; 30] = [
    Opt::Numeric,
    Opt::Connection,
    Opt::Service,
    Opt::Scheduler,
    Opt::Persistent,
    Opt::Netmask,
    Opt::Server,
    Opt::Forward,
    Opt::Weight,
    Opt::UThreshold,
    Opt::LThreshold,
    Opt::Mcast,
    Opt::Timeout,
    Opt::Daemon,
    Opt::Stats,
    Opt::Rate,
    Opt::Thresholds,
    Opt::PersistentConn,
    Opt::NoSort,
    Opt::SyncId,
    Opt::Exact,
    Opt::Ops,
    Opt::SchedFlags,
    Opt::McastGroup,
    Opt::McastPort,
    Opt::McastTtl,
    Opt::SyncMaxlen,
    Opt::TunType,
    Opt::Laddr,
    Opt::Ifname,
];

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Mcast => "mcast-interface",
            Opt::Timeout => "timeout",
            Opt::Daemon => "daemon",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::PersistentConn => "persistent-conn",
            Opt::NoSort => "nosort",
            Opt::SyncId => "syncid",
            Opt::Exact => "exact",
            Opt::Ops => "ops",
            Opt::SchedFlags => "sched-flags",
            Opt::McastGroup => "mcast-group",
            Opt::McastPort => "mcast-port",
            Opt::McastTtl => "mcast-ttl",
            Opt::SyncMaxlen => "sync-maxlen",
            Opt::TunType => "tun-type",
            Opt::Laddr => "laddr",
            Opt::Ifname => "ifname",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// What a word on the command line means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Command(Cmd),
    Help,
    Version,
    Tcp,
    Udp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Masq,
    Ipip,
    Gatewaying,
    FullNat,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ops,
    SchedFlags,
    TunType,
    Laddr,
    Ifname,
    McastInterface,
    SyncId,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    /// Recognised, refused: the reason.
    Unsupported(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// The sections of `rvsadm -h` after the synopsis, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Commands,
    Service,
    Options,
    Daemon,
    /// ipvsadm's options that rvs refuses, grouped by the reason it gives.
    Refused,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Commands,
        Section::Service,
        Section::Options,
        Section::Daemon,
        Section::Refused,
    ];

    fn heading(self) -> &'static str {
        match self {
            Section::Commands => "Commands:\nEither long or short options are allowed.",
            Section::Service => "virtual-service:",
            Section::Options => "Options:",
            Section::Daemon => "Daemon Options:",
            Section::Refused => "Refused, with the reason rvsadm gives:",
        }
    }

    /// (width of the long-name column, column of the explanation), as
    /// ipvsadm lays out its help.
    fn columns(self) -> (usize, usize) {
        match self {
            Section::Commands => (18, 30),
            _ => (15, 38),
        }
    }
}

/// One option: how it is spelled, whether it takes an argument, what it
/// means, and its entry in `rvsadm -h`. The tokenizer and the help both
/// read [`OPTIONS`], so the help lists exactly what rvsadm accepts.
struct Spec {
    long: &'static str,
    /// Short spellings: `-L` and `-l` are both `--list`.
    short: &'static [char],
    arg: Arg,
    tag: Tag,
    section: Section,
    /// What the help shows after the option's names: its argument, in
    /// brackets when optional (`-p [timeout]`), or `--set`'s operands.
    operands: &'static str,
    /// The help's explanation; a `\n` continues it on the next line.
    text: &'static str,
}

impl Spec {
    const fn new(
        section: Section,
        long: &'static str,
        short: &'static [char],
        arg: Arg,
        tag: Tag,
        operands: &'static str,
        text: &'static str,
    ) -> Spec {
        Spec {
            long,
            short,
            arg,
            tag,
            section,
            operands,
            text,
        }
    }
}

/// A command, the first option of an invocation.
const fn command(
    long: &'static str,
    short: &'static [char],
    tag: Tag,
    operands: &'static str,
    text: &'static str,
) -> Spec {
    Spec::new(
        Section::Commands,
        long,
        short,
        Arg::None,
        tag,
        operands,
        text,
    )
}

/// A way to name the virtual service.
const fn service(
    long: &'static str,
    short: &'static [char],
    tag: Tag,
    operands: &'static str,
    text: &'static str,
) -> Spec {
    Spec::new(
        Section::Service,
        long,
        short,
        Arg::Required,
        tag,
        operands,
        text,
    )
}

const fn option(
    long: &'static str,
    short: &'static [char],
    arg: Arg,
    tag: Tag,
    operands: &'static str,
    text: &'static str,
) -> Spec {
    Spec::new(Section::Options, long, short, arg, tag, operands, text)
}

/// A `--start-daemon` option.
const fn daemon(long: &'static str, tag: Tag, operands: &'static str, text: &'static str) -> Spec {
    Spec::new(
        Section::Daemon,
        long,
        &[],
        Arg::Required,
        tag,
        operands,
        text,
    )
}

/// A command that takes `master` or `backup`, named in the synopsis.
const fn daemon_command(long: &'static str, tag: Tag, text: &'static str) -> Spec {
    Spec::new(Section::Commands, long, &[], Arg::Required, tag, "", text)
}

/// Recognised, refused with `why`, which the help shows too.
const fn refused(long: &'static str, short: &'static [char], arg: Arg, why: &'static str) -> Spec {
    let tag = Tag::Unsupported(why);
    Spec::new(Section::Refused, long, short, arg, tag, "", why)
}

const IPV4_ONLY: &str = "rvs is IPv4 only for now";
const TUNNELS: &str = "rvs tunnels with IP-in-IP only (--tun-type ipip)";

/// Every option rvsadm knows, in the order of `rvsadm -h`.
#[rustfmt::skip]
const OPTIONS: &[Spec] = &[
    command("add-service",    &['A'],      Tag::Command(Cmd::Add),        "", "add virtual service with options"),
    command("edit-service",   &['E'],      Tag::Command(Cmd::Edit),       "", "edit virtual service with options"),
    command("delete-service", &['D'],      Tag::Command(Cmd::Delete),     "", "delete virtual service"),
    command("clear",          &['C'],      Tag::Command(Cmd::Flush),      "", "clear the whole table"),
    command("restore",        &['R'],      Tag::Command(Cmd::Restore),    "", "restore rules from stdin"),
    command("save",           &['S'],      Tag::Command(Cmd::Save),       "", "save rules to stdout"),
    command("add-server",     &['a'],      Tag::Command(Cmd::AddDest),    "", "add real server with options"),
    command("edit-server",    &['e'],      Tag::Command(Cmd::EditDest),   "", "edit real server with options"),
    command("delete-server",  &['d'],      Tag::Command(Cmd::DeleteDest), "", "delete real server"),
    command("list",           &['L', 'l'], Tag::Command(Cmd::List),       "", "list the table"),
    command("zero",           &['Z'],      Tag::Command(Cmd::Zero),       "", "zero counters in a service or all services"),
    command("set",            &[],         Tag::Command(Cmd::Set),        "tcp tcpfin udp", "set connection timeout values"),
    daemon_command("start-daemon",          Tag::Command(Cmd::StartDaemon),                   "start connection sync daemon"),
    daemon_command("stop-daemon",           Tag::Command(Cmd::StopDaemon),                    "stop connection sync daemon"),
    command("add-laddr",      &['P'],      Tag::Command(Cmd::AddLaddr),   "", "add a FullNAT local address to a service"),
    command("del-laddr",      &['Q'],      Tag::Command(Cmd::DelLaddr),   "", "delete a FullNAT local address"),
    command("get-laddr",      &['G'],      Tag::Command(Cmd::GetLaddr),   "", "list FullNAT local addresses"),
    command("help",           &['h'],      Tag::Help,                     "", "display this help message"),
    command("version",        &['v'],      Tag::Version,                  "", "display the version"),

    service("tcp-service",    &['t'], Tag::Tcp,    "service-address", "service-address is host[:port]"),
    service("udp-service",    &['u'], Tag::Udp,    "service-address", "service-address is host[:port]"),
    service("fwmark-service", &['f'], Tag::Fwmark, "fwmark",          "fwmark is an integer greater than zero"),

    option("scheduler",       &['s'], Arg::Required, Tag::Scheduler,      "scheduler",      "one of rr|wrr|lc|wlc|sed|nq|dh|sh|lblc|lblcr|fo|ovf|mh|twos,\nthe default scheduler is wlc."),
    option("persistent",      &['p'], Arg::Optional, Tag::Persistent,     "[timeout]",      "persistent service"),
    option("netmask",         &['M'], Arg::Required, Tag::Netmask,        "netmask",        "persistent granularity mask"),
    option("real-server",     &['r'], Arg::Required, Tag::Server,         "server-address", "server-address is host (and port)"),
    option("gatewaying",      &['g'], Arg::None,     Tag::Gatewaying,     "",               "gatewaying (direct routing) (default)"),
    option("ipip",            &['i'], Arg::None,     Tag::Ipip,           "",               "ipip encapsulation (tunneling)"),
    option("masquerading",    &['m'], Arg::None,     Tag::Masq,           "",               "masquerading (NAT)"),
    option("fullnat",         &[],    Arg::None,     Tag::FullNat,        "",               "full NAT (needs local addresses, see --add-laddr)"),
    option("tun-type",        &[],    Arg::Required, Tag::TunType,        "type",           "tunnel type: ipip, the default and the only one"),
    option("weight",          &['w'], Arg::Required, Tag::Weight,         "weight",         "capacity of real server"),
    option("u-threshold",     &['x'], Arg::Required, Tag::UThreshold,     "uthreshold",     "upper threshold of connections"),
    option("l-threshold",     &['y'], Arg::Required, Tag::LThreshold,     "lthreshold",     "lower threshold of connections"),
    option("laddr",           &['z'], Arg::Required, Tag::Laddr,          "local-address",  "FullNAT local address"),
    option("ifname",          &['F'], Arg::Required, Tag::Ifname,         "ifname",         "port the local address lives on"),
    option("connection",      &['c'], Arg::None,     Tag::Connection,     "",               "output of current IPVS connections"),
    option("timeout",         &[],    Arg::None,     Tag::Timeout,        "",               "output of timeout (tcp tcpfin udp)"),
    option("daemon",          &[],    Arg::None,     Tag::Daemon,         "",               "output of daemon information"),
    option("stats",           &[],    Arg::None,     Tag::Stats,          "",               "output of statistics information"),
    option("rate",            &[],    Arg::None,     Tag::Rate,           "",               "output of rate information"),
    option("exact",           &['X'], Arg::None,     Tag::Exact,          "",               "expand numbers (display exact values)"),
    option("thresholds",      &[],    Arg::None,     Tag::Thresholds,     "",               "output of thresholds information"),
    option("persistent-conn", &[],    Arg::None,     Tag::PersistentConn, "",               "output of persistent connection info"),
    option("nosort",          &[],    Arg::None,     Tag::NoSort,         "",               "disable sorting output of service/server entries"),
    option("sort",            &[],    Arg::None,     Tag::Sort,           "",               "does nothing, for backwards compatibility"),
    option("ops",             &['o'], Arg::None,     Tag::Ops,            "",               "one-packet scheduling"),
    option("numeric",         &['n'], Arg::None,     Tag::Numeric,        "",               "numeric output of addresses and ports (always on)"),
    option("sched-flags",     &['b'], Arg::Required, Tag::SchedFlags,     "flags",          "scheduler flags (comma-separated)"),

    daemon("syncid",          Tag::SyncId,         "sid",       "syncid for connection sync (default=0)"),
    daemon("sync-maxlen",     Tag::SyncMaxlen,     "length",    "Max sync message length (default=1472)"),
    daemon("mcast-interface", Tag::McastInterface, "interface", "multicast interface for connection sync\n(default=eth0)"),
    daemon("mcast-group",     Tag::McastGroup,     "address",   "IPv4 group (default=224.0.0.81)"),
    daemon("mcast-port",      Tag::McastPort,      "port",      "UDP port (default=8848)"),
    daemon("mcast-ttl",       Tag::McastTtl,       "ttl",       "Multicast TTL (default=1)"),

    refused("ipv6",            &['6'], Arg::None,     IPV4_ONLY),
    refused("sctp-service",    &[],    Arg::Required, "rvs serves TCP and UDP only"),
    refused("pe",              &[],    Arg::Required, "rvs has no persistence engines"),
    refused("tun-info",        &[],    Arg::None,     "rvs tunnels with IP-in-IP only; there is no tunnel information to list"),
    refused("tun-port",        &[],    Arg::Required, TUNNELS),
    refused("tun-nocsum",      &[],    Arg::None,     TUNNELS),
    refused("tun-csum",        &[],    Arg::None,     TUNNELS),
    refused("tun-remcsum",     &[],    Arg::None,     TUNNELS),
];

/// The options part of `rvsadm -h`, from the table `OPTIONS`, laid out as
/// ipvsadm's: `--long -s operands` then the explanation in a column.
pub fn options_help() -> String {
    let mut help = String::new();
    for section in Section::ALL {
        help.push('\n');
        help.push_str(section.heading());
        help.push('\n');
        let (long_width, text_column) = section.columns();
        let specs = OPTIONS.iter().filter(|spec| spec.section == section);
        if section == Section::Refused {
            refused_help(&mut help, specs, text_column);
            continue;
        }
        for spec in specs {
            let mut names = format!("  --{}", spec.long);
            if !spec.short.is_empty() {
                let shorts: Vec<String> = spec.short.iter().map(|c| format!("-{c}")).collect();
                pad(&mut names, long_width + 2);
                names.push_str(&shorts.join("|"));
            }
            if !spec.operands.is_empty() {
                names.push(' ');
                names.push_str(spec.operands);
            }
            explain(&mut help, &names, spec.text, text_column);
        }
    }
    help
}

/// The refused options, one entry per reason: their names, wrapped, then
/// the reason.
fn refused_help<'a>(help: &mut String, specs: impl Iterator<Item = &'a Spec>, text_column: usize) {
    let mut reasons: Vec<(&str, Vec<String>)> = Vec::new();
    for spec in specs {
        let mut name = format!("--{}", spec.long);
        for short in spec.short {
            name.push_str(&format!("|-{short}"));
        }
        match reasons.iter_mut().find(|(why, _)| *why == spec.text) {
            Some((_, names)) => names.push(name),
            None => reasons.push((spec.text, vec![name])),
        }
    }
    for (why, names) in reasons {
        let mut line = String::from(" ");
        for name in names {
            if line.len() + 1 + name.len() > WIDTH {
                help.push_str(&line);
                help.push('\n');
                line = String::from(" ");
            }
            line.push(' ');
            line.push_str(&name);
        }
        explain(help, &line, why, text_column);
    }
}

/// The width the help's lines keep within.
const WIDTH: usize = 80;

/// Appends `names` (one line) and `text` in its column: on the same line
/// when the names leave room, else on the next; `text`'s further lines
/// aligned under its first.
fn explain(help: &mut String, names: &str, text: &str, text_column: usize) {
    help.push_str(names);
    let mut column = names.len();
    if column >= text_column {
        help.push('\n');
        column = 0;
    }
    for (index, line) in text.lines().enumerate() {
        if index > 0 {
            help.push('\n');
            column = 0;
        }
        help.push_str(&" ".repeat(text_column - column));
        help.push_str(line);
    }
    help.push('\n');
}

/// Pads `line` to `column`, or by one space when it is there already.
fn pad(line: &mut String, column: usize) {
    let spaces = column.saturating_sub(line.len()).max(1);
    line.push_str(&" ".repeat(spaces));
}

/// One option occurrence: what it means, how it was spelled, its argument.
struct Occurrence {
    tag: Tag,
    spelling: String,
    arg: Option<String>,
}

/// Splits the words into options (with their arguments) and positional
/// words, as popt does.
fn tokenize<S: AsRef<str>>(words: &[S]) -> Result<(Vec<Occurrence>, Vec<String>), ParseError> {
    let mut occurrences = Vec::new();
    let mut positional = Vec::new();
    let mut index = 0;
    let mut only_positional = false;
    while index < words.len() {
        let word = words[index].as_ref();
        index += 1;
        if only_positional || word == "-" || !word.starts_with('-') {
            positional.push(word.to_owned());
            continue;
        }
        if word == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let Some(&Spec { arg, tag, .. }) = OPTIONS.iter().find(|spec| spec.long == name) else {
                return Err(ParseError::new(format!("--{name}: unknown option")));
            };
            let spelling = format!("--{name}");
            let value = match (arg, attached) {
                (Arg::None, Some(_)) => {
                    return Err(ParseError::new(format!(
                        "{spelling}: option does not take an argument"
                    )))
                }
                (Arg::None, None) => None,
                (_, Some(value)) => Some(value),
                (Arg::Required, None) => match words.get(index) {
                    Some(next) => {
                        index += 1;
                        Some(next.as_ref().to_owned())
                    }
                    None => return Err(ParseError::new(format!("{spelling}: missing argument"))),
                },
                (Arg::Optional, None) => take_optional(words, &mut index),
            };
            occurrences.push(Occurrence {
                tag,
                spelling,
                arg: value,
            });
            continue;
        }
        let cluster: Vec<char> = word[1..].chars().collect();
        let mut position = 0;
        while position < cluster.len() {
            let letter = cluster[position];
            position += 1;
            let Some(&Spec { arg, tag, .. }) =
                OPTIONS.iter().find(|spec| spec.short.contains(&letter))
            else {
                return Err(ParseError::new(format!("-{letter}: unknown option")));
            };
            let spelling = format!("-{letter}");
            let rest: String = cluster[position..].iter().collect();
            let value = match arg {
                Arg::None => None,
                _ if !rest.is_empty() => {
                    position = cluster.len();
                    Some(rest)
                }
                Arg::Required => match words.get(index) {
                    Some(next) => {
                        index += 1;
                        Some(next.as_ref().to_owned())
                    }
                    None => return Err(ParseError::new(format!("{spelling}: missing argument"))),
                },
                Arg::Optional => take_optional(words, &mut index),
            };
            occurrences.push(Occurrence {
                tag,
                spelling,
                arg: value,
            });
        }
    }
    Ok((occurrences, positional))
}

/// popt's optional argument: the next word, unless it looks like an option.
fn take_optional<S: AsRef<str>>(words: &[S], index: &mut usize) -> Option<String> {
    let next = words.get(*index)?.as_ref();
    if next.starts_with('-') {
        return None;
    }
    *index += 1;
    Some(next.to_owned())
}

/// Everything the options said, before the command is built.
struct Parsed {
    cmd: Cmd,
    options: u32,
    service: Option<ServiceKey>,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<Ipv4Addr>,
    ops: bool,
    sched_flags: Option<String>,
    real: Option<(Ipv4Addr, Option<u16>)>,
    forward: Forward,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    format: Format,
    laddr: Option<Ipv4Addr>,
    ifname: Option<String>,
    /// `--start-daemon`/`--stop-daemon`'s argument.
    state: Option<SyncState>,
    mcast_interface: Option<String>,
    syncid: u8,
    sync_maxlen: Option<u16>,
    mcast_group: Option<Ipv4Addr>,
    mcast_port: Option<u16>,
    mcast_ttl: Option<u8>,
}

impl Parsed {
    fn has(&self, opt: Opt) -> bool {
        self.options & opt.bit() != 0
    }

    fn set(&mut self, opt: Opt) -> Result<(), ParseError> {
        if self.has(opt) {
            return Err(ParseError::new(format!(
                "multiple '{}' options specified",
                opt.name()
            )));
        }
        self.options |= opt.bit();
        Ok(())
    }
}

fn parse_words<S: AsRef<str>>(words: &[S], reading_stdin: bool) -> Result<Action, ParseError> {
    let (occurrences, positional) = tokenize(words)?;
    let mut occurrences = occurrences.into_iter();
    let (cmd, cmd_arg) = match occurrences.next() {
        None => return Err(ParseError::try_help()),
        Some(first) => match first.tag {
            Tag::Command(cmd) => (cmd, first.arg),
            Tag::Help => return Ok(Action::Help),
            Tag::Version => return Ok(Action::Version),
            Tag::Unsupported(why) => return Err(ParseError::unsupported(&first.spelling, why)),
            _ => return Err(ParseError::try_help()),
        },
    };
    // ipvsadm reads the daemon's state with the command, before any option.
    let state = match cmd {
        Cmd::StartDaemon | Cmd::StopDaemon => Some(match cmd_arg.as_deref() {
            Some("master") => SyncState::Master,
            Some("backup") => SyncState::Backup,
            // ipvsadm's two messages, its typo in the second included.
            _ if cmd == Cmd::StartDaemon => {
                return Err(ParseError::new("illegal start-daemon parameter specified"))
            }
            _ => return Err(ParseError::new("illegal start_daemon specified")),
        }),
        _ => None,
    };
    let mut parsed = Parsed {
        cmd,
        options: 0,
        service: None,
        scheduler: None,
        persistent: None,
        netmask: None,
        ops: false,
        sched_flags: None,
        real: None,
        forward: Forward::Dr,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        format: Format::default(),
        laddr: None,
        ifname: None,
        state,
        mcast_interface: None,
        syncid: 0,
        sync_maxlen: None,
        mcast_group: None,
        mcast_port: None,
        mcast_ttl: None,
    };
    for occurrence in occurrences {
        apply_option(&mut parsed, occurrence)?;
    }

    let mut positional = positional.into_iter();
    let mut timeouts = None;
    if cmd == Cmd::Set {
        let values: Vec<String> = positional.by_ref().take(3).collect();
        if values.len() < 3 {
            return Err(ParseError::new("--set option requires 3 timeout values"));
        }
        timeouts = Some((
            parse_timeout(&values[0], 0)?,
            parse_timeout(&values[1], 0)?,
            parse_timeout(&values[2], 0)?,
        ));
    }
    if let Some(extra) = positional.next() {
        return Err(ParseError::new(format!("unexpected argument {extra}")));
    }
    let flags = match &parsed.sched_flags {
        Some(text) => sched_flags(parsed.scheduler.as_deref().unwrap_or("wlc"), text)?,
        None => Vec::new(),
    };
    check_options(&parsed)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if let Some(ServiceKey::Inet { port: 0, .. }) = parsed.service {
            if parsed.persistent.is_none() {
                return Err(ParseError::new(
                    "Zero port specified for non-persistent service",
                ));
            }
        }
        if parsed.ops
            && matches!(
                parsed.service,
                Some(ServiceKey::Inet {
                    protocol: Protocol::Tcp,
                    ..
                })
            )
        {
            return Err(ParseError::new(
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
    }

    let service = parsed.service;
    let key = || service.expect("checked: the command requires a service");
    let action = match cmd {
        Cmd::Add | Cmd::Edit => {
            let spec = ServiceSpec {
                key: key(),
                scheduler: parsed.scheduler.clone().unwrap_or_else(|| "wlc".to_owned()),
                flags,
                persistent: parsed.persistent,
                netmask: parsed.netmask.filter(|mask| *mask != Ipv4Addr::BROADCAST),
                ops: parsed.ops,
            };
            Action::Apply(if cmd == Cmd::Add {
                Command::AddService { service: spec }
            } else {
                Command::EditService { service: spec }
            })
        }
        Cmd::Delete => Action::Apply(Command::DeleteService { service: key() }),
        Cmd::Flush => Action::Apply(Command::Clear {}),
        Cmd::Zero => Action::Apply(Command::Zero { service }),
        Cmd::Set => {
            let (tcp, tcpfin, udp) = timeouts.expect("parsed above for --set");
            Action::Apply(Command::SetTimeouts { tcp, tcpfin, udp })
        }
        Cmd::StartDaemon => {
            let defaults = SyncDaemon::on(
                parsed
                    .mcast_interface
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MCAST_INTERFACE.to_owned()),
            );
            let daemon = SyncDaemon {
                syncid: parsed.syncid,
                sync_maxlen: parsed.sync_maxlen.unwrap_or(defaults.sync_maxlen),
                mcast_group: parsed.mcast_group.unwrap_or(defaults.mcast_group),
                mcast_port: parsed.mcast_port.unwrap_or(defaults.mcast_port),
                mcast_ttl: parsed.mcast_ttl.unwrap_or(defaults.mcast_ttl),
                ..defaults
            };
            Action::Apply(Command::StartDaemon {
                state: parsed.state.expect("read with the command"),
                daemon,
            })
        }
        Cmd::StopDaemon => Action::Apply(Command::StopDaemon {
            state: parsed.state.expect("read with the command"),
        }),
        Cmd::Save => Action::Save,
        Cmd::Restore => {
            if reading_stdin {
                return Err(ParseError::try_help());
            }
            Action::Restore
        }
        Cmd::AddDest | Cmd::EditDest | Cmd::DeleteDest => {
            let key = key();
            let (addr, port) = parsed.real.expect("checked: the command requires -r");
            let mut port = port.unwrap_or(key.port());
            // IPVS cannot change the port without rewriting the packet.
            if !matches!(key, ServiceKey::Mark(_))
                && matches!(parsed.forward, Forward::Dr | Forward::Tun)
                && cmd != Cmd::DeleteDest
            {
                port = key.port();
            }
            let real = RealSpec {
                addr,
                port,
                forward: parsed.forward,
                weight: parsed.weight,
                u_threshold: parsed.u_threshold,
                l_threshold: parsed.l_threshold,
            };
            Action::Apply(match cmd {
                Cmd::AddDest => Command::AddReal { service: key, real },
                Cmd::EditDest => Command::EditReal { service: key, real },
                _ => Command::DeleteReal {
                    service: key,
                    addr,
                    port,
                    purge: false,
                },
            })
        }
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let laddr = LaddrSpec {
                addr: parsed.laddr.expect("checked: the command requires -z"),
                ifname: parsed.ifname.clone(),
            };
            Action::Apply(if cmd == Cmd::AddLaddr {
                Command::AddLaddr {
                    service: key(),
                    laddr,
                }
            } else {
                Command::DelLaddr {
                    service: key(),
                    laddr,
                }
            })
        }
        Cmd::GetLaddr => Action::List(Listing::Laddrs { service }),
        Cmd::List => {
            let connection_like =
                parsed.has(Opt::Connection) || parsed.has(Opt::Timeout) || parsed.has(Opt::Daemon);
            let detail =
                parsed.has(Opt::Stats) || parsed.has(Opt::Rate) || parsed.has(Opt::Thresholds);
            if connection_like && detail
                || (parsed.has(Opt::Timeout) || parsed.has(Opt::Daemon))
                    && parsed.has(Opt::PersistentConn)
            {
                return Err(ParseError::new("options conflicts in the list command"));
            }
            let format = parsed.format;
            Action::List(if parsed.has(Opt::Connection) {
                Listing::Connections { format }
            } else if service.is_some() {
                Listing::Services { service, format }
            } else if parsed.has(Opt::Timeout) {
                Listing::Timeouts
            } else if parsed.has(Opt::Daemon) {
                Listing::Daemons
            } else {
                Listing::Services {
                    service: None,
                    format,
                }
            })
        }
    };
    Ok(action)
}

fn apply_option(parsed: &mut Parsed, occurrence: Occurrence) -> Result<(), ParseError> {
    let given = occurrence.arg.is_some();
    let arg = occurrence.arg.unwrap_or_default();
    match occurrence.tag {
        // ipvsadm's popt table does not handle a second command; it lands in
        // the "invalid option" branch.
        Tag::Command(_) | Tag::Help | Tag::Version => {
            return Err(ParseError::new(format!(
                "invalid option `{}'",
                occurrence.spelling
            )))
        }
        Tag::Unsupported(why) => return Err(ParseError::unsupported(&occurrence.spelling, why)),
        Tag::Tcp | Tag::Udp => {
            parsed.set(Opt::Service)?;
            let protocol = if occurrence.tag == Tag::Tcp {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let (addr, port) = parse_address(&arg, protocol).ok_or_else(|| {
                ParseError::new("illegal virtual server address[:port] specified")
            })?;
            parsed.service = Some(ServiceKey::Inet {
                protocol,
                addr,
                port: port.unwrap_or(0),
            });
        }
        Tag::Fwmark => {
            parsed.set(Opt::Service)?;
            let mark = arg
                .parse::<u32>()
                .ok()
                .filter(|mark| *mark > 0 && arg.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    ParseError::new(format!("invalid fwmark value `{arg}' specified"))
                })?;
            parsed.service = Some(ServiceKey::Mark(mark));
        }
        Tag::Scheduler => {
            parsed.set(Opt::Scheduler)?;
            parsed.scheduler = Some(arg);
        }
        Tag::Persistent => {
            parsed.set(Opt::Persistent)?;
            parsed.persistent = Some(if given {
                parse_timeout(&arg, 1)?
            } else {
                DEFAULT_PERSISTENCE
            });
        }
        Tag::Netmask => {
            parsed.set(Opt::Netmask)?;
            parsed.netmask = Some(arg.parse().map_err(|_| {
                ParseError::new("illegal virtual server persistent mask specified")
            })?);
        }
        Tag::Server => {
            parsed.set(Opt::Server)?;
            let protocol = match parsed.service {
                Some(ServiceKey::Inet { protocol, .. }) => protocol,
                _ => Protocol::Tcp,
            };
            parsed.real =
                Some(parse_address(&arg, protocol).ok_or_else(|| {
                    ParseError::new("illegal real server address[:port] specified")
                })?);
        }
        Tag::Masq | Tag::Ipip | Tag::Gatewaying | Tag::FullNat => {
            parsed.set(Opt::Forward)?;
            parsed.forward = match occurrence.tag {
                Tag::Masq => Forward::Nat,
                Tag::Ipip => Forward::Tun,
                Tag::Gatewaying => Forward::Dr,
                _ => Forward::FullNat,
            };
        }
        Tag::Weight => {
            parsed.set(Opt::Weight)?;
            parsed.weight =
                number(&arg, 65535).ok_or_else(|| ParseError::new("illegal weight specified"))?;
        }
        Tag::UThreshold => {
            parsed.set(Opt::UThreshold)?;
            parsed.u_threshold = number(&arg, i32::MAX as u32)
                .ok_or_else(|| ParseError::new("illegal u_threshold specified"))?;
        }
        Tag::LThreshold => {
            parsed.set(Opt::LThreshold)?;
            parsed.l_threshold = number(&arg, i32::MAX as u32)
                .ok_or_else(|| ParseError::new("illegal l_threshold specified"))?;
        }
        Tag::Numeric => {
            parsed.set(Opt::Numeric)?;
            parsed.format.numeric = true;
        }
        Tag::Connection => parsed.set(Opt::Connection)?,
        Tag::Timeout => parsed.set(Opt::Timeout)?,
        Tag::Daemon => parsed.set(Opt::Daemon)?,
        Tag::Stats => {
            parsed.set(Opt::Stats)?;
            parsed.format.stats = true;
        }
        Tag::Rate => {
            parsed.set(Opt::Rate)?;
            parsed.format.rate = true;
        }
        Tag::Thresholds => {
            parsed.set(Opt::Thresholds)?;
            parsed.format.thresholds = true;
        }
        Tag::PersistentConn => {
            parsed.set(Opt::PersistentConn)?;
            parsed.format.persistent_conn = true;
        }
        Tag::NoSort => {
            parsed.set(Opt::NoSort)?;
            parsed.format.nosort = true;
        }
        Tag::Sort => {}
        Tag::Exact => {
            parsed.set(Opt::Exact)?;
            parsed.format.exact = true;
        }
        Tag::Ops => {
            parsed.set(Opt::Ops)?;
            parsed.ops = true;
        }
        Tag::SchedFlags => {
            parsed.set(Opt::SchedFlags)?;
            parsed.sched_flags = Some(arg);
        }
        Tag::TunType => {
            parsed.set(Opt::TunType)?;
            match arg.as_str() {
                "ipip" => {}
                "gue" | "gre" => {
                    return Err(ParseError::unsupported(
                        "--tun-type",
                        "rvs tunnels with IP-in-IP only (--tun-type ipip)",
                    ))
                }
                _ => return Err(ParseError::new("illegal tunnel type specified")),
            }
        }
        Tag::Laddr => {
            parsed.set(Opt::Laddr)?;
            parsed.laddr = Some(arg.parse().map_err(|_| {
                ParseError::new(format!("illegal local address `{arg}' specified"))
            })?);
        }
        Tag::Ifname => {
            parsed.set(Opt::Ifname)?;
            parsed.ifname = Some(arg);
        }
        Tag::McastInterface => {
            parsed.set(Opt::Mcast)?;
            parsed.mcast_interface = Some(arg);
        }
        Tag::SyncId => {
            parsed.set(Opt::SyncId)?;
            parsed.syncid = bounded(&arg, 0, 255, "illegal syncid specified")? as u8;
        }
        Tag::McastGroup => {
            parsed.set(Opt::McastGroup)?;
            parsed.mcast_group = Some(mcast_group(&arg)?);
        }
        Tag::McastPort => {
            parsed.set(Opt::McastPort)?;
            parsed.mcast_port =
                Some(bounded(&arg, 1, 65535, "illegal mcast-port specified")? as u16);
        }
        Tag::McastTtl => {
            parsed.set(Opt::McastTtl)?;
            parsed.mcast_ttl = Some(bounded(&arg, 1, 255, "illegal mcast-ttl specified")? as u8);
        }
        Tag::SyncMaxlen => {
            parsed.set(Opt::SyncMaxlen)?;
            let maxlen = bounded(&arg, 1, MAX_SYNC_MAXLEN, "illegal sync-maxlen specified")?;
            parsed.sync_maxlen = Some(maxlen as u16);
        }
    }
    Ok(())
}

/// [`number`] within `min..=max`, else ipvsadm's `message`.
fn bounded(text: &str, min: u32, max: u32, message: &str) -> Result<u32, ParseError> {
    number(text, max)
        .filter(|value| *value >= min)
        .ok_or_else(|| ParseError::new(message))
}

/// ipvsadm's `--mcast-group`: an IPv4 multicast address; an IPv6 one (any
/// text with a colon) is read as ipvsadm reads it, then refused: rvs syncs
/// over IPv4 only.
fn mcast_group(text: &str) -> Result<Ipv4Addr, ParseError> {
    if text.contains(':') {
        return Err(match text.parse::<Ipv6Addr>() {
            Ok(group) if group.is_multicast() => {
                ParseError::unsupported("--mcast-group", IPV4_ONLY)
            }
            _ => ParseError::new(format!("invalid IPv6 mcast-group `{text}'")),
        });
    }
    text.parse::<Ipv4Addr>()
        .ok()
        .filter(Ipv4Addr::is_multicast)
        .ok_or_else(|| ParseError::new(format!("invalid IPv4 mcast-group `{text}'")))
}

/// ipvsadm's generic_opt_check over its table of legal options.
fn check_options(parsed: &Parsed) -> Result<(), ParseError> {
    let cmd = parsed.cmd;
    let mut first_exclusive: Option<Opt> = None;
    for opt in ALL_OPTS {
        let rule = cmd.rule(opt);
        if !parsed.has(opt) {
            if rule == '+' {
                return Err(ParseError::new(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                )));
            }
            continue;
        }
        match rule {
            'x' => {
                return Err(ParseError::new(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                )))
            }
            '1' => match first_exclusive {
                None => first_exclusive = Some(opt),
                Some(first) => {
                    return Err(ParseError::new(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        first.name(),
                        cmd.name()
                    )))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// ipvsadm's string_to_number: all digits (an optional sign), within
/// `0..=max`.
fn number(text: &str, max: u32) -> Option<u32> {
    let value: i64 = text.parse().ok()?;
    (0..=i64::from(max))
        .contains(&value)
        .then_some(value as u32)
}

/// ipvsadm's parse_timeout.
fn parse_timeout(text: &str, min: u32) -> Result<u32, ParseError> {
    number(text, MAX_TIMEOUT)
        .filter(|value| *value >= min)
        .ok_or_else(|| ParseError::new(format!("invalid timeout value `{text}' specified")))
}

/// ipvsadm's parse_service for IPv4: `addr` or `addr:port`, the port a
/// number or an `/etc/services` name. `None` where ipvsadm says "illegal".
fn parse_address(text: &str, protocol: Protocol) -> Option<(Ipv4Addr, Option<u16>)> {
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    match text.rsplit_once(':') {
        None => Some((text.parse().ok()?, None)),
        Some((addr, port)) => {
            let addr = addr.parse().ok()?;
            let port = match number(port, 65535) {
                Some(port) => port as u16,
                None => service_port(port, protocol)?,
            };
            Some((addr, Some(port)))
        }
    }
}

/// The port of a service name in /etc/services.
fn service_port(name: &str, protocol: Protocol) -> Option<u16> {
    if name.is_empty() {
        return None;
    }
    let suffix = match protocol {
        Protocol::Tcp => "/tcp",
        Protocol::Udp => "/udp",
    };
    let services = std::fs::read_to_string("/etc/services").ok()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let official = fields.next()?;
        let port = fields.next()?.strip_suffix(suffix)?.parse().ok()?;
        (official == name || fields.any(|alias| alias == name)).then_some(port)
    })
}

/// ipvsadm's parse_sched_flags: the `-b` list checked by the one rule of
/// scheduler flags ([`SchedFlags::parse`]) and refused in ipvsadm's words,
/// returned by the names ipvsadm lists them with for this scheduler, in bit
/// order.
fn sched_flags(scheduler: &str, text: &str) -> Result<Vec<String>, ParseError> {
    if text.split(',').all(str::is_empty) {
        return Err(ParseError::new(format!("invalid scheduler flag `{text}'")));
    }
    // A scheduler rvs does not know is rvsd's to refuse; until then the sh
    // and mh flags are foreign to it, as to every scheduler but theirs.
    let kind = scheduler.parse().unwrap_or(SchedulerKind::Wlc);
    let flags = SchedFlags::parse(kind, text).map_err(|err| {
        ParseError::new(match err {
            SchedFlagError::Invalid(flag) => format!("invalid scheduler flag `{flag}'"),
            SchedFlagError::Incompatible { flag, .. } => {
                format!("incompatible scheduler flag `{flag}'")
            }
        })
    })?;
    Ok(flags.names(kind).map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_every_option_of_the_table() {
        let help = options_help();
        let words: Vec<&str> = help
            .split(|c: char| c.is_whitespace() || c == '|')
            .collect();
        for spec in OPTIONS {
            let long = format!("--{}", spec.long);
            assert!(words.contains(&long.as_str()), "{long}:\n{help}");
            for short in spec.short {
                let short = format!("-{short}");
                assert!(words.contains(&short.as_str()), "{short}:\n{help}");
            }
            for line in spec.text.lines() {
                assert!(help.contains(line), "{long}: {line}");
            }
        }
    }

    #[test]
    fn each_spelling_means_one_option() {
        for (index, spec) in OPTIONS.iter().enumerate() {
            for other in &OPTIONS[index + 1..] {
                assert_ne!(spec.long, other.long);
                for short in spec.short {
                    assert!(!other.short.contains(short), "-{short}");
                }
            }
        }
    }

    /// The help names an argument exactly where the grammar takes one.
    #[test]
    fn the_help_names_every_argument() {
        for spec in OPTIONS
            .iter()
            .filter(|spec| spec.section != Section::Refused)
        {
            let operands = spec.operands;
            let bracketed = operands.starts_with('[') && operands.ends_with(']');
            let named = match spec.arg {
                Arg::None => operands.is_empty() || spec.tag == Tag::Command(Cmd::Set),
                // A command's argument is named in the synopsis, as ipvsadm's.
                Arg::Required if spec.section == Section::Commands => {
                    operands.is_empty()
                        && super::super::SYNOPSIS
                            .contains(&format!("rvsadm --{} {{master|backup}}", spec.long))
                }
                Arg::Required => !operands.is_empty() && !bracketed,
                Arg::Optional => bracketed,
            };
            assert!(named, "--{}: `{operands}'", spec.long);
        }
    }

    #[test]
    fn the_help_names_every_scheduler_and_the_default() {
        let names: Vec<&str> = SchedulerKind::ALL.iter().map(|s| s.name()).collect();
        let help = options_help();
        assert!(
            help.contains(&format!("one of {},", names.join("|"))),
            "{help}"
        );
        let default = SchedulerKind::default().name();
        assert!(help.contains(&format!("the default scheduler is {default}.")));
    }
}
