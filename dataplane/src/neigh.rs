//! ARP neighbour table and the bounded queue of packets waiting for a next
//! hop to resolve. One per worker; no allocation after construction.
//!
//! Neighbours are known per port, as Linux keys them per interface: the same
//! address behind two ports is two entries, and what is learned on one port
//! never changes where packets to another port go. Which ARP packets may
//! teach the table is the engine's rule (only senders on the port's own
//! subnets); here, RFC 826's merge rule: a known entry is updated from any
//! such packet, a new one is created only when the packet is for us (or by a
//! lookup that starts a resolution).
//!
//! A resolved entry is used for [`REACHABLE_SECS`]; after that it is still
//! used while a refresh request goes out at most once a second, and it is
//! forgotten at [`STALE_SECS`] without an answer. An unresolved entry with no
//! packet waiting is forgotten after [`INCOMPLETE_SECS`]. Every second a
//! bounded sweep removes what is due, so entries age out whether or not they
//! are looked up. A full table makes room by evicting the stalest of
//! [`EVICTION_SAMPLE`] entries it samples in turn, so that a storm of ARP
//! packets can fill it but never freeze it: the next resolution still
//! succeeds.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::wire::ethernet::MacAddr;

/// A resolved entry is trusted this long without being refreshed.
pub const REACHABLE_SECS: u32 = 300;
/// A resolved entry is dropped this long after its last confirmation.
pub const STALE_SECS: u32 = 600;
/// A packet waits at most this long for its next hop.
pub const HOLD_SECS: u32 = 3;
/// An unresolved entry nothing waits for is dropped this long after its
/// last request.
pub const INCOMPLETE_SECS: u32 = HOLD_SECS;
/// Most neighbours one worker tracks.
pub const MAX_NEIGHBOURS: usize = 4096;
/// Entries a full table compares to choose the one to evict.
pub const EVICTION_SAMPLE: usize = 16;
/// Entries the once-a-second sweep examines.
const SWEEP: usize = 512;

#[derive(Clone, Copy, Debug)]
struct Entry {
    ip: Ipv4Addr,
    port: u16,
    mac: Option<MacAddr>,
    /// When the MAC was last confirmed; for an unresolved entry, when it
    /// was created.
    confirmed: u32,
    probed: Option<u32>,
}

impl Entry {
    /// Whether the sweep at `now` may drop the entry.
    fn due(&self, now: u32) -> bool {
        match self.mac {
            Some(_) => now.wrapping_sub(self.confirmed) >= STALE_SECS,
            None => now.wrapping_sub(self.probed.unwrap_or(self.confirmed)) >= INCOMPLETE_SECS,
        }
    }
}

/// What the caller should do with a packet for a next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Send to this MAC; `refresh` asks for an ARP request to go out too.
    Known { mac: MacAddr, refresh: bool },
    /// Unknown: hold the packet; `probe` asks for an ARP request to go out.
    Unknown { probe: bool },
}

struct Held<P> {
    next_hop: Ipv4Addr,
    port: u16,
    since: u32,
    packet: P,
}

pub struct Neighbours<P> {
    /// Fixed slots; `index` maps (port, address) to a slot.
    slots: Vec<Option<Entry>>,
    index: HashMap<(u16, Ipv4Addr), u32>,
    free: Vec<u32>,
    /// Where the next eviction sample and the next sweep start.
    evict_at: usize,
    sweep_at: usize,
    /// Entries evicted to make room, since the table was made.
    evicted: u64,
    held: Vec<Option<Held<P>>>,
    held_count: usize,
    /// Changes whenever an entry is learned, forgotten or goes unresolved:
    /// what callers cached from [`Self::fresh`] holds while it stays.
    generation: u64,
}

impl<P> Neighbours<P> {
    /// A table holding at most `max_held` packets waiting for resolution.
    pub fn new(max_held: usize) -> Self {
        let mut held = Vec::with_capacity(max_held);
        held.resize_with(max_held, || None);
        Neighbours {
            slots: vec![None; MAX_NEIGHBOURS],
            index: HashMap::with_capacity(MAX_NEIGHBOURS),
            free: (0..MAX_NEIGHBOURS as u32).rev().collect(),
            evict_at: 0,
            sweep_at: 0,
            evicted: 0,
            held,
            held_count: 0,
            generation: 0,
        }
    }

    /// See the `generation` field.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `ip`'s MAC behind `port` and the second it was confirmed at, while
    /// [`Self::lookup`] would answer it without a refresh (for
    /// [`REACHABLE_SECS`] after that second, and while
    /// [`Self::generation`] stays): what a cache of next hops may keep.
    pub fn fresh(&self, ip: Ipv4Addr, port: u16, now: u32) -> Option<(MacAddr, u32)> {
        let slot = *self.index.get(&(port, ip))?;
        let entry = self.slots[slot as usize]?;
        let mac = entry.mac?;
        (now.wrapping_sub(entry.confirmed) < REACHABLE_SECS).then_some((mac, entry.confirmed))
    }

    /// Looks up `ip` behind `port` and says whether to probe.
    #[inline]
    pub fn lookup(&mut self, ip: Ipv4Addr, port: u16, now: u32) -> Lookup {
        if let Some(&slot) = self.index.get(&(port, ip)) {
            let entry = self.slots[slot as usize]
                .as_mut()
                .expect("indexed slots hold entries");
            let probe_due = entry.probed != Some(now);
            match entry.mac {
                Some(mac) if now.wrapping_sub(entry.confirmed) < REACHABLE_SECS => {
                    return Lookup::Known {
                        mac,
                        refresh: false,
                    }
                }
                Some(mac) if now.wrapping_sub(entry.confirmed) < STALE_SECS => {
                    if probe_due {
                        entry.probed = Some(now);
                    }
                    return Lookup::Known {
                        mac,
                        refresh: probe_due,
                    };
                }
                _ => {
                    entry.mac = None;
                    self.generation += 1;
                    if probe_due {
                        entry.probed = Some(now);
                    }
                    return Lookup::Unknown { probe: probe_due };
                }
            }
        }
        self.insert(Entry {
            ip,
            port,
            mac: None,
            confirmed: now,
            probed: Some(now),
        });
        Lookup::Unknown { probe: true }
    }

    /// The MAC of `ip` behind `port`, if resolved (no side effects; for
    /// tests and views).
    pub fn mac_of(&self, ip: Ipv4Addr, port: u16) -> Option<MacAddr> {
        let slot = *self.index.get(&(port, ip))?;
        self.slots[slot as usize].and_then(|e| e.mac)
    }

    /// Records `ip` at `mac` behind `port`. `create` says whether an unknown
    /// `ip` may be added (the ARP packet was addressed to us). Returns true
    /// when packets are waiting for it (call [`Self::release`]).
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16, now: u32, create: bool) -> bool {
        self.generation += 1;
        match self.index.get(&(port, ip)) {
            Some(&slot) => {
                let entry = self.slots[slot as usize]
                    .as_mut()
                    .expect("indexed slots hold entries");
                entry.mac = Some(mac);
                entry.confirmed = now;
            }
            None if create => self.insert(Entry {
                ip,
                port,
                mac: Some(mac),
                confirmed: now,
                probed: None,
            }),
            None => {}
        }
        self.held_count > 0
            && self
                .held
                .iter()
                .flatten()
                .any(|h| h.next_hop == ip && h.port == port)
    }

    /// Adds an entry known not to be there, evicting one if the table is
    /// full.
    fn insert(&mut self, entry: Entry) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.evict(),
        };
        self.index.insert((entry.port, entry.ip), slot);
        self.slots[slot as usize] = Some(entry);
    }

    /// Frees the slot of the stalest of the next [`EVICTION_SAMPLE`] entries
    /// (unresolved ones count from their last request) and returns it.
    fn evict(&mut self) -> u32 {
        let staleness = |e: &Entry| match e.mac {
            Some(_) => e.confirmed,
            None => e.probed.unwrap_or(e.confirmed),
        };
        let victim = (0..EVICTION_SAMPLE)
            .map(|k| (self.evict_at + k) % MAX_NEIGHBOURS)
            .min_by_key(|&at| self.slots[at].as_ref().map_or(0, staleness))
            .expect("the sample is not empty");
        self.evict_at = (self.evict_at + EVICTION_SAMPLE) % MAX_NEIGHBOURS;
        self.remove(victim);
        self.evicted += 1;
        self.free.pop().expect("the slot just freed")
    }

    fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.slots[slot].take() {
            self.generation += 1;
            self.index.remove(&(entry.port, entry.ip));
            self.free.push(slot as u32);
        }
    }

    /// Entries evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Holds `packet` until `next_hop` resolves; gives it back when full.
    pub fn hold(&mut self, next_hop: Ipv4Addr, port: u16, now: u32, packet: P) -> Result<(), P> {
        match self.held.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(Held {
                    next_hop,
                    port,
                    since: now,
                    packet,
                });
                self.held_count += 1;
                Ok(())
            }
            None => Err(packet),
        }
    }

    /// Packets currently held.
    pub fn held(&self) -> usize {
        self.held_count
    }

    /// Hands every packet held for `ip` behind `port` to `send(port, mac,
    /// packet)`.
    pub fn release(&mut self, ip: Ipv4Addr, port: u16, mut send: impl FnMut(u16, MacAddr, P)) {
        let Some(mac) = self.mac_of(ip, port) else {
            return;
        };
        for slot in &mut self.held {
            if slot
                .as_ref()
                .is_some_and(|h| h.next_hop == ip && h.port == port)
            {
                let held = slot.take().expect("checked above");
                self.held_count -= 1;
                send(held.port, mac, held.packet);
            }
        }
    }

    /// Once a second or so: ages entries out (a bounded part of the table
    /// per call), drops packets held longer than [`HOLD_SECS`] (through
    /// `expired`) and asks `probe(ip, port)` for next hops that still have
    /// packets waiting and no MAC.
    pub fn tick(
        &mut self,
        now: u32,
        mut expired: impl FnMut(P),
        mut probe: impl FnMut(Ipv4Addr, u16),
    ) {
        for k in 0..SWEEP {
            let at = (self.sweep_at + k) % MAX_NEIGHBOURS;
            let due = self.slots[at].as_ref().is_some_and(|entry| {
                entry.due(now)
                    && !self
                        .held
                        .iter()
                        .flatten()
                        .any(|h| h.next_hop == entry.ip && h.port == entry.port)
            });
            if due {
                self.remove(at);
            }
        }
        self.sweep_at = (self.sweep_at + SWEEP) % MAX_NEIGHBOURS;
        if self.held_count == 0 {
            return;
        }
        for slot in &mut self.held {
            if slot
                .as_ref()
                .is_some_and(|h| now.wrapping_sub(h.since) >= HOLD_SECS)
            {
                let held = slot.take().expect("checked above");
                self.held_count -= 1;
                expired(held.packet);
            }
        }
        for held in self.held.iter().flatten() {
            let entry = self
                .index
                .get(&(held.port, held.next_hop))
                .and_then(|&slot| self.slots[slot as usize].as_mut());
            match entry {
                Some(entry) if entry.mac.is_none() && entry.probed != Some(now) => {
                    entry.probed = Some(now);
                    probe(held.next_hop, held.port);
                }
                Some(_) => {}
                // Evicted while packets wait for it: ask again; the answer
                // (a reply to our request) creates it anew.
                None => probe(held.next_hop, held.port),
            }
        }
    }

    /// Resolved neighbours: (ip, mac, port, seconds since confirmed).
    pub fn entries(&self, now: u32) -> impl Iterator<Item = (Ipv4Addr, MacAddr, u16, u32)> + '_ {
        self.slots.iter().flatten().filter_map(move |e| {
            e.mac
                .map(|mac| (e.ip, mac, e.port, now.wrapping_sub(e.confirmed)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn unknown_then_learned_releases_held_packets() {
        let mut n: Neighbours<u32> = Neighbours::new(4);
        let hop = ip("10.0.0.9");
        assert_eq!(n.lookup(hop, 1, 100), Lookup::Unknown { probe: true });
        assert_eq!(
            n.lookup(hop, 1, 100),
            Lookup::Unknown { probe: false },
            "one probe per second"
        );
        n.hold(hop, 1, 100, 7).unwrap();
        n.hold(ip("10.0.0.8"), 1, 100, 8).unwrap();
        assert!(
            n.learn(hop, MAC, 1, 100, false),
            "entry exists, packets wait"
        );
        let mut sent = vec![];
        n.release(hop, 1, |port, mac, p| sent.push((port, mac, p)));
        assert_eq!(sent, vec![(1, MAC, 7)]);
        assert_eq!(n.held(), 1);
        assert_eq!(
            n.lookup(hop, 1, 101),
            Lookup::Known {
                mac: MAC,
                refresh: false
            }
        );
    }

    #[test]
    fn held_queue_is_bounded() {
        let mut n: Neighbours<u32> = Neighbours::new(2);
        let hop = ip("10.0.0.9");
        n.hold(hop, 0, 1, 1).unwrap();
        n.hold(hop, 0, 1, 2).unwrap();
        assert_eq!(n.hold(hop, 0, 1, 3), Err(3));
    }

    #[test]
    fn held_packets_expire_and_unresolved_hops_are_probed() {
        let mut n: Neighbours<u32> = Neighbours::new(4);
        let hop = ip("10.0.0.9");
        n.lookup(hop, 0, 10);
        n.hold(hop, 0, 10, 1).unwrap();
        n.hold(hop, 0, 11, 2).unwrap();
        let (mut dropped, mut probes) = (vec![], vec![]);
        n.tick(11, |p| dropped.push(p), |ip, port| probes.push((ip, port)));
        assert!(dropped.is_empty());
        assert_eq!(probes, vec![(hop, 0)], "one probe per hop per second");
        n.tick(13, |p| dropped.push(p), |_, _| {});
        assert_eq!(dropped, vec![1], "held since 10, 3 s passed");
        n.tick(14, |p| dropped.push(p), |_, _| {});
        assert_eq!(dropped, vec![1, 2]);
        assert_eq!(n.held(), 0);
    }

    #[test]
    fn unsolicited_arp_does_not_create_entries() {
        let mut n: Neighbours<u32> = Neighbours::new(1);
        n.learn(ip("10.0.0.5"), MAC, 0, 1, false);
        assert_eq!(n.mac_of(ip("10.0.0.5"), 0), None);
        n.learn(ip("10.0.0.5"), MAC, 0, 1, true);
        assert_eq!(n.mac_of(ip("10.0.0.5"), 0), Some(MAC));
    }

    #[test]
    fn entries_go_stale_then_expire() {
        let mut n: Neighbours<u32> = Neighbours::new(1);
        let hop = ip("10.0.0.5");
        n.learn(hop, MAC, 0, 0, true);
        assert_eq!(
            n.lookup(hop, 0, REACHABLE_SECS),
            Lookup::Known {
                mac: MAC,
                refresh: true
            }
        );
        assert_eq!(
            n.lookup(hop, 0, REACHABLE_SECS),
            Lookup::Known {
                mac: MAC,
                refresh: false
            }
        );
        assert_eq!(
            n.lookup(hop, 0, STALE_SECS),
            Lookup::Unknown { probe: true }
        );
    }

    #[test]
    fn neighbours_are_known_per_port() {
        let mut n: Neighbours<u32> = Neighbours::new(1);
        let real = ip("10.99.2.11");
        let other = MacAddr([2, 0xde, 0xad, 0xbe, 0xef, 1]);
        n.learn(real, MAC, 1, 1, true);
        // The same address claimed on port 0 is another neighbour: port 1's
        // entry stays.
        n.learn(real, other, 0, 2, true);
        assert_eq!(n.mac_of(real, 1), Some(MAC));
        assert_eq!(n.mac_of(real, 0), Some(other));
        assert_eq!(
            n.lookup(real, 1, 3),
            Lookup::Known {
                mac: MAC,
                refresh: false
            }
        );
    }

    #[test]
    fn entries_age_out_without_being_looked_up() {
        let mut n: Neighbours<u32> = Neighbours::new(1);
        n.learn(ip("10.0.0.5"), MAC, 0, 0, true);
        n.lookup(ip("10.0.0.6"), 0, 0);
        // A full sweep of the table takes MAX_NEIGHBOURS / SWEEP ticks.
        let sweeps = MAX_NEIGHBOURS / SWEEP;
        for _ in 0..sweeps {
            n.tick(INCOMPLETE_SECS, |_| {}, |_, _| {});
        }
        assert_eq!(n.len(), 1, "the unresolved entry went");
        for _ in 0..sweeps {
            n.tick(STALE_SECS, |_| {}, |_, _| {});
        }
        assert!(n.is_empty(), "the resolved one went stale and was dropped");
    }

    #[test]
    fn a_full_table_evicts_the_stalest_it_samples_and_keeps_resolving() {
        let mut n: Neighbours<u32> = Neighbours::new(4);
        // A storm: every slot taken by addresses learned at second 10, but
        // the first sampled ones are fresher.
        for i in 0..MAX_NEIGHBOURS as u32 {
            let learned_at = if i < 8 { 20 } else { 10 };
            n.learn(Ipv4Addr::from(0x0a00_0000 + i), MAC, 0, learned_at, true);
        }
        assert_eq!(n.len(), MAX_NEIGHBOURS);
        // A next hop never seen still starts resolving, and its answer sticks.
        let hop = ip("192.168.0.1");
        assert_eq!(n.lookup(hop, 1, 30), Lookup::Unknown { probe: true });
        n.hold(hop, 1, 30, 7).unwrap();
        assert!(n.learn(hop, MAC, 1, 30, true));
        let mut sent = vec![];
        n.release(hop, 1, |_, _, p| sent.push(p));
        assert_eq!(sent, [7]);
        assert_eq!(n.len(), MAX_NEIGHBOURS);
        assert_eq!(n.evicted(), 1);
        // The victim was the stalest of the sample, not a fresher one.
        let fresher = (0..8).filter(|i| n.mac_of(Ipv4Addr::from(0x0a00_0000 + i), 0).is_some());
        assert_eq!(fresher.count(), 8);
    }
}
