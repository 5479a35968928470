//! The connection path: lookup, new connections, one-packet scheduling and
//! the TCP state of tracked connections.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnId, ConnKey};
use crate::counters::{bump, DropReason};
use crate::snapshot::ForwardMode;
use crate::tcp_state::{self, Direction, TcpState};
use crate::wire::ipv4::protocol;

use super::*;

impl<P: PacketBuf> Engine<P> {
    /// A TCP or UDP packet this worker owns.
    pub(super) fn l4(
        &mut self,
        packet: P,
        proto: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        l4: L4,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let key = ConnKey {
            proto,
            src,
            src_port: l4.src_port,
            dst,
            dst_port: l4.dst_port,
        };
        if let Some((id, direction)) = self.conns.lookup(&key) {
            let conn = self.conns.get(id);
            // A new SYN on a finished connection reuses the tuple: the old
            // connection is over (IPVS conn_reuse_mode).
            let reused = direction == Direction::Input
                && proto == protocol::TCP
                && l4.syn
                && !l4.ack
                && !l4.rst
                && matches!(conn.state, TcpState::TimeWait | TcpState::Close);
            if !reused {
                return self.established(packet, id, direction, l4, io);
            }
            let conn = *conn;
            self.forget(&conn);
            self.conns.remove(id);
        }
        if let Some(s) = self.snapshot.service(proto, dst, l4.dst_port) {
            let s = s as usize;
            if self.snapshot.services[s].one_packet {
                return self.one_packet(packet, s, key, io);
            }
            let id = self.new_conn(s, key, l4)?;
            return self.established(packet, id, Direction::Input, l4, io);
        }
        if self.snapshot.is_vip(dst) {
            return Err(DropReason::NoService);
        }
        if self.snapshot.is_port_address(dst) {
            Err(DropReason::NoService)
        } else {
            Err(DropReason::NotForUs)
        }
    }

    /// Forwards a packet of a tracked connection in `direction`.
    pub(super) fn established(
        &mut self,
        mut packet: P,
        id: ConnId,
        direction: Direction,
        l4: L4,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let conn = *self.conns.get(id);
        if conn.proto == protocol::TCP {
            let table = match direction {
                Direction::Input if !conn.forward.replies_return() => Direction::InputOnly,
                other => other,
            };
            self.track_tcp(id, table, l4);
        } else {
            self.conns.touch(id, self.now, self.snapshot.timeouts.udp());
        }
        let inbound = direction == Direction::Input;
        self.count_real(&conn, inbound, packet.len());
        match (inbound, conn.forward) {
            (true, ForwardMode::Nat) => {
                rewrite(&mut packet, None, Some((conn.real, conn.real_port)))?;
                self.forward(packet, conn.real, io)
            }
            (true, ForwardMode::FullNat) => {
                rewrite(
                    &mut packet,
                    Some((conn.local, conn.local_port)),
                    Some((conn.real, conn.real_port)),
                )?;
                self.forward(packet, conn.real, io)
            }
            (true, ForwardMode::Dr) => self.forward(packet, conn.real, io),
            (true, ForwardMode::Tun) => {
                self.encapsulate(&mut packet, conn.real, io)?;
                self.forward(packet, conn.real, io)
            }
            (false, ForwardMode::FullNat) => {
                rewrite(
                    &mut packet,
                    Some((conn.vip, conn.vport)),
                    Some((conn.client, conn.client_port)),
                )?;
                self.forward(packet, conn.client, io)
            }
            (false, _) => {
                rewrite(&mut packet, Some((conn.vip, conn.vport)), None)?;
                self.forward(packet, conn.client, io)
            }
        }
    }

    /// Schedules and records a new connection of service `s` for `key` (a
    /// client → VIP packet).
    pub(super) fn new_conn(
        &mut self,
        s: usize,
        key: ConnKey,
        l4: L4,
    ) -> Result<ConnId, DropReason> {
        if key.proto == protocol::TCP && (!l4.syn || l4.rst) {
            return Err(DropReason::NoConn);
        }
        let (real_index, template) = self.choose_real(s, &key)?;
        let snapshot = Arc::clone(&self.snapshot);
        let real = &snapshot.services[s].reals[real_index];
        // A port-zero service's reals serve the port the client asked for.
        let real_port = if real.port == 0 {
            key.dst_port
        } else {
            real.port
        };
        let (local, local_port) = if real.forward == ForwardMode::FullNat {
            self.local_address(s, key.proto, real.address, real_port)
                .ok_or(DropReason::LaddrExhausted)?
        } else {
            (key.src, key.src_port)
        };
        let (state, timeout) = if key.proto == protocol::TCP {
            let table = if real.forward.replies_return() {
                Direction::Input
            } else {
                Direction::InputOnly
            };
            let state =
                tcp_state::transition(TcpState::None, table, l4.syn, l4.fin, l4.ack, l4.rst);
            (state, snapshot.timeouts.tcp(state))
        } else {
            (TcpState::None, snapshot.timeouts.udp())
        };
        let conn = Conn {
            proto: key.proto,
            client: key.src,
            client_port: key.src_port,
            vip: key.dst,
            vport: key.dst_port,
            real: real.address,
            real_port,
            local,
            local_port,
            forward: real.forward,
            service_id: snapshot.services[s].id,
            real_id: real.id,
            template,
            state,
            expires: 0,
        };
        let id = self
            .conns
            .insert(conn, self.now, timeout)
            .map_err(|_| DropReason::ConnTableFull)?;
        if template != u32::MAX {
            self.templates.control(template);
        }
        if conn.is_active() {
            self.adjust_load(conn.real_id, 1, 0);
        } else {
            self.adjust_load(conn.real_id, 0, 1);
        }
        if real.thresholds.upper != 0 {
            let mut load = self.total_load(real.id);
            real.thresholds.after_bind(&mut load);
            if load.overloaded {
                self.book.set_overloaded(real.id, true);
            }
        }
        bump(&self.counters.conns_created, 1);
        bump(&self.counters.conns_current, 1);
        if let Some(c) = self.real_counters.get(real.id as usize) {
            bump(&c.conns, 1);
        }
        Ok(id)
    }

    /// One-packet scheduling: a datagram scheduled on its own, forwarded
    /// without a connection (IPVS `-o`; meant for DR/TUN UDP services).
    pub(super) fn one_packet(
        &mut self,
        mut packet: P,
        s: usize,
        key: ConnKey,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (real_index, _) = self.choose_real(s, &key)?;
        let snapshot = Arc::clone(&self.snapshot);
        let real = &snapshot.services[s].reals[real_index];
        let real_port = if real.port == 0 {
            key.dst_port
        } else {
            real.port
        };
        if let Some(c) = self.real_counters.get(real.id as usize) {
            bump(&c.conns, 1);
            bump(&c.in_packets, 1);
            bump(&c.in_bytes, packet.len() as u64);
        }
        match real.forward {
            ForwardMode::Dr => self.forward(packet, real.address, io),
            ForwardMode::Tun => {
                self.encapsulate(&mut packet, real.address, io)?;
                self.forward(packet, real.address, io)
            }
            ForwardMode::Nat | ForwardMode::FullNat => {
                rewrite(&mut packet, None, Some((real.address, real_port)))?;
                self.forward(packet, real.address, io)
            }
        }
    }

    /// Moves a TCP connection through the IPVS state table and re-arms its
    /// timer; keeps the active/inactive counts schedulers read in step.
    pub(super) fn track_tcp(&mut self, id: ConnId, direction: Direction, l4: L4) {
        let conn = self.conns.get_mut(id);
        let old = conn.state;
        let new = tcp_state::transition(old, direction, l4.syn, l4.fin, l4.ack, l4.rst);
        conn.state = new;
        let real_id = conn.real_id;
        if old.is_active() != new.is_active() {
            if new.is_active() {
                self.adjust_load(real_id, 1, -1);
            } else {
                self.adjust_load(real_id, -1, 1);
            }
        }
        let timeout = self.snapshot.timeouts.tcp(new);
        self.conns.touch(id, self.now, timeout);
    }
}
