//! Connection sync, as the packet path sees it (REFERENCE.md §10).
//!
//! As a master (`sync.master`, the snapshot's `sync_master`), a worker
//! hands a copy of a connection to the sync daemon when the kernel would
//! send it (`ip_vs_sync_conn_needed`): a TCP connection entering FIN_WAIT,
//! CLOSE, CLOSE_WAIT or TIME_WAIT at once, and a TCP connection in one of
//! those states or ESTABLISHED, or a UDP one, on every client packet whose
//! count modulo the sync period (50) is the sync threshold (3): the third
//! packet, the 53rd, ... A connection made through a persistence template
//! is preceded by its template. Copies travel on a bounded ring per worker
//! ([`PacketIo::sync_out`]); a full ring drops the copy and counts it,
//! the packet path never waits.
//!
//! As a backup, the sync daemon hands each received connection to the
//! worker that owns its flow, which installs it here between bursts
//! ([`Engine::install_synced`]), bound to its own service and real: the one
//! serving the record's VIP and port and the real at its address and port.
//! A record for a service or real this director does not have is counted,
//! never installed.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_control::model::Forward;
use rvs_control::sync::{flags, SyncConn};

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnId, ConnKey, InsertError, SyncMark, PROTO_TCP};
use crate::counters::bump;
use crate::persist::TemplateKey;
use crate::tcp_state::{Direction, TcpState};

use super::{Engine, PacketIo};

/// The kernel's `sync_period` and `sync_threshold` defaults.
pub const SYNC_PERIOD: u8 = 50;
pub const SYNC_THRESHOLD: u8 = 3;

/// The `IP_VS_CONN_F_*` forwarding method of `forward` (FullNAT travels as
/// masquerading, with its local address in rvs's own option).
fn forward_flags(forward: Forward) -> u32 {
    match forward {
        Forward::Nat | Forward::FullNat => flags::MASQ,
        Forward::Tun => flags::TUNNEL,
        Forward::Dr => flags::DROUTE,
    }
}

/// Whether the kernel would sync `conn` now, the client's packet just
/// counted in `conn.sync.in_pkts` (`ip_vs_sync_conn_needed` with the
/// default sysctls: no refresh period, no persist mode).
fn sync_needed(conn: &Conn) -> bool {
    if conn.proto == PROTO_TCP {
        let state = conn.state;
        if !matches!(
            state,
            TcpState::Established
                | TcpState::FinWait
                | TcpState::Close
                | TcpState::CloseWait
                | TcpState::TimeWait
        ) {
            return false;
        }
        let changed = state != conn.sync.synced_state;
        if changed && state != TcpState::Established {
            return true;
        }
    }
    conn.sync.in_pkts == SYNC_THRESHOLD
}

impl<P: PacketBuf> Engine<P> {
    /// After a client packet of connection `id` on a master: counts it and
    /// hands the connection to the sync daemon when the kernel would.
    #[inline]
    pub(super) fn sync_after_input(&mut self, id: ConnId, io: &mut impl PacketIo<P>) {
        if !self.snapshot.sync_master {
            return;
        }
        let conn = self.conns.get_mut(id);
        conn.sync.in_pkts = (conn.sync.in_pkts + 1) % SYNC_PERIOD;
        if sync_needed(conn) {
            conn.sync.synced_state = conn.state;
            let conn = *conn;
            self.send_synced(&conn, io);
        }
    }

    /// Hands `conn`, preceded by its persistence template, to the sync
    /// daemon.
    #[cold]
    #[inline(never)]
    fn send_synced(&mut self, conn: &Conn, io: &mut impl PacketIo<P>) {
        if conn.template != u32::MAX {
            if let Some(record) = self.template_record(conn) {
                self.queue_sync(record, io);
            }
        }
        let timeout = conn.timeout(&self.snapshot.timeouts);
        let mut record_flags = forward_flags(conn.forward);
        if !(conn.proto == PROTO_TCP && conn.state == TcpState::Established) {
            record_flags |= flags::INACTIVE;
        }
        let record = SyncConn {
            protocol: conn.proto,
            flags: record_flags,
            state: conn.state as u16,
            caddr: conn.client,
            cport: conn.client_port,
            vaddr: conn.vip,
            vport: conn.vport,
            daddr: conn.real,
            dport: conn.real_port,
            fwmark: 0,
            timeout,
            seq: None,
            local: (conn.forward == Forward::FullNat).then_some((conn.local, conn.local_port)),
        };
        self.queue_sync(record, io);
    }

    fn queue_sync(&mut self, record: SyncConn, io: &mut impl PacketIo<P>) {
        if io.sync_out(record) {
            bump(&self.counters.sync_queued, 1);
        } else {
            bump(&self.counters.sync_ring_full, 1);
        }
    }

    /// The record of the persistence template `conn` was made through:
    /// the client network, the VIP and service port, the real, the
    /// service's persistence timeout.
    fn template_record(&self, conn: &Conn) -> Option<SyncConn> {
        let template = self.templates.get(conn.template);
        let s = self.snapshot.service_index(conn.service_id)?;
        let service = &self.snapshot.services[s];
        let vport = match service.mark {
            Some(_) => conn.vport,
            None => service.port,
        };
        Some(SyncConn {
            protocol: conn.proto,
            flags: flags::TEMPLATE | flags::NO_CPORT | forward_flags(conn.forward),
            state: 0,
            caddr: template.key.client_net,
            cport: 0,
            vaddr: conn.vip,
            vport,
            daddr: conn.real,
            dport: conn.real_port,
            fwmark: 0,
            timeout: service.persistent.unwrap_or(0),
            seq: None,
            local: None,
        })
    }

    /// Installs a connection (or template) a backup sync daemon received,
    /// bound to this director's own service and real; updates it if it is
    /// tracked already. Counted by outcome.
    pub fn install_synced(&mut self, record: &SyncConn) {
        let snapshot = Arc::clone(&self.snapshot);
        let bound = snapshot
            .service(record.protocol, record.vaddr, record.vport)
            .map(|s| s as usize)
            .and_then(|s| {
                let reals = &snapshot.services[s].reals;
                reals
                    .iter()
                    .position(|r| {
                        r.address == record.daddr && r.port_for(record.vport) == record.dport
                    })
                    .map(|r| (s, r))
            });
        let Some((s, r)) = bound else {
            bump(&self.counters.sync_unbound, 1);
            return;
        };
        if record.flags & flags::TEMPLATE != 0 {
            self.install_template(s, r, record);
            return;
        }
        let service = &snapshot.services[s];
        let real = &service.reals[r];
        let local = match (real.forward, record.local) {
            (Forward::FullNat, Some(local)) => local,
            // A kernel master has no local address to send.
            (Forward::FullNat, None) => {
                bump(&self.counters.sync_unbound, 1);
                return;
            }
            _ => (record.caddr, record.cport),
        };
        let state = if record.protocol == PROTO_TCP {
            TcpState::ALL
                .get(usize::from(record.state))
                .copied()
                .unwrap_or(TcpState::None)
        } else {
            TcpState::None
        };
        let timeout = match record.timeout {
            0 if record.protocol == PROTO_TCP => snapshot.timeouts.tcp(state),
            0 => snapshot.timeouts.udp(),
            t => t,
        };
        let key = ConnKey {
            proto: record.protocol,
            src: record.caddr,
            src_port: record.cport,
            dst: record.vaddr,
            dst_port: record.vport,
        };
        if let Some((id, Direction::Input)) = self.conns.lookup(&key) {
            let conn = self.conns.get_mut(id);
            let (was_active, real_id) = (conn.is_active(), conn.real_id);
            conn.state = state;
            conn.sync.synced_state = state;
            let is_active = conn.is_active();
            if was_active != is_active {
                let delta = if is_active { 1 } else { -1 };
                self.adjust_load(real_id, delta, -delta);
            }
            self.conns.touch(id, self.now, timeout);
            bump(&self.counters.sync_updated, 1);
            return;
        }
        let template = self.synced_template_slot(s, record.protocol, record.caddr, record.vaddr);
        let conn = Conn {
            proto: record.protocol,
            client: record.caddr,
            client_port: record.cport,
            vip: record.vaddr,
            vport: record.vport,
            real: real.address,
            real_port: record.dport,
            local: local.0,
            local_port: local.1,
            forward: real.forward,
            service_id: service.id,
            real_id: real.id,
            template,
            state,
            expires: 0,
            sync: SyncMark {
                in_pkts: 0,
                synced_state: state,
            },
        };
        match self.conns.insert(conn, self.now, timeout) {
            Ok(_) => {
                self.bind(&conn, real.thresholds);
                bump(&self.counters.sync_installed, 1);
            }
            Err(InsertError::TableFull) => bump(&self.counters.sync_table_full, 1),
            // Its reply key is another connection's.
            Err(InsertError::KeyExists) => bump(&self.counters.sync_unbound, 1),
        }
    }

    /// The template key service `s` files a client `caddr` of `vip` under.
    fn template_key(&self, s: usize, protocol: u8, caddr: Ipv4Addr, vip: Ipv4Addr) -> TemplateKey {
        let service = &self.snapshot.services[s];
        let (protocol, vip) = match service.mark {
            Some(_) => (0, Ipv4Addr::UNSPECIFIED),
            None => (protocol, vip),
        };
        TemplateKey {
            protocol,
            client_net: Ipv4Addr::from(u32::from(caddr) & u32::from(service.netmask)),
            vip,
            vport: service.port,
            service_id: service.id,
        }
    }

    /// The slot of the persistence template a synced connection of service
    /// `s` belongs to, if the service is persistent and it was synced.
    fn synced_template_slot(&self, s: usize, protocol: u8, caddr: Ipv4Addr, vip: Ipv4Addr) -> u32 {
        if self.snapshot.services[s].persistent.is_none() {
            return u32::MAX;
        }
        self.templates
            .lookup(&self.template_key(s, protocol, caddr, vip))
            .unwrap_or(u32::MAX)
    }

    /// Installs (or re-arms) a synced persistence template of service `s`
    /// to its real `r`.
    fn install_template(&mut self, s: usize, r: usize, record: &SyncConn) {
        let service = &self.snapshot.services[s];
        if service.persistent.is_none() {
            bump(&self.counters.sync_unbound, 1);
            return;
        }
        let real_id = service.reals[r].id;
        let timeout = match record.timeout {
            0 => service.persistent.unwrap_or(0),
            t => t,
        };
        let key = self.template_key(s, record.protocol, record.caddr, record.vaddr);
        let expires = self.now.saturating_add(timeout);
        match self.templates.lookup(&key) {
            Some(slot) if self.templates.get(slot).real_id == real_id => {
                self.templates.touch(slot, expires);
                bump(&self.counters.sync_updated, 1);
            }
            found => {
                if let Some(slot) = found {
                    // The master moved the client to another real.
                    let old = self.templates.get(slot).real_id;
                    self.templates.remove(slot);
                    self.count_persist(old, -1);
                }
                match self.templates.insert(key, real_id, expires) {
                    Some(_) => {
                        self.count_persist(real_id, 1);
                        bump(&self.counters.sync_installed, 1);
                    }
                    None => bump(&self.counters.sync_table_full, 1),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(proto: u8, state: TcpState, in_pkts: u8, synced: TcpState) -> Conn {
        Conn {
            proto,
            client: Ipv4Addr::new(10, 0, 0, 2),
            client_port: 40000,
            vip: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
            real: Ipv4Addr::new(192, 168, 1, 2),
            real_port: 80,
            local: Ipv4Addr::new(10, 0, 0, 2),
            local_port: 40000,
            forward: Forward::Nat,
            service_id: 0,
            real_id: 0,
            template: u32::MAX,
            state,
            expires: 0,
            sync: SyncMark {
                in_pkts,
                synced_state: synced,
            },
        }
    }

    #[test]
    fn the_kernels_rules_on_when_a_connection_is_synced() {
        use TcpState::*;
        // ESTABLISHED: only on the threshold packet, changed or not.
        assert!(!sync_needed(&conn(6, Established, 2, None)));
        assert!(sync_needed(&conn(6, Established, 3, None)));
        assert!(sync_needed(&conn(6, Established, 3, Established)));
        assert!(!sync_needed(&conn(6, Established, 4, Established)));
        // Closing states: at once on entering them, then on the threshold.
        for state in [FinWait, Close, CloseWait, TimeWait] {
            assert!(sync_needed(&conn(6, state, 17, Established)), "{state:?}");
            assert!(!sync_needed(&conn(6, state, 17, state)), "{state:?}");
            assert!(sync_needed(&conn(6, state, 3, state)), "{state:?}");
        }
        // Never in the opening states.
        for state in [None, SynRecv, SynSent, SynAck, LastAck, Listen] {
            assert!(!sync_needed(&conn(6, state, 3, Established)), "{state:?}");
        }
        // UDP: the threshold packet of every period.
        assert!(sync_needed(&conn(17, None, 3, None)));
        assert!(!sync_needed(&conn(17, None, 4, None)));
    }
}
