//! What the benchmark examples share: the service they load-balance, the
//! 64-byte frames they feed it and the flow numbering that makes every SYN's
//! tuple distinct. Included by `bench_dpdk.rs` and `bench_inmem.rs` with
//! `#[path]`; not an example of its own.
//!
//! Topology, as in the lab: port 0 `client` (10.99.1.1/24, VIP 10.99.1.100:80
//! behind it), port 1 `real` (10.99.2.1/24) with reals 10.99.2.11 and
//! 10.99.2.12. Clients are 172.16.0.0/12: flow `i` is client address
//! `172.16.0.0 + i / 64000`, port `1024 + i % 64000`, so 2^20 addresses give
//! 67 G distinct tuples before any repeats.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_control::model::Forward;
use rvs_control::model::SchedulerKind;
use rvs_dataplane::counters::{RealBook, WorkerCounters};
use rvs_dataplane::engine::{Engine, EngineLimits, WorkerPlace};
use rvs_dataplane::snapshot::{PortInfo, Prefix, RealInfo, ServiceInfo, Snapshot};
use rvs_dataplane::tcp_state::StateTimeouts;
use rvs_dataplane::wire::ethernet::MacAddr;
use rvs_dataplane::wire::ipv4::protocol;

pub const CLIENT_PORT: u16 = 0;
pub const REAL_PORT: u16 = 1;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 100);
pub const VPORT: u16 = 80;
pub const DIR_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
pub const DIR_REAL_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 2, 1);
pub const REALS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 99, 2, 11), Ipv4Addr::new(10, 99, 2, 12)];
pub const REAL_MACS: [MacAddr; 2] = [
    MacAddr([0x02, 0x99, 0x02, 0, 0, 0x11]),
    MacAddr([0x02, 0x99, 0x02, 0, 0, 0x12]),
];
/// Source MAC of generated client traffic (the router in front of the VIP).
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0x99, 0x01, 0, 0, 0x02]);
const CLIENT_BASE: u32 = u32::from_be_bytes([172, 16, 0, 0]);
const PORTS_PER_CLIENT: u64 = 64_000;

/// A frame on the wire without FCS: 60 bytes is a 64-byte Ethernet frame.
pub const FRAME_LEN: usize = 60;

/// The forwarding modes the benchmarks can be asked for, by ipvsadm-ish name.
pub fn forward_mode(name: &str) -> Result<Forward, String> {
    match name {
        "nat" | "masq" => Ok(Forward::Nat),
        "dr" | "route" => Ok(Forward::Dr),
        "tun" | "tunnel" => Ok(Forward::Tun),
        "fullnat" => Ok(Forward::FullNat),
        other => Err(format!(
            "unknown mode `{other}` (expected nat, dr, tun or fullnat)"
        )),
    }
}

/// FullNAT local addresses: 10.99.2.128/25, 128 of them, so that the local
/// ports (64 K per local address and real) outlast a new-connection run.
pub fn local_addresses(mode: Forward) -> Vec<(Ipv4Addr, u32)> {
    if mode != Forward::FullNat {
        return vec![];
    }
    (128..=255u8)
        .map(|host| (Ipv4Addr::new(10, 99, 2, host), 0))
        .collect()
}

/// What a run feeds the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// SYNs, every one a new tuple: each creates a connection.
    New,
    /// ACKs cycling over `flows` connections created before measuring, in
    /// a scattered order (see [`Traffic::flow`]).
    Established { flows: u64, stride: u64 },
}

impl Traffic {
    pub fn parse(kind: &str, flows: u64) -> Result<Traffic, String> {
        match kind {
            "new" => Ok(Traffic::New),
            "est" | "established" if flows > 0 => Ok(Traffic::established(flows)),
            "est" | "established" => Err("established traffic needs --flows N > 0".into()),
            other => Err(format!("unknown traffic `{other}` (expected new or est)")),
        }
    }

    /// Established traffic over `flows` connections.
    pub fn established(flows: u64) -> Traffic {
        // About flows / golden ratio, made coprime with flows: n * stride
        // mod flows then visits every flow once per round, consecutive
        // packets far apart in the table, as a director's packets are.
        let mut stride = ((flows as f64 * 0.618_033_988_7) as u64).max(1);
        while gcd(stride, flows) != 1 {
            stride += 1;
        }
        Traffic::Established { flows, stride }
    }

    pub fn name(self) -> &'static str {
        match self {
            Traffic::New => "new",
            Traffic::Established { .. } => "est",
        }
    }

    pub fn flows(self) -> u64 {
        match self {
            Traffic::New => 0,
            Traffic::Established { flows, .. } => flows,
        }
    }

    /// Flow number of the `n`th generated packet: for established traffic
    /// every flow once per round of `flows` packets, but not in the order
    /// they were created (which is the order of the connection table's
    /// slab, and would let the hardware prefetcher hide its misses).
    #[inline]
    pub fn flow(self, n: u64) -> u64 {
        match self {
            Traffic::New => n,
            // Below 2^32 flows the product fits in 64 bits: no 128-bit
            // division on the generator's path.
            Traffic::Established { flows, stride } if flows <= u64::from(u32::MAX) => {
                (n % flows) * stride % flows
            }
            Traffic::Established { flows, stride } => {
                ((u128::from(n % flows) * u128::from(stride)) % u128::from(flows)) as u64
            }
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The snapshot every benchmark runs against: one TCP service VIP:80, rr over
/// the two reals in `mode` (FullNAT: with [`local_addresses`]).
pub fn snapshot(mode: Forward, port_macs: [MacAddr; 2]) -> Snapshot {
    let ports = vec![
        PortInfo {
            name: "client".into(),
            mac: port_macs[0],
            addresses: vec![Prefix::new(DIR_CLIENT_IP, 24)],
            mtu: 1500,
            kernel: false,
            floating: Vec::new(),
        },
        PortInfo {
            name: "real".into(),
            mac: port_macs[1],
            addresses: vec![Prefix::new(DIR_REAL_IP, 24)],
            mtu: 1500,
            kernel: false,
            floating: Vec::new(),
        },
    ];
    let reals = REALS
        .iter()
        .enumerate()
        .map(|(id, &address)| RealInfo {
            address,
            port: VPORT,
            weight: 1,
            forward: mode,
            id: id as u32,
            thresholds: Default::default(),
            drained: false,
        })
        .collect();
    let services = vec![ServiceInfo {
        version: 1,
        local_addresses: local_addresses(mode),
        ..ServiceInfo::new(0, protocol::TCP, VIP, VPORT, SchedulerKind::Rr, reals)
    }];
    Snapshot::new(ports, vec![], services, StateTimeouts::default())
}

/// A fresh engine for `snapshot` with room for `connections`, and its counters.
pub fn engine<P: rvs_dataplane::buf::PacketBuf>(
    snapshot: Snapshot,
    connections: usize,
) -> (Engine<P>, Arc<WorkerCounters>) {
    let snapshot = Arc::new(snapshot);
    let counters = Arc::new(WorkerCounters::default());
    let book = Arc::new(RealBook::new(1, snapshot.real_id_bound()));
    let mut engine = Engine::new(
        snapshot,
        WorkerPlace { index: 0, count: 1 },
        EngineLimits {
            // Every connection may stay unverified: the benchmarks send
            // traffic no real answers, and measure the path without
            // evictions.
            unverified: connections,
            connections,
            arp_pending: 256,
            expire_budget: 1024,
        },
        Arc::clone(&counters),
        book,
    );
    engine.set_now(1);
    (engine, counters)
}

/// An ARP request from real `index` for the director's real-side address, as
/// each real sends before talking to its gateway: the engine learns the MAC
/// from it, so no packet waits for ARP during a run.
pub fn real_arp(index: usize) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&REAL_MACS[index].0);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let arp = &mut f[14..42];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&REAL_MACS[index].0);
    arp[14..18].copy_from_slice(&REALS[index].octets());
    arp[18..24].copy_from_slice(&[0; 6]);
    arp[24..28].copy_from_slice(&DIR_REAL_IP.octets());
    f
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn sum_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

/// Writes client → VIP:80 TCP frames of [`FRAME_LEN`] bytes for any flow
/// number, with both checksums right, from a template and two precomputed
/// partial sums: a few dozen instructions per frame.
pub struct FrameWriter {
    template: [u8; FRAME_LEN],
    /// IPv4 header words except source address and checksum.
    ip_partial: u32,
    /// TCP pseudo-header and header words except source address and port.
    tcp_partial: u32,
}

const IP: usize = 14;
const TCP: usize = 34;

impl FrameWriter {
    /// Frames to `dst_mac` (the director's client-side port) with TCP `flags`
    /// (0x02 SYN, 0x10 ACK).
    pub fn new(dst_mac: MacAddr, flags: u8) -> Self {
        let mut t = [0u8; FRAME_LEN];
        t[0..6].copy_from_slice(&dst_mac.0);
        t[6..12].copy_from_slice(&CLIENT_MAC.0);
        t[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut t[IP..IP + 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = protocol::TCP;
        ip[16..20].copy_from_slice(&VIP.octets());
        let ip_partial = sum_words(&t[IP..IP + 20]);
        let tcp = &mut t[TCP..TCP + 20];
        tcp[2..4].copy_from_slice(&VPORT.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        if flags & 0x10 != 0 {
            tcp[8..12].copy_from_slice(&2000u32.to_be_bytes());
        }
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let pseudo = sum_words(&VIP.octets()) + u32::from(protocol::TCP) + 20;
        let tcp_partial = pseudo + sum_words(&t[TCP..TCP + 20]);
        FrameWriter {
            template: t,
            ip_partial,
            tcp_partial,
        }
    }

    /// Client address and port of flow `flow`.
    #[inline]
    pub fn tuple(flow: u64) -> (u32, u16) {
        let addr = CLIENT_BASE.wrapping_add((flow / PORTS_PER_CLIENT) as u32 & 0x000f_ffff);
        let port = 1024 + (flow % PORTS_PER_CLIENT) as u16;
        (addr, port)
    }

    /// Writes the frame of flow `flow` into `out` (at least [`FRAME_LEN`] bytes).
    #[inline]
    pub fn write(&self, out: &mut [u8], flow: u64) {
        let (addr, port) = Self::tuple(flow);
        let out = &mut out[..FRAME_LEN];
        out.copy_from_slice(&self.template);
        let addr_sum = (addr >> 16) + (addr & 0xffff);
        out[IP + 12..IP + 16].copy_from_slice(&addr.to_be_bytes());
        out[IP + 10..IP + 12].copy_from_slice(&(!fold(self.ip_partial + addr_sum)).to_be_bytes());
        out[TCP..TCP + 2].copy_from_slice(&port.to_be_bytes());
        let tcp = !fold(self.tcp_partial + addr_sum + u32::from(port));
        out[TCP + 16..TCP + 18].copy_from_slice(&tcp.to_be_bytes());
    }
}

/// Writes a classic libpcap file (microsecond timestamps, Ethernet) holding one
/// frame of `writer` per flow in `0..flows`, in the order of
/// [`Traffic::flow`].
pub fn write_pcap(path: &str, writer: &FrameWriter, flows: u64) -> std::io::Result<()> {
    let traffic = Traffic::established(flows.max(1));
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
    let mut frame = [0u8; FRAME_LEN];
    for n in 0..flows {
        writer.write(&mut frame, traffic.flow(n));
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&(FRAME_LEN as u32).to_le_bytes())?;
        out.write_all(&(FRAME_LEN as u32).to_le_bytes())?;
        out.write_all(&frame)?;
    }
    out.flush()
}

/// Resident set size of this process in bytes (VmRSS).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Minor page faults of this process so far (/proc/self/stat field 10).
pub fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after_name = &s[s.rfind(')')? + 2..];
            after_name.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// `--key value` options after the subcommand.
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut it = raw.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, found `{key}`"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            pairs.push((key.to_owned(), value.clone()));
        }
        Ok(Args { pairs })
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map_or_else(|| default.to_owned(), |(_, v)| v.clone())
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.pairs.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v
                .parse()
                .map_err(|_| format!("--{key}: `{v}` is not a number")),
        }
    }
}
