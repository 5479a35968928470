//! lblc and lblcr: the destination caches (`ip_vs_lblc.c`, `ip_vs_lblcr.c`).
//!
//! IPVS keeps a hash table of entries, allocated as connections arrive, with
//! at most 16384 (`IP_VS_LBLC_TAB_SIZE * 16`) of them before it stops adding
//! (the real is still returned, just not remembered), and a timer that every
//! minute reaps entries idle for 6 minutes while the table is over that
//! size, and every 30 minutes every entry idle for 24 hours.
//!
//! rvs allocates the whole cache when the scheduler is built and never on a
//! pick: 16384 entries as 2048 sets of 8 ways, a destination's set chosen by
//! `hash_32(addr, 11)`. The timer becomes two rules applied where the entry
//! is used:
//!
//! - an entry idle for 24 hours (`now - last use >= 86400`) is gone: the
//!   lookup that finds it treats it as absent and frees it;
//! - a new entry takes a free or gone way of its set, else the way idle the
//!   longest if idle for 6 minutes or more, else it is not cached (IPVS's
//!   "table full"). This is "reap 6-minute-idle entries when full", per set.
//!
//! Memory per scheduler (so per lblc/lblcr service per worker): lblc about
//! 210 KiB, lblcr about 790 KiB (a set holds up to [`SET_CAPACITY`] reals).
//! IPVS's set grows without bound; rvs, when a set is full and must take one
//! more real, first drops the set's most loaded member (the one IPVS's
//! 24-hour shrink would drop).
//!
//! Entries hold list positions; [`super::Scheduler::reset`] clears the cache
//! because a list edit may move them. A position past the end of the list is
//! treated as an unusable real.

use std::fmt;
use std::net::Ipv4Addr;

use super::table::hash_32;
use super::{pick_wlc, RealLoad};

/// Entries per cache (IPVS's `max_size`).
pub const CAPACITY: usize = SETS * WAYS;
const SET_BITS: u32 = 11;
const SETS: usize = 1 << SET_BITS;
const WAYS: usize = 8;

/// Most reals an lblcr destination set holds.
pub const SET_CAPACITY: usize = 8;

/// IPVS `DEFAULT_EXPIRATION` (`lblc_expiration` / `lblcr_expiration`
/// sysctls), seconds: entries idle this long are gone; an lblcr set not
/// modified this long sheds its most loaded member.
pub const EXPIRATION: u32 = 24 * 60 * 60;

/// IPVS `ENTRY_TIMEOUT`, seconds: idle this long, an entry may be replaced
/// when its set is full.
pub const ENTRY_TIMEOUT: u32 = 6 * 60;

/// A fixed-size map from destination address to `V`, with per-entry last
/// use; the storage of both caches.
#[derive(Clone)]
struct DstCache<V> {
    dsts: Box<[u32]>,
    last_use: Box<[u32]>,
    live: Box<[bool]>,
    values: Box<[V]>,
}

impl<V: Copy + Default> Default for DstCache<V> {
    fn default() -> Self {
        DstCache {
            dsts: vec![0; CAPACITY].into_boxed_slice(),
            last_use: vec![0; CAPACITY].into_boxed_slice(),
            live: vec![false; CAPACITY].into_boxed_slice(),
            values: vec![V::default(); CAPACITY].into_boxed_slice(),
        }
    }
}

impl<V> fmt::Debug for DstCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DstCache")
            .field("capacity", &CAPACITY)
            .field("live", &self.live.iter().filter(|&&live| live).count())
            .finish()
    }
}

impl<V: Copy> DstCache<V> {
    fn ways(dst: u32) -> std::ops::Range<usize> {
        let set = hash_32(dst, SET_BITS) as usize;
        set * WAYS..(set + 1) * WAYS
    }

    /// The slot of `dst`'s live entry, its last use moved to `now`.
    fn find(&mut self, dst: Ipv4Addr, now: u32) -> Option<usize> {
        let dst = u32::from(dst);
        let slot = Self::ways(dst).find(|&slot| self.live[slot] && self.dsts[slot] == dst)?;
        if idle(self.last_use[slot], now) >= EXPIRATION {
            self.live[slot] = false;
            return None;
        }
        self.last_use[slot] = now;
        Some(slot)
    }

    /// Stores a new entry for `dst` (not in the cache); `None` when its set
    /// has no room (module docs). Among equally idle ways, the first goes.
    fn insert(&mut self, dst: Ipv4Addr, now: u32, value: V) -> Option<usize> {
        let dst = u32::from(dst);
        let ways = Self::ways(dst);
        let free = ways
            .clone()
            .find(|&slot| !self.live[slot] || idle(self.last_use[slot], now) >= EXPIRATION);
        let slot = free.or_else(|| {
            ways.min_by_key(|&slot| self.last_use[slot])
                .filter(|&slot| idle(self.last_use[slot], now) >= ENTRY_TIMEOUT)
        })?;
        self.dsts[slot] = dst;
        self.last_use[slot] = now;
        self.live[slot] = true;
        self.values[slot] = value;
        Some(slot)
    }

    fn clear(&mut self) {
        self.live.fill(false);
    }
}

/// Seconds since `last`; a clock that went back counts as no time.
fn idle(last: u32, now: u32) -> u32 {
    now.saturating_sub(last)
}

/// IPVS lblc/lblcr `is_overloaded`: the real has more active connections
/// than its weight while some real of the service (any, as in the kernel)
/// has fewer than half its weight.
fn overloaded_for_locality(real: &RealLoad, reals: &[RealLoad]) -> bool {
    real.active > real.weight
        && reals
            .iter()
            .any(|other| u64::from(other.active) * 2 < u64::from(other.weight))
}

/// lblc: destination → one real.
#[derive(Clone, Debug, Default)]
pub(super) struct LblcCache {
    cache: DstCache<u32>,
}

impl LblcCache {
    /// `ip_vs_lblc_schedule`: the cached real while it is usable and not
    /// overloaded in lblc's sense; else wlc's pick, which replaces the entry.
    ///
    /// One deliberate difference: IPVS reuses a cached real even when its
    /// connection threshold flagged it overloaded (it checks only weight and
    /// the lblc test); rvs keeps its rule that no scheduler picks a flagged
    /// real.
    pub(super) fn pick(&mut self, reals: &[RealLoad], dst: Ipv4Addr, now: u32) -> Option<usize> {
        let found = self.cache.find(dst, now);
        if let Some(slot) = found {
            let cached = self.cache.values[slot] as usize;
            if let Some(real) = reals.get(cached) {
                if real.usable() && !overloaded_for_locality(real, reals) {
                    return Some(cached);
                }
            }
        }
        let picked = pick_wlc(reals)?;
        match found {
            Some(slot) => self.cache.values[slot] = picked as u32,
            None => {
                self.cache.insert(dst, now, picked as u32);
            }
        }
        Some(picked)
    }

    pub(super) fn clear(&mut self) {
        self.cache.clear();
    }
}

/// An lblcr destination's reals, most recently added first (IPVS adds at
/// the head of the set's list, and its scans start there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RealSet {
    members: [u32; SET_CAPACITY],
    len: u8,
    /// When a member was last added or removed.
    last_mod: u32,
}

impl RealSet {
    fn single(real: usize, now: u32) -> Self {
        let mut members = [0; SET_CAPACITY];
        members[0] = real as u32;
        RealSet {
            members,
            len: 1,
            last_mod: now,
        }
    }

    fn members(&self) -> &[u32] {
        &self.members[..usize::from(self.len)]
    }

    /// `ip_vs_dest_set_min`: the first member with weight > 0 that is not
    /// overloaded, then any later non-overloaded one strictly less loaded
    /// per weight.
    fn least(&self, reals: &[RealLoad]) -> Option<usize> {
        let mut least: Option<usize> = None;
        for &member in self.members() {
            let i = member as usize;
            let Some(real) = reals.get(i) else { continue };
            if real.overloaded {
                continue;
            }
            match least {
                None if real.weight > 0 => least = Some(i),
                None => {}
                Some(l) => {
                    let lr = &reals[l];
                    if u128::from(lr.overhead()) * u128::from(real.weight)
                        > u128::from(real.overhead()) * u128::from(lr.weight)
                    {
                        least = Some(i);
                    }
                }
            }
        }
        least
    }

    /// `ip_vs_dest_set_max`: the first member with weight > 0, then any
    /// later one with weight > 0 strictly more loaded per weight. Overload
    /// flags play no part.
    fn most(&self, reals: &[RealLoad]) -> Option<usize> {
        let mut most: Option<usize> = None;
        for &member in self.members() {
            let i = member as usize;
            let Some(real) = reals.get(i) else { continue };
            if real.weight == 0 {
                continue;
            }
            let more = most.is_none_or(|m| {
                let mr = &reals[m];
                u128::from(mr.overhead()) * u128::from(real.weight)
                    < u128::from(real.overhead()) * u128::from(mr.weight)
            });
            if more {
                most = Some(i);
            }
        }
        most
    }

    fn remove(&mut self, real: usize, now: u32) {
        let len = usize::from(self.len);
        if let Some(at) = self.members().iter().position(|&m| m as usize == real) {
            self.members.copy_within(at + 1..len, at);
            self.len -= 1;
            self.last_mod = now;
        }
    }

    /// `ip_vs_dest_set_insert`: adds `real` at the head unless it is a
    /// member. A full set first drops its most loaded member, or its oldest
    /// when no member has weight.
    fn insert(&mut self, real: usize, reals: &[RealLoad], now: u32) {
        if self.members().iter().any(|&m| m as usize == real) {
            return;
        }
        if usize::from(self.len) == SET_CAPACITY {
            let drop = self
                .most(reals)
                .unwrap_or(self.members[SET_CAPACITY - 1] as usize);
            self.remove(drop, now);
        }
        let len = usize::from(self.len);
        self.members.copy_within(0..len, 1);
        self.members[0] = real as u32;
        self.len += 1;
        self.last_mod = now;
    }
}

/// lblcr: destination → a set of reals.
#[derive(Clone, Debug, Default)]
pub(super) struct LblcrCache {
    cache: DstCache<RealSet>,
}

impl LblcrCache {
    /// `ip_vs_lblcr_schedule`: the set's least loaded member unless it is
    /// overloaded in lblc's sense, else wlc's pick, which joins the set. A
    /// set of more than one real that has not changed for 24 hours first
    /// loses its most loaded member (that member may still be returned by
    /// this pick, as in the kernel).
    pub(super) fn pick(&mut self, reals: &[RealLoad], dst: Ipv4Addr, now: u32) -> Option<usize> {
        let Some(slot) = self.cache.find(dst, now) else {
            let picked = pick_wlc(reals)?;
            self.cache.insert(dst, now, RealSet::single(picked, now));
            return Some(picked);
        };
        let set = &mut self.cache.values[slot];
        let least = set.least(reals);
        if set.len > 1 && idle(set.last_mod, now) > EXPIRATION {
            if let Some(most) = set.most(reals) {
                set.remove(most, now);
            }
        }
        if let Some(least) = least {
            if !overloaded_for_locality(&reals[least], reals) {
                return Some(least);
            }
        }
        let picked = pick_wlc(reals)?;
        set.insert(picked, reals, now);
        Some(picked)
    }

    pub(super) fn clear(&mut self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(weight: u32, active: u32) -> RealLoad {
        RealLoad {
            weight,
            active,
            ..RealLoad::default()
        }
    }

    const X: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const Y: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);

    /// `n` destinations that share one cache set.
    fn same_set(n: usize) -> Vec<Ipv4Addr> {
        let start = u32::from(X);
        let set = hash_32(start, SET_BITS);
        (start..)
            .filter(|&addr| hash_32(addr, SET_BITS) == set)
            .take(n)
            .map(Ipv4Addr::from)
            .collect()
    }

    #[test]
    fn sched_lblc_reuses_cache() {
        let mut lblc = LblcCache::default();
        let mut reals = [load(1, 0), load(1, 0)];
        // Empty cache: wlc, a tie, so A.
        assert_eq!(lblc.pick(&reals, X, 0), Some(0));
        // A busier than B: wlc would take B, the cache keeps A (A has 1
        // active for weight 1: not over its weight).
        reals[0].active = 1;
        assert_eq!(lblc.pick(&reals, X, 1), Some(0));
        // Another destination is scheduled on its own.
        assert_eq!(lblc.pick(&reals, Y, 1), Some(1));
        assert_eq!(lblc.pick(&reals, Y, 2), Some(1));
    }

    #[test]
    fn sched_lblc_reschedules() {
        #[rustfmt::skip]
        let cases: &[(&str, [RealLoad; 2], Option<usize>)] = &[
            // A over its weight and B under half of its own: wlc → B.
            ("overloaded, a lighter real", [load(1, 2), load(4, 1)], Some(1)),
            // A over its weight but nobody under half: A stays.
            ("over weight, no lighter real", [load(1, 2), load(2, 1)], Some(0)),
            // Quiesced: wlc → B.
            ("weight 0", [load(0, 0), load(1, 5)], Some(1)),
            // Threshold-flagged: wlc → B (rvs's rule; IPVS would keep A).
            ("flagged overloaded", [RealLoad { overloaded: true, ..load(5, 0) }, load(1, 5)], Some(1)),
            // Nothing usable at all.
            ("none usable", [load(0, 0), load(0, 0)], None),
        ];
        for (name, loads, want) in cases {
            let mut lblc = LblcCache::default();
            assert_eq!(lblc.pick(&[load(1, 0), load(1, 0)], X, 0), Some(0));
            assert_eq!(lblc.pick(loads, X, 1), *want, "{name}");
            // The cache follows the new pick: with A idle again, B stays.
            if *want == Some(1) {
                assert_eq!(
                    lblc.pick(&[load(1, 0), load(1, 0)], X, 2),
                    Some(1),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn sched_lblc_entries_expire() {
        let mut lblc = LblcCache::default();
        assert_eq!(lblc.pick(&[load(1, 0), load(1, 0)], X, 100), Some(0));
        let b_better = [load(1, 1), load(1, 0)];
        // Each use restarts the 24 hours.
        assert_eq!(lblc.pick(&b_better, X, 100 + EXPIRATION - 1), Some(0));
        assert_eq!(lblc.pick(&b_better, X, 100 + 2 * EXPIRATION - 2), Some(0));
        // Idle 24 hours: gone, so wlc → B.
        assert_eq!(lblc.pick(&b_better, X, 100 + 3 * EXPIRATION - 2), Some(1));
        // Reset forgets everything.
        lblc.clear();
        assert_eq!(lblc.pick(&[load(1, 0), load(1, 1)], X, 0), Some(0));
    }

    #[test]
    fn sched_lblc_full_set() {
        let dsts = same_set(WAYS + 1);
        let mut lblc = LblcCache::default();
        let a = [load(1, 0), load(1, 1)];
        let b = [load(1, 1), load(1, 0)];
        for &dst in &dsts[..WAYS] {
            assert_eq!(lblc.pick(&a, dst, 0), Some(0));
        }
        // The set is full of entries used in the last 6 minutes: the new
        // destination is scheduled but not remembered.
        let new = dsts[WAYS];
        assert_eq!(lblc.pick(&a, new, ENTRY_TIMEOUT - 1), Some(0));
        assert_eq!(lblc.pick(&b, new, ENTRY_TIMEOUT - 1), Some(1));
        // Keep one entry fresh; the others are idle 6 minutes at 360, so
        // the new one replaces the idlest (dsts[1], the first idle way).
        assert_eq!(lblc.pick(&b, dsts[0], 200), Some(0));
        assert_eq!(lblc.pick(&b, new, ENTRY_TIMEOUT), Some(1));
        assert_eq!(lblc.pick(&a, new, ENTRY_TIMEOUT + 1), Some(1), "cached now");
        assert_eq!(lblc.pick(&b, dsts[0], ENTRY_TIMEOUT + 1), Some(0), "kept");
        assert_eq!(
            lblc.pick(&b, dsts[1], ENTRY_TIMEOUT + 1),
            Some(1),
            "replaced"
        );
    }

    #[test]
    fn sched_lblcr_set_grows_and_shrinks() {
        let mut lblcr = LblcrCache::default();
        // No entry: wlc → A; the set is {A}.
        assert_eq!(lblcr.pick(&[load(1, 0), load(4, 0)], X, 0), Some(0));
        // A over its weight and B under half of its own: wlc → B joins.
        assert_eq!(lblcr.pick(&[load(1, 2), load(4, 0)], X, 10), Some(1));
        // Both members are candidates now: the least loaded per weight.
        assert_eq!(lblcr.pick(&[load(1, 0), load(4, 1)], X, 20), Some(0));
        assert_eq!(lblcr.pick(&[load(1, 1), load(4, 1)], X, 30), Some(1));
        // Tie (256/1 vs 1024/4): the member added last, B, heads the set.
        assert_eq!(lblcr.pick(&[load(1, 1), load(4, 4)], X, 40), Some(1));
        // A real outside the set is not considered while a member is fine.
        let with_c = [load(1, 1), load(4, 1), load(100, 0)];
        assert_eq!(lblcr.pick(&with_c, X, 50), Some(1));
        // More than 24 hours since the set last changed (at 10): the most
        // loaded member (A, 768 per 1) leaves; the least (B) is returned.
        let shrink_at = 10 + EXPIRATION + 1;
        assert_eq!(
            lblcr.pick(&[load(1, 3), load(4, 1)], X, shrink_at - 1),
            Some(1)
        );
        assert_eq!(lblcr.pick(&[load(1, 3), load(4, 1)], X, shrink_at), Some(1));
        // A is gone: even idle it is not picked while B is fine.
        assert_eq!(
            lblcr.pick(&[load(1, 0), load(4, 3)], X, shrink_at + 1),
            Some(1)
        );
        // A set of one never shrinks.
        assert_eq!(
            lblcr.pick(&[load(1, 0), load(4, 3)], X, shrink_at + EXPIRATION - 1),
            Some(1)
        );
    }

    #[test]
    fn sched_lblcr_unusable_members() {
        let mut lblcr = LblcrCache::default();
        assert_eq!(lblcr.pick(&[load(1, 0), load(1, 0)], X, 0), Some(0));
        // The only member quiesced: wlc → B joins.
        assert_eq!(lblcr.pick(&[load(0, 0), load(1, 0)], X, 1), Some(1));
        // Flagged overloaded members are skipped.
        let flagged = [
            RealLoad {
                overloaded: true,
                ..load(1, 0)
            },
            load(1, 9),
        ];
        assert_eq!(lblcr.pick(&flagged, X, 2), Some(1));
        // Nothing usable.
        assert_eq!(lblcr.pick(&[load(0, 0), load(0, 0)], X, 3), None);
        // A shorter list after a reset: stale positions never panic.
        lblcr.clear();
        assert_eq!(
            lblcr.pick(&[load(1, 0), load(1, 0), load(1, 0)], X, 4),
            Some(0)
        );
        assert_eq!(lblcr.pick(&[load(1, 0)], X, 5), Some(0));
    }

    #[test]
    fn sched_lblcr_full_set_drops_most_loaded() {
        let reals: Vec<RealLoad> = (0..=SET_CAPACITY as u32)
            .map(|i| load(1, if i == 3 { 9 } else { 1 }))
            .collect();
        let mut set = RealSet::single(0, 0);
        for real in 1..SET_CAPACITY {
            set.insert(real, &reals, 0);
        }
        assert_eq!(set.members(), [7, 6, 5, 4, 3, 2, 1, 0]);
        set.insert(2, &reals, 5);
        assert_eq!(set.last_mod, 0, "already a member: no change");
        set.insert(SET_CAPACITY, &reals, 5);
        assert_eq!(set.members(), [8, 7, 6, 5, 4, 2, 1, 0]);
        assert_eq!(set.last_mod, 5);
    }
}
