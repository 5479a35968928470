//! Schedulers: which real a new connection goes to, with IPVS's rules
//! (`net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc,sed,nq,fo,ovf,twos,dh,sh,mh,lblc,lblcr}.c`).
//!
//! Each worker owns one [`Scheduler`] per service and schedules only the
//! connections it sees, as IPVS does per service. A scheduler reads a
//! [`RealLoad`] per real, in the service's list order (IPVS puts a newly added
//! real at the head of the list, so list order is the order the control plane
//! publishes). Common rules: a real flagged overloaded is never picked, weight 0
//! means quiesced (no new connections), and "strictly better replaces", so ties
//! go to the earlier real.
//!
//! Three kinds of scheduler live here:
//!
//! - dynamic ones (rr, wrr, lc, wlc, sed, nq, fo, ovf, twos) read only the
//!   loads; a pick is O(number of reals). wrr's IPVS loop, which can walk the
//!   list once per step of its current weight, is shortened so that a pick
//!   never takes more than a few passes over the list (see `pick_wrr`);
//! - hashing ones (dh, sh, mh) look the client up in a [`SchedTable`] that the
//!   control thread builds off the packet path and shares between workers
//!   behind an `Arc`; a pick is O(1) (see [`table`] for the fallback walks);
//! - locality ones (lblc, lblcr) keep a bounded, preallocated cache from
//!   destination address to real(s) per scheduler (see [`locality`]); a pick is
//!   one cache probe plus at most two wlc passes, O(number of reals).
//!
//! No pick allocates, locks or makes a system call.

pub mod locality;
pub mod table;

use std::net::Ipv4Addr;
use std::sync::Arc;

use locality::{LblcCache, LblcrCache};
use rvs_control::model::{SchedFlags, SchedulerKind};
pub use table::{SchedTable, TableError, TableReal, MAGLEV_DEFAULT_SIZE};

/// What a scheduler reads about one real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealLoad {
    /// Configured weight; 0 = quiesced.
    pub weight: u32,
    /// ActiveConn: connections in an active TCP state.
    pub active: u32,
    /// InActConn: every other non-template connection.
    pub inactive: u32,
    /// Over its upper connection threshold (IPVS `IP_VS_DEST_F_OVERLOAD`);
    /// [`Thresholds`] keeps it the way IPVS does.
    pub overloaded: bool,
}

impl RealLoad {
    /// IPVS `ip_vs_dest_conn_overhead`: an active connection costs 256
    /// inactive ones.
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }

    /// May take new connections: weight > 0 and not overloaded.
    pub const fn usable(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }
}

/// A real's connection thresholds (`ipvsadm -x upper -y lower`), on
/// `active + inactive` (templates excluded); 0 = not set. Schedulers read only
/// the `overloaded` flag these keep, never the thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub upper: u32,
    pub lower: u32,
}

impl Thresholds {
    /// IPVS `ip_vs_bind_dest`, after a connection was counted in `load`:
    /// overloaded once the total reaches the upper threshold.
    pub fn after_bind(&self, load: &mut RealLoad) {
        if self.upper != 0 && total_conns(load) >= u64::from(self.upper) {
            load.overloaded = true;
        }
    }

    /// IPVS `ip_vs_unbind_dest`, after a connection left `load`: the flag
    /// clears below the lower threshold if there is one, else below 3/4 of the
    /// upper one if there is one, else at once.
    pub fn after_unbind(&self, load: &mut RealLoad) {
        let total = total_conns(load);
        let clear = if self.lower != 0 {
            total < u64::from(self.lower)
        } else if self.upper != 0 {
            total * 4 < u64::from(self.upper) * 3
        } else {
            true
        };
        if clear {
            load.overloaded = false;
        }
    }
}

fn total_conns(load: &RealLoad) -> u64 {
    u64::from(load.active) + u64::from(load.inactive)
}

/// What the hashing and locality schedulers key on, taken from the packet
/// that opens the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// Source address: sh and mh hash it.
    pub addr: Ipv4Addr,
    /// Source port: sh and mh hash it with `sh-port` / `mh-port`.
    pub port: u16,
    /// Destination address (the VIP, or the origin server behind a
    /// firewall-mark service): dh, lblc and lblcr key on it.
    pub dst: Ipv4Addr,
}

impl Client {
    /// What [`Scheduler::pick`] passes: every connection looks alike, so the
    /// hashing and locality schedulers send them all to one real.
    pub const UNSPECIFIED: Client = Client {
        addr: Ipv4Addr::UNSPECIFIED,
        port: 0,
        dst: Ipv4Addr::UNSPECIFIED,
    };
}

/// twos's seed when none is set. Any nonzero value works; this one is the
/// golden ratio's fraction, a common xorshift seed.
const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One service's scheduler on one worker.
#[derive(Clone, Debug)]
pub struct Scheduler {
    kind: SchedulerKind,
    flags: SchedFlags,
    /// rr: the last real picked; wrr: IPVS `mark->cl`. `None` is the list head,
    /// i.e. the next scan starts at the first real.
    cursor: Option<usize>,
    /// wrr current weight (`mark->cw`).
    cw: i64,
    /// wrr `max weight - (gcd - 1)` (`mark->mw`); 0 when no real has weight.
    mw: i64,
    /// wrr gcd of the positive weights (`mark->di`), at least 1.
    di: i64,
    /// twos: xorshift64* state, never 0.
    rng: u64,
    /// dh, sh, mh: the lookup table; an empty one for the other kinds.
    table: Arc<SchedTable>,
    /// lblc, lblcr: the destination cache.
    locality: Locality,
}

#[derive(Clone, Debug)]
enum Locality {
    None,
    Lblc(Box<LblcCache>),
    Lblcr(Box<LblcrCache>),
}

impl Scheduler {
    /// A scheduler of `kind` for a service whose reals are `reals`, with no
    /// flags, for this module's tests.
    ///
    /// For dh, sh and mh this builds the table itself, hashing list
    /// positions, since loads carry no addresses: such a table keeps no
    /// real's slots when the list changes and differs from the one the
    /// control thread builds. Workers never use it: they build every
    /// scheduler from the snapshot's table through [`Scheduler::with_table`].
    #[cfg(test)]
    pub(crate) fn new(kind: SchedulerKind, reals: &[RealLoad]) -> Self {
        let positional: Vec<TableReal> = if kind.uses_table() {
            reals
                .iter()
                .enumerate()
                .map(|(i, real)| TableReal::new(Ipv4Addr::from(i as u32), 0, real.weight))
                .collect()
        } else {
            Vec::new()
        };
        Scheduler::with_table(
            Arc::new(SchedTable::build(kind, &positional)),
            SchedFlags::default(),
            reals,
        )
    }

    /// A scheduler of the table's kind ([`SchedTable::kind`]) with `flags`.
    /// Every kind takes a table; for those that read none
    /// ([`SchedulerKind::uses_table`] false) it is an empty one. lblc and
    /// lblcr allocate their cache here (see [`locality`] for its size).
    pub fn with_table(table: Arc<SchedTable>, flags: SchedFlags, reals: &[RealLoad]) -> Self {
        let kind = table.kind();
        let (di, mw) = wrr_params(reals);
        let locality = match kind {
            SchedulerKind::Lblc => Locality::Lblc(Box::default()),
            SchedulerKind::Lblcr => Locality::Lblcr(Box::default()),
            _ => Locality::None,
        };
        Scheduler {
            kind,
            flags,
            cursor: None,
            cw: mw,
            mw,
            di,
            rng: DEFAULT_SEED,
            table,
            locality,
        }
    }

    /// The algorithm.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The flags.
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }

    /// Reseeds twos's random draws (0 means the default seed). Workers should
    /// each take a different seed so that they do not draw in lockstep; the
    /// same seed always gives the same picks, which tests rely on.
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = if seed == 0 { DEFAULT_SEED } else { seed };
    }

    /// Called when a real is added, removed or edited, with the new list.
    ///
    /// wrr does what IPVS's `ip_vs_wrr_dest_changed` does: the cursor goes back
    /// to the head and the current weight is kept where it can be (clamped to
    /// the new maximum, rounded onto the new gcd). rr keeps its cursor, as IPVS
    /// rr does across edits; if the list shrank past it, the next pick starts
    /// at the head. lblc and lblcr forget their cache: it holds list
    /// positions, which an edit may have moved (IPVS's entries name reals and
    /// survive). dh, sh and mh need a new table from the new list, given with
    /// [`Scheduler::set_table`]. The other kinds keep no state.
    pub fn reset(&mut self, reals: &[RealLoad]) {
        match &mut self.locality {
            Locality::None => {}
            Locality::Lblc(cache) => cache.clear(),
            Locality::Lblcr(cache) => cache.clear(),
        }
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

    /// Swaps in a table rebuilt for a new list of reals. A table of another
    /// kind is refused (returned), since the scheduler's state is per kind.
    pub fn set_table(&mut self, table: Arc<SchedTable>) -> Result<(), Arc<SchedTable>> {
        if table.kind() != self.kind {
            return Err(table);
        }
        self.table = table;
        Ok(())
    }

    /// The index in `reals` of the real for a new connection, or `None` when
    /// no real may take it. Same as [`Scheduler::pick_for`] with
    /// [`Client::UNSPECIFIED`] at time 0, which is exact for the kinds that
    /// do not read the client (all but dh, sh, mh, lblc, lblcr).
    ///
    /// `reals` should be the list given to [`Scheduler::with_table`] or the last
    /// [`Scheduler::reset`], with current loads; a different list never makes
    /// this panic or loop, it only schedules less exactly.
    pub fn pick(&mut self, reals: &[RealLoad]) -> Option<usize> {
        self.pick_for(reals, &Client::UNSPECIFIED, 0)
    }

    /// The index in `reals` of the real for a new connection from `client`,
    /// or `None` when no real may take it. `now` is the worker's coarse clock
    /// in seconds; only lblc and lblcr read it (cache ageing).
    pub fn pick_for(&mut self, reals: &[RealLoad], client: &Client, now: u32) -> Option<usize> {
        match self.kind {
            SchedulerKind::Rr => self.pick_rr(reals),
            SchedulerKind::Wrr => self.pick_wrr(reals),
            SchedulerKind::Lc => pick_lc(reals),
            SchedulerKind::Wlc => pick_wlc(reals),
            SchedulerKind::Sed => pick_sed(reals),
            SchedulerKind::Nq => pick_nq(reals),
            SchedulerKind::Fo => pick_fo(reals),
            SchedulerKind::Ovf => pick_ovf(reals),
            SchedulerKind::Twos => {
                let r1 = self.next_random();
                let r2 = self.next_random();
                pick_twos(reals, r1, r2)
            }
            SchedulerKind::Dh => self.table.pick_dh(reals, client.dst),
            SchedulerKind::Sh => {
                let port = if self.flags.sh_port { client.port } else { 0 };
                self.table
                    .pick_sh(reals, client.addr, port, self.flags.sh_fallback)
            }
            SchedulerKind::Mh => {
                let port = if self.flags.mh_port { client.port } else { 0 };
                self.table
                    .pick_mh(reals, client.addr, port, self.flags.mh_fallback)
            }
            SchedulerKind::Lblc | SchedulerKind::Lblcr => match &mut self.locality {
                Locality::Lblc(cache) => cache.pick(reals, client.dst, now),
                Locality::Lblcr(cache) => cache.pick(reals, client.dst, now),
                Locality::None => pick_wlc(reals),
            },
        }
    }

    /// xorshift64*: 64 random bits. Not cryptographic, and need not be: twos
    /// only needs draws that are uniform and cheap.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
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

/// `ip_vs_wlc_schedule`: the least overhead per weight.
fn pick_wlc(reals: &[RealLoad]) -> Option<usize> {
    least_per_weight(reals, RealLoad::overhead)
}

/// `ip_vs_sed_schedule`: as wlc, with the expected delay `activeconns + 1`
/// (inactive connections and the 256 factor play no part).
fn pick_sed(reals: &[RealLoad]) -> Option<usize> {
    least_per_weight(reals, sed_overhead)
}

const fn sed_overhead(real: &RealLoad) -> u64 {
    real.active as u64 + 1
}

/// The shared loop of wlc, sed (and lblc/lblcr's fallback): the first usable
/// real, then any later non-overloaded real whose load per weight is strictly
/// lower, compared as `overhead_least * weight_real > overhead_real *
/// weight_least` so that no division happens. The products are u128:
/// overheads reach 2^40 and weights 2^32, where the kernel's int counters
/// would have wrapped long before.
fn least_per_weight(reals: &[RealLoad], overhead: impl Fn(&RealLoad) -> u64) -> Option<usize> {
    let first = reals.iter().position(RealLoad::usable)?;
    let mut least = first;
    // Kept as u64 and widened at each product, so that the compiler sees
    // 64 x 64 -> 128-bit multiplications.
    let mut least_overhead = overhead(&reals[first]);
    let mut least_weight = u64::from(reals[first].weight);
    for (i, real) in reals.iter().enumerate().skip(first + 1) {
        if real.overloaded {
            continue;
        }
        // Weight 0 never wins: 0 > x is false.
        let real_overhead = overhead(real);
        if widening_mul(least_overhead, u64::from(real.weight))
            > widening_mul(real_overhead, least_weight)
        {
            least = i;
            least_overhead = real_overhead;
            least_weight = u64::from(real.weight);
        }
    }
    Some(least)
}

const fn widening_mul(a: u64, b: u64) -> u128 {
    a as u128 * b as u128
}

/// `ip_vs_nq_schedule`: the first usable real with no active connection wins
/// at once; failing that, sed's choice.
fn pick_nq(reals: &[RealLoad]) -> Option<usize> {
    let mut least: Option<usize> = None;
    for (i, real) in reals.iter().enumerate() {
        if !real.usable() {
            continue;
        }
        if real.active == 0 {
            return Some(i);
        }
        let better = least.is_none_or(|least| {
            u128::from(sed_overhead(&reals[least])) * u128::from(real.weight)
                > u128::from(sed_overhead(real)) * u128::from(reals[least].weight)
        });
        if better {
            least = Some(i);
        }
    }
    least
}

/// `ip_vs_fo_schedule`: the heaviest non-overloaded real (strictly heavier
/// replaces, starting from weight 0, so weight 0 is never picked). Load plays
/// no part: every connection goes to the heaviest until it fails.
fn pick_fo(reals: &[RealLoad]) -> Option<usize> {
    let mut heaviest: Option<(usize, u32)> = None;
    for (i, real) in reals.iter().enumerate() {
        let heaviest_weight = heaviest.map_or(0, |(_, weight)| weight);
        if !real.overloaded && real.weight > heaviest_weight {
            heaviest = Some((i, real.weight));
        }
    }
    heaviest.map(|(i, _)| i)
}

/// `ip_vs_ovf_schedule`: the heaviest usable real whose active connections
/// do not exceed its weight (`activeconns <= weight`); the first such real
/// starts, strictly heavier replaces.
fn pick_ovf(reals: &[RealLoad]) -> Option<usize> {
    let mut heaviest: Option<(usize, u32)> = None;
    for (i, real) in reals.iter().enumerate() {
        if !real.usable() || real.active > real.weight {
            continue;
        }
        if heaviest.is_none_or(|(_, weight)| real.weight > weight) {
            heaviest = Some((i, real.weight));
        }
    }
    heaviest.map(|(i, _)| i)
}

/// `ip_vs_twos_schedule` with its two random numbers given as 64 random
/// bits each: with `T = sum of usable weights + 1`, each becomes a draw `r`
/// in `[0, T)` (multiply-shift, as the kernel's `get_random_u32_below`), and
/// its choice is the first usable real whose running weight sum reaches `r`
/// (the kernel subtracts weights until `r <= 0`). So the first usable real
/// gets one chance more than its weight. The second choice wins when its
/// load per weight is strictly lower: `w2 * oh1 > w1 * oh2`.
fn pick_twos(reals: &[RealLoad], random1: u64, random2: u64) -> Option<usize> {
    let total: u64 = reals
        .iter()
        .filter(|real| real.usable())
        .map(|real| u64::from(real.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let below = |random: u64| ((u128::from(random) * u128::from(total + 1)) >> 64) as u64;
    let (draw1, draw2) = (below(random1), below(random2));
    let (mut choice1, mut choice2) = (None, None);
    let mut running = 0u64;
    for (i, real) in reals.iter().enumerate() {
        if !real.usable() {
            continue;
        }
        running += u64::from(real.weight);
        if choice1.is_none() && running >= draw1 {
            choice1 = Some(i);
        }
        if choice2.is_none() && running >= draw2 {
            choice2 = Some(i);
        }
        if choice1.is_some() && choice2.is_some() {
            break;
        }
    }
    // Both draws are at most `total`, which the running sum reaches.
    let (first, second) = (choice1?, choice2?);
    let (a, b) = (&reals[first], &reals[second]);
    if u128::from(b.weight) * u128::from(a.overhead())
        > u128::from(a.weight) * u128::from(b.overhead())
    {
        Some(second)
    } else {
        Some(first)
    }
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

    fn load(weight: u32, active: u32, inactive: u32) -> RealLoad {
        RealLoad {
            weight,
            active,
            inactive,
            overloaded: false,
        }
    }

    fn overloaded(mut real: RealLoad) -> RealLoad {
        real.overloaded = true;
        real
    }

    #[test]
    fn sched_dynamic_loads() {
        use SchedulerKind::{Fo, Nq, Ovf, Sed, Wlc};
        #[rustfmt::skip]
        let cases: &[(&str, SchedulerKind, &[RealLoad], Option<usize>)] = &[
            // sed: (active + 1) / weight; inactive plays no part.
            ("sed ignores inactive", Sed,
             &[load(1, 0, 1000), load(1, 1, 0)], Some(0)),
            // 1/1 vs 3/4: the second; wlc keeps the idle first (0 vs 512/4).
            ("sed counts the new connection", Sed,
             &[load(1, 0, 0), load(4, 2, 0)], Some(1)),
            ("wlc on the same loads", Wlc,
             &[load(1, 0, 0), load(4, 2, 0)], Some(0)),
            // 2/2 = 1/1: tie, earlier stays.
            ("sed tie to earlier", Sed,
             &[load(2, 1, 0), load(1, 0, 0)], Some(0)),
            ("sed weight 0 skipped", Sed,
             &[load(0, 0, 0), load(1, 5, 0)], Some(1)),
            ("sed overloaded skipped", Sed,
             &[overloaded(load(9, 0, 0)), load(1, 5, 0)], Some(1)),
            ("sed none usable", Sed,
             &[load(0, 0, 0), overloaded(load(1, 0, 0))], None),
            // nq: the first idle real wins at once, heavier idle ones later
            // notwithstanding.
            ("nq first idle wins", Nq,
             &[load(1, 1, 0), load(1, 0, 0), load(10, 0, 0)], Some(1)),
            ("nq idle ignores inactive", Nq,
             &[load(1, 1, 0), load(1, 0, 500)], Some(1)),
            // No idle real: sed. 3/1 vs 6/4: the second.
            ("nq else sed", Nq,
             &[load(1, 2, 0), load(4, 5, 0)], Some(1)),
            ("nq else sed, tie to earlier", Nq,
             &[load(1, 1, 0), load(2, 3, 0)], Some(0)),
            ("nq idle but weight 0", Nq,
             &[load(0, 0, 0), load(1, 3, 0)], Some(1)),
            ("nq idle but overloaded", Nq,
             &[overloaded(load(1, 0, 0)), load(1, 3, 0)], Some(1)),
            ("nq none usable", Nq, &[load(0, 0, 0)], None),
            // fo: heaviest, strict >, load ignored.
            ("fo heaviest", Fo, &[load(1, 0, 0), load(5, 0, 0), load(3, 0, 0)], Some(1)),
            ("fo tie to earlier", Fo, &[load(5, 0, 0), load(5, 0, 0)], Some(0)),
            ("fo ignores load", Fo, &[load(5, 1000, 9), load(4, 0, 0)], Some(0)),
            ("fo skips overloaded", Fo,
             &[overloaded(load(9, 0, 0)), load(2, 0, 0), load(3, 0, 0)], Some(2)),
            ("fo weight 0 never", Fo, &[load(0, 0, 0), load(0, 0, 0)], None),
            // ovf: heaviest with active <= weight.
            ("ovf at its weight still takes", Ovf,
             &[load(5, 5, 0), load(3, 0, 0)], Some(0)),
            ("ovf over its weight overflows", Ovf,
             &[load(5, 6, 0), load(3, 0, 0)], Some(1)),
            ("ovf inactive plays no part", Ovf,
             &[load(5, 0, 900), load(3, 0, 0)], Some(0)),
            ("ovf tie to earlier", Ovf, &[load(3, 0, 0), load(3, 0, 0)], Some(0)),
            ("ovf weight 0 skipped", Ovf, &[load(0, 0, 0), load(1, 1, 0)], Some(1)),
            ("ovf skips overloaded", Ovf,
             &[overloaded(load(9, 0, 0)), load(1, 0, 0)], Some(1)),
            ("ovf all full", Ovf, &[load(1, 2, 0), load(2, 3, 0)], None),
        ];
        for &(name, kind, reals, want) in cases {
            assert_eq!(Scheduler::new(kind, reals).pick(reals), want, "{name}");
        }
    }

    #[test]
    fn sched_twos_choices() {
        // Draws are in [0, T) with T = sum of usable weights + 1; a draw r
        // picks the first usable real whose running weight sum reaches r.
        // `random` turns a wanted draw into the 64 bits that give it.
        fn random(draw: u64, total: u64) -> u64 {
            // The smallest x with x * T >> 64 == draw.
            ((u128::from(draw) << 64).div_ceil(u128::from(total))) as u64
        }
        let reals = [
            load(2, 0, 0),
            load(0, 0, 0),
            load(3, 0, 0),
            overloaded(load(4, 0, 0)),
        ];
        // Usable: A (2), C (3); T = 6. Draws 0..=2 → A, 3..=5 → C.
        for (draw, want) in [(0, 0), (1, 0), (2, 0), (3, 2), (5, 2)] {
            assert_eq!(
                pick_twos(&reals, random(draw, 6), random(draw, 6)),
                Some(want),
                "{draw}"
            );
        }
        // (case, loads, draw 1, draw 2, wanted real)
        type Case<'a> = (&'a str, &'a [RealLoad], u64, u64, Option<usize>);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("second less loaded wins", &[load(1, 5, 0), load(1, 1, 0)], 0, 2, Some(1)),
            ("first less loaded stays", &[load(1, 1, 0), load(1, 5, 0)], 0, 2, Some(0)),
            ("equal load: first", &[load(1, 1, 0), load(1, 1, 0)], 0, 2, Some(0)),
            // Per weight: 2*256/2 vs 1*256/1, tie → first.
            ("per weight tie: first", &[load(2, 2, 0), load(1, 1, 0)], 0, 3, Some(0)),
            // 2 active per weight 2 vs 0 per 1: the second.
            ("per weight: second", &[load(2, 2, 0), load(1, 0, 0)], 0, 3, Some(1)),
            ("same choice twice", &[load(1, 9, 0), load(1, 0, 0)], 0, 1, Some(0)),
            ("none usable", &[load(0, 0, 0), overloaded(load(1, 0, 0))], 0, 0, None),
            ("empty", &[], 0, 0, None),
        ];
        for &(name, reals, draw1, draw2, want) in cases {
            let total = reals
                .iter()
                .filter(|r| r.usable())
                .map(|r| u64::from(r.weight))
                .sum::<u64>()
                + 1;
            let got = pick_twos(reals, random(draw1, total), random(draw2, total));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn sched_twos_reproducible_and_prefers_less_loaded() {
        let reals = [load(1, 100, 0), load(1, 0, 0), load(1, 50, 0)];
        let picks = |seed| {
            let mut twos = Scheduler::new(SchedulerKind::Twos, &reals);
            twos.set_seed(seed);
            (0..64)
                .map(|_| twos.pick(&reals).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        assert_eq!(picks(0), picks(DEFAULT_SEED));
        // T = 4: draws 0, 1 → A, 2 → B, 3 → C. The pair's less loaded
        // member wins, so the idle B is picked unless both draws miss it:
        // 1 - (3/4)^2 = 7/16 of the picks; A only when both draws are A's:
        // (2/4)^2 = 1/4.
        let mut twos = Scheduler::new(SchedulerKind::Twos, &reals);
        let mut counts = [0u32; 3];
        for _ in 0..160_000 {
            counts[twos.pick(&reals).unwrap()] += 1;
        }
        let share = |n: u32| f64::from(n) / 160_000.0;
        assert!((share(counts[1]) - 7.0 / 16.0).abs() < 0.01, "{counts:?}");
        assert!((share(counts[0]) - 4.0 / 16.0).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn sched_thresholds_drive_overloaded() {
        // (thresholds, total before the step, bind or unbind, flag before, flag after)
        #[rustfmt::skip]
        let cases: &[(&str, Thresholds, u32, bool, bool, bool)] = &[
            ("bind reaches upper", Thresholds { upper: 3, lower: 0 }, 3, true, false, true),
            ("bind below upper", Thresholds { upper: 3, lower: 0 }, 2, true, false, false),
            ("no upper: never", Thresholds { upper: 0, lower: 1 }, 99, true, false, false),
            ("unbind under lower", Thresholds { upper: 10, lower: 5 }, 4, false, true, false),
            ("unbind at lower stays", Thresholds { upper: 10, lower: 5 }, 5, false, true, true),
            // No lower: clear under 3/4 of upper. 8 * 4 = 32 > 30 stays; 7 clears.
            ("unbind 3/4 of upper stays", Thresholds { upper: 10, lower: 0 }, 8, false, true, true),
            ("unbind under 3/4 of upper", Thresholds { upper: 10, lower: 0 }, 7, false, true, false),
            ("unbind, no thresholds", Thresholds { upper: 0, lower: 0 }, 50, false, true, false),
        ];
        for &(name, thresholds, total, bind, before, after) in cases {
            let mut real = RealLoad {
                weight: 1,
                active: total,
                inactive: 0,
                overloaded: before,
            };
            if bind {
                thresholds.after_bind(&mut real);
            } else {
                thresholds.after_unbind(&mut real);
            }
            assert_eq!(real.overloaded, after, "{name}");
        }

        // Active and inactive both count: a real at its upper threshold is
        // skipped by every scheduler until it drains below 3/4 of it.
        let thresholds = Thresholds { upper: 4, lower: 0 };
        let mut reals = [load(5, 0, 0), load(1, 0, 0)];
        reals[0].active = 2;
        reals[0].inactive = 2;
        thresholds.after_bind(&mut reals[0]);
        assert!(reals[0].overloaded);
        for kind in SchedulerKind::ALL {
            let got = Scheduler::new(kind, &reals).pick(&reals);
            if kind.uses_table() {
                // No fallback: whatever the hash gives, never the overloaded real.
                assert_ne!(got, Some(0), "{kind}");
            } else {
                assert_eq!(got, Some(1), "{kind}");
            }
        }
        reals[0].inactive = 1;
        thresholds.after_unbind(&mut reals[0]);
        assert!(reals[0].overloaded, "3 * 4 = 12 is not under 4 * 3 = 12");
        reals[0].active = 1;
        thresholds.after_unbind(&mut reals[0]);
        assert!(!reals[0].overloaded);
    }

    proptest! {
        /// `pick` is `pick_for` for the kinds that do not read the client,
        /// whatever client and time are given.
        #[test]
        fn sched_pick_for_ignores_client_for_dynamic_kinds(
            reals in prop::collection::vec((0u32..5, 0u32..6, 0u32..600, any::<bool>()), 0..8),
            clients in prop::collection::vec((any::<u32>(), any::<u16>(), any::<u32>()), 1..20),
        ) {
            let reals: Vec<RealLoad> = reals
                .into_iter()
                .map(|(weight, active, inactive, overloaded)| RealLoad { weight, active, inactive, overloaded })
                .collect();
            for kind in SchedulerKind::ALL {
                if matches!(kind, SchedulerKind::Dh | SchedulerKind::Sh | SchedulerKind::Mh
                    | SchedulerKind::Lblc | SchedulerKind::Lblcr) {
                    continue;
                }
                let mut plain = Scheduler::new(kind, &reals);
                let mut with_client = Scheduler::new(kind, &reals);
                for (i, &(addr, port, dst)) in clients.iter().enumerate() {
                    let client = Client { addr: addr.into(), port, dst: dst.into() };
                    prop_assert_eq!(
                        plain.pick(&reals),
                        with_client.pick_for(&reals, &client, i as u32),
                        "{}", kind
                    );
                }
            }
        }
    }
}
