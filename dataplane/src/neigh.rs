//! ARP neighbour table and the bounded queue of packets waiting for a next
//! hop to resolve. One per worker; no allocation after construction.
//!
//! Entries are learned from ARP requests and replies (RFC 826's merge rule:
//! update a known entry from any ARP packet, create one when the packet is for
//! us). A resolved entry is used for [`REACHABLE_SECS`]; after that it is still
//! used while a refresh request goes out at most once a second, and it is
//! forgotten at [`STALE_SECS`] without an answer.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::wire::ethernet::MacAddr;

/// A resolved entry is trusted this long without being refreshed.
pub const REACHABLE_SECS: u32 = 300;
/// A resolved entry is dropped this long after its last confirmation.
pub const STALE_SECS: u32 = 600;
/// A packet waits at most this long for its next hop.
pub const HOLD_SECS: u32 = 3;
/// Most neighbours one worker tracks.
pub const MAX_NEIGHBOURS: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Option<MacAddr>,
    port: u16,
    confirmed: u32,
    probed: Option<u32>,
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
    entries: HashMap<Ipv4Addr, Entry>,
    held: Vec<Option<Held<P>>>,
    held_count: usize,
}

impl<P> Neighbours<P> {
    /// A table holding at most `max_held` packets waiting for resolution.
    pub fn new(max_held: usize) -> Self {
        let mut held = Vec::with_capacity(max_held);
        held.resize_with(max_held, || None);
        Neighbours {
            entries: HashMap::with_capacity(MAX_NEIGHBOURS),
            held,
            held_count: 0,
        }
    }

    /// Looks up `ip` (reached through `port`) and says whether to probe.
    #[inline]
    pub fn lookup(&mut self, ip: Ipv4Addr, port: u16, now: u32) -> Lookup {
        if self.entries.contains_key(&ip) {
            let entry = self.entries.get_mut(&ip).expect("checked above");
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
                    entry.port = port;
                    if probe_due {
                        entry.probed = Some(now);
                    }
                    return Lookup::Unknown { probe: probe_due };
                }
            }
        }
        if self.entries.len() >= MAX_NEIGHBOURS {
            // Full: resolve without remembering that we asked.
            return Lookup::Unknown { probe: true };
        }
        self.entries.insert(
            ip,
            Entry {
                mac: None,
                port,
                confirmed: now,
                probed: Some(now),
            },
        );
        Lookup::Unknown { probe: true }
    }

    /// The MAC of `ip`, if resolved (no side effects; for tests and views).
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&ip).and_then(|e| e.mac)
    }

    /// Records `ip` at `mac` seen on `port`. `create` says whether an unknown
    /// `ip` may be added (the ARP packet was addressed to us). Returns true
    /// when packets are waiting for it (call [`Self::release`]).
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16, now: u32, create: bool) -> bool {
        if let Some(entry) = self.entries.get_mut(&ip) {
            entry.mac = Some(mac);
            entry.port = port;
            entry.confirmed = now;
        } else if create && self.entries.len() < MAX_NEIGHBOURS {
            self.entries.insert(
                ip,
                Entry {
                    mac: Some(mac),
                    port,
                    confirmed: now,
                    probed: None,
                },
            );
        }
        self.held_count > 0 && self.held.iter().flatten().any(|h| h.next_hop == ip)
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

    /// Hands every packet held for `ip` to `send(port, mac, packet)`.
    pub fn release(&mut self, ip: Ipv4Addr, mut send: impl FnMut(u16, MacAddr, P)) {
        let Some(mac) = self.mac_of(ip) else { return };
        for slot in &mut self.held {
            if slot.as_ref().is_some_and(|h| h.next_hop == ip) {
                let held = slot.take().expect("checked above");
                self.held_count -= 1;
                send(held.port, mac, held.packet);
            }
        }
    }

    /// Once a second or so: drops packets held longer than [`HOLD_SECS`]
    /// (through `expired`) and asks `probe(ip, port)` for unresolved next hops
    /// that still have packets waiting.
    pub fn tick(
        &mut self,
        now: u32,
        mut expired: impl FnMut(P),
        mut probe: impl FnMut(Ipv4Addr, u16),
    ) {
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
            if let Some(entry) = self.entries.get_mut(&held.next_hop) {
                if entry.mac.is_none() && entry.probed != Some(now) {
                    entry.probed = Some(now);
                    probe(held.next_hop, held.port);
                }
            }
        }
    }

    /// Resolved neighbours: (ip, mac, port, seconds since confirmed).
    pub fn entries(&self, now: u32) -> impl Iterator<Item = (Ipv4Addr, MacAddr, u16, u32)> + '_ {
        self.entries.iter().filter_map(move |(ip, e)| {
            e.mac
                .map(|mac| (*ip, mac, e.port, now.wrapping_sub(e.confirmed)))
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
        n.release(hop, |port, mac, p| sent.push((port, mac, p)));
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
        assert_eq!(n.mac_of(ip("10.0.0.5")), None);
        n.learn(ip("10.0.0.5"), MAC, 0, 1, true);
        assert_eq!(n.mac_of(ip("10.0.0.5")), Some(MAC));
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
}
