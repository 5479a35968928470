//! The worker loop on a DPDK lcore: poll the assigned RX queues in bursts, run
//! each burst through the [`Engine`] ([`Engine::handle_burst`]), flush buffered TX, do housekeeping
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
use rvs_control::sync::SyncConn;

/// Synced connections a worker installs per round of its loop, at most.
const SYNC_INSTALLS_PER_ROUND: usize = 256;

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
    /// How the worker waits when its queues are empty.
    pub idle: Backoff,
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

    #[inline]
    fn sync_out(&mut self, record: SyncConn) -> bool {
        self.mesh.sync_out[self.index].push(record).is_ok()
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
    let mut idle = setup.idle;
    if idle.sleeps() {
        // Sleeps as short as asked: the default slack of 50 µs would
        // stretch every short sleep of the back-off to 55 µs or more.
        dpdk::set_timer_slack_ns(1000);
    }

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
        // Connections a backup sync daemon received: a bounded number per
        // round, so that a flood of them never holds packets up for long.
        for _ in 0..SYNC_INSTALLS_PER_ROUND {
            let Some(record) = setup.mesh.sync_in[setup.index].pop() else {
                break;
            };
            received += 1;
            engine.install_synced(&record);
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
            let arrived = rx.receive(queue.dpdk_port, queue.queue);
            if arrived == 0 {
                continue;
            }
            received += arrived;
            io.in_port = queue.port;
            let counters = &setup.counters;
            let packets = std::iter::from_fn(|| rx.next_packet()).filter_map(|packet| {
                packet
                    .map_err(|segmented| {
                        drop(segmented);
                        counters.count_drop(DropReason::MultiSegment);
                    })
                    .ok()
            });
            engine.handle_burst(packets, queue.port, &mut io);
        }
        if now_tsc >= next_tick {
            next_tick = now_tsc + tick_every;
            engine.tick(&mut io);
        }
        io.flush();

        bump(&setup.counters.polls, 1);
        if received > 0 {
            bump(&setup.counters.busy_polls, 1);
        }
        if let Some(nap) = idle.after_poll(received) {
            // Idle only: a syscall here costs nothing a packet waits for.
            std::thread::sleep(nap);
        }
    }
}

/// How a worker waits when its queues are empty, adapting to the traffic:
/// while packets keep coming it polls without pause; after `idle_polls`
/// empty polls in a row it sleeps, first `min_sleep` and then twice as
/// long after each further empty poll, up to `max_sleep`; the first poll
/// that finds packets starts it spinning again. A pause in the traffic
/// thus costs the packet that ends it at most about the sleep then under
/// way — short sleeps early on, while a burst is likely to follow — and a
/// worker with nothing to do sleeps the longest sleep and leaves its CPU
/// to others (a small director shares its CPUs with the kernel and, in the
/// lab, with clients and reals).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    idle_polls: u32,
    min_sleep: Duration,
    max_sleep: Duration,
    empty: u32,
    next_sleep: Duration,
}

impl Backoff {
    /// Spin `idle_polls` empty polls, then sleep from `min_sleep_us` up to
    /// `sleep_us` microseconds (`sleep_us` 0: never sleep; `min_sleep_us`
    /// is at most `sleep_us`).
    pub fn new(idle_polls: u32, min_sleep_us: u32, sleep_us: u32) -> Self {
        let max_sleep = Duration::from_micros(u64::from(sleep_us));
        let min_sleep =
            Duration::from_micros(u64::from(min_sleep_us.clamp(1, sleep_us.max(1)))).min(max_sleep);
        Backoff {
            idle_polls,
            min_sleep,
            max_sleep,
            empty: 0,
            next_sleep: min_sleep,
        }
    }

    /// Whether the worker ever sleeps.
    pub fn sleeps(&self) -> bool {
        !self.max_sleep.is_zero()
    }

    /// After a poll that received `received` packets: how long to sleep
    /// before the next poll; none: poll again at once.
    #[inline]
    pub fn after_poll(&mut self, received: usize) -> Option<Duration> {
        if received > 0 {
            self.empty = 0;
            self.next_sleep = self.min_sleep;
            return None;
        }
        self.empty = self.empty.saturating_add(1);
        if !self.sleeps() || self.empty < self.idle_polls {
            return None;
        }
        let nap = self.next_sleep;
        self.next_sleep = (nap * 2).min(self.max_sleep);
        Some(nap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naps(backoff: &mut Backoff, polls: &[usize]) -> Vec<u64> {
        polls
            .iter()
            .map(|&received| {
                backoff
                    .after_poll(received)
                    .map_or(0, |d| d.as_micros() as u64)
            })
            .collect()
    }

    #[test]
    fn backoff_spins_then_doubles_its_sleep_and_starts_over_on_traffic() {
        let mut b = Backoff::new(3, 5, 100);
        assert!(b.sleeps());
        assert_eq!(
            naps(&mut b, &[4, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            [0, 0, 0, 5, 10, 20, 40, 80, 100, 100]
        );
        // One packet: spinning again, and the next pause starts short.
        assert_eq!(naps(&mut b, &[1, 0, 0, 0, 0]), [0, 0, 0, 5, 10]);

        // min = max: the fixed sleep of before.
        let mut fixed = Backoff::new(1, 100, 100);
        assert_eq!(naps(&mut fixed, &[0, 0, 2, 0]), [100, 100, 0, 100]);
        // A first sleep above the longest is cut to it.
        assert_eq!(naps(&mut Backoff::new(1, 500, 100), &[0]), [100]);
        // sleep_us 0: busy polling, whatever else is set.
        let mut busy = Backoff::new(0, 5, 0);
        assert!(!busy.sleeps());
        assert_eq!(naps(&mut busy, &[0, 0, 0]), [0, 0, 0]);
    }
}
