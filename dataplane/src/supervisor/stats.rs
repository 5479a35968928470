//! The counters that listings show: each real's, summed over the workers'
//! single-writer counters at read time; the baselines `ipvsadm -Z` takes;
//! and IPVS-style rate estimates, sampled every 2 s and smoothed
//! (avg += (rate - avg) / 4).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rvs_control::listing::RealCounts;
use rvs_control::proto::{Rates, Stats};

use crate::counters::RealBook;

/// How often rates are sampled.
const ESTIMATE_EVERY: Duration = Duration::from_secs(2);

/// Baselines and estimates, by real id.
pub(super) struct Accounts {
    baselines: HashMap<u32, Stats>,
    estimators: HashMap<u32, Estimator>,
    last_estimate: Instant,
}

#[derive(Clone, Copy, Default)]
struct Estimator {
    last: Stats,
    rates: Rates,
}

/// Real `id`'s counters over all workers: traffic, ActiveConn, InActConn
/// and PersistConn.
pub(super) fn real_totals(book: &RealBook, id: u32) -> (Stats, u64, u64, u64) {
    let t = book.totals(id);
    let stats = Stats {
        conns: t.conns,
        in_pkts: t.in_packets,
        out_pkts: t.out_packets,
        in_bytes: t.in_bytes,
        out_bytes: t.out_bytes,
    };
    (stats, t.active, t.inactive, t.persist)
}

impl Accounts {
    pub(super) fn new() -> Self {
        Accounts {
            baselines: HashMap::new(),
            estimators: HashMap::new(),
            last_estimate: Instant::now(),
        }
    }

    /// What listings show of real `id`: its counters since its last `-Z`.
    pub(super) fn counts(&self, book: &RealBook, id: u32) -> RealCounts {
        let (stats, active, inactive, persist) = real_totals(book, id);
        let base = self.baselines.get(&id).copied().unwrap_or_default();
        RealCounts {
            stats: stats.since(base),
            rates: self
                .estimators
                .get(&id)
                .map_or(Rates::default(), |e| e.rates),
            active: active as u32,
            inactive: inactive as u32,
            persist: persist as u32,
        }
    }

    /// Takes real `id`'s counters now as its new zero (`-Z`).
    pub(super) fn zero(&mut self, book: &RealBook, id: u32) {
        self.baselines.insert(id, real_totals(book, id).0);
    }

    /// Samples the rates of `reals` if the time has come; forgets reals that
    /// are gone.
    pub(super) fn estimate(&mut self, book: &RealBook, reals: impl Iterator<Item = u32>) {
        let elapsed = self.last_estimate.elapsed();
        if elapsed < ESTIMATE_EVERY {
            return;
        }
        self.last_estimate = Instant::now();
        let seconds = elapsed.as_secs_f64();
        let per_second = |new: u64, old: u64| (new.saturating_sub(old) as f64 / seconds) as u64;
        let smooth =
            |avg: u64, rate: u64| (avg as i64 + (rate as i64 - avg as i64) / 4).max(0) as u64;
        let mut live = HashSet::new();
        for id in reals {
            live.insert(id);
            let (now, ..) = real_totals(book, id);
            let estimator = self.estimators.entry(id).or_default();
            let last = estimator.last;
            let r = &mut estimator.rates;
            r.cps = smooth(r.cps, per_second(now.conns, last.conns));
            r.inpps = smooth(r.inpps, per_second(now.in_pkts, last.in_pkts));
            r.outpps = smooth(r.outpps, per_second(now.out_pkts, last.out_pkts));
            r.inbps = smooth(r.inbps, per_second(now.in_bytes, last.in_bytes));
            r.outbps = smooth(r.outbps, per_second(now.out_bytes, last.out_bytes));
            estimator.last = now;
        }
        self.estimators.retain(|id, _| live.contains(id));
    }
}
