//! The connection path: a TCP or UDP packet this worker owns belongs to a
//! tracked connection (found in either direction), starts a new one, or is
//! scheduled on its own (one-packet scheduling). TCP connections move
//! through IPVS's state table (REFERENCE.md §3), which sets their timers.
//!
//! A new TCP connection starts only with a SYN without RST; a SYN that
//! reuses the tuple of a connection in TIME_WAIT or CLOSE ends that one and
//! schedules afresh (IPVS conn_reuse_mode). UDP datagrams always may start
//! one.

use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnId, ConnKey, KeyHash};
use crate::counters::{bump, decrement, DropReason};
use crate::tcp_state::{self, Direction, TcpState};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use rvs_control::model::Forward;

use super::classify::Flow;
use super::xmit::Carried;
use super::{Engine, PacketIo, ETH_LEN};

impl<P: PacketBuf> Engine<P> {
    /// A TCP or UDP packet this worker owns.
    pub(super) fn flow(
        &mut self,
        packet: P,
        in_port: u16,
        flow: &Flow,
        hash: KeyHash,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let key = &flow.key;
        if let Some((id, direction)) = self.conns.lookup_hashed(key, hash) {
            let conn = self.conns.get(id);
            let reused = direction == Direction::Input
                && key.proto == protocol::TCP
                && flow.is_opening_syn()
                && matches!(conn.state, TcpState::TimeWait | TcpState::Close);
            if !reused {
                // Verified by the client's second packet: a spoofed
                // source sends one, whether or not the real answers it.
                if direction == Direction::Input && self.conns.is_on_probation(id) {
                    self.conns.confirm(id);
                }
                return self.established(packet, id, direction, flow, io);
            }
            let conn = *conn;
            self.forget(&conn);
            self.conns.remove(id);
        }
        let Some(s) = self.snapshot.service(key.proto, key.dst, key.dst_port) else {
            if self.kernel_takes(in_port, key.dst) {
                return self.kernel_or(packet, in_port, DropReason::NoService, io);
            }
            if !self.snapshot.owns(key.dst) {
                return Err(DropReason::NotForUs);
            }
            if key.proto == protocol::UDP || flow.is_opening_syn() {
                self.reject(&packet, flow, io);
            }
            return Err(DropReason::NoService);
        };
        let s = s as usize;
        if !self.snapshot.holds(key.dst) {
            return Err(DropReason::NotHeld);
        }
        if self.snapshot.is_martian(key.src) {
            return Err(DropReason::Martian);
        }
        if !transport_checksum_valid(&packet) {
            return Err(DropReason::BadL4Checksum);
        }
        if self.snapshot.services[s].one_packet {
            return self.one_packet(packet, s, key, io);
        }
        let id = self.new_conn(s, flow)?;
        self.established(packet, id, Direction::Input, flow, io)
    }

    /// A packet of tracked connection `id`, travelling in `direction`.
    fn established(
        &mut self,
        packet: P,
        id: ConnId,
        direction: Direction,
        flow: &Flow,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let conn = *self.conns.get(id);
        if conn.proto == protocol::TCP {
            self.track_tcp(id, state_table(conn.forward, direction), flow);
        } else {
            self.conns.touch(id, self.now, self.snapshot.timeouts.udp());
        }
        if direction == Direction::Input {
            self.sync_after_input(id, io);
        }
        self.count_real(&conn, direction == Direction::Input, packet.len());
        self.xmit(packet, &conn, direction, Carried::Packet, io)
    }

    /// Schedules and records a new connection of service `s` for `flow` (a
    /// client → VIP packet).
    fn new_conn(&mut self, s: usize, flow: &Flow) -> Result<ConnId, DropReason> {
        let key = &flow.key;
        if key.proto == protocol::TCP && (!flow.syn() || flow.rst()) {
            return Err(DropReason::NoConn);
        }
        let (real_index, template) = self.choose_real(s, key)?;
        let snapshot = Arc::clone(&self.snapshot);
        let real = &snapshot.services[s].reals[real_index];
        let real_port = real.port_for(key.dst_port);
        let local = if real.forward == Forward::FullNat {
            self.local_address(s, key.proto, real.address, real_port)
                .ok_or(DropReason::LaddrExhausted)?
        } else {
            (key.src, key.src_port)
        };
        let (state, timeout) = if key.proto == protocol::TCP {
            let table = state_table(real.forward, Direction::Input);
            let state = tcp_state::transition(
                TcpState::None,
                table,
                flow.syn(),
                flow.fin(),
                flow.ack(),
                flow.rst(),
            );
            (state, snapshot.timeouts.tcp(state))
        } else {
            (TcpState::None, snapshot.timeouts.udp())
        };
        let conn = Conn {
            template,
            state,
            ..self.conn_to(s, real_index, key, local)
        };
        // On probation until verified: a flood of one-packet flows evicts
        // its own kind, never a verified conn (see conn.rs).
        let now = self.now;
        let (conns, mut holds) = self.conns_and_holds();
        let mut evicted = 0;
        let id = conns
            .insert_on_probation(conn, now, timeout, |old| {
                holds.release(old);
                evicted += 1;
            })
            .map_err(|_| DropReason::ConnTableFull)?;
        if evicted > 0 {
            bump(&self.counters.conns_evicted, evicted);
            decrement(&self.counters.conns_current, evicted);
        }
        self.bind(&conn, real.thresholds);
        Ok(id)
    }

    /// One-packet scheduling: a datagram scheduled on its own and forwarded
    /// like the first packet of a connection, of which nothing is kept (IPVS
    /// `-o`; meant for DR/TUN UDP services). The client's own address stands
    /// for the local one, so that FullNAT rewrites only the destination.
    fn one_packet(
        &mut self,
        packet: P,
        s: usize,
        key: &ConnKey,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (real_index, _) = self.choose_real(s, key)?;
        let conn = self.conn_to(s, real_index, key, (key.src, key.src_port));
        if let Some(c) = self.real_counters.get(conn.real_id as usize) {
            bump(&c.conns, 1);
            bump(&c.in_packets, 1);
            bump(&c.in_bytes, packet.len() as u64);
        }
        self.xmit(packet, &conn, Direction::Input, Carried::Packet, io)
    }

    /// A connection of service `s` from `key`'s client to real `real_index`,
    /// from local address `local`: no template, no state yet.
    fn conn_to(
        &self,
        s: usize,
        real_index: usize,
        key: &ConnKey,
        local: (std::net::Ipv4Addr, u16),
    ) -> Conn {
        let service = &self.snapshot.services[s];
        let real = &service.reals[real_index];
        Conn {
            proto: key.proto,
            client: key.src,
            client_port: key.src_port,
            vip: key.dst,
            vport: key.dst_port,
            real: real.address,
            real_port: real.port_for(key.dst_port),
            local: local.0,
            local_port: local.1,
            forward: real.forward,
            service_id: service.id,
            real_id: real.id,
            template: u32::MAX,
            state: TcpState::None,
            expires: 0,
            sync: Default::default(),
        }
    }

    /// Moves a TCP connection through the IPVS state table `table` and
    /// re-arms its timer; keeps the active/inactive counts schedulers read in
    /// step.
    fn track_tcp(&mut self, id: ConnId, table: Direction, flow: &Flow) {
        let conn = self.conns.get_mut(id);
        let old = conn.state;
        let new = tcp_state::transition(old, table, flow.syn(), flow.fin(), flow.ack(), flow.rst());
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

/// Whether the TCP or UDP checksum of `packet` (a frame that classified as
/// a flow) is right; a UDP datagram without one passes. Checked before a
/// packet may start a connection, where a NIC without checksum offload
/// would otherwise let a corrupt one in; established packets are not
/// summed again (their checksums are patched, never broken, by rvs).
fn transport_checksum_valid<P: PacketBuf>(packet: &P) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..]) else {
        return false;
    };
    let (src, dst) = (ip.src(), ip.dst());
    match ip.protocol() {
        protocol::TCP => {
            TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.verify_checksum(src, dst))
        }
        _ => UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.verify_checksum(src, dst)),
    }
}

/// The half of IPVS's state table a packet in `direction` moves a connection
/// of mode `forward` through: from the client, connections whose replies
/// bypass rvs (DR, TUN) use the input-only half.
fn state_table(forward: Forward, direction: Direction) -> Direction {
    match direction {
        Direction::Input if !forward.replies_return() => Direction::InputOnly,
        other => other,
    }
}
