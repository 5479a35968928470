//! `rvsctl top`: what changed in the last second, from two samples of the
//! listings (services with their reals, workers) taken over the control
//! socket: rates per service and real, each worker's load and packet rate,
//! the top drop reasons. Pure functions here ([`view`], [`text`]); the
//! terminal view is rvsctl's (ratatui), the plain text for a stdout that is
//! not a terminal is [`text`].

use std::time::Duration;

use crate::proto::{ServiceInfo, WorkerView};
use crate::rvsctl::render::Table;

/// One look at rvsd.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub services: Vec<ServiceInfo>,
    pub workers: Vec<WorkerView>,
}

/// Rates of a service or a real.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    pub conns: f64,
    pub in_pps: f64,
    pub out_pps: f64,
    pub in_bps: f64,
    pub out_bps: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealLine {
    pub name: String,
    pub weight: u32,
    pub active: u32,
    pub inactive: u32,
    pub rates: Rates,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceLine {
    pub name: String,
    pub scheduler: String,
    pub rates: Rates,
    pub reals: Vec<RealLine>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkerLine {
    pub index: u32,
    pub rx_pps: f64,
    pub tx_pps: f64,
    /// Share of the loop's rounds that found work, 0..=1; `None` before
    /// rvsd counted any.
    pub load: Option<f64>,
    pub conns: u64,
}

/// What `rvsctl top` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub services: Vec<ServiceLine>,
    pub workers: Vec<WorkerLine>,
    /// Drops per second by reason over every worker, highest first, at
    /// most [`TOP_DROPS`].
    pub drops: Vec<(String, f64)>,
}

/// Drop reasons shown.
pub const TOP_DROPS: usize = 5;

fn per_second(now: u64, before: u64, elapsed: f64) -> f64 {
    // A counter zeroed in between (`rvsadm -Z`) counts from 0.
    let delta = if now >= before { now - before } else { now };
    delta as f64 / elapsed
}

/// The changes from `before` to `now`, `elapsed` apart.
pub fn view(before: &Sample, now: &Sample, elapsed: Duration) -> View {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let services = now
        .services
        .iter()
        .map(|service| {
            let old = before
                .services
                .iter()
                .find(|s| s.spec.key == service.spec.key);
            let rates = |now: &crate::proto::Stats, old: Option<&crate::proto::Stats>| {
                let old = old.copied().unwrap_or(*now);
                Rates {
                    conns: per_second(now.conns, old.conns, secs),
                    in_pps: per_second(now.in_pkts, old.in_pkts, secs),
                    out_pps: per_second(now.out_pkts, old.out_pkts, secs),
                    in_bps: per_second(now.in_bytes, old.in_bytes, secs) * 8.0,
                    out_bps: per_second(now.out_bytes, old.out_bytes, secs) * 8.0,
                }
            };
            let reals = service
                .reals
                .iter()
                .map(|real| {
                    let old_real = old.and_then(|s| {
                        s.reals.iter().find(|r| {
                            r.spec.addr == real.spec.addr && r.spec.port == real.spec.port
                        })
                    });
                    RealLine {
                        name: format!("{}:{}", real.spec.addr, real.spec.port),
                        weight: real.spec.weight,
                        active: real.active_conns,
                        inactive: real.inact_conns,
                        rates: rates(&real.stats, old_real.map(|r| &r.stats)),
                    }
                })
                .collect();
            ServiceLine {
                name: service.spec.key.to_string(),
                scheduler: service.spec.scheduler.clone(),
                rates: rates(&service.stats, old.map(|s| &s.stats)),
                reals,
            }
        })
        .collect();
    let workers = now
        .workers
        .iter()
        .map(|worker| {
            let old = before
                .workers
                .iter()
                .find(|w| w.index == worker.index)
                .unwrap_or(worker);
            let polls = worker.polls.saturating_sub(old.polls);
            let busy = worker.busy_polls.saturating_sub(old.busy_polls);
            WorkerLine {
                index: worker.index,
                rx_pps: per_second(worker.rx_packets, old.rx_packets, secs),
                tx_pps: per_second(worker.tx_packets, old.tx_packets, secs),
                load: (polls > 0).then(|| busy as f64 / polls as f64),
                conns: worker.conns,
            }
        })
        .collect();
    let mut drops: Vec<(String, f64)> = Vec::new();
    for worker in &now.workers {
        let old = before.workers.iter().find(|w| w.index == worker.index);
        for (reason, count) in &worker.drop_reasons {
            let was = old
                .and_then(|w| w.drop_reasons.iter().find(|(r, _)| r == reason))
                .map_or(*count, |(_, n)| *n);
            let rate = per_second(*count, was, secs);
            match drops.iter_mut().find(|(r, _)| r == reason) {
                Some((_, sum)) => *sum += rate,
                None => drops.push((reason.clone(), rate)),
            }
        }
    }
    drops.retain(|(_, rate)| *rate > 0.0);
    drops.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    drops.truncate(TOP_DROPS);
    View {
        services,
        workers,
        drops,
    }
}

/// A rate for a narrow column: `950`, `12.3K`, `4.5M`.
pub fn short(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}K", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// The rows of the services table: a service, then its reals indented.
pub fn service_rows(view: &View) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for service in &view.services {
        let r = &service.rates;
        rows.push(vec![
            format!("{} {}", service.name, service.scheduler),
            String::new(),
            short(r.conns),
            short(r.in_pps),
            short(r.out_pps),
            short(r.in_bps),
            short(r.out_bps),
            String::new(),
        ]);
        for real in &service.reals {
            let r = &real.rates;
            rows.push(vec![
                format!("  -> {}", real.name),
                real.weight.to_string(),
                short(r.conns),
                short(r.in_pps),
                short(r.out_pps),
                short(r.in_bps),
                short(r.out_bps),
                format!("{}/{}", real.active, real.inactive),
            ]);
        }
    }
    rows
}

pub const SERVICE_COLUMNS: [&str; 8] = [
    "SERVICE / REAL",
    "WEIGHT",
    "CONN/S",
    "INPKT/S",
    "OUTPKT/S",
    "INBIT/S",
    "OUTBIT/S",
    "ACT/INACT",
];

pub fn worker_rows(view: &View) -> Vec<Vec<String>> {
    view.workers
        .iter()
        .map(|w| {
            vec![
                w.index.to_string(),
                w.load
                    .map_or_else(|| "-".to_owned(), |l| format!("{:.0}%", l * 100.0)),
                short(w.rx_pps),
                short(w.tx_pps),
                w.conns.to_string(),
            ]
        })
        .collect()
}

pub const WORKER_COLUMNS: [&str; 5] = ["WORKER", "LOAD", "RXPKT/S", "TXPKT/S", "CONNS"];

/// The view as plain text, for a stdout that is not a terminal.
pub fn text(view: &View) -> String {
    let mut services = Table::new(&SERVICE_COLUMNS.map(|c| (c, c != SERVICE_COLUMNS[0])));
    for row in service_rows(view) {
        services.row(row);
    }
    let mut workers = Table::new(&WORKER_COLUMNS.map(|c| (c, true)));
    for row in worker_rows(view) {
        workers.row(row);
    }
    let drops = if view.drops.is_empty() {
        "drops: none\n".to_owned()
    } else {
        let list: Vec<String> = view
            .drops
            .iter()
            .map(|(reason, rate)| format!("{reason} {}/s", short(*rate)))
            .collect();
        format!("drops: {}\n", list.join(", "))
    };
    format!("{}\n{}\n{drops}", services.render(), workers.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Forward;
    use crate::proto::{RealInfo, RealSpec, ServiceKey, ServiceSpec, Stats};
    use std::net::Ipv4Addr;

    fn sample(conns: u64, busy: u64, drops: u64) -> Sample {
        let stats = Stats {
            conns,
            in_pkts: conns * 10,
            ..Stats::default()
        };
        Sample {
            services: vec![ServiceInfo {
                spec: ServiceSpec {
                    key: ServiceKey::tcp(Ipv4Addr::new(10, 0, 1, 100), 80),
                    scheduler: "rr".to_owned(),
                    flags: Vec::new(),
                    persistent: None,
                    netmask: None,
                    ops: false,
                },
                stats,
                rates: Default::default(),
                reals: vec![RealInfo {
                    spec: RealSpec {
                        addr: Ipv4Addr::new(10, 0, 2, 11),
                        port: 80,
                        forward: Forward::Nat,
                        weight: 1,
                        u_threshold: 0,
                        l_threshold: 0,
                    },
                    active_conns: 2,
                    inact_conns: 0,
                    persist_conns: 0,
                    stats,
                    rates: Default::default(),
                }],
                laddrs: Vec::new(),
            }],
            workers: vec![WorkerView {
                index: 0,
                lcore: 1,
                cpu: 1,
                queues: Vec::new(),
                rx_packets: conns * 10,
                rx_bytes: 0,
                tx_packets: conns * 10,
                tx_bytes: 0,
                conns: 2,
                conns_created: conns,
                conns_expired: 0,
                redirected: 0,
                drops,
                drop_reasons: vec![("no_real".to_owned(), drops)],
                polls: 1000 + busy * 4,
                busy_polls: busy,
            }],
        }
    }

    #[test]
    fn rates_load_and_drops_over_one_second() {
        let v = view(
            &sample(100, 0, 5),
            &sample(150, 250, 15),
            Duration::from_secs(1),
        );
        assert_eq!(v.services[0].rates.conns, 50.0);
        assert_eq!(v.services[0].reals[0].rates.in_pps, 500.0);
        assert_eq!(v.workers[0].load, Some(0.25));
        assert_eq!(v.drops, [("no_real".to_owned(), 10.0)]);
        let text = text(&v);
        assert!(text.contains("tcp 10.0.1.100:80 rr"), "{text}");
        assert!(text.contains("-> 10.0.2.11:80"), "{text}");
        assert!(
            text.contains("25%") && text.contains("no_real 10/s"),
            "{text}"
        );
    }

    #[test]
    fn a_zeroed_counter_counts_from_zero() {
        let v = view(
            &sample(1000, 0, 0),
            &sample(30, 0, 0),
            Duration::from_secs(1),
        );
        assert_eq!(v.services[0].rates.conns, 30.0);
    }
}
