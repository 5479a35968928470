//! The packet path of one worker, run to completion per packet: parse →
//! classify → connection lookup → schedule if new → rewrite → hand to TX.
//!
//! It is generic over the packet buffer, so the same code runs on DPDK mbufs
//! in `rvsd` and on [`crate::buf::VecBuf`] in tests and in-memory benchmarks.
//! Per packet it does no allocation, takes no lock, makes no syscall and
//! writes no log line: every outcome is a counter bump, and a dropped packet
//! is a [`DropReason`].
//!
//! NAT (IPVS `-m`): client → VIP:vport becomes client → real:rport (the
//! destination is rewritten, the port mapped); real → client comes back
//! through the director and leaves as VIP:vport → client. Both directions find
//! the connection in the worker's [`ConnTable`]. As in IPVS, the director acts
//! as a host rewriting addresses: the TTL is left alone.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnKey, ConnTable};
use crate::counters::{bump, DropReason, RealCounters, WorkerCounters};
use crate::neigh::{Lookup, Neighbours};
use crate::sched::{RealLoad, Scheduler};
use crate::snapshot::Snapshot;
use crate::tcp_state::{self, Direction, TcpState};
use crate::wire::arp::{self, ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;

const ETH_LEN: usize = 14;

/// Where the packet path sends packets and gets fresh buffers.
pub trait PacketIo<P> {
    /// Queues `packet` for transmission on port `port` (config index).
    fn send(&mut self, port: u16, packet: P);
    /// A fresh, empty buffer (for ARP requests); `None` when none is left.
    fn alloc(&mut self) -> Option<P>;
}

/// The L4 facts of a TCP or UDP packet the path needs.
#[derive(Clone, Copy)]
struct L4 {
    src_port: u16,
    dst_port: u16,
    syn: bool,
    fin: bool,
    ack: bool,
    rst: bool,
}

/// Engine settings that do not come from the snapshot.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    /// Tracked connections.
    pub connections: usize,
    /// Packets held waiting for ARP.
    pub arp_pending: usize,
    /// Connections examined per expiry pass.
    pub expire_budget: usize,
}

/// One worker's packet path and the state it owns.
pub struct Engine<P> {
    snapshot: Arc<Snapshot>,
    conns: ConnTable,
    schedulers: Vec<Scheduler>,
    /// Per service, per real (list order): what schedulers read.
    loads: Vec<Vec<RealLoad>>,
    neighbours: Neighbours<P>,
    counters: Arc<WorkerCounters>,
    real_counters: Arc<[RealCounters]>,
    expire_budget: usize,
    now: u32,
    last_tick: u32,
}

impl<P: PacketBuf> Engine<P> {
    pub fn new(
        snapshot: Arc<Snapshot>,
        limits: EngineLimits,
        counters: Arc<WorkerCounters>,
        real_counters: Arc<[RealCounters]>,
    ) -> Self {
        let loads: Vec<Vec<RealLoad>> = snapshot
            .services
            .iter()
            .map(|s| {
                s.reals
                    .iter()
                    .map(|r| RealLoad {
                        weight: r.weight,
                        active: 0,
                        inactive: 0,
                        overloaded: false,
                    })
                    .collect()
            })
            .collect();
        let schedulers = snapshot
            .services
            .iter()
            .zip(&loads)
            .map(|(s, l)| Scheduler::new(s.scheduler, l))
            .collect();
        Engine {
            snapshot,
            conns: ConnTable::new(limits.connections),
            schedulers,
            loads,
            neighbours: Neighbours::new(limits.arp_pending),
            counters,
            real_counters,
            expire_budget: limits.expire_budget,
            now: 0,
            last_tick: 0,
        }
    }

    /// Sets the coarse clock (seconds), once per burst.
    #[inline]
    pub fn set_now(&mut self, now: u32) {
        self.now = now;
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn connections(&self) -> &ConnTable {
        &self.conns
    }

    pub fn neighbours(&self) -> &Neighbours<P> {
        &self.neighbours
    }

    /// Processes one received packet from port `in_port` (config index).
    #[inline]
    pub fn handle(&mut self, packet: P, in_port: u16, io: &mut impl PacketIo<P>) {
        bump(&self.counters.rx_packets, 1);
        bump(&self.counters.rx_bytes, packet.len() as u64);
        if let Err(reason) = self.classify(packet, in_port, io) {
            self.counters.count_drop(reason);
        }
    }

    fn classify(
        &mut self,
        packet: P,
        in_port: u16,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let Some(port) = self.snapshot.ports.get(usize::from(in_port)) else {
            return Err(DropReason::NotForUs);
        };
        let frame = EthernetFrame::new_checked(packet.data()).map_err(|_| DropReason::Malformed)?;
        let (dst, src) = (frame.dst(), frame.src());
        if src == port.mac {
            // Our own transmission seen again (af_packet on a shared queue).
            return Err(DropReason::NotForUs);
        }
        let ethertype = frame.ethertype();
        if ethertype == EtherType::ARP {
            if dst != port.mac && !dst.is_broadcast() {
                return Err(DropReason::NotForUs);
            }
            return self.arp(packet, in_port, io);
        }
        if dst != port.mac {
            return Err(DropReason::NotForUs);
        }
        if ethertype == EtherType::IPV4 {
            self.ipv4(packet, in_port, src, io)
        } else {
            Err(DropReason::Unsupported)
        }
    }

    fn arp(
        &mut self,
        mut packet: P,
        in_port: u16,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let data = packet.data().get(ETH_LEN..).ok_or(DropReason::Malformed)?;
        let request = ArpPacket::new_checked(data).map_err(|e| match e.kind {
            crate::wire::ErrorKind::Unsupported => DropReason::Unsupported,
            _ => DropReason::Malformed,
        })?;
        let operation = request.operation();
        let (sender_mac, sender_ip, target_ip) = (
            request.sender_mac(),
            request.sender_ip(),
            request.target_ip(),
        );
        let snapshot = Arc::clone(&self.snapshot);
        let for_us = snapshot.answers_arp(in_port, target_ip);
        let port_mac = snapshot.ports[usize::from(in_port)].mac;

        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            let waiting = self
                .neighbours
                .learn(sender_ip, sender_mac, in_port, self.now, for_us);
            if waiting {
                let counters = &self.counters;
                self.neighbours.release(sender_ip, |port, mac, held| {
                    let src = snapshot.ports[usize::from(port)].mac;
                    transmit(counters, io, port, src, mac, held);
                });
            }
        }
        if operation != ArpOperation::REQUEST || !for_us {
            return Err(DropReason::NotForUs);
        }
        let data = packet.data_mut();
        {
            let mut reply =
                ArpPacket::new_checked(&mut data[ETH_LEN..]).map_err(|_| DropReason::Malformed)?;
            reply.set_operation(ArpOperation::REPLY);
            reply.set_target_mac(sender_mac);
            reply.set_target_ip(sender_ip);
            reply.set_sender_mac(port_mac);
            reply.set_sender_ip(target_ip);
        }
        bump(&self.counters.arp_replies_sent, 1);
        transmit(&self.counters, io, in_port, port_mac, sender_mac, packet);
        Ok(())
    }

    fn ipv4(
        &mut self,
        mut packet: P,
        in_port: u16,
        src_mac: MacAddr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let l3 = &packet.data()[ETH_LEN..];
        let ip = Ipv4Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        if ip.is_fragment() {
            return Err(DropReason::IpFragment);
        }
        let (src, dst, proto) = (ip.src(), ip.dst(), ip.protocol());
        let l4 = match proto {
            protocol::TCP => {
                let tcp =
                    TcpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
                let flags = tcp.flags();
                Some(L4 {
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    syn: flags.contains(crate::wire::tcp::TcpFlags::SYN),
                    fin: flags.contains(crate::wire::tcp::TcpFlags::FIN),
                    ack: flags.contains(crate::wire::tcp::TcpFlags::ACK),
                    rst: flags.contains(crate::wire::tcp::TcpFlags::RST),
                })
            }
            protocol::UDP => {
                let udp =
                    UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
                Some(L4 {
                    src_port: udp.src_port(),
                    dst_port: udp.dst_port(),
                    syn: false,
                    fin: false,
                    ack: false,
                    rst: false,
                })
            }
            _ => None,
        };

        let snapshot = &self.snapshot;
        let local = snapshot.is_vip(dst) || snapshot.is_port_address(dst);
        match (l4, local) {
            (Some(l4), true) if snapshot.is_vip(dst) => {
                self.nat_in(packet, proto, src, dst, l4, io)
            }
            (Some(l4), false) => self.nat_out(packet, proto, src, dst, l4, io),
            (Some(_), true) => Err(DropReason::NoService),
            (None, true) if proto == protocol::ICMP => {
                self.icmp_local(&mut packet)?;
                let port_mac = self.snapshot.ports[usize::from(in_port)].mac;
                bump(&self.counters.icmp_echo_replies, 1);
                transmit(&self.counters, io, in_port, port_mac, src_mac, packet);
                Ok(())
            }
            (None, true) => Err(DropReason::Unsupported),
            (None, false) => Err(DropReason::NotForUs),
        }
    }

    /// Turns an echo request to an owned address into its reply, in place.
    fn icmp_local(&mut self, packet: &mut P) -> Result<(), DropReason> {
        let data = &mut packet.data_mut()[ETH_LEN..];
        let mut ip = Ipv4Packet::new_checked(&mut *data).map_err(|_| DropReason::Malformed)?;
        {
            let message =
                IcmpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
            if message.msg_type() != icmp::ECHO_REQUEST {
                return Err(DropReason::Unsupported);
            }
            if !message.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
        }
        let (src, dst) = (ip.src(), ip.dst());
        // Swapping the two addresses leaves the header checksum unchanged.
        ip.set_src(dst);
        ip.set_dst(src);
        let mut message =
            IcmpPacket::new_checked(ip.payload_mut()).map_err(|_| DropReason::Malformed)?;
        message.make_echo_reply();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn nat_in(
        &mut self,
        mut packet: P,
        proto: u8,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        l4: L4,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let key = ConnKey {
            proto,
            src: client,
            src_port: l4.src_port,
            dst: vip,
            dst_port: l4.dst_port,
        };
        let now = self.now;
        let mut found = self.conns.lookup(&key).map(|(id, _)| id);
        if let Some(id) = found {
            // A new SYN on a finished connection reuses the tuple: the old
            // connection is over (IPVS conn_reuse_mode).
            let conn = self.conns.get(id);
            if proto == protocol::TCP
                && l4.syn
                && !l4.ack
                && !l4.rst
                && matches!(conn.state, TcpState::TimeWait | TcpState::Close)
            {
                let conn = *conn;
                self.forget(&conn);
                self.conns.remove(id);
                found = None;
            }
        }
        let id = match found {
            Some(id) => id,
            None => self.new_conn(key, l4)?,
        };

        let conn = self.conns.get(id);
        let (real, real_port, service, real_index) =
            (conn.real, conn.real_port, conn.service, conn.real_index);
        if proto == protocol::TCP {
            self.track_tcp(id, Direction::Input, l4);
        } else {
            self.conns.touch(id, now, self.snapshot.timeouts.udp());
        }

        rewrite_dst(&mut packet, proto, vip, real, l4.dst_port, real_port)?;
        self.count_real(service, real_index, true, packet.len());
        self.forward(packet, real, io)
    }

    fn nat_out(
        &mut self,
        mut packet: P,
        proto: u8,
        real: Ipv4Addr,
        client: Ipv4Addr,
        l4: L4,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let key = ConnKey {
            proto,
            src: real,
            src_port: l4.src_port,
            dst: client,
            dst_port: l4.dst_port,
        };
        let id = match self.conns.lookup(&key) {
            Some((id, Direction::Output)) => id,
            _ => return Err(DropReason::NotForUs),
        };
        let conn = self.conns.get(id);
        let (vip, vport, service, real_index) =
            (conn.vip, conn.vport, conn.service, conn.real_index);
        if proto == protocol::TCP {
            self.track_tcp(id, Direction::Output, l4);
        } else {
            self.conns.touch(id, self.now, self.snapshot.timeouts.udp());
        }
        rewrite_src(&mut packet, proto, real, vip, l4.src_port, vport)?;
        self.count_real(service, real_index, false, packet.len());
        self.forward(packet, client, io)
    }

    /// Schedules and records a new connection for `key` (a client → VIP packet).
    fn new_conn(&mut self, key: ConnKey, l4: L4) -> Result<crate::conn::ConnId, DropReason> {
        if key.proto == protocol::TCP && (!l4.syn || l4.rst) {
            return Err(DropReason::NoConn);
        }
        let service = self
            .snapshot
            .service(key.proto, key.dst, key.dst_port)
            .ok_or(DropReason::NoService)?;
        let s = service as usize;
        let real_index = self.schedulers[s]
            .pick(&self.loads[s])
            .ok_or(DropReason::NoReal)?;
        let real = &self.snapshot.services[s].reals[real_index];
        let (state, timeout) = if key.proto == protocol::TCP {
            let state = tcp_state::transition(
                TcpState::None,
                Direction::Input,
                l4.syn,
                l4.fin,
                l4.ack,
                l4.rst,
            );
            (state, self.snapshot.timeouts.tcp(state))
        } else {
            (TcpState::Established, self.snapshot.timeouts.udp())
        };
        let conn = Conn {
            proto: key.proto,
            client: key.src,
            client_port: key.src_port,
            vip: key.dst,
            vport: key.dst_port,
            real: real.address,
            real_port: real.port,
            service,
            real_index: real_index as u32,
            state,
            expires: 0,
        };
        let id = self
            .conns
            .insert(conn, self.now, timeout)
            .map_err(|_| DropReason::ConnTableFull)?;
        let load = &mut self.loads[s][real_index];
        if key.proto == protocol::TCP && state.is_active() {
            load.active += 1;
        } else {
            load.inactive += 1;
        }
        bump(&self.counters.conns_created, 1);
        bump(&self.counters.conns_current, 1);
        if let Some(c) = self.real_counters.get(real.global_index as usize) {
            bump(&c.conns, 1);
        }
        Ok(id)
    }

    /// Moves a TCP connection through the IPVS state table and re-arms its
    /// timer; keeps the active/inactive counts schedulers read in step.
    fn track_tcp(&mut self, id: crate::conn::ConnId, direction: Direction, l4: L4) {
        let conn = self.conns.get_mut(id);
        let old = conn.state;
        let new = tcp_state::transition(old, direction, l4.syn, l4.fin, l4.ack, l4.rst);
        conn.state = new;
        let (s, r) = (conn.service as usize, conn.real_index as usize);
        if old.is_active() != new.is_active() {
            if let Some(load) = self.loads.get_mut(s).and_then(|l| l.get_mut(r)) {
                if new.is_active() {
                    load.inactive = load.inactive.saturating_sub(1);
                    load.active += 1;
                } else {
                    load.active = load.active.saturating_sub(1);
                    load.inactive += 1;
                }
            }
        }
        let timeout = self.snapshot.timeouts.tcp(new);
        self.conns.touch(id, self.now, timeout);
    }

    /// Takes a connection that is going away out of the scheduler counts.
    fn forget(&mut self, conn: &Conn) {
        forget_load(&mut self.loads, conn);
        bump(&self.counters.conns_expired, 1);
        let current = &self.counters.conns_current;
        current.store(
            current
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    #[inline]
    fn count_real(&self, service: u32, real_index: u32, inbound: bool, bytes: usize) {
        let Some(real) = self
            .snapshot
            .services
            .get(service as usize)
            .and_then(|s| s.reals.get(real_index as usize))
        else {
            return;
        };
        if let Some(c) = self.real_counters.get(real.global_index as usize) {
            if inbound {
                bump(&c.in_packets, 1);
                bump(&c.in_bytes, bytes as u64);
            } else {
                bump(&c.out_packets, 1);
                bump(&c.out_bytes, bytes as u64);
            }
        }
    }

    /// Routes `packet` toward `dst`: straight out when the next hop's MAC is
    /// known, else held while ARP resolves it.
    fn forward(
        &mut self,
        packet: P,
        dst: Ipv4Addr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (port, next_hop) = self.snapshot.route(dst).ok_or(DropReason::NoRoute)?;
        let port_mac = self.snapshot.ports[usize::from(port)].mac;
        match self.neighbours.lookup(next_hop, port, self.now) {
            Lookup::Known { mac, refresh } => {
                transmit(&self.counters, io, port, port_mac, mac, packet);
                if refresh {
                    self.arp_request(next_hop, port, io);
                }
                Ok(())
            }
            Lookup::Unknown { probe } => {
                let held = self.neighbours.hold(next_hop, port, self.now, packet);
                if probe {
                    self.arp_request(next_hop, port, io);
                }
                held.map_err(|_| DropReason::ArpPendingFull)
            }
        }
    }

    /// Broadcasts "who has `target`" on `port`.
    fn arp_request(&mut self, target: Ipv4Addr, port: u16, io: &mut impl PacketIo<P>) {
        let Some(source) = self.snapshot.source_address(port, target) else {
            return;
        };
        let Some(mut packet) = io.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        let port_mac = self.snapshot.ports[usize::from(port)].mac;
        if !packet.append(ETH_LEN + ArpPacket::<&[u8]>::LEN) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        let data = packet.data_mut();
        let written = arp::emit(
            &mut data[ETH_LEN..],
            ArpOperation::REQUEST,
            port_mac,
            source,
            MacAddr::ZERO,
            target,
        );
        match (written, EthernetFrame::new_checked(&mut *data)) {
            (Ok(()), Ok(mut frame)) => frame.set_ethertype(EtherType::ARP),
            _ => {
                self.counters.count_drop(DropReason::NoBuffer);
                return;
            }
        }
        bump(&self.counters.arp_requests_sent, 1);
        transmit(
            &self.counters,
            io,
            port,
            port_mac,
            MacAddr::BROADCAST,
            packet,
        );
    }

    /// Housekeeping, called about every millisecond by the worker: expires
    /// connections (bounded work per call) and, once a second, ages packets
    /// waiting for ARP and re-sends requests.
    pub fn tick(&mut self, io: &mut impl PacketIo<P>) {
        let now = self.now;
        let Engine {
            conns,
            loads,
            counters,
            expire_budget,
            ..
        } = self;
        let expired = conns.expire(now, *expire_budget, |conn| forget_load(loads, conn));
        if expired > 0 {
            bump(&counters.conns_expired, expired as u64);
            let current = &counters.conns_current;
            current.store(
                current
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .saturating_sub(expired as u64),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if now == self.last_tick {
            return;
        }
        self.last_tick = now;
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
    }
}

fn forget_load(loads: &mut [Vec<RealLoad>], conn: &Conn) {
    let Some(load) = loads
        .get_mut(conn.service as usize)
        .and_then(|l| l.get_mut(conn.real_index as usize))
    else {
        return;
    };
    if conn.proto == protocol::TCP && conn.state.is_active() {
        load.active = load.active.saturating_sub(1);
    } else {
        load.inactive = load.inactive.saturating_sub(1);
    }
}

/// Sets the Ethernet addresses and hands the packet to TX, counting it.
#[inline]
fn transmit<P: PacketBuf>(
    counters: &WorkerCounters,
    io: &mut impl PacketIo<P>,
    port: u16,
    src: MacAddr,
    dst: MacAddr,
    mut packet: P,
) {
    if let Ok(mut frame) = EthernetFrame::new_checked(packet.data_mut()) {
        frame.set_src(src);
        frame.set_dst(dst);
    }
    bump(&counters.tx_packets, 1);
    bump(&counters.tx_bytes, packet.len() as u64);
    io.send(port, packet);
}

/// NAT inbound: destination `vip:vport` becomes `real:real_port`.
fn rewrite_dst<P: PacketBuf>(
    packet: &mut P,
    proto: u8,
    vip: Ipv4Addr,
    real: Ipv4Addr,
    vport: u16,
    real_port: u16,
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut ip = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    ip.set_dst_incremental(real);
    let l4 = ip.payload_mut();
    match proto {
        protocol::TCP => {
            let mut tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            tcp.update_checksum_for_addr(vip, real);
            if vport != real_port {
                tcp.set_dst_port_incremental(real_port);
            }
        }
        _ => {
            let mut udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            udp.update_checksum_for_addr(vip, real);
            if vport != real_port {
                udp.set_dst_port_incremental(real_port);
            }
        }
    }
    Ok(())
}

/// NAT outbound: source `real:real_port` becomes `vip:vport`.
fn rewrite_src<P: PacketBuf>(
    packet: &mut P,
    proto: u8,
    real: Ipv4Addr,
    vip: Ipv4Addr,
    real_port: u16,
    vport: u16,
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut ip = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    ip.set_src_incremental(vip);
    let l4 = ip.payload_mut();
    match proto {
        protocol::TCP => {
            let mut tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            tcp.update_checksum_for_addr(real, vip);
            if vport != real_port {
                tcp.set_src_port_incremental(vport);
            }
        }
        _ => {
            let mut udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            udp.update_checksum_for_addr(real, vip);
            if vport != real_port {
                udp.set_src_port_incremental(vport);
            }
        }
    }
    Ok(())
}
