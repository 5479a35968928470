//! The packet path of one worker, run to completion per packet.
//!
//! One packet's way through it, each step in its own file, in order:
//!
//! 1. [`Engine::handle`] counts it and hands it to `process` (here);
//!    [`Engine::handle_burst`] takes a whole burst through the same steps
//!    in stages, so that the memory reads of its packets overlap (`burst`).
//! 2. `classify`: Ethernet, ARP or IPv4, then TCP/UDP or ICMP, parsed once
//!    into a [`classify::Verdict`]: what the packet is and the connection
//!    key it carries. Anything rvs cannot take is a [`DropReason`] here.
//! 3. `steer`: with several workers, a TCP/UDP packet (or an ICMP error
//!    about one) whose connection another worker owns is handed to it over a
//!    bounded ring, and handled there from step 2 again.
//! 4. By kind:
//!    - `l2`: ARP is learned from and answered;
//!    - `icmp`: echo requests are answered; ICMP errors about a tracked
//!      connection go to step 6 like the connection's own packets;
//!    - `connection`: TCP/UDP packets are looked up in the connection
//!      table; a miss to a service is a new connection, scheduled by
//!      `schedule` (persistence templates, then the service's scheduler),
//!      or with one-packet scheduling a datagram forwarded on its own.
//!      TCP state and timers follow IPVS's table.
//! 5. `xmit`: the one dispatch on (direction, forwarding mode), to the
//!    mode's file (`xmit/nat.rs`, `fullnat.rs`, `dr.rs`, `tun.rs`), which
//!    rewrites (or encapsulates) the packet.
//! 6. `l2` again: route to the next hop, its MAC from the neighbour table
//!    (or the packet held while ARP resolves it), and hand-off to TX.
//!
//! What the dataplane does not own (step 2's frames for the director's
//! host, ARP it does not answer, TCP/UDP to a port address without a
//! service, ICMP errors about no tracked connection) goes, on a port with a
//! kernel interface, to the kernel instead of being dropped: `kernel`.
//!
//! Between bursts, `housekeeping` runs the timers (connection expiry,
//! purges, ARP retries), swaps snapshots and answers control requests.
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

mod burst;
mod classify;
mod connection;
mod housekeeping;
mod icmp;
mod kernel;
mod l2;
mod reject;
mod schedule;
mod steer;
mod sync;
mod xmit;

pub use steer::WorkerPlace;

use classify::Verdict;
use schedule::make_scheduler;
use steer::LocalPorts;
use xmit::{Carried, LocalUse};

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnTable, KeyHash};
use crate::counters::{bump, DropReason, RealBook, RealCounters, WorkerCounters};
use crate::neigh::Neighbours;
use crate::persist::Templates;
use crate::sched::{RealLoad, Scheduler};
use crate::snapshot::{Purge, Snapshot};
use crate::wire::ethernet::MacAddr;

/// Bytes of the Ethernet header before the IPv4 header.
const ETH_LEN: usize = 14;
/// Bytes of an IPv4 header without options (the ones rvs writes).
const IPV4_LEN: usize = 20;

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
    /// Hands `packet`, received on `port`, to that port's kernel interface;
    /// gives it back when the way there is full (or, as by default, when
    /// there is no kernel interface).
    fn to_kernel(&mut self, port: u16, packet: P) -> Result<(), P> {
        let _ = port;
        Err(packet)
    }
    /// Hands a copy of a connection to the master sync daemon; false when
    /// the way there is full (or, as by default, there is none).
    fn sync_out(&mut self, record: rvs_control::sync::SyncConn) -> bool {
        let _ = record;
        false
    }
}

/// A page of a worker's connection table, for listings.
#[derive(Clone, Debug, Default)]
pub struct ConnDump {
    /// (connection, seconds until it expires).
    pub entries: Vec<(Conn, u32)>,
    /// Table position to continue from; none: the end.
    pub next: Option<usize>,
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
    /// Connections that may be unverified (no answer yet) at once; more
    /// evict the oldest of them. rvsd gives half the table.
    pub unverified: usize,
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
    /// Route and neighbour of the last destinations (`l2`).
    next_hops: l2::NextHops,
    counters: Arc<WorkerCounters>,
    /// Per-real counters of every worker and the shared overload flags.
    book: Arc<RealBook>,
    /// This worker's own per-real counters (its entry of `book`).
    real_counters: Arc<[RealCounters]>,
    templates: Templates,
    local_ports: LocalPorts,
    /// Next port to try, per local address (index in `Snapshot::lips`).
    lip_cursor: Vec<u32>,
    /// Local ports in use, per local address.
    locals: LocalUse,
    /// Round robin over a service's local addresses.
    lip_turn: usize,
    /// IPv4 identification of packets rvs originates (TUN outer headers).
    ident: u16,
    /// Closed-port answers left this second.
    rejects_left: u32,
    expire_budget: usize,
    /// Real ids whose connections are being ended, and the table position
    /// the sweep has reached.
    purging: Vec<Purge>,
    purge_at: usize,
    now: u32,
    last_tick: u32,
    /// A burst between its stages (`burst`); empty between bursts.
    staged: Vec<burst::Staged<P>>,
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
        let local_ports = LocalPorts::new(&snapshot, place);
        let mut locals = LocalUse::new(&book.local, usize::from(place.index));
        locals.prepare(&snapshot.lips, local_ports.count);
        Engine {
            local_ports,
            locals,
            lip_cursor: vec![0; snapshot.lips.len()],
            lip_turn: 0,
            ident: place.index.wrapping_mul(0x1000),
            rejects_left: reject::REJECTS_PER_SECOND,
            place,
            conns: ConnTable::new(limits.connections).with_probation_limit(limits.unverified),
            schedulers,
            loads,
            neighbours: Neighbours::new(limits.arp_pending),
            next_hops: l2::NextHops::default(),
            counters,
            book,
            real_counters,
            templates: Templates::new((limits.connections / 4).max(1024)),
            expire_budget: limits.expire_budget,
            purging: Vec::new(),
            purge_at: 0,
            now: 0,
            last_tick: 0,
            staged: Vec::with_capacity(burst::STAGE),
            snapshot,
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
        if let Err(reason) = self.process(packet, in_port, true, io) {
            self.counters.count_drop(reason);
        }
    }

    /// Processes a packet another worker received and handed over because
    /// this worker owns its connection.
    #[inline]
    pub fn handle_redirected(&mut self, packet: P, in_port: u16, io: &mut impl PacketIo<P>) {
        if let Err(reason) = self.process(packet, in_port, false, io) {
            self.counters.count_drop(reason);
        }
    }

    /// The steps of the module docs; `steer` is false for a packet another
    /// worker already steered here.
    #[inline]
    fn process(
        &mut self,
        mut packet: P,
        in_port: u16,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let verdict = self.classify(&mut packet, in_port);
        let hash = match &verdict {
            Ok(Verdict::Flow(flow)) => self.conns.key_hash(&flow.key),
            _ => KeyHash::default(),
        };
        self.dispatch(packet, in_port, verdict, hash, steer, io)
    }

    /// The steps after classification, from the packet's verdict and, for
    /// a flow, its key's hash in the connection table.
    #[inline]
    fn dispatch(
        &mut self,
        packet: P,
        in_port: u16,
        verdict: Result<Verdict, DropReason>,
        hash: KeyHash,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err(reason) => return self.unowned_frame(packet, in_port, reason, io),
        };
        if steer {
            if let Some(owner) = self.other_owner(&verdict) {
                return self.redirect(owner, packet, io);
            }
        }
        match &verdict {
            Verdict::Arp => self.arp(packet, in_port, io),
            Verdict::Echo { src_mac } => self.echo(packet, in_port, *src_mac, io),
            Verdict::Flow(flow) => self.flow(packet, in_port, flow, hash, io),
            Verdict::IcmpError { quoted } => match self.icmp_error(quoted) {
                Ok((conn, direction)) => {
                    self.xmit(packet, &conn, direction, Carried::IcmpError, io)
                }
                Err(reason) => self.kernel_or(packet, in_port, reason, io),
            },
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
            self.release_held(ip, port, io);
        }
    }
}
