//! The domain's words, one type each, shared by the configuration (YAML),
//! the control protocol (JSON) and the dataplane's snapshot: transport
//! protocol, forwarding mode, scheduler and its flags, connection timeouts.
//!
//! Each type reads and writes itself as the text the YAML file uses (`tcp`,
//! `nat`, `wlc`); where the control protocol spells a value otherwise
//! (forwarding modes are `masq`, `route`, `tunnel`, `fullnat` on the wire, as
//! ipvsadm names them), the protocol says so on its field
//! ([`forward_on_the_wire`]). Nothing here depends on DPDK.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Transport protocol of a service: `tcp` or `udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The name in the YAML file and on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// ipvsadm's name in listings.
    pub const fn upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The IP protocol number: what packets carry, and the order ipvsadm
    /// sorts services in.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(format!("unknown protocol `{text}`; expected tcp or udp")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How packets reach a real (REFERENCE.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Forward {
    /// Masquerading: the destination rewritten to the real (`nat` or
    /// `masq`, ipvsadm `-m`, "Masq").
    #[default]
    Nat,
    /// Direct routing: only the destination MAC rewritten (`dr` or
    /// `route`, ipvsadm `-g`, "Route").
    Dr,
    /// IP-in-IP to the real (`tun` or `tunnel`, ipvsadm `-i`, "Tunnel").
    Tun,
    /// The source rewritten to a local address too (`fullnat`, DPVS,
    /// "FullNat").
    FullNat,
}

impl Forward {
    /// The name in the YAML file.
    pub const fn name(self) -> &'static str {
        match self {
            Forward::Nat => "nat",
            Forward::Dr => "dr",
            Forward::Tun => "tun",
            Forward::FullNat => "fullnat",
        }
    }

    /// The name on the control protocol's wire (ipvsadm's words).
    pub const fn wire_name(self) -> &'static str {
        match self {
            Forward::Nat => "masq",
            Forward::Dr => "route",
            Forward::Tun => "tunnel",
            Forward::FullNat => "fullnat",
        }
    }

    /// The name in `ipvsadm -L` listings.
    pub const fn listing_name(self) -> &'static str {
        match self {
            Forward::Nat => "Masq",
            Forward::Dr => "Route",
            Forward::Tun => "Tunnel",
            Forward::FullNat => "FullNat",
        }
    }

    /// Whether replies come back through rvs.
    pub const fn replies_return(self) -> bool {
        matches!(self, Forward::Nat | Forward::FullNat)
    }
}

impl FromStr for Forward {
    type Err = String;

    /// The YAML names and their aliases (which include the wire names).
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "nat" | "masq" => Ok(Forward::Nat),
            "dr" | "route" => Ok(Forward::Dr),
            "tun" | "tunnel" => Ok(Forward::Tun),
            "fullnat" => Ok(Forward::FullNat),
            _ => Err(format!(
                "unknown forward mode `{text}`; expected nat (or masq), dr (or route), \
                 tun (or tunnel) or fullnat"
            )),
        }
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `#[serde(with = "forward_on_the_wire")]`: a [`Forward`] as the control
/// protocol spells it (`masq`, `route`, `tunnel`, `fullnat`).
pub mod forward_on_the_wire {
    use super::Forward;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(forward: &Forward, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(forward.wire_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Forward, D::Error> {
        super::from_text(
            deserializer,
            "a forward mode: masq, route, tunnel or fullnat",
        )
    }
}

/// A scheduling algorithm, named as `ipvsadm -s` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SchedulerKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections, IPVS's default.
    #[default]
    Wlc,
    /// Locality-based least connections (cache keyed by destination address).
    Lblc,
    /// Locality-based least connections with replication (a set of reals per
    /// destination address).
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Weighted failover.
    Fo,
    /// Weighted overflow.
    Ovf,
    /// Maglev hashing.
    Mh,
    /// Power of two choices.
    Twos,
}

impl SchedulerKind {
    /// Every kind rvs implements, in the order messages list them.
    pub const ALL: [SchedulerKind; 14] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Dh,
        SchedulerKind::Sh,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Mh,
        SchedulerKind::Twos,
    ];

    /// The `ipvsadm -s` name.
    pub const fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Twos => "twos",
        }
    }

    /// Whether picks read a [`SchedTable`] (dh, sh, mh), which must be rebuilt
    /// whenever the list of reals or a weight the table depends on changes.
    pub const fn uses_table(self) -> bool {
        matches!(
            self,
            SchedulerKind::Dh | SchedulerKind::Sh | SchedulerKind::Mh
        )
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheduler name rvs does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScheduler(pub String);

impl fmt::Display for UnknownScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scheduler `{}`; expected one of ", self.0)?;
        for (i, kind) in SchedulerKind::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{}", kind.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownScheduler {}

impl FromStr for SchedulerKind {
    type Err = UnknownScheduler;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownScheduler(name.to_owned()))
    }
}

/// Scheduler flags, `ipvsadm -b`.
///
/// IPVS has three generic flag bits, `IP_VS_SVC_F_SCHED1..3`; sh and mh give
/// the first two a meaning (bit 1 = fallback, bit 2 = port), which is why
/// `flag-1` sets both `sh_fallback` and `mh_fallback` here and `flag-2` both
/// `*_port` fields. Only the fields of the service's own scheduler are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags {
    /// sh: when the hashed real is unusable, walk the table for another.
    pub sh_fallback: bool,
    /// sh: hash the client port too, not only the client address.
    pub sh_port: bool,
    /// mh: when the hashed real is unusable, rehash for another.
    pub mh_fallback: bool,
    /// mh: hash the client port too.
    pub mh_port: bool,
    /// `flag-3`: no scheduler reads it; kept so that it is listed back.
    pub flag_3: bool,
}

impl SchedFlags {
    /// Parses `ipvsadm -b`'s comma-separated list for a service scheduled by
    /// `kind`, with ipvsadm's checks: `sh-*` flags only with sh, `mh-*` only
    /// with mh, `flag-1..3` with any scheduler. Empty items are skipped, as
    /// ipvsadm's `strtok` skips them.
    pub fn parse(kind: SchedulerKind, list: &str) -> Result<SchedFlags, SchedFlagError> {
        let mut flags = SchedFlags::default();
        for name in list.split(',').filter(|name| !name.is_empty()) {
            let owner = match name {
                "flag-1" => {
                    flags.sh_fallback = true;
                    flags.mh_fallback = true;
                    None
                }
                "flag-2" => {
                    flags.sh_port = true;
                    flags.mh_port = true;
                    None
                }
                "flag-3" => {
                    flags.flag_3 = true;
                    None
                }
                "sh-fallback" => {
                    flags.sh_fallback = true;
                    Some(SchedulerKind::Sh)
                }
                "sh-port" => {
                    flags.sh_port = true;
                    Some(SchedulerKind::Sh)
                }
                "mh-fallback" => {
                    flags.mh_fallback = true;
                    Some(SchedulerKind::Mh)
                }
                "mh-port" => {
                    flags.mh_port = true;
                    Some(SchedulerKind::Mh)
                }
                _ => return Err(SchedFlagError::Invalid(name.to_owned())),
            };
            if owner.is_some_and(|owner| owner != kind) {
                return Err(SchedFlagError::Incompatible {
                    flag: name.to_owned(),
                    scheduler: kind,
                });
            }
        }
        Ok(flags)
    }

    /// The flag names ipvsadm lists for a service scheduled by `kind`
    /// (`sh-fallback,sh-port` for sh, `mh-...` for mh, `flag-N` otherwise),
    /// in ipvsadm's order; join them with `,`.
    pub fn names(self, kind: SchedulerKind) -> impl Iterator<Item = &'static str> {
        let (fallback, port, names) = match kind {
            SchedulerKind::Sh => (self.sh_fallback, self.sh_port, ["sh-fallback", "sh-port"]),
            SchedulerKind::Mh => (self.mh_fallback, self.mh_port, ["mh-fallback", "mh-port"]),
            _ => (
                self.sh_fallback || self.mh_fallback,
                self.sh_port || self.mh_port,
                ["flag-1", "flag-2"],
            ),
        };
        [
            (fallback, names[0]),
            (port, names[1]),
            (self.flag_3, "flag-3"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
    }
}

/// A `-b` list ipvsadm would refuse; the messages are ipvsadm's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchedFlagError {
    /// Not a flag name at all.
    Invalid(String),
    /// A flag of another scheduler (`sh-port` on an rr service).
    Incompatible {
        flag: String,
        scheduler: SchedulerKind,
    },
}

impl fmt::Display for SchedFlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedFlagError::Invalid(flag) => write!(f, "invalid scheduler flag `{flag}'"),
            SchedFlagError::Incompatible { flag, scheduler } => write!(
                f,
                "incompatible scheduler flag `{flag}' (scheduler is {scheduler})"
            ),
        }
    }
}

impl std::error::Error for SchedFlagError {}

/// The state names IPVS lists connections by (`ipvsadm -L -c`, the kernel's
/// `tcp_state_name_table`): TCP's states, `UDP` for a UDP connection and
/// `NONE` for a persistence template. rvsd names them the same.
pub const CONN_STATES: [&str; 12] = [
    "NONE",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "SYNACK",
    "UDP",
];

/// Connection timeouts in seconds, as `ipvsadm --set tcp tcpfin udp` sets
/// them: established TCP, TCP after a FIN, UDP. The other TCP states keep
/// IPVS's own timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults.
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// Deserialises a string through `FromStr`, whose error is the whole reason;
/// `expecting` says what a non-string should have been.
struct FromText<T>(&'static str, std::marker::PhantomData<T>);

impl<T: FromStr<Err: fmt::Display>> Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

/// A value read from its text by `FromStr` (see [`FromText`]).
pub(crate) fn from_text<'de, D: Deserializer<'de>, T: FromStr<Err: fmt::Display>>(
    deserializer: D,
    expecting: &'static str,
) -> Result<T, D::Error> {
    deserializer.deserialize_str(FromText(expecting, std::marker::PhantomData))
}

/// Writes a value as the text its `Deserialize` reads, so that a serialised
/// value parses back the same.
pub(crate) fn as_text<S: Serializer>(
    value: &impl fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer, "tcp or udp")
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        as_text(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Forward {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer, "a forward mode: nat, dr, tun or fullnat")
    }
}

impl Serialize for Forward {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        as_text(self, serializer)
    }
}

impl<'de> Deserialize<'de> for SchedulerKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer, "a scheduler name such as wlc")
    }
}

impl Serialize for SchedulerKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        as_text(self, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.name().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        let err = "maglev".parse::<SchedulerKind>().unwrap_err();
        assert_eq!(err, UnknownScheduler("maglev".into()));
        assert_eq!(
            err.to_string(),
            "unknown scheduler `maglev`; expected one of rr, wrr, lc, wlc, sed, nq, dh, sh, lblc, \
             lblcr, fo, ovf, mh, twos"
        );
        assert_eq!(SchedulerKind::default(), SchedulerKind::Wlc);
        for forward in [Forward::Nat, Forward::Dr, Forward::Tun, Forward::FullNat] {
            assert_eq!(forward.name().parse(), Ok(forward));
            assert_eq!(forward.wire_name().parse(), Ok(forward));
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(protocol.name().parse(), Ok(protocol));
        }
    }

    #[test]
    fn forward_modes_are_spelled_per_format() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct OnTheWire {
            #[serde(with = "forward_on_the_wire")]
            forward: Forward,
        }
        let wire = serde_json::to_string(&OnTheWire {
            forward: Forward::Nat,
        })
        .unwrap();
        assert_eq!(wire, r#"{"forward":"masq"}"#);
        assert_eq!(
            serde_json::from_str::<OnTheWire>(r#"{"forward":"tunnel"}"#).unwrap(),
            OnTheWire {
                forward: Forward::Tun
            }
        );
        assert_eq!(serde_json::to_string(&Forward::Dr).unwrap(), r#""dr""#);
    }

    #[test]
    fn sched_flags_parse() {
        use SchedulerKind::{Mh, Rr, Sh};
        let flags = |sh_fallback, sh_port, mh_fallback, mh_port, flag_3| SchedFlags {
            sh_fallback,
            sh_port,
            mh_fallback,
            mh_port,
            flag_3,
        };
        #[rustfmt::skip]
        let cases: &[(SchedulerKind, &str, Result<SchedFlags, SchedFlagError>, &str)] = &[
            (Sh, "sh-fallback,sh-port", Ok(flags(true, true, false, false, false)), "sh-fallback,sh-port"),
            (Sh, "sh-port", Ok(flags(false, true, false, false, false)), "sh-port"),
            (Mh, "mh-port,mh-fallback", Ok(flags(false, false, true, true, false)), "mh-fallback,mh-port"),
            // flag-1 is the fallback bit of both, flag-2 the port bit.
            (Sh, "flag-1", Ok(flags(true, false, true, false, false)), "sh-fallback"),
            (Mh, "flag-2", Ok(flags(false, true, false, true, false)), "mh-port"),
            (Rr, "flag-1,flag-3", Ok(flags(true, false, true, false, true)), "flag-1,flag-3"),
            (Rr, "", Ok(SchedFlags::default()), ""),
            (Sh, "sh-port,,", Ok(flags(false, true, false, false, false)), "sh-port"),
            (Rr, "sh-port", Err(SchedFlagError::Incompatible { flag: "sh-port".into(), scheduler: Rr }), ""),
            (Sh, "mh-fallback", Err(SchedFlagError::Incompatible { flag: "mh-fallback".into(), scheduler: Sh }), ""),
            (Sh, "sh-fallback,bogus", Err(SchedFlagError::Invalid("bogus".into())), ""),
        ];
        for (kind, list, want, listed) in cases {
            let got = SchedFlags::parse(*kind, list);
            assert_eq!(&got, want, "{kind} -b {list}");
            if let Ok(got) = got {
                assert_eq!(
                    got.names(*kind).collect::<Vec<_>>().join(","),
                    *listed,
                    "{kind} -b {list}"
                );
            }
        }
        assert_eq!(
            SchedFlags::parse(Rr, "sh-port").unwrap_err().to_string(),
            "incompatible scheduler flag `sh-port' (scheduler is rr)"
        );
        assert_eq!(
            SchedFlags::parse(Rr, "x").unwrap_err().to_string(),
            "invalid scheduler flag `x'"
        );
    }
}
