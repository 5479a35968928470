//! The worker loop on a DPDK lcore: poll the assigned RX queues in bursts, run
//! each packet through the [`Engine`], flush buffered TX, do housekeeping
//! about once a millisecond, and back off when idle.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use std::net::Ipv4Addr;

use crossbeam_queue::ArrayQueue;

use crate::counters::{bump, DropReason, WorkerCounters};
use crate::dpdk::{self, Mbuf, Mempool, RxBurst, TxBuffer, BURST};
use crate::engine::{ConnDump, Engine, PacketIo};
use crate::snapshot::Snapshot;
use crate::wire::ethernet::MacAddr;

/// Packets waiting in one redirect ring, at most.
pub const REDIRECT_RING: usize = 1024;
/// Neighbour updates waiting for one worker, at most.
const NEIGHBOUR_RING: usize = 256;

/// What workers hand each other, and what the control thread hands them:
/// packets for the connection's owner (one bounded ring per ordered pair of
/// workers, so each has a single producer), neighbours learned by ARP, new
/// configuration snapshots (and the old ones back, to be freed off the packet
/// path), and requests for pages of the connection table.
pub struct Mesh {
    /// `packets[to][from]`: (packet, config port index).
    packets: Vec<Vec<ArrayQueue<(Mbuf, u16)>>>,
    neighbours: Vec<ArrayQueue<(Ipv4Addr, MacAddr, u16)>>,
    /// Per worker: snapshots to switch to, oldest first.
    pub snapshots: Vec<ArrayQueue<Arc<Snapshot>>>,
    /// Snapshots the workers are done with.
    pub retired: ArrayQueue<Arc<Snapshot>>,
    /// Per worker: one outstanding connection-table page request and its answer.
    pub dump_requests: Vec<ArrayQueue<DumpRequest>>,
    pub dump_replies: Vec<ArrayQueue<ConnDump>>,
    /// Per worker: a request for its neighbour table, and the answer.
    pub neighbour_requests: Vec<ArrayQueue<()>>,
    pub neighbour_replies: Vec<ArrayQueue<Vec<NeighbourEntry>>>,
}

/// (address, MAC, port index, seconds since confirmed).
pub type NeighbourEntry = (Ipv4Addr, MacAddr, u16, u32);

/// Snapshots waiting for one worker, at most.
pub const SNAPSHOT_QUEUE: usize = 4;

/// A request for up to `limit` connections from table position `from`.
#[derive(Clone, Copy, Debug)]
pub struct DumpRequest {
    pub from: usize,
    pub limit: usize,
}

impl Mesh {
    pub fn new(workers: usize) -> Self {
        fn per_worker<T>(workers: usize, capacity: usize) -> Vec<ArrayQueue<T>> {
            (0..workers).map(|_| ArrayQueue::new(capacity)).collect()
        }
        Mesh {
            packets: (0..workers)
                .map(|_| per_worker(workers, REDIRECT_RING))
                .collect(),
            neighbours: per_worker(workers, NEIGHBOUR_RING),
            snapshots: per_worker(workers, SNAPSHOT_QUEUE),
            retired: ArrayQueue::new(workers * (SNAPSHOT_QUEUE + 1)),
            dump_requests: per_worker(workers, 1),
            dump_replies: per_worker(workers, 1),
            neighbour_requests: per_worker(workers, 1),
            neighbour_replies: per_worker(workers, 1),
        }
    }
}

/// One RX queue a worker polls.
#[derive(Clone, Copy, Debug)]
pub struct RxQueue {
    /// Port index in the config (what the engine calls a port).
    pub port: u16,
    /// DPDK port id.
    pub dpdk_port: u16,
    pub queue: u16,
}

/// What a worker needs besides its engine.
pub struct WorkerSetup {
    pub rx: Vec<RxQueue>,
    /// DPDK port id of every config port, by config index.
    pub dpdk_ports: Vec<u16>,
    /// This worker's TX queue number (the same on every port).
    pub tx_queue: u16,
    pub pool: Mempool,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
    pub idle_polls: u32,
    pub sleep_us: u32,
    /// TSC value that counts as second 0, and TSC ticks per second.
    pub tsc_start: u64,
    pub tsc_hz: u64,
    pub mesh: Arc<Mesh>,
    /// This worker's index in the mesh.
    pub index: usize,
}

struct DpdkIo<'a> {
    tx: &'a mut [TxBuffer],
    pool: Mempool,
    counters: &'a WorkerCounters,
    mesh: &'a Mesh,
    index: usize,
    /// Config port index of the packet being handled (for redirects).
    in_port: u16,
}

impl PacketIo<Mbuf> for DpdkIo<'_> {
    #[inline]
    fn send(&mut self, port: u16, packet: Mbuf) {
        let refused = self.tx[usize::from(port)].push(packet);
        if refused > 0 {
            bump(
                &self.counters.drops[DropReason::TxFull as usize],
                refused as u64,
            );
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        Mbuf::alloc(&self.pool)
    }

    #[inline]
    fn redirect(&mut self, worker: u16, packet: Mbuf) -> Result<(), Mbuf> {
        match self
            .mesh
            .packets
            .get(usize::from(worker))
            .and_then(|rings| rings.get(self.index))
        {
            Some(ring) => ring
                .push((packet, self.in_port))
                .map_err(|(packet, _)| packet),
            None => Err(packet),
        }
    }

    fn share_neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16) {
        for (worker, ring) in self.mesh.neighbours.iter().enumerate() {
            if worker != self.index {
                // A full ring loses the update; the worker will ARP itself.
                let _ = ring.push((ip, mac, port));
            }
        }
    }
}

impl DpdkIo<'_> {
    fn flush(&mut self) {
        for tx in self.tx.iter_mut() {
            if tx.pending() > 0 {
                let refused = tx.flush();
                if refused > 0 {
                    bump(
                        &self.counters.drops[DropReason::TxFull as usize],
                        refused as u64,
                    );
                }
            }
        }
    }
}

/// Runs until `setup.stop` is set. Everything it touches per packet was
/// allocated before the loop.
pub fn run(mut engine: Engine<Mbuf>, setup: WorkerSetup) {
    let mut tx: Vec<TxBuffer> = setup
        .dpdk_ports
        .iter()
        .map(|&port| TxBuffer::new(port, setup.tx_queue))
        .collect();
    let mut rx = RxBurst::default();
    let tick_every = (setup.tsc_hz / 1000).max(1);
    let mut next_tick = 0u64;
    let mut empty_polls = 0u32;
    let idle_sleep = Duration::from_micros(u64::from(setup.sleep_us));

    while !setup.stop.load(Relaxed) {
        let now_tsc = dpdk::tsc();
        // Second 1 is the first second, so that 0 never means "now".
        engine.set_now((now_tsc.wrapping_sub(setup.tsc_start) / setup.tsc_hz) as u32 + 1);
        let mut io = DpdkIo {
            tx: &mut tx,
            pool: setup.pool,
            counters: &setup.counters,
            mesh: &setup.mesh,
            index: setup.index,
            in_port: 0,
        };
        let mut received = 0;
        while let Some(snapshot) = setup.mesh.snapshots[setup.index].pop() {
            let old = engine.swap_snapshot(snapshot);
            // The retired queue has room for every snapshot in flight; if it
            // ever had not, freeing here is still correct, only slower.
            let _ = setup.mesh.retired.push(old);
        }
        if setup.mesh.neighbour_requests[setup.index].pop().is_some() {
            let _ = setup.mesh.neighbour_replies[setup.index].push(engine.neighbour_entries());
        }
        if let Some(request) = setup.mesh.dump_requests[setup.index].pop() {
            let page = engine.dump_connections(request.from, request.limit);
            let _ = setup.mesh.dump_replies[setup.index].push(page);
        }
        while let Some((ip, mac, port)) = setup.mesh.neighbours[setup.index].pop() {
            engine.learn_neighbour(ip, mac, port, &mut io);
        }
        for ring in &setup.mesh.packets[setup.index] {
            for _ in 0..BURST {
                let Some((packet, port)) = ring.pop() else {
                    break;
                };
                received += 1;
                io.in_port = port;
                engine.handle_redirected(packet, port, &mut io);
            }
        }
        for queue in &setup.rx {
            received += rx.receive(queue.dpdk_port, queue.queue);
            io.in_port = queue.port;
            while let Some(packet) = rx.next_packet() {
                match packet {
                    Ok(mbuf) => engine.handle(mbuf, queue.port, &mut io),
                    Err(segmented) => {
                        drop(segmented);
                        setup.counters.count_drop(DropReason::MultiSegment);
                    }
                }
            }
        }
        if now_tsc >= next_tick {
            next_tick = now_tsc + tick_every;
            engine.tick(&mut io);
        }
        io.flush();

        if received == 0 {
            empty_polls = empty_polls.saturating_add(1);
            if setup.sleep_us > 0 && empty_polls >= setup.idle_polls {
                // Idle only: a syscall here costs nothing a packet waits for.
                std::thread::sleep(idle_sleep);
            }
        } else {
            empty_polls = 0;
        }
    }
}
