//! The packet path of one worker, run to completion per packet: parse →
//! steer to the owning worker → connection lookup → schedule if new → rewrite
//! for the forwarding mode → hand to TX.
//!
//! It is generic over the packet buffer, so the same code runs on DPDK mbufs
//! in `rvsd` and on [`crate::buf::VecBuf`] in tests and in-memory benchmarks.
//! Per packet it does no allocation, takes no lock, makes no syscall and
//! writes no log line: every outcome is a counter bump, and a dropped packet
//! is a [`DropReason`].
//!
//! Forwarding modes (REFERENCE.md §1):
//! - NAT: client → VIP:vport becomes client → real:rport; the reply real →
//!   client comes back through rvs and leaves as VIP:vport → client.
//! - FullNAT: client → VIP:vport becomes LIP:lport → real:rport; the reply to
//!   LIP:lport leaves as VIP:vport → client.
//! - DR: only the Ethernet addresses change; the real answers the client.
//! - TUN: the packet is wrapped in an outer IPv4 header to the real (IPIP).
//!
//! As in IPVS, the director rewrites addresses as a host would: the TTL is
//! left alone.
//!
//! Steering: every TCP/UDP connection belongs to one worker, chosen from what
//! both directions share — the client address for packets the client sent
//! and NAT replies, the low bits of the local port for FullNAT replies
//! (each worker allocates only ports whose low bits are its index). A packet
//! that arrives at another worker's queue is handed to its owner through a
//! bounded ring ([`PacketIo::redirect`]).

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnId, ConnKey, ConnTable};
use crate::counters::{bump, DropReason, RealBook, RealCounters, WorkerCounters};
use crate::neigh::{Lookup, Neighbours};
use crate::persist::{TemplateKey, Templates};
use crate::sched::{Client, RealLoad, Scheduler, SchedulerKind};
use crate::snapshot::{ForwardMode, Purge, Snapshot};
use crate::tcp_state::{self, Direction, TcpState};
use crate::wire::arp::{self, ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use crate::wire::tcp::{TcpFlags, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::PortsMut;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
/// Most of the offending packet an ICMP error quotes (576-byte datagram).
const ICMP_QUOTE_MAX: usize = 576 - IPV4_LEN - 8;
/// Local ports probed for one new FullNAT connection before giving up.
const LADDR_PROBES: u32 = 64;

/// Where the packet path sends packets and gets fresh buffers.
pub trait PacketIo<P> {
    /// Queues `packet` for transmission on port `port` (config index).
    fn send(&mut self, port: u16, packet: P);
    /// A fresh, empty buffer (for ARP requests and ICMP errors); `None` when
    /// none is left.
    fn alloc(&mut self) -> Option<P>;
    /// Hands `packet` to worker `worker`, which owns its connection; gives
    /// the packet back when that worker's ring is full.
    fn redirect(&mut self, worker: u16, packet: P) -> Result<(), P>;
    /// Tells the other workers that `ip` is at `mac` behind `port` (ARP
    /// replies reach only one worker's queue).
    fn share_neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16);
}

/// A page of a worker's connection table, for listings.
#[derive(Clone, Debug, Default)]
pub struct ConnDump {
    /// (connection, seconds until it expires).
    pub entries: Vec<(Conn, u32)>,
    /// Table position to continue from; none: the end.
    pub next: Option<usize>,
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

/// Which worker this engine is, among how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerPlace {
    pub index: u16,
    pub count: u16,
}

impl WorkerPlace {
    pub const SINGLE: WorkerPlace = WorkerPlace { index: 0, count: 1 };

    /// Bits of a FullNAT local port that name its worker: ceil(log2 count).
    pub fn port_bits(self) -> u32 {
        u32::from(self.count.max(1))
            .next_power_of_two()
            .trailing_zeros()
    }

    /// The worker that owns the connections of client `addr`: all of a
    /// client's connections share one worker, so its persistence templates
    /// live in one place.
    #[inline]
    pub fn owner_of_client(self, addr: Ipv4Addr) -> u16 {
        let mixed = u32::from(addr).wrapping_mul(0x9e37_79b1);
        ((mixed >> 16) % u32::from(self.count.max(1))) as u16
    }
}

/// The share of the FullNAT port range one worker allocates from: ports
/// `base, base + stride, ...`, `count` of them.
#[derive(Clone, Copy, Debug)]
struct LocalPorts {
    base: u32,
    stride: u32,
    count: u32,
}

impl LocalPorts {
    fn new(snapshot: &Snapshot, place: WorkerPlace) -> Self {
        let stride = 1u32 << place.port_bits();
        let (min, max) = (
            u32::from(snapshot.lip_ports.min),
            u32::from(snapshot.lip_ports.max),
        );
        let index = u32::from(place.index);
        let base = min + (index + stride - min % stride) % stride;
        let count = if base > max {
            0
        } else {
            (max - base) / stride + 1
        };
        LocalPorts {
            base,
            stride,
            count,
        }
    }

    #[inline]
    fn port(&self, k: u32) -> u16 {
        (self.base + k * self.stride) as u16
    }
}

/// One worker's packet path and the state it owns.
pub struct Engine<P> {
    snapshot: Arc<Snapshot>,
    place: WorkerPlace,
    conns: ConnTable,
    schedulers: Vec<Scheduler>,
    /// Per service, per real (list order): what schedulers read.
    loads: Vec<Vec<RealLoad>>,
    neighbours: Neighbours<P>,
    counters: Arc<WorkerCounters>,
    /// Per-real counters of every worker and the shared overload flags.
    book: Arc<RealBook>,
    /// This worker's own per-real counters (its entry of `book`).
    real_counters: Arc<[RealCounters]>,
    templates: Templates,
    local_ports: LocalPorts,
    /// Next port to try, per local address (index in `Snapshot::lips`).
    lip_cursor: Vec<u32>,
    /// Round robin over a service's local addresses.
    lip_turn: usize,
    /// IPv4 identification of packets rvs originates (TUN outer headers).
    ident: u16,
    expire_budget: usize,
    /// Real ids whose connections are being ended, and the table position
    /// the sweep has reached.
    purging: Vec<Purge>,
    purge_at: usize,
    now: u32,
    last_tick: u32,
}

impl<P: PacketBuf> Engine<P> {
    pub fn new(
        snapshot: Arc<Snapshot>,
        place: WorkerPlace,
        limits: EngineLimits,
        counters: Arc<WorkerCounters>,
        book: Arc<RealBook>,
    ) -> Self {
        let real_counters = Arc::clone(&book.workers[usize::from(place.index)]);
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
            .map(|(s, l)| make_scheduler(s, l, place))
            .collect();
        Engine {
            local_ports: LocalPorts::new(&snapshot, place),
            lip_cursor: vec![0; snapshot.lips.len()],
            lip_turn: 0,
            ident: place.index.wrapping_mul(0x1000),
            place,
            conns: ConnTable::new(limits.connections),
            schedulers,
            loads,
            neighbours: Neighbours::new(limits.arp_pending),
            counters,
            book,
            real_counters,
            templates: Templates::new((limits.connections / 4).max(1024)),
            expire_budget: limits.expire_budget,
            purging: Vec::new(),
            purge_at: 0,
            now: 0,
            last_tick: 0,
            snapshot,
        }
    }

    /// Switches to a new configuration snapshot and returns the old one, for
    /// the control thread to free. Established connections keep flowing:
    /// they carry their real's address and mode and name it by stable id, and
    /// the connection counts of reals that stay are carried over. A service
    /// whose version is unchanged keeps its scheduler state. Called between
    /// bursts, never per packet; its cost is proportional to the number of
    /// reals, not of connections.
    pub fn swap_snapshot(&mut self, new: Arc<Snapshot>) -> Arc<Snapshot> {
        let old = std::mem::replace(&mut self.snapshot, new);
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

    /// Sets the coarse clock (seconds), once per burst.
    #[inline]
    pub fn set_now(&mut self, now: u32) {
        self.now = now;
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The per-real counters of every worker, and the shared overload flags.
    pub fn book(&self) -> &Arc<RealBook> {
        &self.book
    }

    pub fn connections(&self) -> &ConnTable {
        &self.conns
    }

    pub fn neighbours(&self) -> &Neighbours<P> {
        &self.neighbours
    }

    /// Processes one packet received from port `in_port` (config index).
    #[inline]
    pub fn handle(&mut self, packet: P, in_port: u16, io: &mut impl PacketIo<P>) {
        bump(&self.counters.rx_packets, 1);
        bump(&self.counters.rx_bytes, packet.len() as u64);
        if let Err(reason) = self.classify(packet, in_port, true, io) {
            self.counters.count_drop(reason);
        }
    }

    /// Processes a packet another worker received and handed over because
    /// this worker owns its connection.
    #[inline]
    pub fn handle_redirected(&mut self, packet: P, in_port: u16, io: &mut impl PacketIo<P>) {
        if let Err(reason) = self.classify(packet, in_port, false, io) {
            self.counters.count_drop(reason);
        }
    }

    /// Learns what another worker heard by ARP, and sends what waited for it.
    pub fn learn_neighbour(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
        io: &mut impl PacketIo<P>,
    ) {
        if self.neighbours.learn(ip, mac, port, self.now, true) {
            self.release_held(ip, io);
        }
    }

    fn classify(
        &mut self,
        packet: P,
        in_port: u16,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let Some(port) = self.snapshot.ports.get(usize::from(in_port)) else {
            return Err(DropReason::NotForUs);
        };
        let frame = EthernetFrame::new_checked(packet.data()).map_err(|_| DropReason::Malformed)?;
        let (dst, src) = (frame.dst(), frame.src());
        if src == port.mac {
            // Our own transmission seen again (af_packet queues of one port).
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
            self.ipv4(packet, in_port, src, steer, io)
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
        let for_us = self.snapshot.answers_arp(in_port, target_ip);
        let port_mac = self.snapshot.ports[usize::from(in_port)].mac;

        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            if self
                .neighbours
                .learn(sender_ip, sender_mac, in_port, self.now, for_us)
            {
                self.release_held(sender_ip, io);
            }
            if for_us && self.place.count > 1 {
                io.share_neighbour(sender_ip, sender_mac, in_port);
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

    /// Sends every packet that waited for `ip` to resolve.
    fn release_held(&mut self, ip: Ipv4Addr, io: &mut impl PacketIo<P>) {
        let Engine {
            snapshot,
            neighbours,
            counters,
            ..
        } = self;
        neighbours.release(ip, |port, mac, held| {
            let src = snapshot.ports[usize::from(port)].mac;
            transmit(counters, io, port, src, mac, held);
        });
    }

    fn ipv4(
        &mut self,
        mut packet: P,
        in_port: u16,
        src_mac: MacAddr,
        steer: bool,
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
        let frame_len = ETH_LEN + usize::from(ip.total_len());
        let l4 = match proto {
            protocol::TCP => {
                let tcp =
                    TcpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
                let flags = tcp.flags();
                Some(L4 {
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    syn: flags.contains(TcpFlags::SYN),
                    fin: flags.contains(TcpFlags::FIN),
                    ack: flags.contains(TcpFlags::ACK),
                    rst: flags.contains(TcpFlags::RST),
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
        let icmp_type = if proto == protocol::ICMP {
            Some(
                IcmpPacket::new_checked(ip.payload())
                    .map_err(|_| DropReason::Malformed)?
                    .msg_type(),
            )
        } else {
            None
        };
        // Ethernet padding must not travel on (it would follow an outer header).
        packet.truncate(frame_len);

        if let Some(l4) = l4 {
            if steer && self.place.count > 1 {
                let owner = self.owner(src, dst, l4.dst_port);
                if owner != self.place.index {
                    return self.redirect(owner, packet, io);
                }
            }
            return self.l4(packet, proto, src, dst, l4, io);
        }
        let local = self.snapshot.is_vip(dst) || self.snapshot.is_port_address(dst);
        match icmp_type {
            Some(icmp::DEST_UNREACHABLE | icmp::TIME_EXCEEDED) => {
                self.icmp_error(packet, steer, io)
            }
            Some(icmp::ECHO_REQUEST) if local => {
                self.icmp_echo(&mut packet)?;
                let port_mac = self.snapshot.ports[usize::from(in_port)].mac;
                bump(&self.counters.icmp_echo_replies, 1);
                transmit(&self.counters, io, in_port, port_mac, src_mac, packet);
                Ok(())
            }
            _ if local => Err(DropReason::Unsupported),
            _ => Err(DropReason::NotForUs),
        }
    }

    /// The worker owning the connection of a TCP/UDP packet `src → dst`.
    #[inline]
    fn owner(&self, src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16) -> u16 {
        if self.snapshot.is_vip(dst) {
            self.place.owner_of_client(src)
        } else if self.snapshot.is_lip(dst) {
            let mask = (1u32 << self.place.port_bits()) - 1;
            let owner = (u32::from(dst_port) & mask) as u16;
            if owner < self.place.count {
                owner
            } else {
                self.place.index
            }
        } else {
            self.place.owner_of_client(dst)
        }
    }

    fn redirect(
        &mut self,
        owner: u16,
        packet: P,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        match io.redirect(owner, packet) {
            Ok(()) => {
                bump(&self.counters.redirected, 1);
                Ok(())
            }
            Err(_) => Err(DropReason::RedirectFull),
        }
    }

    /// Turns an echo request to an owned address into its reply, in place.
    fn icmp_echo(&mut self, packet: &mut P) -> Result<(), DropReason> {
        let data = &mut packet.data_mut()[ETH_LEN..];
        let mut ip = Ipv4Packet::new_checked(&mut *data).map_err(|_| DropReason::Malformed)?;
        if !IcmpPacket::new_checked(ip.payload())
            .map_err(|_| DropReason::Malformed)?
            .verify_checksum()
        {
            return Err(DropReason::BadChecksum);
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

    /// A TCP or UDP packet this worker owns.
    fn l4(
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
    fn established(
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

    /// Picks a real of service `s` for a new connection from `key`, through
    /// its persistence template if the service is persistent. Returns the
    /// real's index and the template slot (`u32::MAX`: none).
    fn choose_real(&mut self, s: usize, key: &ConnKey) -> Result<(usize, u32), DropReason> {
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
                let weight = service.reals[ri].weight;
                (si == s && !(snapshot.expire_quiescent_template && weight == 0)).then_some(ri)
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

    /// Schedules and records a new connection of service `s` for `key` (a
    /// client → VIP packet).
    fn new_conn(&mut self, s: usize, key: ConnKey, l4: L4) -> Result<ConnId, DropReason> {
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

    fn count_persist(&self, real_id: u32, delta: i32) {
        if let Some(c) = self.real_counters.get(real_id as usize) {
            add_signed(&c.persist, delta);
        }
    }

    /// One-packet scheduling: a datagram scheduled on its own, forwarded
    /// without a connection (IPVS `-o`; meant for DR/TUN UDP services).
    fn one_packet(
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

    /// A free FullNAT local address and port of this worker for a connection
    /// to `real:real_port`: free means no tracked connection uses
    /// (LIP, port, real, real port) yet, so one LIP:port serves several reals
    /// at once. Bounded work: at most [`LADDR_PROBES`] ports per LIP.
    fn local_address(
        &mut self,
        service: usize,
        proto: u8,
        real: Ipv4Addr,
        real_port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let lips = &self.snapshot.services[service].local_addresses;
        let ports = self.local_ports;
        if lips.is_empty() || ports.count == 0 {
            return None;
        }
        let probes = LADDR_PROBES.min(ports.count);
        for turn in 0..lips.len() {
            let (lip, index) = lips[(self.lip_turn + turn) % lips.len()];
            let cursor = &mut self.lip_cursor[index as usize];
            for _ in 0..probes {
                let port = ports.port(*cursor);
                *cursor = (*cursor + 1) % ports.count;
                let reply = ConnKey {
                    proto,
                    src: real,
                    src_port: real_port,
                    dst: lip,
                    dst_port: port,
                };
                if self.conns.lookup(&reply).is_none() {
                    self.lip_turn = self.lip_turn.wrapping_add(1);
                    return Some((lip, port));
                }
            }
        }
        None
    }

    /// Moves a TCP connection through the IPVS state table and re-arms its
    /// timer; keeps the active/inactive counts schedulers read in step.
    fn track_tcp(&mut self, id: ConnId, direction: Direction, l4: L4) {
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

    /// Changes the active/inactive connection counts of real `real_id`, both
    /// what schedulers read and what listings show.
    fn adjust_load(&mut self, real_id: u32, active: i32, inactive: i32) {
        adjust_load(
            &self.snapshot,
            &mut self.loads,
            &self.real_counters,
            real_id,
            active,
            inactive,
        );
    }

    /// Takes a connection that is going away out of the scheduler counts.
    fn forget(&mut self, conn: &Conn) {
        forget_conn(
            &self.snapshot,
            &mut self.loads,
            &self.real_counters,
            &self.book,
            &mut self.templates,
            conn,
        );
        bump(&self.counters.conns_expired, 1);
        decrement(&self.counters.conns_current, 1);
    }

    #[inline]
    fn count_real(&self, conn: &Conn, inbound: bool, bytes: usize) {
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

    /// TUN: wraps the IPv4 packet in an outer header from rvs to `real`.
    /// Too big for the egress MTU: dropped, and with DF set the client is
    /// told the MTU that fits (ICMP fragmentation needed).
    fn encapsulate(
        &mut self,
        packet: &mut P,
        real: Ipv4Addr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (port, _) = self.snapshot.route(real).ok_or(DropReason::NoRoute)?;
        let mtu = usize::from(self.snapshot.ports[usize::from(port)].mtu);
        let source = self
            .snapshot
            .source_address(port, real)
            .ok_or(DropReason::NoRoute)?;
        let inner = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
            .map_err(|_| DropReason::Malformed)?;
        let (total, dont_frag, tos) = (inner.total_len(), inner.dont_frag(), inner.dscp_ecn());
        if usize::from(total) + IPV4_LEN > mtu {
            if dont_frag {
                self.frag_needed(packet, (mtu - IPV4_LEN) as u16, io);
            }
            return Err(DropReason::FragNeeded);
        }
        if !packet.prepend(IPV4_LEN) {
            return Err(DropReason::NoBuffer);
        }
        self.ident = self.ident.wrapping_add(1);
        let data = packet.data_mut();
        data.copy_within(IPV4_LEN..IPV4_LEN + ETH_LEN, 0);
        Ipv4Repr {
            src: source,
            dst: real,
            protocol: protocol::IPIP,
            ttl: 64,
            dscp_ecn: tos,
            ident: self.ident,
            dont_frag,
            payload_len: total,
        }
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])
        .map_err(|_| DropReason::Malformed)
    }

    /// Tells the sender of `original` that it must fit in `mtu` bytes.
    fn frag_needed(&mut self, original: &P, mtu: u16, io: &mut impl PacketIo<P>) {
        let result = self.icmp_error_to_sender(
            original,
            icmp::DEST_UNREACHABLE,
            icmp::code::FRAG_NEEDED,
            u32::from(mtu),
            io,
        );
        if let Err(reason) = result {
            self.counters.count_drop(reason);
        }
    }

    /// Builds an ICMP error about `original` and sends it to its source.
    fn icmp_error_to_sender(
        &mut self,
        original: &P,
        msg_type: u8,
        code: u8,
        rest: u32,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let offending = &original.data()[ETH_LEN..];
        let ip = Ipv4Packet::new_checked(offending).map_err(|_| DropReason::Malformed)?;
        let sender = ip.src();
        let quote = &offending[..usize::from(ip.total_len()).min(ICMP_QUOTE_MAX)];
        let (port, _) = self.snapshot.route(sender).ok_or(DropReason::NoRoute)?;
        let source = self
            .snapshot
            .source_address(port, sender)
            .ok_or(DropReason::NoRoute)?;
        let mut error = io.alloc().ok_or(DropReason::NoBuffer)?;
        let len = ETH_LEN + IPV4_LEN + 8 + quote.len();
        if !error.append(len) {
            return Err(DropReason::NoBuffer);
        }
        let data = error.data_mut();
        EthernetFrame::new_checked(&mut data[..])
            .map_err(|_| DropReason::Malformed)?
            .set_ethertype(EtherType::IPV4);
        self.ident = self.ident.wrapping_add(1);
        Ipv4Repr {
            src: source,
            dst: sender,
            protocol: protocol::ICMP,
            ttl: 64,
            dscp_ecn: 0,
            ident: self.ident,
            dont_frag: false,
            payload_len: (8 + quote.len()) as u16,
        }
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])
        .map_err(|_| DropReason::Malformed)?;
        let icmp_start = ETH_LEN + IPV4_LEN;
        data[icmp_start + 8..].copy_from_slice(quote);
        let mut message =
            IcmpPacket::new_checked(&mut data[icmp_start..]).map_err(|_| DropReason::Malformed)?;
        message.set_msg_type(msg_type);
        message.set_code(code);
        message.set_rest_of_header(rest);
        message.fill_checksum();
        bump(&self.counters.icmp_errors_sent, 1);
        self.forward(error, sender, io)
    }

    /// An ICMP error (destination unreachable, time exceeded) about a tracked
    /// connection: translated like the connection's own packets and passed
    /// to the other side, as IPVS does. It never creates a connection.
    fn icmp_error(
        &mut self,
        mut packet: P,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let quoted = {
            let outer = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
                .map_err(|_| DropReason::Malformed)?;
            let message =
                IcmpPacket::new_checked(outer.payload()).map_err(|_| DropReason::Malformed)?;
            let inner = Ipv4Packet::new_checked_quoted(message.payload())
                .map_err(|_| DropReason::Malformed)?;
            let ports = inner.payload();
            if ports.len() < 4 || !matches!(inner.protocol(), protocol::TCP | protocol::UDP) {
                return Err(DropReason::NotForUs);
            }
            // The packet the error is about, seen in the direction it answers.
            ConnKey {
                proto: inner.protocol(),
                src: inner.dst(),
                src_port: u16::from_be_bytes([ports[2], ports[3]]),
                dst: inner.src(),
                dst_port: u16::from_be_bytes([ports[0], ports[1]]),
            }
        };
        if steer && self.place.count > 1 {
            let owner = self.owner(quoted.src, quoted.dst, quoted.dst_port);
            if owner != self.place.index {
                return self.redirect(owner, packet, io);
            }
        }
        let (id, direction) = self.conns.lookup(&quoted).ok_or(DropReason::NotForUs)?;
        let conn = *self.conns.get(id);
        bump(&self.counters.icmp_errors_forwarded, 1);
        if direction == Direction::Input {
            // From the client's side, about a packet rvs sent it.
            match conn.forward {
                ForwardMode::Dr => self.forward(packet, conn.real, io),
                ForwardMode::Tun => {
                    self.encapsulate(&mut packet, conn.real, io)?;
                    self.forward(packet, conn.real, io)
                }
                ForwardMode::Nat | ForwardMode::FullNat => {
                    // The real sent (real:rport → local:lport).
                    translate_icmp(
                        &mut packet,
                        (conn.forward == ForwardMode::FullNat).then_some(conn.local),
                        Some(conn.real),
                        (conn.real, conn.real_port),
                        (conn.local, conn.local_port),
                    )?;
                    self.forward(packet, conn.real, io)
                }
            }
        } else {
            // From the real's side: the client sent (client:cport → vip:vport).
            let outer_src = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
                .map_err(|_| DropReason::Malformed)?
                .src();
            translate_icmp(
                &mut packet,
                (outer_src == conn.real).then_some(conn.vip),
                Some(conn.client),
                (conn.client, conn.client_port),
                (conn.vip, conn.vport),
            )?;
            self.forward(packet, conn.client, io)
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
            if self.purging.iter().any(|purge| purge.matches(conn)) {
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
        let now = self.now;
        let Engine {
            snapshot,
            conns,
            loads,
            counters,
            real_counters,
            book,
            templates,
            expire_budget,
            ..
        } = self;
        let expired = conns.expire(now, *expire_budget, |conn| {
            forget_conn(snapshot, loads, real_counters, book, templates, conn)
        });
        templates.sweep(now, *expire_budget, |real_id| {
            if let Some(c) = real_counters.get(real_id as usize) {
                add_signed(&c.persist, -1);
            }
        });
        if expired > 0 {
            bump(&counters.conns_expired, expired as u64);
            decrement(&counters.conns_current, expired as u64);
        }
        if !self.purging.is_empty() {
            self.purge_some();
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

fn decrement(counter: &std::sync::atomic::AtomicU64, n: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
}

/// Everything that goes when a connection goes: its share of the real's
/// counts, its hold on its persistence template, and perhaps the real's
/// overload flag (IPVS unbind).
fn forget_conn(
    snapshot: &Snapshot,
    loads: &mut [Vec<RealLoad>],
    real_counters: &[RealCounters],
    book: &RealBook,
    templates: &mut Templates,
    conn: &Conn,
) {
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

/// The scheduler of `service` for a worker at `place`: the service's table
/// and flags, and a seed of the worker's own. The one way a worker builds a
/// scheduler, at start and at every snapshot swap, so that a service edited
/// live schedules exactly as it would in a freshly started rvsd.
fn make_scheduler(
    service: &crate::snapshot::ServiceInfo,
    loads: &[RealLoad],
    place: WorkerPlace,
) -> Scheduler {
    let mut scheduler = Scheduler::with_table(Arc::clone(&service.table), service.flags, loads);
    scheduler.set_seed(0x5eed_0000 + u64::from(place.index));
    scheduler
}

fn adjust_load(
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

fn add_signed(counter: &std::sync::atomic::AtomicU64, delta: i32) {
    use std::sync::atomic::Ordering::Relaxed;
    let value = counter
        .load(Relaxed)
        .saturating_add_signed(i64::from(delta));
    counter.store(value, Relaxed);
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

/// Rewrites the source and/or destination address and port of a TCP or UDP
/// packet, patching every checksum incrementally (RFC 1624).
fn rewrite<P: PacketBuf>(
    packet: &mut P,
    new_src: Option<(Ipv4Addr, u16)>,
    new_dst: Option<(Ipv4Addr, u16)>,
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut ip = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    let (old_src, old_dst, proto) = (ip.src(), ip.dst(), ip.protocol());
    if let Some((addr, _)) = new_src {
        if addr != old_src {
            ip.set_src_incremental(addr);
        }
    }
    if let Some((addr, _)) = new_dst {
        if addr != old_dst {
            ip.set_dst_incremental(addr);
        }
    }
    let l4 = ip.payload_mut();
    match proto {
        protocol::TCP => {
            let mut tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            rewrite_ports(&mut tcp, (old_src, old_dst), new_src, new_dst);
        }
        _ => {
            let mut udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            rewrite_ports(&mut udp, (old_src, old_dst), new_src, new_dst);
        }
    }
    Ok(())
}

/// The transport half of [`rewrite`]: new ports, and the checksum patched
/// for every address and port that changes.
#[inline]
fn rewrite_ports(
    l4: &mut impl PortsMut,
    (old_src, old_dst): (Ipv4Addr, Ipv4Addr),
    new_src: Option<(Ipv4Addr, u16)>,
    new_dst: Option<(Ipv4Addr, u16)>,
) {
    if let Some((addr, port)) = new_src {
        if addr != old_src {
            l4.update_checksum_for_addr(old_src, addr);
        }
        if port != l4.src_port() {
            l4.set_src_port_incremental(port);
        }
    }
    if let Some((addr, port)) = new_dst {
        if addr != old_dst {
            l4.update_checksum_for_addr(old_dst, addr);
        }
        if port != l4.dst_port() {
            l4.set_dst_port_incremental(port);
        }
    }
}

/// Rewrites an ICMP error in place: the outer source (if `outer_src`) and
/// destination (if `outer_dst`), and the quoted packet's source and
/// destination address and port. Errors are rare, so checksums are simply
/// recomputed (the quoted transport checksum is left as quoted: receivers do
/// not check it).
fn translate_icmp<P: PacketBuf>(
    packet: &mut P,
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    inner_src: (Ipv4Addr, u16),
    inner_dst: (Ipv4Addr, u16),
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut outer = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    if let Some(addr) = outer_src {
        outer.set_src(addr);
    }
    if let Some(addr) = outer_dst {
        outer.set_dst(addr);
    }
    outer.fill_checksum();
    let mut message =
        IcmpPacket::new_checked(outer.payload_mut()).map_err(|_| DropReason::Malformed)?;
    {
        let mut inner = Ipv4Packet::new_checked_quoted(message.payload_mut())
            .map_err(|_| DropReason::Malformed)?;
        inner.set_src(inner_src.0);
        inner.set_dst(inner_dst.0);
        inner.fill_checksum();
        let ports = inner.payload_mut();
        if ports.len() >= 4 {
            ports[0..2].copy_from_slice(&inner_src.1.to_be_bytes());
            ports[2..4].copy_from_slice(&inner_dst.1.to_be_bytes());
        }
    }
    message.fill_checksum();
    Ok(())
}
