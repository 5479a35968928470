//! keepalived's `virtual_server`, `virtual_server_group`, `real_server`
//! and checker blocks as rvs [`Service`]s (REFERENCE.md §6).
//!
//! Promises:
//! - Every keyword is either mapped onto the rvs key of the same meaning,
//!   accepted with a note saying why it changes nothing in rvs, or refused
//!   with its file, line and the reason; nothing is dropped silently.
//! - Inheritance is keepalived's: a checker's `delay_loop`,
//!   `connect_timeout`, `retry`, `delay_before_retry` and `warmup` are its
//!   own, else its real_server's, else its virtual_server's, else rvs's
//!   defaults (which are keepalived's); a url's `virtualhost` likewise
//!   through its checker, real_server and virtual_server; a real's
//!   `lvs_method` and `inhibit_on_failure` its own, else its
//!   virtual_server's.
//! - A `virtual_server group NAME` is one service per address and port of
//!   the group (and per `fwmark` of it), each with the same settings.
//! - Each service comes with an [`Origin`]: where each of its keys was
//!   written, so that a later refusal by key path names the line.

use super::parse::{Node, Word};
use super::syncd::{self, SyncOrigin};
use super::{Pos, Refusal};
use crate::config::{
    Check, CheckKind, Forward, Protocol, Real, Seconds, Service, SorryServer, StatusCodes, Sync,
    Url, MAX_SECONDS,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Addresses one group entry (a range or a prefix) may stand for, at most.
pub const MAX_RANGE: u64 = 4096;

/// keepalived's persistence timeout when none is given (IPVS's 6 minutes).
const DEFAULT_PERSISTENCE: u32 = 360;

const VRRP: &str = "VRRP belongs to keepalived itself (see the HA issue)";

/// Top-level blocks that are keepalived's own business, and why.
const IGNORED: &[(&str, &str)] = &[
    ("vrrp_instance", VRRP),
    ("vrrp_sync_group", VRRP),
    ("vrrp_script", VRRP),
    ("vrrp_track_file", VRRP),
    ("vrrp_track_process", VRRP),
    ("track_file", VRRP),
    ("track_process", VRRP),
    ("garp_group", VRRP),
    ("linkbeat_interfaces", VRRP),
    ("bfd_instance", "BFD belongs to keepalived itself"),
    (
        "static_ipaddress",
        "the host's own addresses and routes are keepalived's to set",
    ),
    (
        "static_routes",
        "the host's own addresses and routes are keepalived's to set",
    ),
    (
        "static_rules",
        "the host's own addresses and routes are keepalived's to set",
    ),
];

/// The checkers rvs runs, by keepalived's block names.
const CHECKERS: &[(&str, CheckKind)] = &[
    ("TCP_CHECK", CheckKind::TcpCheck),
    ("HTTP_GET", CheckKind::HttpGet),
    ("SSL_GET", CheckKind::SslGet),
    ("MISC_CHECK", CheckKind::MiscCheck),
    ("UDP_CHECK", CheckKind::UdpCheck),
];

/// keepalived's checkers rvs does not run.
const OTHER_CHECKERS: &[&str] = &[
    "PING_CHECK",
    "DNS_CHECK",
    "SMTP_CHECK",
    "BFD_CHECK",
    "FILE_CHECK",
];

/// Scheduler flags, as keepalived and ipvsadm `-b` name them.
const FLAGS: &[&str] = &[
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
];

/// Key paths, where each was written and the keyword there.
type Keys = Vec<(String, Pos, String)>;

/// Where the keys of one service were written: (key path within the
/// service, where, the keyword or block there). The empty key is the
/// service's own `virtual_server`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Origin {
    keys: Keys,
}

impl Origin {
    fn add(&mut self, key: impl Into<String>, at: &Pos, what: impl Into<String>) {
        self.keys.push((key.into(), at.clone(), what.into()));
    }

    /// Where the key path `key` (within the service, like
    /// `reals[1].checks[0].connect_port`) was written: its own line, or
    /// else that of the nearest block holding it.
    pub fn locate(&self, key: &str) -> Option<(&Pos, &str)> {
        let holds = |k: &str| {
            k.is_empty()
                || key == k
                || key
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        };
        // The longest match, the last written among equals (a group
        // member's line over its virtual_server's).
        self.keys
            .iter()
            .filter(|(k, ..)| holds(k))
            .max_by_key(|(k, ..)| k.len())
            .map(|(_, at, what)| (at, what.as_str()))
    }
}

/// What `global_defs` is besides its `lvs_sync_daemon`.
const GLOBAL_DEFS: &str = "keepalived's own settings (router id, mail, scripts)";

/// The services of a configuration, with where each came from, and its
/// sync daemons.
pub(super) struct Mapped {
    pub services: Vec<Service>,
    pub origins: Vec<Origin>,
    pub sync: Option<(Sync, SyncOrigin)>,
}

/// Maps the top-level statements `nodes`; what is accepted without effect
/// or skipped is said in `notes`.
pub(super) fn map(nodes: &[Node], notes: &mut Vec<String>) -> Result<Mapped, Refusal> {
    // Groups may be defined after the virtual servers that use them.
    let mut groups: HashMap<&str, Vec<Member>> = HashMap::new();
    for node in nodes.iter().filter(|n| n.name() == "virtual_server_group") {
        let name = one_arg(node)?;
        let members = group(node)?;
        if groups.insert(&name.text, members).is_some() {
            return Err(refuse(
                node,
                format!("virtual_server_group {} is defined twice", name.text),
            ));
        }
    }
    let mut mapped = Mapped {
        services: Vec::new(),
        origins: Vec::new(),
        sync: syncd::sync(nodes, notes)?,
    };
    for node in nodes {
        match node.name() {
            "virtual_server_group" => {}
            "global_defs" => {
                let syncd = node
                    .block
                    .iter()
                    .flatten()
                    .any(|n| n.name() == "lvs_sync_daemon");
                let but = if syncd {
                    " but for lvs_sync_daemon"
                } else {
                    ""
                };
                notes.push(format!(
                    "{}: global_defs ignored{but}: {GLOBAL_DEFS}",
                    node.at()
                ));
            }
            "virtual_server" => {
                for (service, origin) in virtual_server(node, &groups, notes)? {
                    mapped.services.push(service);
                    mapped.origins.push(origin);
                }
            }
            "SSL" => {
                return Err(refuse(
                    node,
                    "rvs's SSL_GET presents no client certificate; drop the SSL block".to_owned(),
                ))
            }
            name => match IGNORED.iter().find(|(ignored, _)| *ignored == name) {
                Some((_, why)) => {
                    notes.push(format!("{}: {} ignored: {why}", node.at(), label(node)))
                }
                None => {
                    return Err(syntax_extension(node).unwrap_or_else(|| {
                        refuse(
                            node,
                            "not a keepalived block rvs knows (it imports virtual_server and \
                             virtual_server_group)"
                                .to_owned(),
                        )
                    }))
                }
            },
        }
    }
    Ok(mapped)
}

/// What a service is known by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    Address { vip: Ipv4Addr, port: u16 },
    Mark(u32),
}

/// One entry of a `virtual_server_group`, or a virtual server's own
/// address: the identity of one service, and where it was written.
#[derive(Clone, Debug)]
struct Member {
    identity: Identity,
    at: Pos,
    what: String,
}

/// `virtual_server_group NAME { IP PORT; IP-END PORT; IP/LEN PORT; fwmark N }`.
fn group(node: &Node) -> Result<Vec<Member>, Refusal> {
    let mut members = Vec::new();
    for entry in body(node)? {
        no_block(entry)?;
        let what = label(entry);
        if entry.name() == "fwmark" {
            let mark = match entry.args.as_slice() {
                [mark] => mark,
                [mark, family] if family.text == "inet" => mark,
                [_, family] if family.text == "inet6" => {
                    return Err(refuse(entry, ipv6_reason()));
                }
                _ => {
                    return Err(refuse(
                        entry,
                        "takes a mark number (and optionally inet)".to_owned(),
                    ))
                }
            };
            members.push(Member {
                identity: Identity::Mark(number(entry, mark)?),
                at: entry.at().clone(),
                what,
            });
            continue;
        }
        let port = match entry.args.as_slice() {
            [] => 0,
            [port] => number(entry, port)?,
            _ => {
                return Err(refuse(
                    entry,
                    "a group entry is `IP PORT`, `IP-END PORT`, `IP/LEN PORT` or `fwmark N`"
                        .to_owned(),
                ))
            }
        };
        for vip in addresses(entry)? {
            members.push(Member {
                identity: Identity::Address { vip, port },
                at: entry.at().clone(),
                what: what.clone(),
            });
        }
    }
    if members.is_empty() {
        return Err(refuse(node, "the group has no entries".to_owned()));
    }
    Ok(members)
}

/// The addresses of a group entry (its keyword): `10.0.0.1`, the range
/// `10.0.0.1-5` (the last byte up to 5) or `10.0.0.1-10.0.0.5`, or the
/// prefix `10.0.0.0/29`.
fn addresses(entry: &Node) -> Result<Vec<Ipv4Addr>, Refusal> {
    let text = entry.name();
    if text.contains(':') {
        return Err(refuse(entry, ipv6_reason()));
    }
    let bad = || {
        refuse(
            entry,
            format!("`{text}` is not an IPv4 address, range (10.0.0.1-5) or prefix (10.0.0.0/29)"),
        )
    };
    let parse = |t: &str| t.parse::<Ipv4Addr>().map(u32::from).map_err(|_| bad());
    let (first, last) = if let Some((base, len)) = text.split_once('/') {
        let base = parse(base)?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| (1..=32).contains(l))
            .ok_or_else(bad)?;
        let host = u32::MAX.checked_shr(len).unwrap_or(0);
        if base & host != 0 {
            return Err(refuse(
                entry,
                format!("`{text}` has host bits set; a prefix starts at its network address"),
            ));
        }
        (base, base | host)
    } else if let Some((start, end)) = text.split_once('-') {
        let start = parse(start)?;
        let end = if end.contains('.') {
            parse(end)?
        } else {
            let byte: u8 = end.parse().map_err(|_| bad())?;
            (start & !0xff) | u32::from(byte)
        };
        if end < start {
            return Err(refuse(entry, format!("range `{text}` runs backwards")));
        }
        (start, end)
    } else {
        let one = parse(text)?;
        (one, one)
    };
    let count = u64::from(last - first) + 1;
    if count > MAX_RANGE {
        return Err(refuse(
            entry,
            format!("`{text}` stands for {count} addresses, more than the {MAX_RANGE} rvs expands"),
        ));
    }
    Ok((first..=last).map(Ipv4Addr::from).collect())
}

/// Timing keys of a checker, a real_server or a virtual_server, each
/// inherited downward where the level below does not set it.
#[derive(Clone, Debug, Default)]
struct Timing {
    delay_loop: Option<Seconds>,
    connect_timeout: Option<Seconds>,
    retry: Option<u32>,
    delay_before_retry: Option<Seconds>,
    warmup: Option<Seconds>,
}

impl Timing {
    /// Takes `node` if it is a timing keyword; `Ok(false)` if it is not.
    fn take(&mut self, node: &Node) -> Result<bool, Refusal> {
        match node.name() {
            "delay_loop" => self.delay_loop = Some(positive_seconds(node)?),
            "connect_timeout" => self.connect_timeout = Some(positive_seconds(node)?),
            "warmup" => self.warmup = Some(seconds(node, one_arg(node)?)?),
            "delay_before_retry" => self.delay_before_retry = Some(seconds(node, one_arg(node)?)?),
            // nb_get_retry is keepalived 1's name for retry.
            "retry" | "nb_get_retry" => self.retry = Some(number(node, one_arg(node)?)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Sets what `check` leaves unset from this level.
    fn fill(&self, check: &mut Check) {
        check.delay_loop = check.delay_loop.or(self.delay_loop);
        check.connect_timeout = check.connect_timeout.or(self.connect_timeout);
        check.retry = check.retry.or(self.retry);
        check.delay_before_retry = check.delay_before_retry.or(self.delay_before_retry);
        check.warmup = check.warmup.or(self.warmup);
    }
}

/// A real_server before what it inherits from its virtual_server.
struct RealDraft {
    real: Real,
    /// The port written, if any (0 is none).
    port: Option<u16>,
    forward: Option<Forward>,
    inhibit: Option<bool>,
    timing: Timing,
    virtualhost: Option<String>,
    checks: Vec<CheckDraft>,
    /// Keys within the real (`weight`, `checks[0].retry`).
    keys: Keys,
}

/// A checker before what it inherits.
struct CheckDraft {
    check: Check,
    timing: Timing,
    virtualhost: Option<String>,
}

/// The services of one `virtual_server` block.
fn virtual_server(
    node: &Node,
    groups: &HashMap<&str, Vec<Member>>,
    notes: &mut Vec<String>,
) -> Result<Vec<(Service, Origin)>, Refusal> {
    let own = |identity| Member {
        identity,
        at: node.at().clone(),
        what: label(node),
    };
    let members = match node.args.as_slice() {
        [kind, mark] if kind.text == "fwmark" => vec![own(Identity::Mark(number(node, mark)?))],
        [kind, name] if kind.text == "group" => {
            groups.get(name.text.as_str()).cloned().ok_or_else(|| {
                refuse(
                    node,
                    format!("virtual_server_group {} is not defined", name.text),
                )
            })?
        }
        [vip] => vec![own(Identity::Address {
            vip: ipv4(node, vip)?,
            port: 0,
        })],
        [vip, port] => vec![own(Identity::Address {
            vip: ipv4(node, vip)?,
            port: number(node, port)?,
        })],
        _ => {
            return Err(refuse(
                node,
                "expects `IP PORT`, `fwmark N` or `group NAME`".to_owned(),
            ))
        }
    };
    let mut service = Service::unnamed();
    let mut origin = Origin::default();
    origin.add("", node.at(), label(node));
    let mut timing = Timing::default();
    // keepalived's default is NAT; where lb_kind (or lvs_method) was written.
    let mut forward = (Forward::Nat, None::<&Node>);
    let mut protocol = (Protocol::Tcp, None::<Pos>);
    let mut virtualhost = None;
    let mut inhibit = false;
    let mut ops = None::<&Node>;
    let mut sorry_forward = None::<(Forward, &Node)>;
    let mut sorry_inhibit = None::<&Node>;
    let mut reals = Vec::new();
    for n in body(node)? {
        // Only real_server takes a block here (a checker is refused below).
        if n.name() != "real_server" && !is_checker(n.name()) {
            no_block(n)?;
        }
        if timing.take(n)? {
            continue;
        }
        match n.name() {
            "ip_family" => match one_arg(n)?.text.as_str() {
                "inet" => {}
                "inet6" => return Err(refuse(n, ipv6_reason())),
                other => return Err(refuse(n, format!("`{other}`: expected inet"))),
            },
            "lb_algo" | "lvs_sched" => {
                let name = one_arg(n)?;
                service.scheduler = name
                    .text
                    .parse()
                    .map_err(|err| refuse(n, format!("{err}")))?;
                origin.add("scheduler", n.at(), n.name());
            }
            "lb_kind" | "lvs_method" => forward = (forwarding(n)?, Some(n)),
            "persistence_timeout" => {
                let timeout = match n.args.as_slice() {
                    [] => DEFAULT_PERSISTENCE,
                    [t] => number(n, t)?,
                    _ => return Err(refuse(n, "takes one number of seconds".to_owned())),
                };
                if timeout == 0 {
                    return Err(refuse(n, "must be at least 1 second".to_owned()));
                }
                service.persistent = Some(timeout);
                origin.add("persistent", n.at(), n.name());
            }
            "persistence_granularity" => {
                service.netmask = Some(ipv4(n, one_arg(n)?)?);
                origin.add("netmask", n.at(), n.name());
            }
            "persistence_engine" => {
                return Err(refuse(
                    n,
                    "rvs has no persistence engines (IPVS's SIP engine); persistence is by \
                     client address"
                        .to_owned(),
                ))
            }
            "protocol" => {
                let name = one_arg(n)?;
                protocol = match name.text.to_ascii_uppercase().as_str() {
                    "TCP" => (Protocol::Tcp, Some(n.at().clone())),
                    "UDP" => (Protocol::Udp, Some(n.at().clone())),
                    "SCTP" => {
                        return Err(refuse(n, "rvs balances TCP and UDP, not SCTP".to_owned()))
                    }
                    _ => return Err(refuse(n, format!("`{}`: expected TCP or UDP", name.text))),
                };
                origin.add("protocol", n.at(), n.name());
            }
            "ha_suspend" => {
                no_args(n)?;
                notes.push(format!(
                    "{}: ha_suspend has no effect: rvs holds its VIPs at all times, so its \
                     checks always run",
                    n.at()
                ));
            }
            "nat_mask" => {
                one_arg(n)?;
                notes.push(format!(
                    "{}: nat_mask has no effect (keepalived 2 ignores it too)",
                    n.at()
                ));
            }
            "smtp_alert" => no_mail(n)?,
            "virtualhost" => virtualhost = Some(one_arg(n)?.text.clone()),
            "alpha" => {
                no_args(n)?;
                service.alpha = true;
                origin.add("alpha", n.at(), n.name());
            }
            "omega" => {
                no_args(n)?;
                service.omega = true;
                origin.add("omega", n.at(), n.name());
            }
            "quorum_up" => {
                service.quorum_up = Some(command(n)?);
                origin.add("quorum_up", n.at(), n.name());
            }
            "quorum_down" => {
                service.quorum_down = Some(command(n)?);
                origin.add("quorum_down", n.at(), n.name());
            }
            "quorum" => {
                service.quorum = number(n, one_arg(n)?)?;
                if service.quorum == 0 {
                    return Err(refuse(n, "a quorum is at least 1".to_owned()));
                }
                origin.add("quorum", n.at(), n.name());
            }
            "hysteresis" => {
                service.hysteresis = number(n, one_arg(n)?)?;
                origin.add("hysteresis", n.at(), n.name());
            }
            "inhibit_on_failure" => inhibit = boolean(n)?,
            "ops" => {
                no_args(n)?;
                ops = Some(n);
                origin.add("one_packet", n.at(), n.name());
            }
            "hashed" => {
                return Err(refuse(
                    n,
                    "IPVS's internal `hashed` flag is nothing an operator sets; drop it".to_owned(),
                ))
            }
            flag if FLAGS.contains(&flag) => {
                no_args(n)?;
                origin.add(format!("flags[{}]", service.flags.len()), n.at(), n.name());
                service.flags.push(flag.to_owned());
            }
            "sorry_server" => {
                let (address, port) = match n.args.as_slice() {
                    [address] => (ipv4(n, address)?, None),
                    [address, port] => (ipv4(n, address)?, Some(number(n, port)?)),
                    _ => return Err(refuse(n, "expects `IP PORT`".to_owned())),
                };
                service.sorry_server = Some(SorryServer {
                    address,
                    port: port.filter(|p| *p != 0),
                    forward: None,
                });
                origin.add("sorry_server", n.at(), n.name());
            }
            "sorry_server_inhibit" => {
                no_args(n)?;
                sorry_inhibit = Some(n);
                origin.add("sorry_server_inhibit", n.at(), n.name());
            }
            "sorry_server_lvs_method" => sorry_forward = Some((forwarding(n)?, n)),
            "real_server" => reals.push(real_server(n)?),
            "weight" => {
                return Err(refuse(
                    n,
                    "rvs takes a weight per real_server, not per virtual_server".to_owned(),
                ))
            }
            "snmp_name" => return Err(refuse(n, "rvs has no SNMP agent".to_owned())),
            checker if is_checker(checker) => {
                return Err(refuse(
                    n,
                    "a checker belongs in a real_server block".to_owned(),
                ))
            }
            _ => return Err(unknown(n, "virtual_server")),
        }
    }
    // keepalived makes a service with a granularity persistent.
    if service.netmask.is_some() && service.persistent.is_none() {
        service.persistent = Some(DEFAULT_PERSISTENCE);
    }
    if let Some(n) = ops {
        if protocol.0 == Protocol::Tcp
            && members
                .iter()
                .any(|m| matches!(m.identity, Identity::Address { .. }))
        {
            return Err(refuse(
                n,
                "one-packet scheduling is for UDP services only".to_owned(),
            ));
        }
        service.one_packet = true;
    }
    match (&mut service.sorry_server, sorry_forward, sorry_inhibit) {
        (Some(sorry), sorry_forward, inhibited) => {
            sorry.forward = Some(sorry_forward.map_or(forward.0, |(f, _)| f));
            service.sorry_server_inhibit = inhibited.is_some();
        }
        (None, Some((_, n)), _) | (None, None, Some(n)) => {
            return Err(refuse(
                n,
                "there is no sorry_server in this virtual_server".to_owned(),
            ))
        }
        (None, None, None) => {}
    }
    for (j, draft) in reals.iter().enumerate() {
        let mut real = draft.real.clone();
        for (key, at, what) in &draft.keys {
            origin.add(within(&format!("reals[{j}]"), key), at, what.clone());
        }
        real.forward = draft.forward.unwrap_or(forward.0);
        if draft.forward.is_none() {
            if let Some(n) = forward.1 {
                origin.add(format!("reals[{j}].forward"), n.at(), n.name());
            }
        }
        real.inhibit_on_failure = draft.inhibit.unwrap_or(inhibit);
        real.checks = draft
            .checks
            .iter()
            .map(|c| {
                let mut check = c.check.clone();
                c.timing.fill(&mut check);
                draft.timing.fill(&mut check);
                timing.fill(&mut check);
                let host = c
                    .virtualhost
                    .as_ref()
                    .or(draft.virtualhost.as_ref())
                    .or(virtualhost.as_ref());
                for url in &mut check.url {
                    if url.virtualhost.is_none() {
                        url.virtualhost = host.cloned();
                    }
                }
                check
            })
            .collect();
        service.reals.push(real);
    }
    let mut services = Vec::new();
    for member in members {
        let mut service = service.clone();
        let mut origin = origin.clone();
        origin.add("", &member.at, member.what.clone());
        match member.identity {
            Identity::Address { vip, port } => {
                service.vip = vip;
                service.port = port;
                service.protocol = Some(protocol.0);
                for key in ["vip", "port"] {
                    origin.add(key, &member.at, member.what.clone());
                }
            }
            Identity::Mark(mark) => {
                if let Some(at) = &protocol.1 {
                    notes.push(format!(
                        "{at}: protocol is ignored for a fwmark service (as keepalived does): \
                         the running configuration's `marks:` group {mark} names its protocols"
                    ));
                }
                service.mark = Some(mark);
                origin.add("mark", &member.at, member.what.clone());
            }
        }
        // A real on the service's own port needs no port of its own.
        for (real, draft) in service.reals.iter_mut().zip(&reals) {
            real.port = draft.port.filter(|p| *p != service.port);
        }
        let port = service.port;
        if let Some(sorry) = &mut service.sorry_server {
            sorry.port = sorry.port.filter(|p| *p != port);
        }
        services.push((service, origin));
    }
    Ok(services)
}

/// `real_server IP [PORT] { ... }`.
fn real_server(node: &Node) -> Result<RealDraft, Refusal> {
    let (address, port) = match node.args.as_slice() {
        [address] => (ipv4(node, address)?, None),
        [address, port] => (ipv4(node, address)?, Some(number(node, port)?)),
        _ => return Err(refuse(node, "expects `IP PORT`".to_owned())),
    };
    let mut draft = RealDraft {
        real: Real::at(address),
        port: port.filter(|p| *p != 0),
        forward: None,
        inhibit: None,
        timing: Timing::default(),
        virtualhost: None,
        checks: Vec::new(),
        keys: vec![(String::new(), node.at().clone(), label(node))],
    };
    for n in body(node)? {
        if !is_checker(n.name()) {
            no_block(n)?;
        }
        if draft.timing.take(n)? {
            continue;
        }
        let at = (n.at().clone(), n.name().to_owned());
        let mut key = |name: &str| {
            draft
                .keys
                .push((name.to_owned(), at.0.clone(), at.1.clone()))
        };
        match n.name() {
            "weight" => {
                key("weight");
                draft.real.weight = number(n, one_arg(n)?)?;
            }
            "lvs_method" => {
                key("forward");
                draft.forward = Some(forwarding(n)?);
            }
            "uthreshold" => {
                key("u_threshold");
                draft.real.u_threshold = number(n, one_arg(n)?)?;
            }
            "lthreshold" => {
                key("l_threshold");
                draft.real.l_threshold = number(n, one_arg(n)?)?;
            }
            "inhibit_on_failure" => {
                key("inhibit_on_failure");
                draft.inhibit = Some(boolean(n)?);
            }
            "notify_up" => {
                key("notify_up");
                draft.real.notify_up = Some(command(n)?);
            }
            "notify_down" => {
                key("notify_down");
                draft.real.notify_down = Some(command(n)?);
            }
            "alpha" => {
                return Err(refuse(
                    n,
                    "rvs sets alpha per virtual_server (write it there)".to_owned(),
                ))
            }
            "smtp_alert" => no_mail(n)?,
            "virtualhost" => draft.virtualhost = Some(one_arg(n)?.text.clone()),
            "snmp_name" => return Err(refuse(n, "rvs has no SNMP agent".to_owned())),
            name if is_checker(name) => {
                let Some((_, kind)) = CHECKERS.iter().find(|(checker, _)| *checker == name) else {
                    return Err(refuse(
                        n,
                        format!(
                            "rvs has no {name}; it runs TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK \
                             and UDP_CHECK"
                        ),
                    ));
                };
                let k = draft.checks.len();
                let (check, keys) = checker(n, *kind)?;
                for (key, at, what) in keys {
                    draft
                        .keys
                        .push((within(&format!("checks[{k}]"), &key), at, what));
                }
                draft.checks.push(check);
            }
            _ => return Err(unknown(n, "real_server")),
        }
    }
    Ok(draft)
}

/// A checker block of kind `kind`, and where its keys were written.
fn checker(node: &Node, kind: CheckKind) -> Result<(CheckDraft, Keys), Refusal> {
    no_args(node)?;
    let http = matches!(kind, CheckKind::HttpGet | CheckKind::SslGet);
    let mut keys = vec![(String::new(), node.at().clone(), node.name().to_owned())];
    let mut check = Check {
        kind,
        delay_loop: None,
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        connect_ip: None,
        connect_port: None,
        bindto: None,
        url: Vec::new(),
        path: None,
        digest: None,
        status_code: Vec::new(),
        virtualhost: None,
        enable_sni: false,
        misc_path: None,
        misc_timeout: None,
        misc_dynamic: false,
        payload: None,
        require_reply: false,
        reply: None,
    };
    let mut timing = Timing::default();
    let mut virtualhost = None;
    let Some(block) = &node.block else {
        return Err(refuse(node, "needs a { } block".to_owned()));
    };
    for n in block {
        if n.name() != "url" {
            no_block(n)?;
        }
        let key = match n.name() {
            "nb_get_retry" => "retry",
            "require_reply" => "reply",
            name => name,
        };
        keys.push((key.to_owned(), n.at().clone(), n.name().to_owned()));
        if timing.take(n)? {
            continue;
        }
        let misc = kind == CheckKind::MiscCheck;
        match n.name() {
            "connect_ip" if !misc => check.connect_ip = Some(ipv4(n, one_arg(n)?)?),
            "connect_port" if !misc => check.connect_port = Some(number(n, one_arg(n)?)?),
            "bindto" if !misc => check.bindto = Some(ipv4(n, one_arg(n)?)?),
            "bind_port" => {
                return Err(refuse(
                    n,
                    "rvs checks from any source port; drop bind_port".to_owned(),
                ))
            }
            "bind_if" => {
                return Err(refuse(
                    n,
                    "rvs checks through the port that reaches the real; drop bind_if".to_owned(),
                ))
            }
            "fwmark" => {
                return Err(refuse(
                    n,
                    "rvs does not mark its checks' packets".to_owned(),
                ));
            }
            "alpha" => {
                return Err(refuse(
                    n,
                    "rvs sets alpha per virtual_server (write it there)".to_owned(),
                ))
            }
            "log_all_failures" => {
                return Err(refuse(
                    n,
                    "rvs has no per-checker logging setting".to_owned(),
                ))
            }
            "virtualhost" if http => virtualhost = Some(one_arg(n)?.text.clone()),
            "url" if http => check.url.push(url(n)?),
            "enable_sni" if kind == CheckKind::SslGet => check.enable_sni = boolean(n)?,
            "http_protocol" | "sni_name" | "fast_recovery" | "tls_compliant" if http => {
                return Err(refuse(
                    n,
                    format!("rvs's {kind} has no {} setting", n.name()),
                ))
            }
            "misc_path" if misc => check.misc_path = Some(command(n)?),
            "misc_timeout" if misc => check.misc_timeout = Some(positive_seconds(n)?),
            "misc_dynamic" if misc => check.misc_dynamic = boolean(n)?,
            "user" if misc => {
                return Err(refuse(
                    n,
                    "rvs runs the command as rvsd's own user; drop user".to_owned(),
                ))
            }
            "payload" if kind == CheckKind::UdpCheck => check.payload = Some(hex(n)?),
            "require_reply" if kind == CheckKind::UdpCheck => {
                check.require_reply = true;
                if !n.args.is_empty() {
                    check.reply = Some(hex(n)?);
                }
            }
            "min_reply_length" | "max_reply_length" if kind == CheckKind::UdpCheck => {
                return Err(refuse(
                    n,
                    "rvs's UDP_CHECK checks what a reply starts with (require_reply HEX), not \
                     its length"
                        .to_owned(),
                ))
            }
            _ => return Err(unknown(n, &kind.to_string())),
        }
    }
    if http && check.url.is_empty() {
        return Err(refuse(
            node,
            format!("{kind} needs at least one url {{ path ... }} block"),
        ));
    }
    if kind == CheckKind::MiscCheck && check.misc_path.is_none() {
        return Err(refuse(
            node,
            "MISC_CHECK needs misc_path, the command to run".to_owned(),
        ));
    }
    let draft = CheckDraft {
        check,
        timing,
        virtualhost,
    };
    Ok((draft, keys))
}

/// `url { path P; digest MD5; status_code 200 300-399; virtualhost H }`.
fn url(node: &Node) -> Result<Url, Refusal> {
    no_args(node)?;
    let mut url = Url {
        path: String::new(),
        digest: None,
        status_code: Vec::new(),
        virtualhost: None,
    };
    let mut path = false;
    for n in body(node)? {
        no_block(n)?;
        match n.name() {
            "path" => {
                let text = &one_arg(n)?.text;
                if !text.starts_with('/') {
                    return Err(refuse(n, format!("`{text}` must start with /")));
                }
                url.path = text.clone();
                path = true;
            }
            "digest" => {
                let digest = &one_arg(n)?.text;
                if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(refuse(
                        n,
                        format!("`{digest}` is not an MD5 in hex (32 hex digits)"),
                    ));
                }
                url.digest = Some(digest.to_ascii_lowercase());
            }
            "status_code" => {
                if n.args.is_empty() {
                    return Err(refuse(
                        n,
                        "takes status codes like 200 or 200-299".to_owned(),
                    ));
                }
                for word in &n.args {
                    url.status_code.push(status_codes(n, word)?);
                }
            }
            "virtualhost" => url.virtualhost = Some(one_arg(n)?.text.clone()),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => {
                return Err(refuse(
                    n,
                    "rvs checks a url's status code and digest, not its body against a regex"
                        .to_owned(),
                ))
            }
            _ => return Err(unknown(n, "url")),
        }
    }
    if !path {
        return Err(refuse(node, "a url needs a path".to_owned()));
    }
    Ok(url)
}

/// `200` or `200-299`, each from 100 to 599.
fn status_codes(node: &Node, word: &Word) -> Result<StatusCodes, Refusal> {
    let text = &word.text;
    let bad = || {
        refuse(
            node,
            format!("`{text}` is not a status code (100-599) or a range of them like 200-299"),
        )
    };
    let code = |t: &str| {
        t.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(bad)
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (code(low)?, code(high)?),
        None => {
            let one = code(text)?;
            (one, one)
        }
    };
    if low > high {
        return Err(bad());
    }
    Ok(StatusCodes { low, high })
}

/// The hex bytes of a UDP_CHECK's `payload` or `require_reply`, its
/// words joined (keepalived allows blanks between bytes).
fn hex(node: &Node) -> Result<String, Refusal> {
    let text: String = node.args.iter().map(|w| w.text.as_str()).collect();
    if text.is_empty() {
        return Err(refuse(node, "takes bytes in hex".to_owned()));
    }
    if text.contains(['x', 'X']) {
        return Err(refuse(
            node,
            "rvs compares a reply byte for byte; it takes no X wildcards".to_owned(),
        ));
    }
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse(node, format!("`{text}` is not bytes in hex")));
    }
    Ok(text.to_ascii_lowercase())
}

/// `NAT`, `DR` or `TUN` (keepalived's words, in capitals as it takes them).
fn forwarding(node: &Node) -> Result<Forward, Refusal> {
    let word = match node.args.as_slice() {
        [word] => word,
        [word, ..] if word.text == "TUN" => {
            return Err(refuse(
                node,
                "rvs tunnels with IP-in-IP only; drop the tunnel type".to_owned(),
            ))
        }
        _ => return Err(refuse(node, "expects NAT, DR or TUN".to_owned())),
    };
    match word.text.as_str() {
        "NAT" => Ok(Forward::Nat),
        "DR" => Ok(Forward::Dr),
        "TUN" => Ok(Forward::Tun),
        "FNAT" | "FULLNAT" => Err(refuse(
            node,
            "keepalived has no FullNAT (DPVS's fork does); declare a FullNAT service in rvs's \
             YAML, with its local_addresses"
                .to_owned(),
        )),
        other => Err(refuse(
            node,
            format!("`{other}`: expected NAT, DR or TUN (in capitals, as keepalived takes them)"),
        )),
    }
}

/// `smtp_alert [BOOL]`: accepted only when off.
fn no_mail(node: &Node) -> Result<(), Refusal> {
    if boolean(node)? {
        return Err(refuse(
            node,
            "rvs sends no mail; notify_up/notify_down and quorum_up/quorum_down run commands"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A command of `notify_up`, `quorum_down`, `misc_path`...: one word or
/// one quoted string.
fn command(node: &Node) -> Result<String, Refusal> {
    match node.args.as_slice() {
        [command] if !command.text.trim().is_empty() => Ok(command.text.clone()),
        [] | [_] => Err(refuse(node, "takes a command".to_owned())),
        _ => Err(refuse(
            node,
            "words after the command name a user (and group) to run it as, and rvs runs it as \
             rvsd's own user; quote a command that has arguments: \"/path/script arg\""
                .to_owned(),
        )),
    }
}

/// A keyword that may be followed by `true|on|yes` or `false|off|no`;
/// alone it means true.
fn boolean(node: &Node) -> Result<bool, Refusal> {
    match node.args.as_slice() {
        [] => Ok(true),
        [word] => match word.text.as_str() {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            other => Err(refuse(node, format!("`{other}`: expected true or false"))),
        },
        _ => Err(refuse(node, "takes at most true or false".to_owned())),
    }
}

fn positive_seconds(node: &Node) -> Result<Seconds, Refusal> {
    let value = seconds(node, one_arg(node)?)?;
    if value == Seconds(0) {
        return Err(refuse(node, "must be above 0".to_owned()));
    }
    Ok(value)
}

/// A number of seconds as keepalived writes it (`3`, `0.5`), to the
/// millisecond.
fn seconds(node: &Node, word: &Word) -> Result<Seconds, Refusal> {
    let text = &word.text;
    let bad = || {
        refuse(
            node,
            format!("`{text}` is not a number of seconds (like 3 or 0.5) up to {MAX_SECONDS}"),
        )
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad());
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(bad());
    }
    let (millis, finer) = fraction.split_at(fraction.len().min(3));
    if finer.bytes().any(|b| b != b'0') {
        return Err(refuse(
            node,
            format!("`{text}`: rvs keeps durations to the millisecond"),
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let millis: u64 = format!("{millis:0<3}").parse().map_err(|_| bad())?;
    let total = whole
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(millis))
        .filter(|ms| *ms <= MAX_SECONDS * 1000)
        .ok_or_else(bad)?;
    Ok(Seconds(total))
}

fn number<T: std::str::FromStr + num::Bounded>(node: &Node, word: &Word) -> Result<T, Refusal> {
    word.text.parse().map_err(|_| {
        refuse(
            node,
            format!(
                "`{}` is not a whole number from {} to {}",
                word.text,
                T::MIN_TEXT,
                T::MAX_TEXT
            ),
        )
    })
}

/// The bounds of the integer types [`number`] reads, for its message.
mod num {
    pub trait Bounded {
        const MIN_TEXT: &'static str;
        const MAX_TEXT: &'static str;
    }
    impl Bounded for u16 {
        const MIN_TEXT: &'static str = "0";
        const MAX_TEXT: &'static str = "65535";
    }
    impl Bounded for u32 {
        const MIN_TEXT: &'static str = "0";
        const MAX_TEXT: &'static str = "4294967295";
    }
}

pub(super) fn ipv4(node: &Node, word: &Word) -> Result<Ipv4Addr, Refusal> {
    if word.text.contains(':') {
        return Err(refuse(node, ipv6_reason()));
    }
    word.text
        .parse()
        .map_err(|_| refuse(node, format!("`{}` is not an IPv4 address", word.text)))
}

pub(super) fn ipv6_reason() -> String {
    "rvs serves IPv4 only for now (IPv6 is on its roadmap)".to_owned()
}

fn one_arg(node: &Node) -> Result<&Word, Refusal> {
    match node.args.as_slice() {
        [word] => Ok(word),
        [] => Err(refuse(node, "needs a value".to_owned())),
        _ => Err(refuse(node, "takes one value".to_owned())),
    }
}

fn no_args(node: &Node) -> Result<(), Refusal> {
    if node.args.is_empty() {
        Ok(())
    } else {
        Err(refuse(node, "takes no value".to_owned()))
    }
}

pub(super) fn no_block(node: &Node) -> Result<(), Refusal> {
    if node.block.is_some() {
        Err(refuse(node, "takes no { } block".to_owned()))
    } else {
        Ok(())
    }
}

fn body(node: &Node) -> Result<&[Node], Refusal> {
    node.block
        .as_deref()
        .ok_or_else(|| refuse(node, "needs a { } block".to_owned()))
}

/// Whether `name` is a checker block, one rvs runs or not.
fn is_checker(name: &str) -> bool {
    CHECKERS.iter().any(|(checker, _)| *checker == name) || OTHER_CHECKERS.contains(&name)
}

/// The key path `key` within `block` (itself when `key` is empty).
fn within(block: &str, key: &str) -> String {
    if key.is_empty() {
        block.to_owned()
    } else {
        format!("{block}.{key}")
    }
}

/// A block's keyword and its words: `real_server 10.0.0.2 80`.
fn label(node: &Node) -> String {
    std::iter::once(node.name())
        .chain(node.args.iter().map(|w| w.text.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn refuse(node: &Node, reason: String) -> Refusal {
    Refusal::new(node.at().clone(), node.name(), reason)
}

fn unknown(node: &Node, within: &str) -> Refusal {
    syntax_extension(node).unwrap_or_else(|| {
        refuse(
            node,
            format!("not a keyword of {within} that rvs knows, so it cannot honour it"),
        )
    })
}

/// keepalived's parameters (`$NAME=...`), conditional lines (`@ID ...`)
/// and sequences (`~SEQ(...)`), which the import does not expand.
fn syntax_extension(node: &Node) -> Option<Refusal> {
    let reason = match node.name().chars().next()? {
        '$' => "keepalived's parameters ($NAME) are not expanded by the import; write the values",
        '@' => {
            "keepalived's conditional lines (@ID) are not expanded by the import; keep this \
             director's lines, without the prefix"
        }
        '~' => "keepalived's ~SEQ lines are not expanded by the import; write each line",
        _ => return None,
    };
    Some(refuse(node, reason.to_owned()))
}
