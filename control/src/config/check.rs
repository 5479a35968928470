//! Health checks in the YAML: keepalived's checkers, with its names and
//! defaults (REFERENCE.md §6), under a service (every real that has none
//! of its own) or a real (`checks: [...]`), and the service's quorum and
//! sorry server. [`Check::resolve`] turns one into the [`Probe`] the
//! checker runs, defaults applied.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{ipv4, ipv4_opt, Forward};

/// A duration in seconds as keepalived writes it (`3`, `0.5`), kept in
/// milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u64);

impl Seconds {
    pub const fn secs(secs: u64) -> Self {
        Seconds(secs * 1000)
    }

    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{} s", self.0 / 1000)
        } else {
            write!(f, "{} s", self.0 as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Secs;
        impl Visitor<'_> for Secs {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds, like 3 or 0.5")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                v.checked_mul(1000)
                    .filter(|ms| *ms <= MAX_SECONDS * 1000)
                    .map(Seconds)
                    .ok_or_else(|| E::custom(format!("{v} s is above the maximum {MAX_SECONDS} s")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v} s is negative")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(format!("{v} is not a number of seconds")));
                }
                if v > MAX_SECONDS as f64 {
                    return Err(E::custom(format!(
                        "{v} s is above the maximum {MAX_SECONDS} s"
                    )));
                }
                Ok(Seconds((v * 1000.0).round() as u64))
            }
        }
        deserializer.deserialize_any(Secs)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(1000) {
            serializer.serialize_u64(self.0 / 1000)
        } else {
            serializer.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// The longest duration a check takes: a day.
pub const MAX_SECONDS: u64 = 86_400;

/// keepalived's checkers, by their block names in lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Connects, then closes.
    TcpCheck,
    /// Fetches URLs; status codes and the MD5 of the body must match.
    HttpGet,
    /// HTTP_GET over TLS.
    SslGet,
    /// Runs a script: exit 0 up, 1 down, with `misc_dynamic` 2..255 up with
    /// weight exit-2.
    MiscCheck,
    /// Sends a datagram; with `require_reply` a reply must come back.
    UdpCheck,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::TcpCheck => "TCP_CHECK",
            CheckKind::HttpGet => "HTTP_GET",
            CheckKind::SslGet => "SSL_GET",
            CheckKind::MiscCheck => "MISC_CHECK",
            CheckKind::UdpCheck => "UDP_CHECK",
        })
    }
}

/// One checker of a real. Timing keys default as keepalived's do:
/// `delay_loop` 60 s, `connect_timeout` 5 s, `retry` 1 (MISC_CHECK 0),
/// `delay_before_retry` 1 s (HTTP_GET and SSL_GET 3 s), `warmup` a random
/// first delay up to `delay_loop`, `misc_timeout` the `delay_loop`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: CheckKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_loop: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<Seconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Seconds>,
    /// Address checked instead of the real's.
    #[serde(
        default,
        deserialize_with = "ipv4_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_ip: Option<Ipv4Addr>,
    /// Port checked instead of the real's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    /// Source address of the check; default: rvs's address on the port
    /// that reaches the real, when that port has a kernel interface.
    #[serde(
        default,
        deserialize_with = "ipv4_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub bindto: Option<Ipv4Addr>,
    /// HTTP_GET, SSL_GET: the URLs, all of which must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<Url>,
    /// HTTP_GET, SSL_GET: one URL written in the check itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code: Vec<StatusCodes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    /// SSL_GET: send the virtualhost (or the address) as SNI.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_sni: bool,
    /// MISC_CHECK: the command, run by `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misc_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misc_timeout: Option<Seconds>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub misc_dynamic: bool,
    /// UDP_CHECK: the datagram, in hex (keepalived's form); default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// UDP_CHECK: a reply must come back within `connect_timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_reply: bool,
    /// UDP_CHECK: what the reply must start with, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

/// One URL of an HTTP_GET or SSL_GET.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    pub path: String,
    /// MD5 of the body, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Default 200-299.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code: Vec<StatusCodes>,
    /// Host header; default the address checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
}

/// A status code or a range of them (`200`, `"200-299"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusCodes {
    pub low: u16,
    pub high: u16,
}

impl StatusCodes {
    pub const SUCCESS: StatusCodes = StatusCodes {
        low: 200,
        high: 299,
    };

    pub fn contains(&self, code: u16) -> bool {
        (self.low..=self.high).contains(&code)
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl<'de> Deserialize<'de> for StatusCodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Codes;
        fn code<E: de::Error>(v: u64) -> Result<u16, E> {
            u16::try_from(v)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| E::custom(format!("{v} is not an HTTP status code (100-599)")))
        }
        impl Visitor<'_> for Codes {
            type Value = StatusCodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code like 200 or a range like \"200-299\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusCodes, E> {
                let c = code(v)?;
                Ok(StatusCodes { low: c, high: c })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusCodes, E> {
                self.visit_u64(u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))?)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusCodes, E> {
                let bad = || {
                    E::custom(format!(
                        "\"{v}\" is not a status code or a range like 200-299"
                    ))
                };
                let (low, high) = v.split_once('-').unwrap_or((v, v));
                let low = code(low.trim().parse().map_err(|_| bad())?)?;
                let high = code(high.trim().parse().map_err(|_| bad())?)?;
                if low > high {
                    return Err(E::custom(format!("range {v} runs backwards")));
                }
                Ok(StatusCodes { low, high })
            }
        }
        deserializer.deserialize_any(Codes)
    }
}

impl Serialize for StatusCodes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.low == self.high {
            serializer.serialize_u16(self.low)
        } else {
            serializer.serialize_str(&self.to_string())
        }
    }
}

/// Where a service sends its clients while it has lost its quorum.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    #[serde(deserialize_with = "ipv4")]
    pub address: Ipv4Addr,
    /// Default: the service's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Default: that of the service's first real, else nat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
}

/// A check with every default applied: what the checker runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub kind: CheckKind,
    /// Where the check connects (or sends).
    pub target: SocketAddrV4,
    /// Source address, if bound.
    pub bind: Option<Ipv4Addr>,
    pub delay_loop: Duration,
    pub connect_timeout: Duration,
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// First delay; `None`: random up to `delay_loop`.
    pub warmup: Option<Duration>,
    pub urls: Vec<ProbeUrl>,
    pub enable_sni: bool,
    pub misc_path: String,
    pub misc_timeout: Duration,
    pub misc_dynamic: bool,
    pub payload: Vec<u8>,
    pub require_reply: bool,
    pub reply: Vec<u8>,
}

/// One URL with its defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeUrl {
    pub path: String,
    /// MD5 of the body, lower-case hex.
    pub digest: Option<String>,
    pub status: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
}

impl Check {
    /// The URLs an HTTP_GET / SSL_GET fetches: `url`, or the one written
    /// in the check itself.
    pub fn urls(&self) -> Vec<Url> {
        if !self.url.is_empty() {
            return self.url.clone();
        }
        vec![Url {
            path: self.path.clone().unwrap_or_else(|| "/".to_owned()),
            digest: self.digest.clone(),
            status_code: self.status_code.clone(),
            virtualhost: self.virtualhost.clone(),
        }]
    }

    /// The probe of this check against the real at `real` (its address and
    /// port), from `bind` unless the check names its own source.
    pub fn resolve(&self, real: SocketAddrV4, bind: Option<Ipv4Addr>) -> Probe {
        let delay_loop = self.delay_loop.unwrap_or(Seconds::secs(60));
        let retry = self.retry.unwrap_or(match self.kind {
            CheckKind::MiscCheck => 0,
            _ => 1,
        });
        let delay_before_retry = self.delay_before_retry.unwrap_or(match self.kind {
            CheckKind::HttpGet | CheckKind::SslGet => Seconds::secs(3),
            _ => Seconds::secs(1),
        });
        let urls = match self.kind {
            CheckKind::HttpGet | CheckKind::SslGet => self
                .urls()
                .into_iter()
                .map(|url| ProbeUrl {
                    path: url.path,
                    digest: url.digest.map(|d| d.to_ascii_lowercase()),
                    status: if url.status_code.is_empty() {
                        vec![(200, 299)]
                    } else {
                        url.status_code.iter().map(|c| (c.low, c.high)).collect()
                    },
                    virtualhost: url.virtualhost,
                })
                .collect(),
            _ => Vec::new(),
        };
        Probe {
            kind: self.kind,
            target: SocketAddrV4::new(
                self.connect_ip.unwrap_or(*real.ip()),
                self.connect_port.unwrap_or(real.port()),
            ),
            bind: self.bindto.or(bind),
            delay_loop: delay_loop.duration(),
            connect_timeout: self.connect_timeout.unwrap_or(Seconds::secs(5)).duration(),
            retry,
            delay_before_retry: delay_before_retry.duration(),
            warmup: self.warmup.map(Seconds::duration),
            urls,
            enable_sni: self.enable_sni,
            misc_path: self.misc_path.clone().unwrap_or_default(),
            misc_timeout: self.misc_timeout.unwrap_or(delay_loop).duration(),
            misc_dynamic: self.misc_dynamic,
            payload: self.payload.as_deref().map(hex).unwrap_or_default(),
            require_reply: self.require_reply || self.reply.is_some(),
            reply: self.reply.as_deref().map(hex).unwrap_or_default(),
        }
    }

    /// Why this check cannot run, if it cannot: a key its type does not
    /// take, a value out of range. `(key, reason)`.
    pub fn refusal(&self, port: u16) -> Option<(&'static str, String)> {
        let kind = self.kind;
        let http = matches!(kind, CheckKind::HttpGet | CheckKind::SslGet);
        let misc = kind == CheckKind::MiscCheck;
        let udp = kind == CheckKind::UdpCheck;
        let not_for = |key: &'static str, given: bool, allowed: bool| {
            (given && !allowed).then(|| (key, format!("`{key}` is not a key of {kind}")))
        };
        let url_keys = self.path.is_some()
            || self.digest.is_some()
            || !self.status_code.is_empty()
            || self.virtualhost.is_some();
        not_for("url", !self.url.is_empty(), http)
            .or_else(|| not_for("path", self.path.is_some(), http))
            .or_else(|| not_for("digest", self.digest.is_some(), http))
            .or_else(|| not_for("status_code", !self.status_code.is_empty(), http))
            .or_else(|| not_for("virtualhost", self.virtualhost.is_some(), http))
            .or_else(|| not_for("enable_sni", self.enable_sni, kind == CheckKind::SslGet))
            .or_else(|| not_for("misc_path", self.misc_path.is_some(), misc))
            .or_else(|| not_for("misc_timeout", self.misc_timeout.is_some(), misc))
            .or_else(|| not_for("misc_dynamic", self.misc_dynamic, misc))
            .or_else(|| not_for("connect_ip", self.connect_ip.is_some(), !misc))
            .or_else(|| not_for("connect_port", self.connect_port.is_some(), !misc))
            .or_else(|| not_for("bindto", self.bindto.is_some(), !misc))
            .or_else(|| not_for("payload", self.payload.is_some(), udp))
            .or_else(|| not_for("require_reply", self.require_reply, udp))
            .or_else(|| not_for("reply", self.reply.is_some(), udp))
            .or_else(|| {
                (url_keys && !self.url.is_empty()).then(|| {
                    (
                        "url",
                        "give the URL either as `url: [...]` or as `path` (and its keys) in \
                         the check, not both"
                            .to_owned(),
                    )
                })
            })
            .or_else(|| {
                (misc
                    && self
                        .misc_path
                        .as_deref()
                        .is_none_or(|p| p.trim().is_empty()))
                .then(|| {
                    (
                        "misc_path",
                        "MISC_CHECK needs `misc_path`, the command to run".to_owned(),
                    )
                })
            })
            .or_else(|| {
                (!misc && self.connect_port.unwrap_or(port) == 0).then(|| {
                    (
                        "connect_port",
                        format!(
                            "{kind} of a real without a port (a port-0 service) needs \
                             `connect_port`"
                        ),
                    )
                })
            })
            .or_else(|| {
                (self.delay_loop == Some(Seconds(0)))
                    .then(|| ("delay_loop", "delay_loop must be above 0".to_owned()))
            })
            .or_else(|| {
                (self.connect_timeout == Some(Seconds(0))).then(|| {
                    (
                        "connect_timeout",
                        "connect_timeout must be above 0".to_owned(),
                    )
                })
            })
            .or_else(|| {
                (self.misc_timeout == Some(Seconds(0)))
                    .then(|| ("misc_timeout", "misc_timeout must be above 0".to_owned()))
            })
            .or_else(|| {
                self.urls()
                    .iter()
                    .find_map(|url| {
                        if !url.path.starts_with('/') {
                            return Some((
                                "path",
                                format!("path `{}` must start with /", url.path),
                            ));
                        }
                        url.digest.as_ref().and_then(|d| {
                            (d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit())).then(
                                || {
                                    (
                                        "digest",
                                        format!(
                                            "digest `{d}` is not an MD5 in hex (32 hex digits)"
                                        ),
                                    )
                                },
                            )
                        })
                    })
                    .filter(|_| http)
            })
            .or_else(|| {
                [("payload", &self.payload), ("reply", &self.reply)]
                    .into_iter()
                    .find_map(|(key, value)| {
                        value.as_deref().and_then(|v| {
                            (v.len() % 2 != 0 || !v.bytes().all(|b| b.is_ascii_hexdigit()))
                                .then(|| (key, format!("`{v}` is not bytes in hex")))
                        })
                    })
            })
    }
}

/// The bytes of hex text (validated before: [`Check::refusal`]).
fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Check {
        serde_yaml::from_str(yaml).expect("a check")
    }

    #[test]
    fn defaults_are_keepalived_s() {
        let real = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 11), 80);
        let tcp = check("type: tcp_check").resolve(real, None);
        assert_eq!(tcp.delay_loop, Duration::from_secs(60));
        assert_eq!(tcp.connect_timeout, Duration::from_secs(5));
        assert_eq!(
            (tcp.retry, tcp.delay_before_retry),
            (1, Duration::from_secs(1))
        );
        assert_eq!(tcp.warmup, None);
        assert_eq!(tcp.target, real);
        let http = check("{type: http_get, path: /health}").resolve(real, None);
        assert_eq!(http.delay_before_retry, Duration::from_secs(3));
        assert_eq!(http.urls[0].status, vec![(200, 299)]);
        let misc =
            check("{type: misc_check, misc_path: /bin/true, delay_loop: 2.5}").resolve(real, None);
        assert_eq!(
            (misc.retry, misc.misc_timeout),
            (0, Duration::from_millis(2500))
        );
    }

    #[test]
    fn status_codes_take_lists_and_ranges() {
        let c = check("{type: http_get, path: /, status_code: [200, \"300-302\"]}");
        let probe = c.resolve(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80), None);
        assert_eq!(probe.urls[0].status, vec![(200, 200), (300, 302)]);
        assert!(
            serde_yaml::from_str::<Check>("{type: http_get, status_code: [\"300-200\"]}").is_err()
        );
        assert!(serde_yaml::from_str::<Check>("{type: http_get, status_code: [700]}").is_err());
    }

    #[test]
    fn keys_of_another_type_are_refused() {
        let c = check("{type: tcp_check, path: /}");
        assert_eq!(c.refusal(80).map(|(k, _)| k), Some("path"));
        let c = check("type: misc_check");
        assert_eq!(c.refusal(80).map(|(k, _)| k), Some("misc_path"));
        let c = check("type: tcp_check");
        assert_eq!(c.refusal(0).map(|(k, _)| k), Some("connect_port"));
        let c = check("{type: http_get, digest: abc}");
        assert_eq!(c.refusal(80).map(|(k, _)| k), Some("digest"));
        assert_eq!(check("{type: udp_check, payload: 6869}").refusal(53), None);
    }

    #[test]
    fn seconds_round_trip() {
        for text in ["3", "0.5"] {
            let s: Seconds = serde_yaml::from_str(text).unwrap();
            assert_eq!(serde_yaml::to_string(&s).unwrap().trim(), text);
        }
        assert!(serde_yaml::from_str::<Seconds>("-1").is_err());
    }
}
