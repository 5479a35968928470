//! What applying a configuration changes: the rule of what may change while
//! rvsd runs, and the diff between the running configuration and a file.
//!
//! Both work on the serialised form of [`Config`], key by key, so that a
//! setting added to the model later is compared (and named by its YAML key)
//! without touching this module.

use crate::config::{self, Config, ConfigError, Real, Service};
use crate::proto::{
    ConfigDiff, RealChange, RealSpec, ServiceChange, ServiceKey, ServiceSummary, SettingChange,
};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Top-level sections that change while rvsd runs; every other one needs a
/// restart (it shapes ports, queues, memory or lcores). `sync` is live as
/// `--start-daemon` is: rvsd starts and stops its sync daemons to match.
pub const LIVE_SECTIONS: [&str; 4] = ["services", "timeouts", "fullnat", "sync"];

/// Refuses `file` (parsed from `text`, named `name` in errors) if it differs
/// from `running` outside [`LIVE_SECTIONS`]. The error names the first
/// differing key, its line in `text` and both values.
pub fn check_live_only(
    running: &Config,
    file: &Config,
    text: &str,
    name: &str,
) -> Result<(), ConfigError> {
    let without_live = |config: &Config| {
        let mut map = as_map(&without_services(config));
        for section in LIVE_SECTIONS {
            map.remove(section);
        }
        Value::Object(map)
    };
    let (old, new) = (without_live(running), without_live(file));
    let Some((path, old, new)) = first_difference(&old, &new, String::new()) else {
        return Ok(());
    };
    let section = path.split(['.', '[']).next().unwrap_or_default().to_owned();
    Err(config::refusal(
        text,
        name,
        &path,
        format!(
            "{} in the running rvsd, {} here; `{section}` changes only with a restart \
             of rvsd (while it runs, only {} change)",
            describe(old),
            describe(new),
            LIVE_SECTIONS.join(", ")
        ),
    ))
}

/// What turning `old` into `new` changes.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut diff = ConfigDiff::default();
    setting_changes(
        "",
        &Value::Object(as_map(&without_services(old))),
        &Value::Object(as_map(&without_services(new))),
        &mut diff.settings,
    );

    let old_services: HashMap<_, &Service> = old
        .services
        .iter()
        .map(|s| (ServiceKey::of(s), s))
        .collect();
    let new_keys: HashSet<_> = new.services.iter().map(ServiceKey::of).collect();
    for service in &new.services {
        match old_services.get(&ServiceKey::of(service)) {
            None => diff.services_added.push(summary(service)),
            Some(before) if *before != service => {
                diff.services_changed.push(service_change(before, service))
            }
            Some(_) => {}
        }
    }
    diff.services_removed = old
        .services
        .iter()
        .filter(|s| !new_keys.contains(&ServiceKey::of(s)))
        .map(summary)
        .collect();
    diff
}

fn summary(service: &Service) -> ServiceSummary {
    ServiceSummary {
        service: ServiceKey::of(service),
        scheduler: service.scheduler.to_string(),
        reals: service.reals.len() as u32,
    }
}

fn service_change(old: &Service, new: &Service) -> ServiceChange {
    // Settings: everything but the identity and the reals.
    let settings_of = |service: &Service| {
        let mut map = as_map(service);
        for identity in ["vip", "port", "protocol", "mark", "reals"] {
            map.remove(identity);
        }
        Value::Object(map)
    };
    let mut change = ServiceChange {
        service: ServiceKey::of(new),
        settings: Vec::new(),
        reals_added: Vec::new(),
        reals_removed: Vec::new(),
        reals_changed: Vec::new(),
        reals_reordered: false,
    };
    setting_changes(
        "",
        &settings_of(old),
        &settings_of(new),
        &mut change.settings,
    );

    let real_key = |real: &Real, port: u16| (real.address, real.port_or(port));
    let old_reals: HashMap<_, &Real> = old
        .reals
        .iter()
        .map(|r| (real_key(r, old.port), r))
        .collect();
    let new_keys: HashSet<_> = new.reals.iter().map(|r| real_key(r, new.port)).collect();
    let mut kept_new_order = Vec::new();
    for real in &new.reals {
        let key = real_key(real, new.port);
        match old_reals.get(&key) {
            None => change.reals_added.push(RealSpec::of(real, new.port)),
            Some(before) => {
                kept_new_order.push(key);
                let mut settings = Vec::new();
                setting_changes(
                    "",
                    &real_settings(before),
                    &real_settings(real),
                    &mut settings,
                );
                if !settings.is_empty() {
                    change.reals_changed.push(RealChange {
                        addr: key.0,
                        port: key.1,
                        settings,
                    });
                }
            }
        }
    }
    let mut kept_old_order = Vec::new();
    for real in &old.reals {
        let key = real_key(real, old.port);
        if new_keys.contains(&key) {
            kept_old_order.push(key);
        } else {
            change.reals_removed.push(RealSpec::of(real, old.port));
        }
    }
    change.reals_reordered = kept_old_order != kept_new_order;
    change
}

/// A real's settings: everything but its identity (address and the port,
/// which `port_or` already made part of the key).
fn real_settings(real: &Real) -> Value {
    let mut map = as_map(real);
    map.remove("address");
    map.remove("port");
    Value::Object(map)
}

/// `config` with no services: what the key-by-key comparisons of settings
/// serialise (a hundred thousand reals are compared by [`diff`] directly).
fn without_services(config: &Config) -> Config {
    let mut copy = config.clone();
    copy.services = Vec::new();
    copy
}

fn as_map(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        // The config types are structs of plain data: always a map.
        _ => Map::new(),
    }
}

/// Appends a change for every leaf (a scalar, or a list taken whole) that
/// differs between `old` and `new`, descending into mappings; keys are
/// dotted paths under `prefix`.
fn setting_changes(prefix: &str, old: &Value, new: &Value, out: &mut Vec<SettingChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => setting_changes(&path, x, y, out),
                    (x, y) => out.push(SettingChange {
                        key: path,
                        from: scalar(x),
                        to: scalar(y),
                    }),
                }
            }
        }
        _ if old != new => out.push(SettingChange {
            key: prefix.to_owned(),
            from: scalar(Some(old)),
            to: scalar(Some(new)),
        }),
        _ => {}
    }
}

/// The first key path at which `a` and `b` differ, with both values there.
fn first_difference<'v>(
    a: &'v Value,
    b: &'v Value,
    path: String,
) -> Option<(String, Option<&'v Value>, Option<&'v Value>)> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter()
                .find_map(|key| match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => first_difference(p, q, join(key)),
                    (p, q) => Some((join(key), p, q)),
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            let longest = x.len().max(y.len());
            (0..longest).find_map(|index| {
                let at = format!("{path}[{index}]");
                match (x.get(index), y.get(index)) {
                    (Some(p), Some(q)) => first_difference(p, q, at),
                    (p, q) => Some((at, p, q)),
                }
            })
        }
        _ if a != b => Some((path, Some(a), Some(b))),
        _ => None,
    }
}

/// A value as YAML shows it, unquoted; `none` for an absent one.
fn scalar(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "none".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => format!(
            "[{}]",
            items
                .iter()
                .map(|item| scalar(Some(item)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(other) => other.to_string(),
    }
}

/// A value for an error message: strings quoted, mappings not spelled out.
fn describe(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "absent".to_owned(),
        Some(Value::Object(_)) => "a mapping".to_owned(),
        Some(Value::Array(items)) if items.iter().any(Value::is_object) => {
            format!("a list of {}", items.len())
        }
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_on, CpuList, HostCpus};
    use crate::proto::Forward;
    use std::net::Ipv4Addr;

    const BASE: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - name: client
    device: net_null0
    addresses: [10.99.1.1/24]
  - name: real
    device: net_null1
    addresses: [10.99.2.1/24]
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: real, queue: 0 } ] }
services:
  - vip: 10.99.1.100
    port: 80
    protocol: tcp
    scheduler: rr
    reals:
      - { address: 10.99.2.11, weight: 1 }
      - { address: 10.99.2.12, weight: 1 }
  - vip: 10.99.1.100
    port: 9000
    protocol: udp
    reals:
      - { address: 10.99.2.11 }
";

    fn cpus() -> HostCpus {
        let list = CpuList::parse("0-3").expect("a CPU list");
        HostCpus {
            online: list.clone(),
            allowed: list,
        }
    }

    fn parse(text: &str) -> Config {
        parse_on(text, "t.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn change(key: &str, from: &str, to: &str) -> SettingChange {
        SettingChange {
            key: key.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn identical_configs_have_an_empty_diff() {
        let config = parse(BASE);
        assert!(diff(&config, &config).is_empty());
        assert!(check_live_only(&config, &config, BASE, "t.yaml").is_ok());
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let old = parse(BASE);
        let text = BASE
            .replace("scheduler: rr", "scheduler: wrr")
            .replace(
                "      - { address: 10.99.2.11, weight: 1 }\n      - { address: 10.99.2.12, weight: 1 }",
                "      - { address: 10.99.2.13, weight: 2 }\n      - { address: 10.99.2.11, weight: 5 }",
            )
            .replace("port: 9000", "port: 9001")
            + "timeouts: { tcp: 30, tcpfin: 5, udp: 60 }\n";
        let new = parse(&text);
        let diff = diff(&old, &new);
        assert_eq!(
            diff.settings,
            vec![
                change("timeouts.tcp", "900", "30"),
                change("timeouts.tcpfin", "120", "5"),
                change("timeouts.udp", "300", "60"),
            ]
        );
        let udp = |port| ServiceKey::udp(Ipv4Addr::new(10, 99, 1, 100), port);
        assert_eq!(
            diff.services_added,
            vec![ServiceSummary {
                service: udp(9001),
                scheduler: "wlc".into(),
                reals: 1
            }]
        );
        assert_eq!(diff.services_removed[0].service, udp(9000));
        let [changed] = &diff.services_changed[..] else {
            panic!("{diff:?}")
        };
        assert_eq!(
            changed.service,
            ServiceKey::tcp(Ipv4Addr::new(10, 99, 1, 100), 80)
        );
        assert_eq!(changed.settings, vec![change("scheduler", "rr", "wrr")]);
        assert_eq!(
            changed.reals_added,
            vec![RealSpec {
                addr: Ipv4Addr::new(10, 99, 2, 13),
                port: 80,
                forward: Forward::Nat,
                weight: 2,
                u_threshold: 0,
                l_threshold: 0
            }]
        );
        assert_eq!(changed.reals_removed[0].addr, Ipv4Addr::new(10, 99, 2, 12));
        assert_eq!(
            changed.reals_changed,
            vec![RealChange {
                addr: Ipv4Addr::new(10, 99, 2, 11),
                port: 80,
                settings: vec![change("weight", "1", "5")]
            }]
        );
        assert!(!changed.reals_reordered, "one real kept cannot move");
    }

    #[test]
    fn a_real_port_written_out_is_the_same_real() {
        let old = parse(BASE);
        let new = parse(&BASE.replace(
            "{ address: 10.99.2.12, weight: 1 }",
            "{ address: 10.99.2.12, port: 80, weight: 1 }",
        ));
        let diff = diff(&old, &new);
        assert!(diff
            .services_changed
            .iter()
            .all(|c| c.reals_added.is_empty()
                && c.reals_removed.is_empty()
                && c.reals_changed.is_empty()
                && !c.reals_reordered));
    }

    #[test]
    fn reordered_reals_are_reported() {
        let old = parse(BASE);
        let new = parse(&BASE.replace(
            "      - { address: 10.99.2.11, weight: 1 }\n      - { address: 10.99.2.12, weight: 1 }",
            "      - { address: 10.99.2.12, weight: 1 }\n      - { address: 10.99.2.11, weight: 1 }",
        ));
        assert!(diff(&old, &new).services_changed[0].reals_reordered);
    }

    #[test]
    fn restart_sections_are_refused_with_their_line() {
        let old = parse(BASE);
        let text = BASE.replace("addresses: [10.99.2.1/24]", "addresses: [10.99.2.1/16]");
        let new = parse(&text);
        let err = check_live_only(&old, &new, &text, "new.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "new.yaml:8:17: ports[1].addresses[0]: \"10.99.2.1/24\" in the running rvsd, \
             \"10.99.2.1/16\" here; `ports` changes only with a restart of rvsd (while it \
             runs, only services, timeouts, fullnat, sync change)"
        );
        let text = format!("{BASE}limits: {{ reals: 1000 }}\n");
        let new = parse(&text);
        let err = check_live_only(&old, &new, &text, "new.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("new.yaml:24:11: limits.reals: 131072 in the running rvsd, 1000 here; `limits` changes only"),
            "{err}"
        );
        let text = format!("{BASE}fullnat: {{ port_min: 2000 }}\n");
        assert!(check_live_only(&old, &parse(&text), &text, "new.yaml").is_ok());
    }
}
