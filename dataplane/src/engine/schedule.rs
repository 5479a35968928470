//! Scheduling: choosing a real for a new connection (persistence templates
//! first), the loads schedulers read, and what a connection that goes away
//! gives back.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnKey, ConnTable};
use crate::counters::{add_signed, bump, decrement, DropReason, RealBook, RealCounters};
use crate::persist::{TemplateKey, Templates};
use crate::sched::{Client, RealLoad, Scheduler, Thresholds};
use crate::snapshot::{ServiceInfo, Snapshot};
use rvs_control::model::{Forward, SchedulerKind};

use super::xmit::LocalUse;
use super::{Engine, WorkerPlace};

impl<P: PacketBuf> Engine<P> {
    /// Picks a real of service `s` for a new connection from `key`, through
    /// its persistence template if the service is persistent. Returns the
    /// real's index and the template slot (`u32::MAX`: none).
    pub(super) fn choose_real(
        &mut self,
        s: usize,
        key: &ConnKey,
    ) -> Result<(usize, u32), DropReason> {
        let snapshot = Arc::clone(&self.snapshot);
        let service = &snapshot.services[s];
        // A mark service's template covers all its matches (IPVS: protocol
        // any, the mark in place of the address, port 0).
        let (template_protocol, template_vip) = match service.mark {
            Some(_) => (0, Ipv4Addr::UNSPECIFIED),
            None => (key.proto, key.dst),
        };
        let template_key = service.persistent.map(|_| TemplateKey {
            protocol: template_protocol,
            client_net: Ipv4Addr::from(u32::from(key.src) & u32::from(service.netmask)),
            vip: template_vip,
            vport: service.port,
            service_id: service.id,
        });
        if let Some(slot) = template_key.and_then(|k| self.templates.lookup(&k)) {
            let real_id = self.templates.get(slot).real_id;
            let valid = snapshot.real_position(real_id).and_then(|(si, ri)| {
                let real = &service.reals[ri];
                let quiescent = snapshot.expire_quiescent_template && real.weight == 0;
                (si == s && !quiescent && !real.drained).then_some(ri)
            });
            match valid {
                Some(ri) => {
                    let timeout = service.persistent.unwrap_or(0);
                    self.templates.touch(slot, self.now.saturating_add(timeout));
                    return Ok((ri, slot));
                }
                None => {
                    self.templates.remove(slot);
                    self.count_persist(real_id, -1);
                }
            }
        }
        self.refresh_loads(s);
        let client = Client {
            addr: key.src,
            port: key.src_port,
            dst: key.dst,
        };
        let real_index = self.schedulers[s]
            .pick_for(&self.loads[s], &client, self.now)
            .ok_or(DropReason::NoReal)?;
        let mut slot = u32::MAX;
        if let (Some(k), Some(timeout)) = (template_key, service.persistent) {
            let real_id = service.reals[real_index].id;
            if let Some(new) = self
                .templates
                .insert(k, real_id, self.now.saturating_add(timeout))
            {
                self.count_persist(real_id, 1);
                slot = new;
            }
        }
        Ok((real_index, slot))
    }

    /// Fills service `s`'s loads with what its scheduler reads: connection
    /// counts over all workers (for the schedulers that weigh them) and the
    /// shared overload flags (where thresholds are set). O(reals), only on a
    /// new connection; the hashing and round-robin schedulers skip it.
    fn refresh_loads(&mut self, s: usize) {
        let service = &self.snapshot.services[s];
        let counts = !matches!(
            service.scheduler,
            SchedulerKind::Rr
                | SchedulerKind::Wrr
                | SchedulerKind::Dh
                | SchedulerKind::Sh
                | SchedulerKind::Mh
                | SchedulerKind::Fo
        );
        let thresholds = service.has_thresholds();
        if !counts && !thresholds {
            return;
        }
        for (load, real) in self.loads[s].iter_mut().zip(&service.reals) {
            if counts {
                (load.active, load.inactive) = self.book.connections(real.id);
            }
            if thresholds {
                load.overloaded = self.book.is_overloaded(real.id);
            }
        }
    }

    /// Real `id`'s counts over all workers, with its shared overload flag.
    fn total_load(&self, id: u32) -> RealLoad {
        let (active, inactive) = self.book.connections(id);
        RealLoad {
            weight: 0,
            active,
            inactive,
            overloaded: self.book.is_overloaded(id),
        }
    }

    /// Counts a persistence template of real `real_id` in or out.
    pub(super) fn count_persist(&self, real_id: u32, delta: i32) {
        if let Some(c) = self.real_counters.get(real_id as usize) {
            add_signed(&c.persist, delta);
        }
    }

    /// Changes the active/inactive connection counts of real `real_id`, both
    /// what schedulers read and what listings show.
    pub(super) fn adjust_load(&mut self, real_id: u32, active: i32, inactive: i32) {
        adjust_load(
            &self.snapshot,
            &mut self.loads,
            &self.real_counters,
            real_id,
            active,
            inactive,
        );
    }

    /// Counts a new connection, just inserted, to its real: the loads
    /// schedulers read, the hold on its persistence template and its
    /// FullNAT local port, the real's overload flag once it reaches its
    /// upper threshold (IPVS bind), and the counters.
    pub(super) fn bind(&mut self, conn: &Conn, thresholds: Thresholds) {
        if conn.forward == Forward::FullNat {
            self.locals.take(conn.local, conn.local_port);
        }
        if conn.template != u32::MAX {
            self.templates.control(conn.template);
        }
        if conn.is_active() {
            self.adjust_load(conn.real_id, 1, 0);
        } else {
            self.adjust_load(conn.real_id, 0, 1);
        }
        if thresholds.upper != 0 {
            let mut load = self.total_load(conn.real_id);
            thresholds.after_bind(&mut load);
            if load.overloaded {
                self.book.set_overloaded(conn.real_id, true);
            }
        }
        bump(&self.counters.conns_created, 1);
        bump(&self.counters.conns_current, 1);
        if let Some(c) = self.real_counters.get(conn.real_id as usize) {
            bump(&c.conns, 1);
        }
    }

    /// Takes a connection that is going away out of the scheduler counts.
    pub(super) fn forget(&mut self, conn: &Conn) {
        self.conns_and_holds().1.release(conn);
        bump(&self.counters.conns_expired, 1);
        decrement(&self.counters.conns_current, 1);
    }

    /// Counts a packet of `conn` to its real's traffic, in (from the
    /// client's side) or out.
    #[inline]
    pub(super) fn count_real(&self, conn: &Conn, inbound: bool, bytes: usize) {
        if let Some(c) = self.real_counters.get(conn.real_id as usize) {
            if inbound {
                bump(&c.in_packets, 1);
                bump(&c.in_bytes, bytes as u64);
            } else {
                bump(&c.out_packets, 1);
                bump(&c.out_bytes, bytes as u64);
            }
        }
    }
}

/// What a connection holds besides its table entry, borrowed apart from
/// the table ([`Engine::conns_and_holds`]) so that the table's expiry and
/// eviction can give back each connection that goes.
pub(super) struct Holds<'a> {
    snapshot: &'a Snapshot,
    loads: &'a mut [Vec<RealLoad>],
    pub(super) real_counters: &'a [RealCounters],
    book: &'a RealBook,
    pub(super) templates: &'a mut Templates,
    locals: &'a mut LocalUse,
}

impl<P: PacketBuf> Engine<P> {
    /// The connection table, and apart from it what its connections hold.
    pub(super) fn conns_and_holds(&mut self) -> (&mut ConnTable, Holds<'_>) {
        (
            &mut self.conns,
            Holds {
                snapshot: &self.snapshot,
                loads: &mut self.loads,
                real_counters: &self.real_counters,
                book: &self.book,
                templates: &mut self.templates,
                locals: &mut self.locals,
            },
        )
    }
}

impl Holds<'_> {
    /// Everything that goes when `conn` goes: its share of the real's
    /// counts, its hold on its persistence template and its FullNAT local
    /// port, and perhaps the real's overload flag (IPVS unbind).
    pub(super) fn release(&mut self, conn: &Conn) {
        let Holds {
            snapshot,
            loads,
            real_counters,
            book,
            templates,
            locals,
        } = self;
        if conn.forward == Forward::FullNat {
            locals.release(conn.local, conn.local_port);
        }
        if conn.is_active() {
            adjust_load(snapshot, loads, real_counters, conn.real_id, -1, 0);
        } else {
            adjust_load(snapshot, loads, real_counters, conn.real_id, 0, -1);
        }
        if conn.template != u32::MAX {
            templates.release(conn.template);
        }
        if let Some((s, r)) = snapshot.real_position(conn.real_id) {
            let thresholds = snapshot.services[s].reals[r].thresholds;
            if book.is_overloaded(conn.real_id) {
                let (active, inactive) = book.connections(conn.real_id);
                let mut load = RealLoad {
                    weight: 0,
                    active,
                    inactive,
                    overloaded: true,
                };
                thresholds.after_unbind(&mut load);
                if !load.overloaded {
                    book.set_overloaded(conn.real_id, false);
                }
            }
        }
    }
}

/// The scheduler of `service` for a worker at `place`: the service's table
/// and flags, and a seed of the worker's own. The one way a worker builds a
/// scheduler, at start and at every snapshot swap, so that a service edited
/// live schedules exactly as it would in a freshly started rvsd.
pub(super) fn make_scheduler(
    service: &ServiceInfo,
    loads: &[RealLoad],
    place: WorkerPlace,
) -> Scheduler {
    let mut scheduler = Scheduler::with_table(Arc::clone(&service.table), service.flags, loads);
    scheduler.set_seed(0x5eed_0000 + u64::from(place.index));
    scheduler
}

/// Changes the active/inactive connection counts of real `real_id` by
/// `active` and `inactive`: this worker's counters (listings) and, while the
/// real is configured, its load (schedulers).
pub(super) fn adjust_load(
    snapshot: &Snapshot,
    loads: &mut [Vec<RealLoad>],
    real_counters: &[RealCounters],
    real_id: u32,
    active: i32,
    inactive: i32,
) {
    if let Some(c) = real_counters.get(real_id as usize) {
        add_signed(&c.active, active);
        add_signed(&c.inactive, inactive);
    }
    // A real removed from the configuration has no load any more; its
    // connections drain without being counted for scheduling.
    if let Some((s, r)) = snapshot.real_position(real_id) {
        if let Some(load) = loads.get_mut(s).and_then(|l| l.get_mut(r)) {
            load.active = load.active.saturating_add_signed(active);
            load.inactive = load.inactive.saturating_add_signed(inactive);
        }
    }
}
