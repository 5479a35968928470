//! Dataplane throughput through DPDK's own path, no NIC: a generator lcore
//! writes 64-byte frames and transmits them into a `net_ring` vdev, whose RX
//! queue one worker lcore polls; what the worker forwards leaves through a
//! `net_null` vdev.
//!
//! ```text
//! bench_dpdk rvs   --mode nat --traffic new|est [--flows N] [options]
//! bench_dpdk iofwd --traffic new|est [--flows N] [options]
//! bench_dpdk pcap  --flows N --out FILE
//! ```
//!
//! - `rvs`: the worker is rvsd's own `worker::run` with an `Engine` on mbufs.
//!   Established traffic: the `N` connections are created (SYN, then ACK)
//!   through the same engine before the worker starts; the generator then
//!   cycles ACKs over them. New traffic: every SYN has a tuple never seen
//!   before, so every packet creates a connection.
//! - `iofwd`: the ceiling with the same generator and vdevs: the worker lcore
//!   moves packets from the ring's RX queue to net_null untouched (DPDK
//!   testpmd's io forwarding, in a loop of the same shape).
//! - `pcap`: writes the frames of `N` established flows as a pcap, for
//!   `dpdk-testpmd` with `net_pcap,infinite_rx=1`.
//!
//! `--source pcap` (established traffic only) replaces the ring and the
//! generator by `net_pcap0,rx_pcap=FILE,infinite_rx=1`, the frames of the `N`
//! flows written to FILE (`--pcap`, default /tmp/rvsbench-N.pcap) first:
//! exactly the vdev pair dpdk-testpmd is run on for the ceiling. The pcap PMD
//! holds one mbuf per frame in the file, and copies each into a fresh mbuf on
//! RX, on the worker's lcore.
//!
//! `net_ring0` without arguments is a loopback: TX queue q and RX queue q share
//! one ring (`ETH_RXTX<q>_net_ring0`, 1024 slots, single producer, single
//! consumer). The generator is the only producer: the engine transmits
//! nothing on the client port in these runs (no ARP is pending, no reply
//! traffic goes that way).
//!
//! Options: `--warmup S` (1), `--seconds S` (5), `--conns C` (table size;
//! default 2^21, or 2^24 for new traffic so the table does not fill during a
//! run), `--worker-cpu` (1), `--gen-cpu` (0), `--mbufs` (16383),
//! `--eal "extra args"` (e.g. "--no-huge -m 512").
//!
//! Prints one JSON line: packets per second the worker received (`mpps`),
//! forwarded (`tx_mpps`) and the generator offered (`gen_mpps`).

#[path = "common/mod.rs"]
mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Args, FrameWriter, Traffic, CLIENT_PORT, FRAME_LEN, REAL_PORT};
use rvs_dataplane::buf::PacketBuf;
use rvs_dataplane::counters::DropReason;
use rvs_dataplane::dpdk::{self, Mbuf, Mempool, PortConfig, PortHandle, RxBurst, TxBuffer, BURST};
use rvs_dataplane::engine::PacketIo;
use rvs_dataplane::mesh::Mesh;
use rvs_dataplane::wire::ethernet::MacAddr;
use rvs_dataplane::worker::{self, RxQueue, WorkerSetup};

const MAIN_LCORE: u32 = 0;
const WORKER_LCORE: u32 = 1;
const GEN_LCORE: u32 = 2;

/// Packets the engine sends while being primed on the main lcore go nowhere.
struct Discard {
    pool: Mempool,
}

impl PacketIo<Mbuf> for Discard {
    fn send(&mut self, _port: u16, packet: Mbuf) {
        drop(packet);
    }
    fn alloc(&mut self) -> Option<Mbuf> {
        Mbuf::alloc(&self.pool)
    }
    fn redirect(&mut self, _worker: u16, packet: Mbuf) -> Result<(), Mbuf> {
        Err(packet)
    }
    fn share_neighbour(&mut self, _ip: Ipv4Addr, _mac: MacAddr, _port: u16) {}
}

fn mbuf_of(pool: &Mempool, write: impl FnOnce(&mut [u8])) -> Result<Mbuf, String> {
    let mut m = Mbuf::alloc(pool).ok_or("mempool exhausted while priming")?;
    if !m.append(FRAME_LEN) {
        return Err("mbuf too small for a frame".into());
    }
    write(m.data_mut());
    Ok(m)
}

/// The generator: bursts of fresh frames into the ring port's TX queue 0 until
/// `stop`. What the full ring refuses is freed and counted.
fn generate(
    pool: Mempool,
    port: u16,
    writer: FrameWriter,
    traffic: Traffic,
    stop: Arc<AtomicBool>,
    offered: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let mut tx = TxBuffer::new(port, 0);
    let mut n = 0u64;
    let (mut sent, mut lost) = (0u64, 0u64);
    while !stop.load(Relaxed) {
        for _ in 0..BURST {
            let Some(mut m) = Mbuf::alloc(&pool) else {
                break;
            };
            if m.append(FRAME_LEN) {
                writer.write(m.data_mut(), traffic.flow(n));
                n += 1;
                tx.push(m);
            }
        }
        let burst = tx.pending() as u64;
        let r = tx.flush() as u64;
        sent += burst - r;
        lost += r;
        if r > 0 {
            // The ring is full: wait a little instead of spinning on
            // alloc/free, which would fight the worker for the mempool's
            // shared ring and its cache lines.
            for _ in 0..r * 4 {
                std::hint::spin_loop();
            }
        }
        // One shared write per burst, not per packet.
        offered.store(sent, Relaxed);
        refused.store(lost, Relaxed);
    }
}

/// testpmd's io forwarding: RX burst from the ring, TX burst to net_null.
fn io_forward(rx_port: u16, tx_port: u16, stop: Arc<AtomicBool>, moved: Arc<AtomicU64>) {
    let mut rx = RxBurst::default();
    let mut tx = TxBuffer::new(tx_port, 0);
    let mut total = 0u64;
    while !stop.load(Relaxed) {
        let n = rx.receive(rx_port, 0);
        while let Some(packet) = rx.next_packet() {
            match packet {
                Ok(m) => {
                    tx.push(m);
                }
                Err(segmented) => drop(segmented),
            }
        }
        tx.flush();
        total += n as u64;
        moved.store(total, Relaxed);
    }
}

/// The MAC DPDK 22.11's pcap PMD gives its first device ("\x02pcap" + index).
const PCAP_MAC: MacAddr = MacAddr([0x02, 0x70, 0x63, 0x61, 0x70, 0x00]);

/// Where the worker's packets come from.
#[derive(Clone, PartialEq, Eq)]
enum Source {
    /// `net_ring0`, fed by the generator lcore.
    Ring,
    /// `net_pcap0` replaying this file forever.
    Pcap(String),
}

impl Source {
    fn vdev(&self) -> String {
        match self {
            Source::Ring => "net_ring0".into(),
            Source::Pcap(file) => format!("net_pcap0,rx_pcap={file},infinite_rx=1"),
        }
    }

    fn device(&self) -> &'static str {
        match self {
            Source::Ring => "net_ring0",
            Source::Pcap(_) => "net_pcap0",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Source::Ring => "ring-gen",
            Source::Pcap(_) => "pcap",
        }
    }
}

struct Setup {
    pool: Mempool,
    ring: PortHandle,
    null: PortHandle,
    macs: [MacAddr; 2],
}

fn eal(args: &Args, run: &str, source: &Source, mbufs: u32) -> Result<Setup, String> {
    let worker_cpu: u32 = args.num("worker-cpu", 1)?;
    let gen_cpu: u32 = args.num("gen-cpu", 0)?;
    let mut eal = vec![
        "bench_dpdk".to_owned(),
        "--lcores".to_owned(),
        format!("{MAIN_LCORE}@{gen_cpu},{WORKER_LCORE}@{worker_cpu},{GEN_LCORE}@{gen_cpu}"),
        "--main-lcore".to_owned(),
        MAIN_LCORE.to_string(),
        "--no-pci".to_owned(),
        "--no-telemetry".to_owned(),
        "--file-prefix".to_owned(),
        format!("rvsbench{}{run}", std::process::id()),
        "--vdev".to_owned(),
        source.vdev(),
        "--vdev".to_owned(),
        "net_null0,no-rx=1".to_owned(),
    ];
    let extra = args.str("eal", "");
    // --no-huge implies legacy memory, which refuses --in-memory.
    if !extra.split_whitespace().any(|a| a == "--no-huge") {
        eal.push("--in-memory".to_owned());
    }
    eal.extend(extra.split_whitespace().map(str::to_owned));
    eprintln!(
        "bench_dpdk: DPDK {} EAL {}",
        dpdk::version(),
        eal[1..].join(" ")
    );
    dpdk::eal_init(&eal).map_err(|e| e.to_string())?;
    let pool = Mempool::create("bench", mbufs, 256, -1).map_err(|e| e.to_string())?;
    let ring = PortHandle::by_name(source.device()).map_err(|e| e.to_string())?;
    let null = PortHandle::by_name("net_null0").map_err(|e| e.to_string())?;
    let mut macs = [MacAddr::ZERO; 2];
    for (i, port) in [ring, null].iter().enumerate() {
        port.setup(
            &PortConfig {
                rx_queues: 1,
                tx_queues: 1,
                rx_descriptors: 1024,
                tx_descriptors: 1024,
                mtu: 1500,
            },
            pool,
        )
        .map_err(|e| e.to_string())?;
        macs[i] = MacAddr(port.mac().map_err(|e| e.to_string())?);
    }
    Ok(Setup {
        pool,
        ring,
        null,
        macs,
    })
}

fn bench(args: &Args, forward: bool) -> Result<(), String> {
    let mode = args.str("mode", "nat");
    let forward_mode = common::forward_mode(&mode)?;
    let traffic = Traffic::parse(&args.str("traffic", "est"), args.num("flows", 1000u64)?)?;
    let warmup: f64 = args.num("warmup", 1.0)?;
    let seconds: f64 = args.num("seconds", 5.0)?;
    let default_conns = if traffic == Traffic::New {
        1 << 24
    } else {
        1 << 21
    };
    let conns: usize = args.num("conns", default_conns)?;
    let source = match args.str("source", "ring").as_str() {
        "ring" => Source::Ring,
        "pcap" => {
            let Traffic::Established { flows, .. } = traffic else {
                return Err("--source pcap replays established flows only (--traffic est)".into());
            };
            let file = args.str("pcap", &format!("/tmp/rvsbench-{flows}.pcap"));
            let writer = FrameWriter::new(PCAP_MAC, 0x10);
            common::write_pcap(&file, &writer, flows).map_err(|e| format!("{file}: {e}"))?;
            Source::Pcap(file)
        }
        other => return Err(format!("unknown --source `{other}` (ring or pcap)")),
    };
    let pcap_frames = match source {
        Source::Pcap(_) => traffic.flows() as u32,
        Source::Ring => 0,
    };
    let mbufs = args.num("mbufs", 16383u32)? + pcap_frames;
    let setup = eal(args, if forward { "rvs" } else { "io" }, &source, mbufs)?;
    if matches!(source, Source::Pcap(_)) && setup.macs[0] != PCAP_MAC {
        return Err(format!(
            "net_pcap0 has MAC {}, the pcap was written for {PCAP_MAC}",
            setup.macs[0]
        ));
    }
    let pool = setup.pool;
    let flags = if traffic == Traffic::New { 0x02 } else { 0x10 };

    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let mut worker_counters = None;
    let mut table_len = 0usize;
    if forward {
        let (mut engine, counters) =
            common::engine::<Mbuf>(common::snapshot(forward_mode, setup.macs), conns);
        let mut discard = Discard { pool };
        for real in 0..common::REALS.len() {
            let m = mbuf_of(&pool, |b| b.copy_from_slice(&common::real_arp(real)))?;
            engine.handle(m, REAL_PORT, &mut discard);
        }
        if let Traffic::Established { flows, .. } = traffic {
            for flags in [0x02, 0x10] {
                let writer = FrameWriter::new(setup.macs[0], flags);
                for flow in 0..flows {
                    let m = mbuf_of(&pool, |b| writer.write(b, flow))?;
                    engine.handle(m, CLIENT_PORT, &mut discard);
                }
            }
            let created = counters.read().conns_created;
            if created != flows {
                return Err(format!(
                    "priming created {created} connections, expected {flows} (--conns {conns})"
                ));
            }
        }
        table_len = engine.connections().capacity();
        let worker_setup = WorkerSetup {
            rx: vec![RxQueue {
                port: CLIENT_PORT,
                dpdk_port: setup.ring.id,
                queue: 0,
            }],
            dpdk_ports: vec![setup.ring.id, setup.null.id],
            tx_queue: 0,
            pool,
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            // Busy polling: the benchmark measures the packet path.
            idle: worker::Backoff::new(64, 0, 0),
            tsc_start: dpdk::tsc(),
            tsc_hz: dpdk::tsc_hz().max(1),
            mesh: Arc::new(Mesh::new(1)),
            index: 0,
        };
        dpdk::launch(WORKER_LCORE, move || worker::run(engine, worker_setup))
            .map_err(|e| e.to_string())?;
        worker_counters = Some(counters);
    } else {
        let (ring, null, stop, moved) = (
            setup.ring.id,
            setup.null.id,
            Arc::clone(&stop),
            Arc::clone(&moved),
        );
        dpdk::launch(WORKER_LCORE, move || io_forward(ring, null, stop, moved))
            .map_err(|e| e.to_string())?;
    }

    let offered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    if source == Source::Ring {
        let writer = FrameWriter::new(setup.macs[0], flags);
        let (stop, offered, refused, port) = (
            Arc::clone(&stop),
            Arc::clone(&offered),
            Arc::clone(&refused),
            setup.ring.id,
        );
        dpdk::launch(GEN_LCORE, move || {
            generate(pool, port, writer, traffic, stop, offered, refused)
        })
        .map_err(|e| e.to_string())?;
    }

    // rx, tx, conns created, drops (worker); offered (generator)
    let sample = || -> (u64, u64, u64, [u64; DropReason::COUNT], u64) {
        match &worker_counters {
            Some(c) => {
                let s = c.read();
                (
                    s.rx_packets,
                    s.tx_packets,
                    s.conns_created,
                    s.drops,
                    offered.load(Relaxed),
                )
            }
            None => {
                let m = moved.load(Relaxed);
                (m, m, 0, [0; DropReason::COUNT], offered.load(Relaxed))
            }
        }
    };
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (rx0, tx0, c0, d0, o0) = sample();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (rx1, tx1, c1, d1, o1) = sample();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    dpdk::wait_all_lcores();

    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| d1[**r as usize] > d0[**r as usize])
        .map(|r| format!("\"{}\":{}", r.name(), d1[*r as usize] - d0[*r as usize]))
        .collect();
    let rate = |a: u64, b: u64| (b - a) as f64 / elapsed / 1e6;
    println!(
        "{{\"part\":\"throughput\",\"engine\":\"{}\",\"source\":\"{}\",\"mode\":\"{mode}\",\"traffic\":\"{}\",\"flows\":{},\"seconds\":{elapsed:.3},\"mpps\":{:.3},\"tx_mpps\":{:.3},\"gen_mpps\":{:.3},\"conns_per_s\":{:.0},\"conn_table\":{table_len},\"refused\":{},\"drops\":{{{}}}}}",
        if forward { "rvs" } else { "iofwd" },
        source.name(),
        traffic.name(),
        traffic.flows(),
        rate(rx0, rx1),
        rate(tx0, tx1),
        rate(o0, o1),
        (c1 - c0) as f64 / elapsed,
        refused.load(Relaxed),
        drops.join(","),
    );
    setup.ring.close();
    setup.null.close();
    dpdk::eal_cleanup();
    Ok(())
}

fn pcap(args: &Args) -> Result<(), String> {
    let flows: u64 = args.num("flows", 1000)?;
    let out = args.str("out", "flows.pcap");
    // testpmd forwards without looking at addresses; any director MAC will do.
    let writer = FrameWriter::new(MacAddr([0x02, 0x99, 0x01, 0, 0, 0x01]), 0x10);
    common::write_pcap(&out, &writer, flows).map_err(|e| format!("{out}: {e}"))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let result = match argv.get(1).map(String::as_str) {
        Some("rvs") => Args::parse(&argv[2..]).and_then(|a| bench(&a, true)),
        Some("iofwd") => Args::parse(&argv[2..]).and_then(|a| bench(&a, false)),
        Some("pcap") => Args::parse(&argv[2..]).and_then(|a| pcap(&a)),
        _ => Err("usage: bench_dpdk rvs|iofwd|pcap [--option value ...]".into()),
    };
    if let Err(e) = result {
        eprintln!("bench_dpdk: {e}");
        std::process::exit(1);
    }
}
