//! The connection index: from a key's hash to the tags of the entries that
//! may hold that key, a cache line at a time.
//!
//! Buckets are 64-byte cache lines of [`SLOTS`] tags, each with a 16-bit
//! signature taken from the hash (0 marks a free slot). A key's home bucket
//! is given by the hash's low bits, its signature by the high 16, so a probe
//! reads one line and compares the key only where a signature matches (a
//! false match costs one entry read in 6,500). A tag that finds its home
//! bucket full goes to the next bucket with room, and every bucket it
//! passes counts it in `passed`; a lookup stops at the first bucket whose
//! `passed` is 0, and a removal walks the same way down, taking the count
//! back. This is the outbound-overflow count of folly's F14 tables: with it,
//! removal leaves no tombstones, the index never needs a rehash, and its
//! memory is fixed when the table is made.
//!
//! Sized for at most [`MAX_LOAD`] of its slots in use, a bucket overflows
//! rarely: a lookup almost always reads one line, so a burst can fetch every
//! line it needs before it reads any ([`Index::prefetch`]).

use crate::dpdk::{lanes_equal, prefetch, Backing, HugeArray};

/// Tags per bucket: ten (20 bytes of signatures, 4 of count, 40 of tags).
pub const SLOTS: usize = 10;

/// The most of its slots the index fills, as a fraction (7/10).
const MAX_LOAD: (usize, usize) = (7, 10);

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Bucket {
    /// Signatures of the first eight slots, compared at once, then of the
    /// last two.
    sigs: [u16; 8],
    sigs_tail: [u16; SLOTS - 8],
    /// Tags whose home bucket comes before this one (wrapping) that were
    /// placed after it.
    passed: u32,
    tags: [u32; SLOTS],
}

const EMPTY: Bucket = Bucket {
    sigs: [0; 8],
    sigs_tail: [0; SLOTS - 8],
    passed: 0,
    tags: [0; SLOTS],
};

/// A fixed-size index of `u32` tags by 64-bit hash. Tags are unique; the
/// caller says, from a tag, whether it is the one looked for.
pub struct Index {
    buckets: HugeArray<Bucket>,
    mask: usize,
}

impl Index {
    /// An index for up to `tags` tags, all its memory mapped and touched.
    pub fn with_room(tags: usize) -> Self {
        let buckets = buckets_for(tags);
        Index {
            buckets: HugeArray::new(buckets, EMPTY),
            mask: buckets - 1,
        }
    }

    /// Bytes the index holds.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.mapped_bytes()
    }

    /// The memory the buckets lie on, and why not on hugepages (an errno).
    pub fn backing(&self) -> (Backing, Option<i32>) {
        (self.buckets.backing(), self.buckets.fallback())
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Starts fetching the home bucket of `hash` into the cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch(&self.buckets[self.home(hash)]);
    }

    /// The first tag in the home bucket of `hash` whose signature matches,
    /// if any: the entry a lookup will most likely read next.
    #[inline]
    pub fn first_candidate(&self, hash: u64) -> Option<u32> {
        let bucket = &self.buckets[self.home(hash)];
        let hits = matches(bucket, signature(hash));
        (hits != 0).then(|| bucket.tags[hits.trailing_zeros() as usize / 2])
    }

    /// The tag filed under `hash` for which `is` says yes.
    #[inline]
    pub fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let sig = signature(hash);
        let mut b = self.home(hash);
        loop {
            let bucket = &self.buckets[b];
            let mut hits = matches(bucket, sig);
            while hits != 0 {
                let tag = bucket.tags[hits.trailing_zeros() as usize / 2];
                if is(tag) {
                    return Some(tag);
                }
                hits &= hits - 1;
            }
            if bucket.passed == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
    }

    /// Files `tag` under `hash`. The caller keeps the count of tags within
    /// the room the index was made with.
    #[inline]
    pub fn insert(&mut self, hash: u64, tag: u32) {
        let sig = signature(hash);
        let mut b = self.home(hash);
        loop {
            let bucket = &mut self.buckets[b];
            let free = matches(bucket, 0);
            if free != 0 {
                let slot = free.trailing_zeros() as usize / 2;
                bucket.set_sig(slot, sig);
                bucket.tags[slot] = tag;
                return;
            }
            bucket.passed += 1;
            b = (b + 1) & self.mask;
        }
    }

    /// Takes `tag`, filed under `hash`, out; false if it is not there.
    pub fn remove(&mut self, hash: u64, tag: u32) -> bool {
        let sig = signature(hash);
        let home = self.home(hash);
        let mut b = home;
        let (at, slot) = loop {
            let bucket = &self.buckets[b];
            let slot = (0..SLOTS).find(|&i| bucket.sig(i) == sig && bucket.tags[i] == tag);
            if let Some(slot) = slot {
                break (b, slot);
            }
            if bucket.passed == 0 {
                return false;
            }
            b = (b + 1) & self.mask;
        };
        self.buckets[at].set_sig(slot, 0);
        // The buckets the insert passed, home included, count it no more.
        let mut b = home;
        while b != at {
            self.buckets[b].passed -= 1;
            b = (b + 1) & self.mask;
        }
        true
    }
}

/// Buckets for `tags` tags at most [`MAX_LOAD`] full: a power of two.
pub fn buckets_for(tags: usize) -> usize {
    (tags * MAX_LOAD.1)
        .div_ceil(MAX_LOAD.0 * SLOTS)
        .max(1)
        .next_power_of_two()
}

/// Bytes of an index for `tags` tags (what [`Index::memory_bytes`] will say).
pub fn memory_bytes_for(tags: usize) -> usize {
    HugeArray::<Bucket>::mapped_bytes_for(buckets_for(tags))
}

/// The hash's signature: its high 16 bits, never 0.
#[inline]
fn signature(hash: u64) -> u16 {
    ((hash >> 48) as u16).max(1)
}

impl Bucket {
    fn sig(&self, slot: usize) -> u16 {
        if slot < 8 {
            self.sigs[slot]
        } else {
            self.sigs_tail[slot - 8]
        }
    }

    fn set_sig(&mut self, slot: usize, sig: u16) {
        if slot < 8 {
            self.sigs[slot] = sig;
        } else {
            self.sigs_tail[slot - 8] = sig;
        }
    }
}

/// Bit `2 * i` set where slot `i` holds `sig` (0: where slot `i` is free).
#[inline]
fn matches(bucket: &Bucket, sig: u16) -> u32 {
    let mut hits = lanes_equal(&bucket.sigs, sig);
    for (i, &s) in bucket.sigs_tail.iter().enumerate() {
        hits |= u32::from(s == sig) << (2 * (8 + i));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(size_of::<Bucket>(), 64);
        assert_eq!(align_of::<Bucket>(), 64);
        assert_eq!(buckets_for(0), 1);
        assert_eq!(buckets_for(7), 1);
        assert_eq!(buckets_for(8), 2);
        // 2M tags (a million connections): 524,288 buckets, 38% full.
        assert_eq!(buckets_for(2_000_000), 1 << 19);
        assert_eq!(
            Index::with_room(2_000_000).memory_bytes(),
            memory_bytes_for(2_000_000)
        );
    }

    /// Every tag's hash lands in bucket 0 of a small index: the chain runs
    /// over every bucket, wraps, and removals in any order keep finding
    /// the rest.
    #[test]
    fn overflow_chains_wrap_and_unwind() {
        let mut index = Index::with_room(28); // 4 buckets, 40 slots
        assert_eq!(index.mask, 3);
        let hash = |tag: u32| (u64::from(tag) << 48) | 2; // home bucket 2
        for tag in 1..=28 {
            index.insert(hash(tag), tag);
        }
        for tag in 1..=28 {
            assert_eq!(index.find(hash(tag), |t| t == tag), Some(tag));
        }
        assert_eq!(index.find(hash(99), |t| t == 99), None);
        for tag in (1..=28).step_by(3) {
            assert!(index.remove(hash(tag), tag));
            assert!(!index.remove(hash(tag), tag));
        }
        for tag in 1..=28 {
            let present = (tag - 1) % 3 != 0;
            assert_eq!(
                index.find(hash(tag), |t| t == tag).is_some(),
                present,
                "{tag}"
            );
        }
        for tag in 1..=28 {
            index.remove(hash(tag), tag);
        }
        assert!(index
            .buckets
            .iter()
            .all(|b| b.passed == 0 && (0..SLOTS).all(|i| b.sig(i) == 0)));
    }

    proptest! {
        /// Against a map, with hashes forced into few buckets and few
        /// signatures so that overflows and false matches are common.
        #[test]
        fn index_matches_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..60, 0u64..64), 1..400)) {
            let mut index = Index::with_room(56); // 8 buckets
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            for (insert, tag, h) in ops {
                let hash = (h % 4) << 48 | (h / 4 % 8);
                if insert {
                    if !model.contains_key(&tag) && model.len() < 56 {
                        index.insert(hash, tag);
                        model.insert(tag, hash);
                    }
                } else if let Some(hash) = model.remove(&tag) {
                    prop_assert!(index.remove(hash, tag));
                }
                for (&tag, &hash) in &model {
                    prop_assert_eq!(index.find(hash, |t| t == tag), Some(tag));
                }
            }
        }
    }
}
