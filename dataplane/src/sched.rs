//! Schedulers: which real a new connection goes to, with IPVS's rules
//! (`net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc}.c`).
//!
//! Each worker owns one [`Scheduler`] per service and schedules only the
//! connections it sees, as IPVS does per service. A scheduler reads a
//! [`RealLoad`] per real, in the service's list order (IPVS puts a newly added
//! real at the head of the list, so list order is the order the control plane
//! publishes). Common rules: a real flagged overloaded is never picked, weight 0
//! means quiesced (no new connections), and "strictly better replaces", so ties
//! go to the earlier real.
//!
//! `pick` allocates nothing and is O(number of reals); wrr's IPVS loop, which
//! can walk the list once per step of its current weight, is shortened so that a
//! pick never takes more than a few passes over the list (see [`Scheduler::pick`]).

use std::fmt;
use std::str::FromStr;

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
}

impl SchedulerKind {
    /// Every kind rvs implements.
    pub const ALL: [SchedulerKind; 4] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
    ];

    /// The `ipvsadm -s` name.
    pub const fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
        }
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
        write!(f, "unknown scheduler \"{}\" (rvs knows:", self.0)?;
        for kind in SchedulerKind::ALL {
            write!(f, " {}", kind.name())?;
        }
        f.write_str(")")
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

/// What a scheduler reads about one real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealLoad {
    /// Configured weight; 0 = quiesced.
    pub weight: u32,
    /// ActiveConn: connections in an active TCP state.
    pub active: u32,
    /// InActConn: every other non-template connection.
    pub inactive: u32,
    /// Over its upper connection threshold (IPVS `IP_VS_DEST_F_OVERLOAD`).
    pub overloaded: bool,
}

impl RealLoad {
    /// IPVS `ip_vs_dest_conn_overhead`: an active connection costs 256
    /// inactive ones.
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }

    const fn usable(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }
}

/// One service's scheduler on one worker.
#[derive(Clone, Debug)]
pub struct Scheduler {
    kind: SchedulerKind,
    /// rr: the last real picked; wrr: IPVS `mark->cl`. `None` is the list head,
    /// i.e. the next scan starts at the first real.
    cursor: Option<usize>,
    /// wrr current weight (`mark->cw`).
    cw: i64,
    /// wrr `max weight - (gcd - 1)` (`mark->mw`); 0 when no real has weight.
    mw: i64,
    /// wrr gcd of the positive weights (`mark->di`), at least 1.
    di: i64,
}

impl Scheduler {
    /// A scheduler of `kind` for a service whose reals are `reals`.
    pub fn new(kind: SchedulerKind, reals: &[RealLoad]) -> Self {
        let (di, mw) = wrr_params(reals);
        Scheduler {
            kind,
            cursor: None,
            cw: mw,
            mw,
            di,
        }
    }

    /// The algorithm.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// Called when a real is added, removed or edited, with the new list.
    ///
    /// wrr does what IPVS's `ip_vs_wrr_dest_changed` does: the cursor goes back
    /// to the head and the current weight is kept where it can be (clamped to
    /// the new maximum, rounded onto the new gcd). rr keeps its cursor, as IPVS
    /// rr does across edits; if the list shrank past it, the next pick starts
    /// at the head. lc and wlc keep no state.
    pub fn reset(&mut self, reals: &[RealLoad]) {
        if self.kind != SchedulerKind::Wrr {
            return;
        }
        let (di, mw) = wrr_params(reals);
        self.cursor = None;
        self.di = di;
        self.mw = mw;
        if self.cw > mw || self.cw == 0 {
            self.cw = mw;
        } else if di > 1 {
            self.cw = (self.cw / di) * di + 1;
        }
    }

    /// The index in `reals` of the real for a new connection, or `None` when
    /// no real has weight > 0 and is not overloaded.
    ///
    /// `reals` should be the list given to [`Scheduler::new`] or the last
    /// [`Scheduler::reset`], with current loads; a different list never makes
    /// this panic or loop, it only schedules less exactly.
    pub fn pick(&mut self, reals: &[RealLoad]) -> Option<usize> {
        match self.kind {
            SchedulerKind::Rr => self.pick_rr(reals),
            SchedulerKind::Wrr => self.pick_wrr(reals),
            SchedulerKind::Lc => pick_lc(reals),
            SchedulerKind::Wlc => pick_wlc(reals),
        }
    }

    /// `ip_vs_rr_schedule`: the next usable real after the last pick, wrapping
    /// around, the last pick itself included as the final candidate.
    fn pick_rr(&mut self, reals: &[RealLoad]) -> Option<usize> {
        let len = reals.len();
        let start = match self.cursor {
            Some(last) if last < len => last + 1,
            _ => 0,
        };
        let picked = (start..start + len)
            .map(|i| i % len)
            .find(|&i| reals[i].usable())?;
        self.cursor = Some(picked);
        Some(picked)
    }

    /// `ip_vs_wrr_schedule`, step for step, except that runs of passes over
    /// the whole list that cannot pick anything (every usable real's weight
    /// is below the current weight) are skipped in one subtraction. Such a
    /// pass changes nothing but `cw`, so the result and the state left behind
    /// are the kernel's; without the skip, one pick could walk the list up to
    /// `max weight / gcd` times when the heaviest reals are overloaded.
    fn pick_wrr(&mut self, reals: &[RealLoad]) -> Option<usize> {
        if self.mw <= 0 {
            return None;
        }
        let last = self.cursor;
        let mut from = last;
        // A real at which the final pass stops; `None` = no stop set.
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let start = from.map_or(0, |i| i.saturating_add(1));
            // Heaviest weight among non-overloaded reals seen in this pass.
            let mut max_usable = 0i64;
            for (i, real) in reals.iter().enumerate().skip(start) {
                let weight = i64::from(real.weight);
                if !real.overloaded {
                    if weight >= self.cw {
                        self.cursor = Some(i);
                        return Some(i);
                    }
                    max_usable = max_usable.max(weight);
                }
                if stop == Some(i) {
                    self.cursor = Some(i);
                    return None;
                }
            }
            let whole_list = from.is_none();
            from = None;

            // This pass saw every real (started at the head, no stop), so
            // each further pass fails while the next cw stays above both
            // `max_usable` and `di` (above `di`, last_pass stays false and no
            // reset happens). Jump to the last such cw.
            if whole_list && stop.is_none() {
                let floor = max_usable.max(self.di);
                if self.cw > floor {
                    self.cw -= (self.cw - floor - 1) / self.di * self.di;
                }
            }

            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cursor = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

/// wrr's `(di, mw)`: the gcd of the positive weights (1 when there are none)
/// and `max weight - (gcd - 1)` (0 when there are none).
fn wrr_params(reals: &[RealLoad]) -> (i64, i64) {
    let mut g = 0u32;
    let mut max = 0u32;
    for real in reals {
        if real.weight > 0 {
            g = if g > 0 {
                gcd(real.weight, g)
            } else {
                real.weight
            };
        }
        max = max.max(real.weight);
    }
    let di = i64::from(g.max(1));
    (di, i64::from(max) - (di - 1))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `ip_vs_lc_schedule`: the usable real with the least overhead.
fn pick_lc(reals: &[RealLoad]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, real) in reals.iter().enumerate() {
        if !real.usable() {
            continue;
        }
        let overhead = real.overhead();
        if least.is_none_or(|(_, least_overhead)| overhead < least_overhead) {
            least = Some((i, overhead));
        }
    }
    least.map(|(i, _)| i)
}

/// `ip_vs_wlc_schedule`: the least overhead per weight, compared as
/// `overhead_least * weight_real > overhead_real * weight_least` so that no
/// division happens. The products are u128: overheads reach 2^40 and weights
/// 2^32, where the kernel's int counters would have wrapped long before.
fn pick_wlc(reals: &[RealLoad]) -> Option<usize> {
    let first = reals.iter().position(RealLoad::usable)?;
    let mut least = first;
    let mut least_overhead = u128::from(reals[first].overhead());
    for (i, real) in reals.iter().enumerate().skip(first + 1) {
        if real.overloaded {
            continue;
        }
        // Weight 0 never wins: 0 > x is false.
        let overhead = u128::from(real.overhead());
        if least_overhead * u128::from(real.weight) > overhead * u128::from(reals[least].weight) {
            least = i;
            least_overhead = overhead;
        }
    }
    Some(least)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn weights(weights: &[u32]) -> Vec<RealLoad> {
        weights
            .iter()
            .map(|&weight| RealLoad {
                weight,
                ..RealLoad::default()
            })
            .collect()
    }

    fn sequence(kind: SchedulerKind, reals: &[RealLoad], picks: usize) -> String {
        let mut scheduler = Scheduler::new(kind, reals);
        (0..picks)
            .map(|_| match scheduler.pick(reals) {
                Some(i) => char::from(b'A' + i as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn sched_names_round_trip() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.name().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        let err = "maglev".parse::<SchedulerKind>().unwrap_err();
        assert_eq!(err, UnknownScheduler("maglev".into()));
        assert_eq!(
            err.to_string(),
            "unknown scheduler \"maglev\" (rvs knows: rr wrr lc wlc)"
        );
        assert_eq!(SchedulerKind::default(), SchedulerKind::Wlc);
    }

    #[test]
    fn sched_sequences() {
        #[rustfmt::skip]
        let cases: &[(&str, SchedulerKind, &[u32], &str)] = &[
            ("wrr 4,3,2: IPVS's own example, 3 cycles",
             SchedulerKind::Wrr, &[4, 3, 2], "AABABCABC AABABCABC AABABCABC"),
            // g = 2, mw = 4 - 1 = 3: cw runs 3, 1, 3, 1, ...
            ("wrr 4,2: gcd 2", SchedulerKind::Wrr, &[4, 2], "AAB AAB AAB"),
            // g = 3, mw = 4: cw 4 → A, 1 → A B C, 4 → A ...
            ("wrr 6,3,3: gcd 3", SchedulerKind::Wrr, &[6, 3, 3], "AABC AABC"),
            ("wrr weight 0 never picked", SchedulerKind::Wrr, &[2, 0, 1], "AAC AAC AAC"),
            ("wrr equal weights is rr", SchedulerKind::Wrr, &[5, 5, 5], "ABC ABC"),
            ("wrr all zero", SchedulerKind::Wrr, &[0, 0], "---"),
            ("wrr empty", SchedulerKind::Wrr, &[], "---"),
            ("rr", SchedulerKind::Rr, &[1, 7, 3], "ABC ABC"),
            ("rr skips weight 0", SchedulerKind::Rr, &[1, 0, 3, 0], "AC AC AC"),
            ("rr all zero", SchedulerKind::Rr, &[0, 0], "--"),
            ("rr empty", SchedulerKind::Rr, &[], "--"),
            ("lc no load: first", SchedulerKind::Lc, &[1, 1], "AAA"),
            ("lc skips weight 0", SchedulerKind::Lc, &[0, 1], "BBB"),
            ("wlc no load: first", SchedulerKind::Wlc, &[1, 5], "AAA"),
            ("wlc all zero", SchedulerKind::Wlc, &[0, 0], "--"),
            ("lc all zero", SchedulerKind::Lc, &[0, 0], "--"),
        ];
        for &(name, kind, real_weights, want) in cases {
            let want: String = want.split_whitespace().collect();
            let got = sequence(kind, &weights(real_weights), want.len());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn sched_overloaded_never_picked() {
        let mut reals = weights(&[3, 3, 3]);
        reals[1].overloaded = true;
        assert_eq!(sequence(SchedulerKind::Rr, &reals, 4), "ACAC");
        assert_eq!(sequence(SchedulerKind::Wrr, &reals, 4), "ACAC");
        assert_eq!(sequence(SchedulerKind::Lc, &reals, 2), "AA");
        assert_eq!(sequence(SchedulerKind::Wlc, &reals, 2), "AA");
        for real in &mut reals {
            real.overloaded = true;
        }
        for kind in SchedulerKind::ALL {
            assert_eq!(sequence(kind, &reals, 3), "---", "{kind}");
        }
    }

    #[test]
    fn sched_rr_continues_from_last_pick() {
        let mut reals = weights(&[1, 1, 1]);
        let mut rr = Scheduler::new(SchedulerKind::Rr, &reals);
        assert_eq!(rr.pick(&reals), Some(0));
        assert_eq!(rr.pick(&reals), Some(1));
        // B quiesced, C overloaded: the walk from B wraps to A.
        reals[1].weight = 0;
        reals[2].overloaded = true;
        assert_eq!(rr.pick(&reals), Some(0));
        reals[0].overloaded = true;
        reals[2].overloaded = false;
        assert_eq!(rr.pick(&reals), Some(2));
        // Only C is usable: the walk ends on the last pick itself.
        assert_eq!(rr.pick(&reals), Some(2));
        // The list shrank below the cursor: start over at the head.
        let shorter = weights(&[1, 1]);
        rr.reset(&shorter);
        assert_eq!(rr.pick(&shorter), Some(0));
    }

    #[test]
    fn sched_lc_and_wlc_loads() {
        let load = |weight, active, inactive| RealLoad {
            weight,
            active,
            inactive,
            overloaded: false,
        };
        #[rustfmt::skip]
        let cases: &[(&str, SchedulerKind, &[RealLoad], Option<usize>)] = &[
            ("lc least overhead", SchedulerKind::Lc,
             &[load(1, 2, 0), load(1, 1, 300), load(1, 1, 10)], Some(2)),
            // 1 active = 256 inactive: a tie goes to the earlier real.
            ("lc tie to earlier", SchedulerKind::Lc,
             &[load(1, 1, 0), load(1, 0, 256)], Some(0)),
            ("lc ignores weight", SchedulerKind::Lc,
             &[load(100, 1, 0), load(1, 0, 255)], Some(1)),
            ("lc weight 0 skipped even if idle", SchedulerKind::Lc,
             &[load(1, 5, 0), load(0, 0, 0)], Some(0)),
            // 512/2 = 256 vs 256/1 = 256: tie, earlier stays.
            ("wlc tie to earlier", SchedulerKind::Wlc,
             &[load(2, 2, 0), load(1, 1, 0)], Some(0)),
            // 512/2 = 256 vs 255/1: the second is better.
            ("wlc per weight", SchedulerKind::Wlc,
             &[load(2, 2, 0), load(1, 0, 255)], Some(1)),
            ("wlc heavier weight wins", SchedulerKind::Wlc,
             &[load(1, 1, 0), load(3, 2, 0)], Some(1)),
            ("wlc weight 0 skipped", SchedulerKind::Wlc,
             &[load(0, 0, 0), load(1, 9, 0), load(0, 0, 0)], Some(1)),
            ("wlc idle first", SchedulerKind::Wlc,
             &[load(1, 3, 0), load(1, 0, 0), load(5, 0, 0)], Some(1)),
            ("wlc huge counters do not overflow", SchedulerKind::Wlc,
             &[load(u32::MAX, u32::MAX, u32::MAX), load(1, u32::MAX, 0)], Some(0)),
            ("lc huge counters do not overflow", SchedulerKind::Lc,
             &[load(1, u32::MAX, u32::MAX), load(1, u32::MAX, 0)], Some(1)),
        ];
        for &(name, kind, reals, want) in cases {
            assert_eq!(Scheduler::new(kind, reals).pick(reals), want, "{name}");
        }
    }

    #[test]
    fn sched_wrr_ratio_1_to_3() {
        let reals = weights(&[1, 3]);
        let picks = sequence(SchedulerKind::Wrr, &reals, 400);
        assert_eq!(picks.matches('A').count(), 100);
        assert_eq!(picks.matches('B').count(), 300);
    }

    #[test]
    fn sched_wrr_reset_goes_to_head() {
        let reals = weights(&[4, 3, 2]);
        let mut wrr = Scheduler::new(SchedulerKind::Wrr, &reals);
        for _ in 0..4 {
            wrr.pick(&reals);
        }
        // cw is 2 after "AABA"; on an edit the cursor returns to the head
        // and cw = 2 stays (within the new mw, gcd 1).
        let edited = weights(&[4, 3, 2, 2]);
        wrr.reset(&edited);
        let got: String = (0..5)
            .map(|_| char::from(b'A' + wrr.pick(&edited).unwrap() as u8))
            .collect();
        assert_eq!(got, "ABCDA");
    }

    #[test]
    fn sched_wrr_heavy_real_overloaded_is_fast() {
        // Without the skip this would walk the list ~4 billion times.
        let mut reals = weights(&[u32::MAX, 1]);
        let mut wrr = Scheduler::new(SchedulerKind::Wrr, &reals);
        assert_eq!(wrr.pick(&reals), Some(0));
        reals[0].overloaded = true;
        assert_eq!(wrr.pick(&reals), Some(1));
        reals[1].overloaded = true;
        assert_eq!(wrr.pick(&reals), None);
    }

    /// `ip_vs_wrr_schedule` transcribed literally, without the skip.
    struct ReferenceWrr {
        cursor: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl ReferenceWrr {
        fn pick(&mut self, reals: &[RealLoad]) -> Option<usize> {
            if self.mw == 0 {
                return None;
            }
            let last = self.cursor;
            let mut dest = last;
            let mut stop = None;
            let (mut last_pass, mut restarted) = (false, false);
            loop {
                let start = dest.map_or(0, |i| i + 1);
                for (i, real) in reals.iter().enumerate().skip(start) {
                    if !real.overloaded && i64::from(real.weight) >= self.cw {
                        self.cursor = Some(i);
                        return Some(i);
                    }
                    if stop == Some(i) {
                        self.cursor = Some(i);
                        return None;
                    }
                }
                dest = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cursor = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    proptest! {
        /// The skip changes nothing observable: same picks, same state, over
        /// random weights and overload flags flipping between picks.
        #[test]
        fn sched_wrr_matches_kernel_loop(
            real_weights in prop::collection::vec(0u32..12, 0..6),
            overloads in prop::collection::vec(prop::collection::vec(any::<bool>(), 6), 1..60),
        ) {
            let mut reals = weights(&real_weights);
            let mut wrr = Scheduler::new(SchedulerKind::Wrr, &reals);
            let mut reference = ReferenceWrr { cursor: None, cw: wrr.cw, mw: wrr.mw, di: wrr.di };
            for flags in overloads {
                for (real, overloaded) in reals.iter_mut().zip(flags) {
                    real.overloaded = overloaded;
                }
                prop_assert_eq!(wrr.pick(&reals), reference.pick(&reals));
                prop_assert_eq!((wrr.cursor, wrr.cw), (reference.cursor, reference.cw));
            }
        }

        /// With nothing overloaded, every real gets exactly its weight share
        /// of each full cycle of `sum(weights) / gcd`-ish picks.
        #[test]
        fn sched_wrr_shares_follow_weights(real_weights in prop::collection::vec(0u32..10, 1..6)) {
            let reals = weights(&real_weights);
            let total: u32 = real_weights.iter().sum();
            prop_assume!(total > 0);
            let mut wrr = Scheduler::new(SchedulerKind::Wrr, &reals);
            let mut counts = vec![0u32; reals.len()];
            for _ in 0..total {
                counts[wrr.pick(&reals).unwrap()] += 1;
            }
            prop_assert_eq!(counts, real_weights);
        }
    }
}
