//! In-memory benchmarks of the packet path: the same `Engine` rvsd runs, on
//! pooled heap buffers instead of mbufs, no DPDK involved.
//!
//! ```text
//! bench_inmem run    --mode nat --traffic new|est [--flows N] [--packets P]
//! bench_inmem memory [--conns 1000000]
//! ```
//!
//! `run` pushes `P` packets through [`Engine::handle_burst`] in bursts of
//! 32, as a worker receives them, each call wrapped in the never-inlined
//! `measured_handle_burst`, so that
//! `valgrind --tool=callgrind --toggle-collect='*measured_handle*'` counts the
//! instructions of the packet path and nothing else (frame writing, setup and
//! priming stay outside). It prints one JSON line with the packet count and
//! the wall-clock ns/packet of the native run.
//!
//! `memory` fills a table of `conns` connections through the packet path and
//! reports the table's own bytes per connection and the RSS growth.

#[path = "common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::time::Instant;

use common::{Args, FrameWriter, Traffic, CLIENT_PORT, FRAME_LEN, REAL_PORT};
use rvs_dataplane::buf::PacketBuf;
use rvs_dataplane::counters::{DropReason, WorkerCounters};
use rvs_dataplane::engine::{Engine, PacketIo};
use rvs_dataplane::wire::ethernet::MacAddr;

const HEADROOM: usize = 128;
const ROOM: usize = 256;
const DIR_MACS: [MacAddr; 2] = [
    MacAddr([0x02, 0x99, 0x01, 0, 0, 0x01]),
    MacAddr([0x02, 0x99, 0x02, 0, 0, 0x01]),
];

/// A fixed-size heap buffer, recycled through [`Pool`] like an mbuf through
/// its mempool: no allocation per packet.
struct Frame {
    storage: Box<[u8; ROOM]>,
    start: usize,
    end: usize,
}

impl PacketBuf for Frame {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        ROOM - self.end
    }
    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        if len > self.start {
            return false;
        }
        self.start -= len;
        true
    }
    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }
    #[inline]
    fn append(&mut self, len: usize) -> bool {
        if len > ROOM - self.end {
            return false;
        }
        self.end += len;
        true
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
}

/// Where sent frames go back to, and where fresh ones come from.
struct Pool {
    free: Vec<Frame>,
    sent: u64,
}

impl Pool {
    fn new(frames: usize) -> Pool {
        Pool {
            free: (0..frames)
                .map(|_| Frame {
                    storage: Box::new([0; ROOM]),
                    start: HEADROOM,
                    end: HEADROOM,
                })
                .collect(),
            sent: 0,
        }
    }

    #[inline]
    fn frame(&mut self, bytes_of: impl FnOnce(&mut [u8])) -> Frame {
        let mut frame = self.free.pop().expect("frame pool exhausted");
        frame.start = HEADROOM;
        frame.end = HEADROOM + FRAME_LEN;
        bytes_of(&mut frame.storage[HEADROOM..HEADROOM + FRAME_LEN]);
        frame
    }
}

impl PacketIo<Frame> for Pool {
    #[inline]
    fn send(&mut self, _port: u16, packet: Frame) {
        self.sent += 1;
        self.free.push(packet);
    }
    #[inline]
    fn alloc(&mut self) -> Option<Frame> {
        let mut frame = self.free.pop()?;
        frame.start = HEADROOM;
        frame.end = HEADROOM;
        Some(frame)
    }
    /// One worker: nothing is ever another's.
    #[inline]
    fn redirect(&mut self, _worker: u16, packet: Frame) -> Result<(), Frame> {
        Err(packet)
    }
    #[inline]
    fn share_neighbour(&mut self, _ip: Ipv4Addr, _mac: MacAddr, _port: u16) {}
}

/// Packets per measured burst (DPDK's usual RX burst).
const BURST: usize = 32;

/// The measured unit: one burst through the packet path, TX hand-off
/// included. Never inlined, so callgrind can collect exactly this.
#[inline(never)]
fn measured_handle_burst(engine: &mut Engine<Frame>, frames: &mut Vec<Frame>, pool: &mut Pool) {
    engine.handle_burst(frames.drain(..), CLIENT_PORT, pool);
}

/// An engine with both reals' MACs learned, and for established traffic
/// every flow created (SYN) and established (ACK) before measuring.
fn primed(
    mode: &str,
    traffic: Traffic,
    connections: usize,
    pool: &mut Pool,
) -> Result<(Engine<Frame>, std::sync::Arc<WorkerCounters>), String> {
    let mode = common::forward_mode(mode)?;
    let (mut engine, counters) = common::engine(common::snapshot(mode, DIR_MACS), connections);
    for real in 0..common::REALS.len() {
        let frame = pool.frame(|b| b.copy_from_slice(&common::real_arp(real)));
        engine.handle(frame, REAL_PORT, pool);
    }
    if let Traffic::Established { flows, .. } = traffic {
        for flags in [0x02, 0x10] {
            let writer = FrameWriter::new(DIR_MACS[0], flags);
            for flow in 0..flows {
                let frame = pool.frame(|b| writer.write(b, flow));
                engine.handle(frame, CLIENT_PORT, pool);
            }
        }
        let created = counters.read().conns_created;
        if created != flows {
            return Err(format!(
                "priming created {created} connections, expected {flows}"
            ));
        }
    }
    Ok((engine, counters))
}

fn run(args: &Args) -> Result<(), String> {
    let mode = args.str("mode", "nat");
    let traffic = Traffic::parse(&args.str("traffic", "est"), args.num("flows", 1000u64)?)?;
    let packets: u64 = args.num("packets", 1_000_000)?;
    let connections = match traffic {
        Traffic::New => packets as usize + 1024,
        Traffic::Established { flows, .. } => flows as usize + 1024,
    };
    let mut pool = Pool::new(4096);
    let (mut engine, counters) = primed(&mode, traffic, connections, &mut pool)?;
    let flags = if traffic == Traffic::New { 0x02 } else { 0x10 };
    let writer = FrameWriter::new(DIR_MACS[0], flags);
    let before = counters.read();
    pool.sent = 0;
    let faults = common::minor_faults();
    let mut burst = Vec::with_capacity(BURST);
    let start = Instant::now();
    for n in 0..packets {
        burst.push(pool.frame(|b| writer.write(b, traffic.flow(n))));
        if burst.len() == BURST || n + 1 == packets {
            measured_handle_burst(&mut engine, &mut burst, &mut pool);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let faults = common::minor_faults() - faults;
    let after = counters.read();
    let dropped: u64 = after.drops.iter().sum::<u64>() - before.drops.iter().sum::<u64>();
    if pool.sent != packets {
        let reasons: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| after.drops_of(**r) > before.drops_of(**r))
            .map(|r| format!("{} {}", r.name(), after.drops_of(*r) - before.drops_of(*r)))
            .collect();
        return Err(format!(
            "only {} of {packets} packets were forwarded; drops: {}",
            pool.sent,
            reasons.join(", ")
        ));
    }
    println!(
        "{{\"part\":\"inmem\",\"mode\":\"{mode}\",\"traffic\":\"{}\",\"table_on\":\"{:?}\",\"flows\":{},\"packets\":{packets},\"forwarded\":{},\"dropped\":{dropped},\"conns_created\":{},\"ns_per_packet\":{:.2},\"mpps\":{:.3},\"page_faults\":{faults}}}",
        traffic.name(),
        engine.connections().backing().0,
        traffic.flows(),
        pool.sent,
        after.conns_created - before.conns_created,
        elapsed * 1e9 / packets as f64,
        packets as f64 / elapsed / 1e6,
    );
    Ok(())
}

fn memory(args: &Args) -> Result<(), String> {
    let conns: u64 = args.num("conns", 1_000_000)?;
    let mode = args.str("mode", "nat");
    let mut pool = Pool::new(4096);
    let rss_before = common::rss_bytes();
    let (engine, counters) = primed(
        &mode,
        Traffic::established(conns),
        conns as usize,
        &mut pool,
    )?;
    let rss_after = common::rss_bytes();
    let table = engine.connections();
    let tracked = counters.read().conns_current;
    println!(
        "{{\"part\":\"memory\",\"mode\":\"{mode}\",\"conns\":{tracked},\"capacity\":{},\"table_bytes\":{},\"bytes_per_conn\":{:.1},\"rss_delta_bytes\":{},\"rss_bytes_per_conn\":{:.1}}}",
        table.capacity(),
        table.memory_bytes(),
        table.memory_bytes() as f64 / tracked as f64,
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / tracked as f64,
    );
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let result = match argv.get(1).map(String::as_str) {
        Some("run") => Args::parse(&argv[2..]).and_then(|a| run(&a)),
        Some("memory") => Args::parse(&argv[2..]).and_then(|a| memory(&a)),
        _ => Err("usage: bench_inmem run|memory [--option value ...]".into()),
    };
    if let Err(e) = result {
        eprintln!("bench_inmem: {e}");
        std::process::exit(1);
    }
}
