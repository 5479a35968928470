//! Housekeeping between bursts: the timer tick (expiry, purges, ARP
//! retries), snapshot swaps, and the pages workers answer control requests
//! with.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnId};
use crate::counters::{add_signed, bump, decrement, DropReason};
use crate::sched::{RealLoad, Scheduler};
use crate::snapshot::{Purge, Snapshot};
use crate::wire::ethernet::MacAddr;

use super::schedule::make_scheduler;
use super::steer::LocalPorts;
use super::{ConnDump, Engine, PacketIo};

impl<P: PacketBuf> Engine<P> {
    /// Switches to a new configuration snapshot and returns the old one, for
    /// the control thread to free. Established connections keep flowing:
    /// they carry their real's address and mode and name it by stable id, and
    /// the connection counts of reals that stay are carried over. A service
    /// whose version is unchanged keeps its scheduler state. Called between
    /// bursts, never per packet; its cost is proportional to the number of
    /// reals, not of connections.
    pub fn swap_snapshot(&mut self, new: Arc<Snapshot>) -> Arc<Snapshot> {
        let old = std::mem::replace(&mut self.snapshot, new);
        self.next_hops.clear();
        let mut old_schedulers: Vec<Option<Scheduler>> = std::mem::take(&mut self.schedulers)
            .into_iter()
            .map(Some)
            .collect();
        let snapshot = &self.snapshot;
        let mut loads = Vec::with_capacity(snapshot.services.len());
        let mut schedulers = Vec::with_capacity(snapshot.services.len());
        for service in &snapshot.services {
            let service_loads: Vec<RealLoad> = service
                .reals
                .iter()
                .map(|real| {
                    let (active, inactive) = old
                        .real_position(real.id)
                        .and_then(|(s, r)| self.loads.get(s)?.get(r))
                        .map_or((0, 0), |l| (l.active, l.inactive));
                    RealLoad {
                        weight: real.weight,
                        active,
                        inactive,
                        overloaded: false,
                    }
                })
                .collect();
            let kept = old
                .service_index(service.id)
                .filter(|&i| old.services[i].version == service.version)
                .and_then(|i| old_schedulers.get_mut(i)?.take());
            schedulers
                .push(kept.unwrap_or_else(|| make_scheduler(service, &service_loads, self.place)));
            loads.push(service_loads);
        }
        self.loads = loads;
        self.schedulers = schedulers;
        if !snapshot.purge_reals.is_empty() {
            self.purging.extend_from_slice(&snapshot.purge_reals);
            self.purge_at = 0;
        }
        self.local_ports = LocalPorts::new(snapshot, self.place);
        self.locals.prepare(&snapshot.lips, self.local_ports.count);
        self.lip_cursor.resize(snapshot.lips.len(), 0);
        old
    }

    /// Up to `limit` connections from table position `from`, for a listing.
    /// Runs between bursts on a control request; allocates the page.
    pub fn dump_connections(&self, from: usize, limit: usize) -> ConnDump {
        let mut entries = Vec::with_capacity(limit.min(self.conns.len()));
        let mut next = None;
        for (id, conn) in self.conns.iter_from(from) {
            if entries.len() == limit {
                next = Some(id.index());
                break;
            }
            entries.push((*conn, conn.expires.saturating_sub(self.now)));
        }
        ConnDump { entries, next }
    }

    /// The resolved neighbours: (address, MAC, port, seconds since
    /// confirmed). Runs between bursts on a control request; allocates.
    pub fn neighbour_entries(&self) -> Vec<(Ipv4Addr, MacAddr, u16, u32)> {
        self.neighbours.entries(self.now).collect()
    }

    /// Ends the connections of purged reals, looking at a bounded part of the
    /// table per call.
    fn purge_some(&mut self) {
        const SLOTS_PER_TICK: usize = 8192;
        let mut doomed = [ConnId::default(); 64];
        let mut found = 0;
        let mut next = None;
        for (id, conn) in self.conns.iter_from(self.purge_at) {
            if id.index() >= self.purge_at + SLOTS_PER_TICK || found == doomed.len() {
                next = Some(id.index());
                break;
            }
            if self.purging.iter().any(|purge| purges(purge, conn)) {
                doomed[found] = id;
                found += 1;
            }
        }
        for &id in &doomed[..found] {
            if let Some(conn) = self.conns.remove(id) {
                self.forget(&conn);
            }
        }
        match next {
            Some(position) => self.purge_at = position,
            None => {
                self.purging.clear();
                self.purge_at = 0;
            }
        }
    }

    /// Housekeeping, called about every millisecond by the worker: expires
    /// connections (bounded work per call) and, once a second, ages packets
    /// waiting for ARP and re-sends requests.
    pub fn tick(&mut self, io: &mut impl PacketIo<P>) {
        let (now, budget) = (self.now, self.expire_budget);
        let (conns, mut holds) = self.conns_and_holds();
        let expired = conns.expire(now, budget, |conn| holds.release(conn));
        let real_counters = holds.real_counters;
        holds.templates.sweep(now, budget, |real_id| {
            if let Some(c) = real_counters.get(real_id as usize) {
                add_signed(&c.persist, -1);
            }
        });
        if expired > 0 {
            bump(&self.counters.conns_expired, expired as u64);
            decrement(&self.counters.conns_current, expired as u64);
        }
        if !self.purging.is_empty() {
            self.purge_some();
        }
        if now == self.last_tick {
            return;
        }
        self.last_tick = now;
        self.rejects_left = super::reject::REJECTS_PER_SECOND;
        let mut probes = [(Ipv4Addr::UNSPECIFIED, 0u16); 16];
        let mut wanted = 0;
        let counters = &self.counters;
        self.neighbours.tick(
            now,
            |_| counters.count_drop(DropReason::ArpTimeout),
            |ip, port| {
                if wanted < probes.len() {
                    probes[wanted] = (ip, port);
                    wanted += 1;
                }
            },
        );
        for &(ip, port) in &probes[..wanted] {
            self.arp_request(ip, port, io);
        }
        self.counters.neighbours_evicted.store(
            self.neighbours.evicted(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Whether `purge` ends `conn`: a connection of its service to its address,
/// on its port if it names one.
fn purges(purge: &Purge, conn: &Conn) -> bool {
    conn.service_id == purge.service_id
        && conn.real == purge.address
        && purge.port.is_none_or(|port| port == conn.real_port)
}
