//! The worker loop on a DPDK lcore: poll the assigned RX queues in bursts, run
//! each packet through the [`Engine`], flush buffered TX, do housekeeping
//! about once a millisecond, and back off when idle.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use std::net::Ipv4Addr;

use crate::counters::{bump, DropReason, WorkerCounters};
use crate::dpdk::{self, Mbuf, Mempool, RxBurst, TxBuffer, BURST};
use crate::engine::{Engine, PacketIo};
use crate::mesh::Mesh;
use crate::wire::ethernet::MacAddr;

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

    #[inline]
    fn to_kernel(&mut self, port: u16, packet: Mbuf) -> Result<(), Mbuf> {
        self.mesh.to_kernel[self.index]
            .push((packet, port))
            .map_err(|(packet, _)| packet)
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
        setup.mesh.neighbour_tables[setup.index].answer(|()| engine.neighbour_entries());
        setup.mesh.dumps[setup.index]
            .answer(|request| engine.dump_connections(request.from, request.limit));
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
        if setup.index == 0 {
            // What the kernel sent leaves as it is, on this worker's queue.
            for _ in 0..BURST {
                let Some((packet, port)) = setup.mesh.from_kernel.pop() else {
                    break;
                };
                received += 1;
                io.send(port, packet);
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

        bump(&setup.counters.polls, 1);
        if received == 0 {
            empty_polls = empty_polls.saturating_add(1);
            if setup.sleep_us > 0 && empty_polls >= setup.idle_polls {
                // Idle only: a syscall here costs nothing a packet waits for.
                std::thread::sleep(idle_sleep);
            }
        } else {
            empty_polls = 0;
            bump(&setup.counters.busy_polls, 1);
        }
    }
}
