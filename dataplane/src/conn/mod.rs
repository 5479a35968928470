//! The per-worker connection table: which real each tracked connection goes
//! to, found from a packet of either direction, and expired when idle.
//!
//! Every worker owns one [`ConnTable`]; nothing in it is shared or locked. All
//! memory is allocated in [`ConnTable::new`]; afterwards every operation is
//! O(1) (expiry is O(1) per connection examined, with a caller-chosen bound per
//! call) and allocates nothing.
//!
//! # Layout
//!
//! - A slab of entries, `capacity` of them, each one 64-byte cache line: a
//!   [`Conn`] (everything a packet of the connection reads: its keys, real,
//!   mode, state and deadline) plus its timer links and probation stamp,
//!   which only inserts, removals and expiry touch. Unused entries form a
//!   free list threaded through the same links. A packet of a tracked
//!   connection thus reads two lines of the table: its index bucket and its
//!   entry. Per-real counters and persistence templates live apart, in the
//!   engine.
//! - One hash index ([`index`]) holding two `u32` tags per connection: the
//!   slab index shifted left once, with the low bit saying which key the tag
//!   stands for (0 = the INPUT key client→vip, 1 = the OUTPUT key
//!   real→client). Keys are not stored in the index: a probe compares
//!   against the conn in the slab, which the caller reads next anyway.
//! - A timing wheel of [`WHEEL_SLOTS`] one-second slots, each an intrusive
//!   doubly linked list of slab indices.
//!
//! The slab and the index are [`HugeArray`]s: on 2 MiB hugepages where the
//! pool has room, so that a random read misses the TLB rarely; see
//! [`ConnTable::backing`].
//!
//! # Bursts
//!
//! A worker handles packets a burst at a time, and at a million connections
//! nearly every bucket and entry it reads is a cache miss. So the table lets
//! a burst ask for its lines before it reads any: [`ConnTable::key_hash`]
//! once per packet, [`ConnTable::prefetch_bucket`] for all, then
//! [`ConnTable::prefetch_entry`] for all (it reads the bucket, now arriving,
//! and asks for the entry it points to), then the lookups
//! ([`ConnTable::lookup_hashed`]) in order, which find the lines in cache.
//! Prefetches are hints: results do not depend on them.
//!
//! # Probation
//!
//! A conn inserted with [`ConnTable::insert_on_probation`] is unverified
//! until [`ConnTable::confirm`] (the engine confirms a conn when the
//! client sends its second packet: a spoofed source sends one, whether or
//! not the real answers it). At most [`ConnTable::probation_limit`]
//! conns are on probation, half the capacity by default: when that many
//! are, or the table is full, a new one evicts the oldest conn still on
//! probation. A flood of spoofed one-packet flows therefore cycles through
//! that half and never takes the room of verified conns, and a new client
//! whose conn is verified within its round trip keeps it. The order is
//! kept by a ring of (slot, stamp) pairs, one per probationary insert; a
//! pair whose conn was confirmed or removed is skipped when reached, so
//! every operation stays O(1) amortised and nothing allocates.
//!
//! # No reallocation
//!
//! The index never grows and never rehashes: its buckets are fixed when the
//! table is made, sized for the `2 * capacity` tags it can hold at most 70 %
//! full, and a removal leaves no tombstone (see [`index`]).
//!
//! # Memory
//!
//! An entry is 64 bytes (`Conn` 48 + prev, next, slot, probation stamp 4
//! each, padded to the line), and the probation ring 8 bytes per conn. The
//! index has `(2 * capacity / 7).next_power_of_two()` buckets of 64 bytes,
//! i.e. 18 to 37 bytes per connection depending on where `capacity` falls
//! between powers of two (1 M connections: 512 Ki buckets, 34 bytes). In
//! all: 90 to 109 bytes per connection, plus 4 KiB for the wheel; the big
//! arrays are rounded up to whole hugepages. [`ConnTable::memory_bytes`]
//! gives the exact figure, [`table_bytes`] the same without making one.
//!
//! # Expiry
//!
//! A conn's `expires` is when it may go (seconds on the worker's coarse clock).
//! The wheel holds each conn in the slot of a second at or before `expires`
//! (at most `WHEEL_SLOTS - 1` seconds ahead); [`ConnTable::touch`] only writes
//! `expires` when it grows, so the per-packet path moves nothing. When
//! [`ConnTable::expire`] reaches a slot, a conn whose `expires` has moved on
//! is re-linked further ahead, the others are reported and removed. StateTimeouts
//! longer than the wheel's span simply take several hops. A conn is never
//! expired before `expires`, and one call with an unbounded budget leaves no
//! conn with `expires <= now`.

pub mod index;

use std::fmt;
use std::net::Ipv4Addr;

use crate::dpdk::{prefetch, Backing, HugeArray};
use index::Index;

use crate::tcp_state::{Direction, StateTimeouts, TcpState};
use rvs_control::model::Forward;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Number of one-second slots in the timing wheel; a power of two.
pub const WHEEL_SLOTS: usize = 1024;

/// The largest capacity a table can have: slab indices must fit in 31 bits
/// (the index tags use the low bit) and stay clear of the list markers.
pub const MAX_CAPACITY: usize = 1 << 30;

/// End of a list.
const NIL: u32 = u32::MAX;
/// `prev` of an entry on the free list.
const FREE: u32 = u32::MAX - 1;

const TAG_INPUT: u32 = 0;
const TAG_OUTPUT: u32 = 1;

/// One direction's 5-tuple, as on the wire: the INPUT key is
/// `(proto, client, client_port, vip, vport)`, the OUTPUT key (a reply as it
/// arrives from the real in NAT mode) is `(proto, real, real_port, client,
/// client_port)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnKey {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

/// A tracked connection.
///
/// `state` is the IPVS TCP state for TCP. UDP has no states: a UDP conn keeps
/// [`TcpState::None`] and is never active, as IPVS counts every UDP connection
/// in InActConn; use [`Conn::is_active`] and [`Conn::timeout`] rather than
/// reading `state` directly.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Conn {
    pub proto: u8,
    pub client: Ipv4Addr,
    pub client_port: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub real: Ipv4Addr,
    pub real_port: u16,
    /// The source the real sees: the client itself, or for FullNAT the local
    /// address (LIP) and port rvs chose.
    pub local: Ipv4Addr,
    pub local_port: u16,
    /// How packets of this conn reach the real.
    pub forward: Forward,
    /// Stable id of the service (survives configuration changes).
    pub service_id: u32,
    /// Stable id of the real (survives configuration changes).
    pub real_id: u32,
    /// Slot of the persistence template this conn was made through in its
    /// worker's template table; `u32::MAX`: none.
    pub template: u32,
    pub state: TcpState,
    /// Second at which the conn may be expired; set by [`ConnTable::insert`]
    /// and [`ConnTable::touch`].
    pub expires: u32,
    /// What connection sync (a master's) last did for it: see [`SyncMark`].
    pub sync: SyncMark,
}

/// A master's connection sync bookkeeping, per conn, as the kernel keeps it
/// (`in_pkts`, `old_state`): the client's packets counted modulo the sync
/// period, and the state the conn was in when it was last synced.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SyncMark {
    /// Packets from the client, modulo the sync period (50).
    pub in_pkts: u8,
    /// The state last sent.
    pub synced_state: TcpState,
}

impl Conn {
    /// The key of a client → vip packet.
    pub const fn input_key(&self) -> ConnKey {
        ConnKey {
            proto: self.proto,
            src: self.client,
            src_port: self.client_port,
            dst: self.vip,
            dst_port: self.vport,
        }
    }

    /// The key of a real → client reply, before the director rewrites it
    /// (addressed to the local address in FullNAT, to the client otherwise).
    pub const fn output_key(&self) -> ConnKey {
        ConnKey {
            proto: self.proto,
            src: self.real,
            src_port: self.real_port,
            dst: self.local,
            dst_port: self.local_port,
        }
    }

    /// Whether the conn counts in its real's ActiveConn (else InActConn).
    pub const fn is_active(&self) -> bool {
        self.proto == PROTO_TCP && self.state.is_active()
    }

    /// The idle timeout for the conn's protocol and state.
    pub const fn timeout(&self, timeouts: &StateTimeouts) -> u32 {
        if self.proto == PROTO_TCP {
            timeouts.tcp(self.state)
        } else {
            timeouts.udp()
        }
    }

    /// The state as `ipvsadm -lc` prints it ("UDP" for UDP).
    pub const fn state_name(&self) -> &'static str {
        if self.proto == PROTO_TCP {
            self.state.name()
        } else {
            "UDP"
        }
    }
}

/// The hash a [`ConnKey`] is filed under in one [`ConnTable`] (each table
/// has its own random seed): computed once per packet and handed to the
/// prefetches and the lookup. [`ConnTable::prefetch_entry`] adds the tag
/// it prefetched for, which the lookup tries first (and checks: a stale one
/// costs only the check).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyHash {
    hash: u64,
    hint: u32,
}

/// No tag to try first.
const NO_HINT: u32 = u32::MAX;

impl Default for KeyHash {
    fn default() -> Self {
        KeyHash {
            hash: 0,
            hint: NO_HINT,
        }
    }
}

/// A handle to a conn in one [`ConnTable`]. Valid until that conn is removed
/// or expired; after that it may name a different conn.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ConnId(u32);

impl ConnId {
    /// The slab index, below the table's capacity: usable to index per-conn
    /// side arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why [`ConnTable::insert`] refused a conn. Nothing was changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InsertError {
    /// All `capacity` entries are in use.
    TableFull,
    /// The conn's INPUT or OUTPUT key is already tracked (in either
    /// direction), or its two keys are equal.
    KeyExists,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InsertError::TableFull => "connection table full",
            InsertError::KeyExists => "connection key already tracked",
        })
    }
}

impl std::error::Error for InsertError {}

/// Bytes a table holds per connection besides its index and wheel: the
/// entry and its pair in the probation ring.
pub const CONNECTION_BYTES: usize = size_of::<Entry>() + size_of::<(u32, u32)>();

#[derive(Clone, Copy)]
#[repr(align(64))]
struct Entry {
    conn: Conn,
    /// Previous entry in the wheel slot (`NIL` at the head), or `FREE`.
    prev: u32,
    /// Next entry in the wheel slot, or in the free list; `NIL` at the end.
    next: u32,
    /// Wheel slot the entry is linked in.
    slot: u32,
    /// The stamp of the entry's probationary insert; 0 when it is not on
    /// probation.
    probation: u32,
}

/// A worker's connection table. See the module documentation.
pub struct ConnTable {
    entries: HugeArray<Entry>,
    index: Index,
    seed: Seed,
    /// Head of each wheel slot's list.
    slots: Vec<u32>,
    free: u32,
    len: u32,
    /// The first second whose slot has not been completely processed. Every
    /// linked conn is due at a second in `[next_tick, next_tick + WHEEL_SLOTS)`,
    /// the one congruent to its slot. u64 so that it never wraps.
    next_tick: u64,
    /// Probationary inserts, oldest first: (slot, stamp), a ring of
    /// `capacity` pairs starting at `ring_head`.
    ring: Vec<(u32, u32)>,
    ring_head: usize,
    ring_len: usize,
    /// Conns on probation now, at most `probation_limit`.
    on_probation: u32,
    probation_limit: u32,
    /// The last stamp given; never 0.
    stamp: u32,
}

impl ConnTable {
    /// A table for up to `capacity` conns, with all its memory allocated.
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_CAPACITY`], or the memory cannot be
    /// allocated.
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity <= MAX_CAPACITY,
            "connection table capacity {capacity} exceeds the maximum {MAX_CAPACITY}"
        );
        let unused = Conn {
            proto: 0,
            client: Ipv4Addr::UNSPECIFIED,
            client_port: 0,
            vip: Ipv4Addr::UNSPECIFIED,
            vport: 0,
            real: Ipv4Addr::UNSPECIFIED,
            real_port: 0,
            local: Ipv4Addr::UNSPECIFIED,
            local_port: 0,
            forward: Forward::Nat,
            service_id: 0,
            real_id: 0,
            template: u32::MAX,
            state: TcpState::None,
            expires: 0,
            sync: SyncMark::default(),
        };
        let mut entries = HugeArray::new(
            capacity,
            Entry {
                conn: unused,
                prev: FREE,
                next: NIL,
                slot: 0,
                probation: 0,
            },
        );
        // Entry i's free-list successor is i + 1; the last one ends the list.
        for i in 1..capacity {
            entries[i - 1].next = i as u32;
        }
        ConnTable {
            entries,
            index: Index::with_room(2 * capacity),
            seed: Seed::random(),
            slots: vec![NIL; WHEEL_SLOTS],
            free: if capacity == 0 { NIL } else { 0 },
            len: 0,
            next_tick: 0,
            ring: vec![(0, 0); capacity],
            ring_head: 0,
            ring_len: 0,
            on_probation: 0,
            probation_limit: (capacity / 2) as u32,
            stamp: 0,
        }
    }

    /// Sets how many conns may be on probation at once (default: half the
    /// capacity); at most the capacity.
    pub fn with_probation_limit(mut self, limit: usize) -> Self {
        self.probation_limit = limit.min(self.capacity()) as u32;
        self
    }

    /// How many conns may be on probation at once.
    pub fn probation_limit(&self) -> usize {
        self.probation_limit as usize
    }

    /// Conns on probation now.
    pub fn on_probation(&self) -> usize {
        self.on_probation as usize
    }

    /// Whether the conn `id` names is on probation.
    #[inline]
    pub fn is_on_probation(&self, id: ConnId) -> bool {
        self.entries
            .get(id.index())
            .is_some_and(|entry| entry.probation != 0)
    }

    /// Ends the probation of the conn `id` names: it is verified and no
    /// longer evicted to make room.
    #[inline]
    pub fn confirm(&mut self, id: ConnId) {
        if let Some(entry) = self.entries.get_mut(id.index()) {
            if entry.probation != 0 {
                entry.probation = 0;
                self.on_probation -= 1;
            }
        }
    }

    /// Like [`ConnTable::insert`], with the conn on probation. When the
    /// probation limit is reached or the table is full, the oldest conn on
    /// probation is evicted first and handed to `on_evict`; with none on
    /// probation, a full table refuses. On error nothing is changed.
    pub fn insert_on_probation(
        &mut self,
        conn: Conn,
        now: u32,
        timeout: u32,
        mut on_evict: impl FnMut(&Conn),
    ) -> Result<ConnId, InsertError> {
        let hashes = self.check_keys(&conn)?;
        if self.on_probation >= self.probation_limit || self.free == NIL {
            // None: nothing to evict (a full table of verified conns, or a
            // probation limit of 0).
            let victim = self.oldest_on_probation().ok_or(InsertError::TableFull)?;
            on_evict(&self.entries[victim as usize].conn);
            self.remove_linked(victim);
        }
        if self.ring_len == self.ring.len() {
            // Every pair is of a conn inserted since: the head's, if still
            // on probation, has outlived `capacity` newer ones.
            if let Some(victim) = self.pop_ring() {
                on_evict(&self.entries[victim as usize].conn);
                self.remove_linked(victim);
            }
        }
        let id = self.insert_hashed(conn, now, timeout, hashes)?;
        self.stamp = self.stamp.wrapping_add(1).max(1);
        self.entries[id.index()].probation = self.stamp;
        self.on_probation += 1;
        let tail = (self.ring_head + self.ring_len) % self.ring.len();
        self.ring[tail] = (id.0, self.stamp);
        self.ring_len += 1;
        Ok(id)
    }

    /// The slot of the oldest conn on probation, its pair taken off the
    /// ring; pairs of conns no longer on probation are dropped on the way.
    fn oldest_on_probation(&mut self) -> Option<u32> {
        while self.ring_len > 0 {
            if let Some(slot) = self.pop_ring() {
                return Some(slot);
            }
        }
        None
    }

    /// Takes the ring's head; its slot if that conn is still on probation
    /// from that insert.
    fn pop_ring(&mut self) -> Option<u32> {
        let (slot, stamp) = self.ring[self.ring_head];
        self.ring_head = (self.ring_head + 1) % self.ring.len();
        self.ring_len -= 1;
        (self.entries[slot as usize].probation == stamp).then_some(slot)
    }

    /// Number of conns tracked.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no conn is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most conns the table holds.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory the table holds, all of it allocated by `new`.
    pub fn memory_bytes(&self) -> usize {
        self.entries.mapped_bytes()
            + self.ring.capacity() * size_of::<(u32, u32)>()
            + self.index.memory_bytes()
            + self.slots.capacity() * size_of::<u32>()
    }

    /// What memory the slab and index lie on: hugepages, or why not (an
    /// errno from `MAP_HUGETLB`, ENOMEM when the pool is short). A table
    /// under a hugepage in size is [`Backing::Small`].
    pub fn backing(&self) -> (Backing, Option<i32>) {
        let (entries, index) = (self.entries.backing(), self.index.backing());
        let fallback = self.entries.fallback().or(index.1);
        match (entries, index.0) {
            (Backing::Hugepages, Backing::Hugepages | Backing::Small) => (Backing::Hugepages, None),
            (Backing::Small, Backing::Small) => (Backing::Small, None),
            _ => (Backing::Transparent, fallback),
        }
    }

    /// Starts tracking `conn`, expiring at `now + timeout`, under both its
    /// INPUT and OUTPUT keys. On error nothing is changed.
    pub fn insert(&mut self, conn: Conn, now: u32, timeout: u32) -> Result<ConnId, InsertError> {
        if self.free == NIL {
            return Err(InsertError::TableFull);
        }
        let hashes = self.check_keys(&conn)?;
        self.insert_hashed(conn, now, timeout, hashes)
    }

    /// [`ConnTable::insert`] of a conn whose keys passed
    /// [`ConnTable::check_keys`], with their hashes.
    fn insert_hashed(
        &mut self,
        mut conn: Conn,
        now: u32,
        timeout: u32,
        (input_hash, output_hash): (u64, u64),
    ) -> Result<ConnId, InsertError> {
        let id = self.free;
        if id == NIL {
            return Err(InsertError::TableFull);
        }

        if self.len == 0 {
            // Nothing is linked, so the wheel may restart at any second.
            self.next_tick = u64::from(now);
        }
        conn.expires = now.saturating_add(timeout);
        let entry = &mut self.entries[id as usize];
        self.free = entry.next;
        entry.conn = conn;
        self.link(id, self.arm_at(conn.expires));
        self.len += 1;

        self.index.insert(input_hash, id << 1 | TAG_INPUT);
        self.index.insert(output_hash, id << 1 | TAG_OUTPUT);
        Ok(ConnId(id))
    }

    /// The conn a packet with `key` belongs to, and which way the packet goes:
    /// [`Direction::Input`] for the client's side, [`Direction::Output`] for the
    /// real's.
    pub fn lookup(&self, key: &ConnKey) -> Option<(ConnId, Direction)> {
        self.lookup_hashed(key, self.key_hash(key))
    }

    /// [`ConnTable::lookup`] of a key whose [`ConnTable::key_hash`] is known.
    #[inline]
    pub fn lookup_hashed(&self, key: &ConnKey, hash: KeyHash) -> Option<(ConnId, Direction)> {
        // The prefetched candidate, if it is (still) a live conn under this
        // key in that direction: keys are unique, so it is the one.
        let hinted = self
            .entries
            .get((hash.hint >> 1) as usize)
            .filter(|entry| entry.prev != FREE && key_of(&entry.conn, hash.hint) == *key);
        let tag = match hinted {
            Some(_) => hash.hint,
            None => self.find(hash.hash, key)?,
        };
        let direction = if tag & 1 == TAG_INPUT {
            Direction::Input
        } else {
            Direction::Output
        };
        Some((ConnId(tag >> 1), direction))
    }

    /// The conn `id` names. For an id whose conn was removed this is stale
    /// data, not a panic.
    ///
    /// # Panics
    ///
    /// If `id` came from a table with a larger capacity.
    pub fn get(&self, id: ConnId) -> &Conn {
        &self.entries[id.index()].conn
    }

    /// The conn `id` names, to update `state` and the bookkeeping fields.
    ///
    /// The key fields (`proto`, `client`, `client_port`, `vip`, `vport`,
    /// `real`, `real_port`) must not change while the conn is in the table:
    /// remove it and insert it again instead. Change `expires` through
    /// [`ConnTable::touch`].
    ///
    /// # Panics
    ///
    /// If `id` came from a table with a larger capacity.
    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.entries[id.index()].conn
    }

    /// Sets `expires = now + timeout`. When that is later than before, this
    /// only writes the field; when it is sooner (a state change to a shorter
    /// timeout), the conn moves to an earlier wheel slot, also O(1). Does
    /// nothing for an id whose conn was removed.
    pub fn touch(&mut self, id: ConnId, now: u32, timeout: u32) {
        let Some(entry) = self.entries.get_mut(id.index()) else {
            return;
        };
        if entry.prev == FREE {
            return;
        }
        let expires = now.saturating_add(timeout);
        entry.conn.expires = expires;
        let slot = entry.slot;
        if u64::from(expires) < self.due(slot) {
            self.unlink(id.0);
            self.link(id.0, self.arm_at(expires));
        }
    }

    /// Stops tracking the conn `id` names and returns it; `None` if it was
    /// already removed.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let entry = self.entries.get(id.index())?;
        if entry.prev == FREE {
            return None;
        }
        let conn = entry.conn;
        self.remove_linked(id.0);
        Some(conn)
    }

    /// Advances the wheel to `now`, calling `on_expire` for, and removing,
    /// each conn with `expires <= now`. Examines at most `budget` conns;
    /// whatever is left over is picked up by the next call. Returns how many
    /// conns expired.
    ///
    /// Call it every burst: the work is spread as conns come due. After a
    /// stall of more than `WHEEL_SLOTS` seconds, every conn is examined once
    /// (within the budget) before the wheel is back on time.
    pub fn expire(&mut self, now: u32, budget: usize, mut on_expire: impl FnMut(&Conn)) -> usize {
        let now64 = u64::from(now);
        if self.len == 0 {
            self.next_tick = self.next_tick.max(now64);
            return 0;
        }
        if now64 >= self.next_tick + WHEEL_SLOTS as u64 {
            // Every linked conn is due by now; restarting the wheel one span
            // back keeps them all due while bounding this call to one turn.
            self.next_tick = now64 + 1 - WHEEL_SLOTS as u64;
        }
        let mut examined = 0;
        let mut expired = 0;
        while self.next_tick <= now64 {
            let slot = slot_of(self.next_tick);
            loop {
                let id = self.slots[slot];
                if id == NIL {
                    break;
                }
                if examined == budget {
                    return expired;
                }
                examined += 1;
                let expires = self.entries[id as usize].conn.expires;
                if u64::from(expires) > now64 {
                    // Lands after `now`, hence in another slot.
                    self.unlink(id);
                    self.link(id, self.arm_at(expires));
                } else {
                    on_expire(&self.entries[id as usize].conn);
                    self.remove_linked(id);
                    expired += 1;
                }
            }
            self.next_tick += 1;
        }
        // Stay on the current second: a conn re-armed to expire during it
        // (a timeout of 0) lands in its slot and must be found by the next
        // call in the same second, not a second late.
        self.next_tick = self.next_tick.min(now64);
        expired
    }

    /// Every tracked conn, in slab order. O(capacity): for listings, not for
    /// the packet path.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.prev != FREE)
            .map(|(index, entry)| (ConnId(index as u32), &entry.conn))
    }

    /// Tracked conns from slab position `from` on, in slab order. For paged
    /// listings: a page resumes at the position of the conn it stopped at.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, entry)| entry.prev != FREE)
            .map(|(index, entry)| (ConnId(index as u32), &entry.conn))
    }

    fn hash(&self, key: &ConnKey) -> u64 {
        hash_key(&self.seed, key)
    }

    /// The hash `key` is filed under in this table.
    #[inline]
    pub fn key_hash(&self, key: &ConnKey) -> KeyHash {
        KeyHash {
            hash: self.hash(key),
            hint: NO_HINT,
        }
    }

    /// Starts fetching the index bucket a lookup of `hash` reads first.
    #[inline]
    pub fn prefetch_bucket(&self, hash: KeyHash) {
        self.index.prefetch(hash.hash);
    }

    /// Starts fetching the entry a lookup of `hash` most likely reads, and
    /// notes it in `hash` for the lookup to try first; best called a while
    /// after [`ConnTable::prefetch_bucket`], as it reads the bucket. A miss
    /// asks for nothing.
    #[inline]
    pub fn prefetch_entry(&self, hash: &mut KeyHash) {
        if let Some(tag) = self.index.first_candidate(hash.hash) {
            if let Some(entry) = self.entries.get((tag >> 1) as usize) {
                prefetch(entry);
                hash.hint = tag;
            }
        }
    }

    /// Starts fetching the entry the next insert takes.
    #[inline]
    pub fn prefetch_free(&self) {
        if let Some(entry) = self.entries.get(self.free as usize) {
            prefetch(entry);
        }
    }

    /// The hashes of `conn`'s INPUT and OUTPUT keys, or why it cannot go in.
    fn check_keys(&self, conn: &Conn) -> Result<(u64, u64), InsertError> {
        let input = conn.input_key();
        let output = conn.output_key();
        let input_hash = self.hash(&input);
        let output_hash = self.hash(&output);
        if input == output
            || self.find(input_hash, &input).is_some()
            || self.find(output_hash, &output).is_some()
        {
            return Err(InsertError::KeyExists);
        }
        Ok((input_hash, output_hash))
    }

    fn find(&self, hash: u64, key: &ConnKey) -> Option<u32> {
        self.index
            .find(hash, |tag| tag_key(&self.entries, tag) == *key)
    }

    /// The second whose processing will reach `slot`.
    fn due(&self, slot: u32) -> u64 {
        let ahead = (slot as u64).wrapping_sub(self.next_tick) % WHEEL_SLOTS as u64;
        self.next_tick + ahead
    }

    /// The second to link a conn expiring at `expires` at: `expires` itself if
    /// the wheel reaches that far, else the furthest second it does; never
    /// before `next_tick`.
    fn arm_at(&self, expires: u32) -> u64 {
        u64::from(expires).clamp(self.next_tick, self.next_tick + WHEEL_SLOTS as u64 - 1)
    }

    fn link(&mut self, id: u32, at: u64) {
        let slot = slot_of(at);
        let head = self.slots[slot];
        if head != NIL {
            self.entries[head as usize].prev = id;
        }
        let entry = &mut self.entries[id as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.slot = slot as u32;
        self.slots[slot] = id;
    }

    fn unlink(&mut self, id: u32) {
        let Entry {
            prev, next, slot, ..
        } = self.entries[id as usize];
        if prev == NIL {
            self.slots[slot as usize] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Removes a conn known to be in the table.
    fn remove_linked(&mut self, id: u32) {
        let conn = self.entries[id as usize].conn;
        for (key, tag) in [
            (conn.input_key(), id << 1 | TAG_INPUT),
            (conn.output_key(), id << 1 | TAG_OUTPUT),
        ] {
            let hash = self.hash(&key);
            self.index.remove(hash, tag);
        }
        self.unlink(id);
        let entry = &mut self.entries[id as usize];
        if entry.probation != 0 {
            entry.probation = 0;
            self.on_probation -= 1;
        }
        entry.prev = FREE;
        entry.next = self.free;
        self.free = id;
        self.len -= 1;
    }
}

impl fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("next_tick", &self.next_tick)
            .finish_non_exhaustive()
    }
}

/// [`ConnTable::memory_bytes`] of a table of `capacity`, without making it.
pub fn table_bytes(capacity: usize) -> usize {
    HugeArray::<Entry>::mapped_bytes_for(capacity)
        + capacity * size_of::<(u32, u32)>()
        + index::memory_bytes_for(2 * capacity)
        + WHEEL_SLOTS * size_of::<u32>()
}

fn slot_of(second: u64) -> usize {
    (second % WHEEL_SLOTS as u64) as usize
}

fn tag_key(entries: &[Entry], tag: u32) -> ConnKey {
    key_of(&entries[(tag >> 1) as usize].conn, tag)
}

/// The key of `conn` that `tag` (of its slot) stands for.
#[inline]
fn key_of(conn: &Conn, tag: u32) -> ConnKey {
    if tag & 1 == TAG_INPUT {
        conn.input_key()
    } else {
        conn.output_key()
    }
}

/// A key's hash under `seed`: the 13 bytes of the key in two words, each
/// mixed with its half of the seed by a 64×64→128-bit multiply whose halves
/// are folded together (as wyhash and foldhash do), then folded once more so
/// that every key bit reaches the low bits (the bucket) and the high bits
/// (the signature) alike. The seed is random per table: which keys collide
/// cannot be known from outside.
#[inline]
fn hash_key(seed: &Seed, key: &ConnKey) -> u64 {
    let addresses = u64::from(key.src.to_bits()) << 32 | u64::from(key.dst.to_bits());
    let rest = u64::from(key.src_port) << 24 | u64::from(key.dst_port) << 8 | u64::from(key.proto);
    let mixed = folded_multiply(addresses ^ seed.0[0], rest ^ seed.0[1]);
    folded_multiply(mixed ^ seed.0[2], seed.0[3])
}

#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A table's random hash seed.
struct Seed([u64; 4]);

impl Seed {
    fn random() -> Self {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        // Odd multipliers: a multiply by an even one loses a bit.
        Seed([
            state.hash_one(1u8),
            state.hash_one(2u8),
            state.hash_one(3u8),
            state.hash_one(4u8) | 1,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    fn conn(client: u8, client_port: u16, real: u8) -> Conn {
        Conn {
            proto: PROTO_TCP,
            client: Ipv4Addr::new(198, 51, 100, client),
            client_port,
            vip: VIP,
            vport: 80,
            real: Ipv4Addr::new(192, 168, 0, real),
            real_port: 8080,
            local: Ipv4Addr::new(198, 51, 100, client),
            local_port: client_port,
            forward: Forward::Nat,
            service_id: 3,
            real_id: u32::from(real),
            template: u32::MAX,
            state: TcpState::SynRecv,
            expires: 0,
            sync: SyncMark::default(),
        }
    }

    /// Expires everything due at `now` with no budget limit, returning the
    /// client ports of the expired conns, sorted.
    fn expire_ports(table: &mut ConnTable, now: u32) -> Vec<u16> {
        let mut ports = Vec::new();
        let count = table.expire(now, usize::MAX, |c| ports.push(c.client_port));
        assert_eq!(count, ports.len());
        ports.sort_unstable();
        ports
    }

    #[test]
    fn conn_insert_and_lookup_both_directions() {
        let mut table = ConnTable::new(8);
        let c = conn(1, 40000, 7);
        let id = table.insert(c, 100, 60).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(id), &Conn { expires: 160, ..c });

        let input = ConnKey {
            proto: PROTO_TCP,
            src: Ipv4Addr::new(198, 51, 100, 1),
            src_port: 40000,
            dst: VIP,
            dst_port: 80,
        };
        let output = ConnKey {
            proto: PROTO_TCP,
            src: Ipv4Addr::new(192, 168, 0, 7),
            src_port: 8080,
            dst: Ipv4Addr::new(198, 51, 100, 1),
            dst_port: 40000,
        };
        assert_eq!((c.input_key(), c.output_key()), (input, output));
        assert_eq!(table.lookup(&input), Some((id, Direction::Input)));
        assert_eq!(table.lookup(&output), Some((id, Direction::Output)));

        #[rustfmt::skip]
        let misses = [
            ConnKey { proto: PROTO_UDP, ..input },
            ConnKey { src_port: 40001, ..input },
            ConnKey { dst_port: 443, ..input },
            ConnKey { src: Ipv4Addr::new(198, 51, 100, 2), ..input },
            ConnKey { dst: Ipv4Addr::new(10, 0, 0, 101), ..input },
            ConnKey { src_port: 8081, ..output },
            // The reply as the client sees it (after rewriting) is not a key.
            ConnKey { src: VIP, src_port: 80, ..output },
        ];
        for key in misses {
            assert_eq!(table.lookup(&key), None, "{key:?}");
        }

        let state = &mut table.get_mut(id).state;
        *state = TcpState::Established;
        assert_eq!(table.get(id).state, TcpState::Established);
        assert_eq!(table.iter().collect::<Vec<_>>(), [(id, table.get(id))]);
    }

    /// The entry a prefetch noted is tried first, and only taken while it
    /// still holds the key: removed, or reused by another conn, it is not.
    #[test]
    fn conn_lookup_checks_the_prefetched_hint() {
        let mut table = ConnTable::new(4);
        let a = conn(1, 1000, 1);
        let id = table.insert(a, 0, 60).unwrap();
        let mut hash = table.key_hash(&a.input_key());
        table.prefetch_bucket(hash);
        table.prefetch_entry(&mut hash);
        assert_eq!(hash.hint, id.0 << 1 | TAG_INPUT);
        assert_eq!(
            table.lookup_hashed(&a.input_key(), hash),
            Some((id, Direction::Input))
        );
        table.remove(id).unwrap();
        assert_eq!(table.lookup_hashed(&a.input_key(), hash), None);
        // The same slot, another conn.
        let b = conn(2, 2000, 2);
        assert_eq!(table.insert(b, 0, 60).unwrap(), id);
        assert_eq!(table.lookup_hashed(&a.input_key(), hash), None);
        let mut other = table.key_hash(&b.output_key());
        table.prefetch_entry(&mut other);
        assert_eq!(
            table.lookup_hashed(&b.output_key(), other),
            Some((id, Direction::Output))
        );
        // A hint for the wrong key is passed over.
        let mut wrong = table.key_hash(&a.input_key());
        wrong.hint = other.hint;
        assert_eq!(table.lookup_hashed(&a.input_key(), wrong), None);
    }

    #[test]
    fn conn_full_table_refuses_and_changes_nothing() {
        let mut table = ConnTable::new(3);
        let ids: Vec<ConnId> = (0..3)
            .map(|port| table.insert(conn(1, port, 1), 10, 5).unwrap())
            .collect();
        let memory = table.memory_bytes();
        assert_eq!(
            table.insert(conn(1, 99, 1), 10, 5),
            Err(InsertError::TableFull)
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup(&conn(1, 99, 1).input_key()), None);
        assert_eq!(table.lookup(&conn(1, 99, 1).output_key()), None);
        assert_eq!(table.memory_bytes(), memory);
        for (port, id) in (0..3).zip(ids) {
            assert_eq!(
                table.lookup(&conn(1, port, 1).input_key()),
                Some((id, Direction::Input))
            );
        }
        // Nothing was linked either: exactly the three expire, on time.
        assert_eq!(expire_ports(&mut table, 14), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, 15), [0, 1, 2]);

        let mut empty = ConnTable::new(0);
        assert_eq!(
            empty.insert(conn(1, 1, 1), 0, 1),
            Err(InsertError::TableFull)
        );
        assert_eq!(empty.expire(100, usize::MAX, |_| unreachable!()), 0);
    }

    #[test]
    fn conn_existing_keys_refused() {
        let mut table = ConnTable::new(8);
        let first = conn(1, 1000, 1);
        table.insert(first, 0, 10).unwrap();
        let mut same_output = conn(1, 1000, 1);
        same_output.vip = Ipv4Addr::new(10, 0, 0, 101);
        // A conn whose INPUT key equals `first`'s OUTPUT key.
        let mut input_is_first_output = first;
        input_is_first_output.client = first.real;
        input_is_first_output.client_port = first.real_port;
        input_is_first_output.vip = first.client;
        input_is_first_output.vport = first.client_port;
        input_is_first_output.real = Ipv4Addr::new(192, 168, 9, 9);
        // A conn whose two keys are the same 5-tuple.
        let mut self_loop = conn(5, 80, 5);
        self_loop.vip = self_loop.client;
        self_loop.real = self_loop.client;
        self_loop.real_port = 80;
        assert_eq!(self_loop.input_key(), self_loop.output_key());

        for refused in [first, same_output, input_is_first_output, self_loop] {
            assert_eq!(
                table.insert(refused, 0, 10),
                Err(InsertError::KeyExists),
                "{refused:?}"
            );
            assert_eq!(table.len(), 1);
        }
        assert_eq!(expire_ports(&mut table, 10), [1000]);
    }

    #[test]
    fn conn_expires_at_its_second_not_before() {
        let mut table = ConnTable::new(16);
        table.insert(conn(1, 1, 1), 1000, 10).unwrap();
        table.insert(conn(1, 2, 1), 1000, 0).unwrap();
        table.insert(conn(1, 3, 1), 1003, 7).unwrap();
        assert_eq!(expire_ports(&mut table, 999), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, 1000), [2]);
        for now in 1001..1010 {
            assert_eq!(expire_ports(&mut table, now), [] as [u16; 0], "at {now}");
        }
        assert_eq!(expire_ports(&mut table, 1010), [1, 3]);
        assert!(table.is_empty());
        // Skipping seconds does not skip expiries.
        table.insert(conn(1, 4, 1), 2000, 30).unwrap();
        assert_eq!(expire_ports(&mut table, 2029), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, 2100), [4]);
    }

    #[test]
    fn conn_touched_conn_survives() {
        let mut table = ConnTable::new(4);
        let id = table.insert(conn(1, 1, 1), 0, 10).unwrap();
        let other = table.insert(conn(1, 2, 1), 0, 10).unwrap();
        table.touch(id, 8, 10);
        assert_eq!(table.get(id).expires, 18);
        assert_eq!(expire_ports(&mut table, 10), [2]);
        assert_eq!(table.remove(other), None);
        assert_eq!(expire_ports(&mut table, 17), [] as [u16; 0]);
        assert_eq!(
            table.lookup(&conn(1, 1, 1).input_key()),
            Some((id, Direction::Input))
        );
        assert_eq!(expire_ports(&mut table, 18), [1]);
    }

    #[test]
    fn conn_touch_to_shorter_timeout_expires_sooner() {
        // ESTABLISHED (900 s) → CLOSE (10 s) must not wait 900 s.
        let mut table = ConnTable::new(4);
        let id = table.insert(conn(1, 1, 1), 0, 900).unwrap();
        expire_ports(&mut table, 100);
        table.touch(id, 100, 10);
        assert_eq!(expire_ports(&mut table, 109), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, 110), [1]);
    }

    #[test]
    fn conn_timeout_longer_than_wheel() {
        let span = WHEEL_SLOTS as u32;
        let mut table = ConnTable::new(4);
        table.insert(conn(1, 1, 1), 0, 3 * span + 17).unwrap();
        table.insert(conn(1, 2, 1), 0, u32::MAX).unwrap();
        for now in 0..3 * span + 17 {
            assert_eq!(expire_ports(&mut table, now), [] as [u16; 0], "at {now}");
        }
        assert_eq!(expire_ports(&mut table, 3 * span + 17), [1]);
        assert_eq!(table.len(), 1);
        // The clock's end is not a problem either.
        assert_eq!(expire_ports(&mut table, u32::MAX - 1), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, u32::MAX), [2]);
    }

    #[test]
    fn conn_stall_longer_than_wheel() {
        let span = WHEEL_SLOTS as u32;
        let mut table = ConnTable::new(64);
        for port in 0..40 {
            table
                .insert(conn(1, port, 1), 0, u32::from(port) * 100)
                .unwrap();
        }
        // One call after a long gap expires exactly the due ones.
        let now = 2 * span + 5;
        let due: Vec<u16> = (0..40).filter(|&p| u32::from(p) * 100 <= now).collect();
        assert_eq!(expire_ports(&mut table, now), due);
        let now = 10 * span;
        let due: Vec<u16> = (0..40)
            .filter(|&p| u32::from(p) * 100 > 2 * span + 5)
            .collect();
        assert_eq!(expire_ports(&mut table, now), due);
    }

    #[test]
    fn conn_budget_respected_across_calls() {
        let mut table = ConnTable::new(32);
        for port in 0..20 {
            table
                .insert(conn(1, port, 1), 0, 5 + u32::from(port % 2))
                .unwrap();
        }
        let mut seen = BTreeSet::new();
        let mut calls = 0;
        while seen.len() < 20 {
            let before = seen.len();
            let count = table.expire(6, 3, |c| assert!(seen.insert(c.client_port)));
            assert!(count <= 3);
            assert_eq!(seen.len() - before, count);
            calls += 1;
        }
        assert_eq!(calls, 7);
        assert!(table.is_empty());

        // Re-linking counts against the budget too, and the wheel stays
        // consistent when a call stops inside a slot.
        for port in 0..10 {
            table.insert(conn(1, port, 1), 100, 1).unwrap();
        }
        let long = table.insert(conn(1, 50, 1), 100, 1).unwrap();
        table.touch(long, 100, 5);
        let mut rest = Vec::new();
        assert!(table.expire(101, 4, |c| rest.push(c.client_port)) <= 4);
        while table.len() > 1 {
            assert!(table.expire(101, 2, |c| rest.push(c.client_port)) <= 2);
        }
        rest.sort_unstable();
        assert_eq!(rest, (0..10).collect::<Vec<u16>>());
        assert_eq!(
            table.lookup(&conn(1, 50, 1).input_key()),
            Some((long, Direction::Input))
        );
        assert_eq!(expire_ports(&mut table, 104), [] as [u16; 0]);
        assert_eq!(expire_ports(&mut table, 105), [50]);
    }

    #[test]
    fn conn_remove_unlinks() {
        let mut table = ConnTable::new(8);
        let ids: Vec<ConnId> = (0..5)
            .map(|port| table.insert(conn(1, port, 1), 0, 10).unwrap())
            .collect();
        // Head, middle and tail of the same wheel slot.
        for &i in &[4, 2, 0] {
            let removed = table.remove(ids[i]).unwrap();
            assert_eq!(removed.client_port, i as u16);
            assert_eq!(table.lookup(&removed.input_key()), None);
            assert_eq!(table.lookup(&removed.output_key()), None);
        }
        assert_eq!(table.remove(ids[0]), None);
        table.touch(ids[0], 0, 1);
        assert_eq!(table.len(), 2);
        assert_eq!(expire_ports(&mut table, 10), [1, 3]);
    }

    #[test]
    fn conn_churn_keeps_capacity_and_memory() {
        let capacity = 100;
        let mut table = ConnTable::new(capacity);
        let memory = table.memory_bytes();
        let mut now = 0;
        let mut port = 0u16;
        let mut live = std::collections::VecDeque::new();
        for _ in 0..10 * capacity {
            if live.len() == capacity {
                table.remove(live.pop_front().unwrap()).unwrap();
            }
            port = port.wrapping_add(7919);
            live.push_back(
                table
                    .insert(conn((port % 251) as u8, port, 1), now, 30)
                    .unwrap(),
            );
            now += 1;
        }
        for id in live {
            table.remove(id).unwrap();
        }
        assert!(table.is_empty());
        for port in 0..capacity as u16 {
            table.insert(conn(2, port, 2), now, 30).unwrap();
        }
        assert_eq!(table.len(), capacity);
        assert_eq!(
            table.insert(conn(3, 3, 3), now, 30),
            Err(InsertError::TableFull)
        );
        assert_eq!(table.memory_bytes(), memory, "the table reallocated");
        assert_eq!(expire_ports(&mut table, now + 30).len(), capacity);
    }

    #[test]
    fn conn_memory_per_connection() {
        assert_eq!(size_of::<Conn>(), 48);
        // One cache line, aligned to one.
        assert_eq!(size_of::<Entry>(), 64);
        assert_eq!(align_of::<Entry>(), 64);
        for capacity in [1000, 65_536, 100_000, 1 << 20] {
            let table = ConnTable::new(capacity);
            assert_eq!(table.memory_bytes(), table_bytes(capacity));
            let per_conn = table.memory_bytes() as f64 / capacity as f64;
            assert!(per_conn <= 128.0, "{capacity}: {per_conn} bytes per conn");
        }
    }

    /// Inserts conns of client ports `ports` on probation, returning the
    /// client ports of those evicted to make room.
    fn probation_inserts(table: &mut ConnTable, ports: std::ops::Range<u16>) -> Vec<u16> {
        let mut evicted = vec![];
        for port in ports {
            table
                .insert_on_probation(conn(1, port, 1), 10, 60, |old| {
                    evicted.push(old.client_port)
                })
                .unwrap();
        }
        evicted
    }

    #[test]
    fn conn_probation_evicts_the_oldest_unverified_and_spares_the_verified() {
        let mut table = ConnTable::new(8);
        assert_eq!(table.probation_limit(), 4);
        assert!(probation_inserts(&mut table, 0..4).is_empty());
        // Port 1's conn is verified: it leaves probation for good.
        let (verified, _) = table.lookup(&conn(1, 1, 1).input_key()).unwrap();
        table.confirm(verified);
        assert!(!table.is_on_probation(verified));
        assert_eq!(table.on_probation(), 3);
        // The limit is 4: ports 4, 5, 6 fit with one eviction for 5 and 6
        // each, the oldest unverified first (0, then 2), never port 1.
        assert_eq!(probation_inserts(&mut table, 4..7), [0, 2]);
        assert_eq!(table.on_probation(), 4);
        assert!(table.lookup(&conn(1, 1, 1).input_key()).is_some());
        // A flood cycles through its own half: 1000 more, the verified one
        // stays and the table keeps its newest unverified.
        let evicted = probation_inserts(&mut table, 100..1100);
        assert_eq!(evicted.len(), 1000);
        assert!(table.lookup(&conn(1, 1, 1).input_key()).is_some());
        assert!(table.lookup(&conn(1, 1099, 1).input_key()).is_some());
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn conn_probation_makes_room_in_a_full_table_and_refuses_when_all_are_verified() {
        let mut table = ConnTable::new(4).with_probation_limit(4);
        assert!(probation_inserts(&mut table, 0..4).is_empty());
        for port in 0..3 {
            let (id, _) = table.lookup(&conn(1, port, 1).input_key()).unwrap();
            table.confirm(id);
        }
        // Full: the one conn still on probation (port 3) makes room.
        assert_eq!(probation_inserts(&mut table, 10..11), [3]);
        let (id, _) = table.lookup(&conn(1, 10, 1).input_key()).unwrap();
        table.confirm(id);
        // Full of verified conns: refused, nothing changed.
        let refused = table.insert_on_probation(conn(1, 11, 1), 10, 60, |_| panic!("evicted"));
        assert_eq!(refused, Err(InsertError::TableFull));
        assert_eq!(table.len(), 4);
        // A removed probationary conn leaves no trace in the count.
        let mut table = ConnTable::new(4);
        probation_inserts(&mut table, 0..2);
        let (id, _) = table.lookup(&conn(1, 0, 1).input_key()).unwrap();
        table.remove(id);
        assert_eq!(table.on_probation(), 1);
        assert!(probation_inserts(&mut table, 5..6).is_empty());
    }

    #[test]
    fn conn_probation_ring_wraps_over_confirmed_pairs() {
        // Every conn verified at once: the ring fills with stale pairs,
        // which later inserts skip or recycle.
        let mut table = ConnTable::new(4);
        for round in 0..10u16 {
            let port = 1000 + round;
            table
                .insert_on_probation(conn(1, port, 1), 10, 60, |_| panic!("nothing to evict"))
                .unwrap();
            let (id, _) = table.lookup(&conn(1, port, 1).input_key()).unwrap();
            table.confirm(id);
            table.remove(id);
        }
        assert!(table.is_empty());
        assert_eq!(table.on_probation(), 0);
    }

    #[test]
    fn conn_udp_is_never_active() {
        let timeouts = StateTimeouts::with_set(0, 0, 120);
        let mut udp = conn(1, 53, 1);
        udp.proto = PROTO_UDP;
        udp.state = TcpState::None;
        assert!(!udp.is_active());
        assert_eq!(udp.timeout(&timeouts), 120);
        assert_eq!(udp.state_name(), "UDP");
        let tcp = Conn {
            state: TcpState::Established,
            ..conn(1, 53, 1)
        };
        assert!(tcp.is_active());
        assert_eq!(tcp.timeout(&timeouts), 900);
        assert_eq!(tcp.state_name(), "ESTABLISHED");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert {
            client: u8,
            client_port: u16,
            real: u8,
            timeout: u32,
        },
        Touch {
            pick: usize,
            timeout: u32,
        },
        Remove {
            pick: usize,
        },
        Expire {
            advance: u32,
            budget: Option<usize>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u16..6, 0u8..3, 0u32..2500).prop_map(|(client, client_port, real, timeout)| {
                Op::Insert { client, client_port, real, timeout }
            }),
            2 => (any::<usize>(), 0u32..2500).prop_map(|(pick, timeout)| Op::Touch { pick, timeout }),
            1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            3 => (prop_oneof![3 => 0u32..20, 1 => 0u32..3000], prop::option::of(0usize..5))
                .prop_map(|(advance, budget)| Op::Expire { advance, budget }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The table against a model that scans a BTreeMap.
        #[test]
        fn conn_matches_model(ops in prop::collection::vec(op(), 1..300)) {
            const CAPACITY: usize = 12;
            let mut table = ConnTable::new(CAPACITY);
            let mut model: BTreeMap<u32, Conn> = BTreeMap::new();
            let mut now = 5000u32;
            for op in ops {
                match op {
                    Op::Insert { client, client_port, real, timeout } => {
                        let mut c = conn(client, client_port, real);
                        // Make some OUTPUT keys collide with INPUT keys.
                        if real == 2 {
                            c.real = Ipv4Addr::new(198, 51, 100, client ^ 1);
                            c.real_port = client_port;
                            c.client = VIP;
                            c.client_port = 80;
                            c.vip = Ipv4Addr::new(198, 51, 100, client);
                            c.vport = client_port;
                        }
                        let keys: Vec<ConnKey> = model
                            .values()
                            .flat_map(|m| [m.input_key(), m.output_key()])
                            .collect();
                        let want = if model.len() == CAPACITY {
                            Err(InsertError::TableFull)
                        } else if c.input_key() == c.output_key()
                            || keys.contains(&c.input_key())
                            || keys.contains(&c.output_key())
                        {
                            Err(InsertError::KeyExists)
                        } else {
                            Ok(())
                        };
                        match table.insert(c, now, timeout) {
                            Ok(id) => {
                                prop_assert_eq!(want, Ok(()));
                                let fresh = model.insert(id.0, Conn { expires: now + timeout, ..c });
                                prop_assert!(fresh.is_none());
                            }
                            Err(err) => prop_assert_eq!(want, Err(err)),
                        }
                    }
                    Op::Touch { pick, timeout } => {
                        let len = model.len().max(1);
                        if let Some((&id, m)) = model.iter_mut().nth(pick % len) {
                            table.touch(ConnId(id), now, timeout);
                            m.expires = now + timeout;
                        }
                    }
                    Op::Remove { pick } => {
                        let len = model.len().max(1);
                        if let Some(&id) = model.keys().nth(pick % len) {
                            let removed = table.remove(ConnId(id));
                            prop_assert_eq!(removed, model.remove(&id));
                        }
                    }
                    Op::Expire { advance, budget } => {
                        now += advance;
                        let due: BTreeSet<u32> = model
                            .iter()
                            .filter(|(_, m)| m.expires <= now)
                            .map(|(&id, _)| id)
                            .collect();
                        let mut expired = Vec::new();
                        let count = table.expire(now, budget.unwrap_or(usize::MAX), |c| {
                            expired.push(*c);
                        });
                        prop_assert_eq!(count, expired.len());
                        let mut expired_ids = BTreeSet::new();
                        for c in expired {
                            let (id, _) = model
                                .iter()
                                .find(|(_, m)| **m == c)
                                .map(|(&id, m)| (id, *m))
                                .expect("expired a conn the model does not have");
                            prop_assert!(c.expires <= now, "expired early: {:?} at {}", c, now);
                            expired_ids.insert(id);
                            model.remove(&id);
                        }
                        match budget {
                            None => prop_assert_eq!(expired_ids, due),
                            Some(budget) => prop_assert!(expired_ids.len() <= budget),
                        }
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (&id, m) in &model {
                    prop_assert_eq!(table.get(ConnId(id)), m);
                    prop_assert_eq!(table.lookup(&m.input_key()), Some((ConnId(id), Direction::Input)));
                    prop_assert_eq!(table.lookup(&m.output_key()), Some((ConnId(id), Direction::Output)));
                }
                prop_assert_eq!(table.iter().count(), model.len());
            }
            // Finally everything goes, each exactly at or after its second.
            let last = model.values().map(|m| m.expires).max().unwrap_or(now).max(now);
            let mut left = model.len();
            table.expire(last, usize::MAX, |c| {
                assert!(c.expires <= last);
                left -= 1;
            });
            prop_assert_eq!(left, 0);
            prop_assert!(table.is_empty());
        }
    }
}
