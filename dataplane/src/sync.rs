//! The connection sync daemons (REFERENCE.md §10), each a thread of its
//! own, never a worker's time, speaking IPVS sync protocol version 1
//! ([`rvs_control::sync`]) over UDP multicast on a kernel interface.
//!
//! - The master takes the connection copies the workers put on their sync
//!   rings ([`Mesh::sync_out`], see engine/sync.rs for when), batches them
//!   into datagrams of at most `sync_maxlen` bytes and sends them to the
//!   group (224.0.0.81:8848 by default), TTL `mcast_ttl`, loop off, out of
//!   `mcast_interface`. A datagram leaves when full, or when its oldest
//!   record has waited [`FLUSH_AFTER`] (the kernel waits up to 2 s; rvs
//!   keeps the backup's lag lower at the cost of a few more datagrams).
//! - The backup joins the group on `mcast_interface`, drops what the
//!   kernel would drop (wrong size, version, syncid; counted by reason) and
//!   hands each connection to the worker that owns its flow, over that
//!   worker's bounded ring ([`Mesh::sync_in`]); the worker binds it to its
//!   own service and real. A full ring drops the record and counts it.
//!
//! On a port's kernel interface the datagrams travel through rvsd's own
//! exception path (the TAP device and the DPDK port), as keepalived's VRRP
//! does.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use rvs_control::sync::{self as wire, SyncConn, SyncError};

use crate::engine::WorkerPlace;
use crate::mesh::Mesh;

/// How long a record may wait for its datagram to fill.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// How long an idle master sleeps between looks at the rings.
const MASTER_IDLE: Duration = Duration::from_millis(5);

/// What one daemon is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSpec {
    pub interface: String,
    pub syncid: u8,
    pub maxlen: usize,
    pub group: Ipv4Addr,
    pub port: u16,
    pub ttl: u8,
}

/// The sync daemons' counters (each written by one daemon thread).
#[derive(Default)]
pub struct SyncCounters {
    /// Master: datagrams and connection records sent, and datagrams the
    /// socket refused.
    pub sent_datagrams: AtomicU64,
    pub sent_conns: AtomicU64,
    pub send_errors: AtomicU64,
    /// Backup: datagrams read, the connection records in them, and the
    /// records each worker's full ring dropped.
    pub received_datagrams: AtomicU64,
    pub received_conns: AtomicU64,
    pub ring_full: AtomicU64,
    /// Backup: records skipped one by one as the kernel skips them (IPv6,
    /// unknown mandatory options).
    pub skipped_records: AtomicU64,
    /// Backup: datagrams dropped whole, by [`SyncError`] in
    /// [`ERROR_NAMES`] order.
    pub dropped: [AtomicU64; ERROR_NAMES.len()],
}

/// The reasons a datagram is dropped, by the name stats output uses.
pub const ERROR_NAMES: [&str; 6] = [
    "too_short",
    "bad_size",
    "other_syncid",
    "unsupported_version",
    "truncated",
    "bad_record",
];

fn error_slot(error: SyncError) -> usize {
    match error {
        SyncError::TooShort => 0,
        SyncError::BadSize => 1,
        SyncError::OtherSyncid => 2,
        SyncError::UnsupportedVersion => 3,
        SyncError::Truncated => 4,
        SyncError::BadRecord => 5,
    }
}

impl SyncCounters {
    /// Every counter by name, for stats output.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = [
            ("sent_datagrams", &self.sent_datagrams),
            ("sent_conns", &self.sent_conns),
            ("send_errors", &self.send_errors),
            ("received_datagrams", &self.received_datagrams),
            ("received_conns", &self.received_conns),
            ("ring_full", &self.ring_full),
            ("skipped_records", &self.skipped_records),
        ]
        .into_iter()
        .map(|(name, c)| (name.to_string(), c.load(Relaxed)))
        .collect();
        for (name, c) in ERROR_NAMES.iter().zip(&self.dropped) {
            out.push((format!("dropped_{name}"), c.load(Relaxed)));
        }
        out
    }
}

/// A running daemon: stopped when dropped.
pub struct Daemon {
    pub spec: DaemonSpec,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The index of interface `name`, or why there is none.
fn interface_index(name: &str) -> Result<u32, String> {
    crate::dpdk::interface_index(name).ok_or_else(|| format!("no interface {name} on this host"))
}

/// Checks that a daemon can start on `spec.interface`.
pub fn check_interface(spec: &DaemonSpec) -> Result<(), String> {
    interface_index(&spec.interface).map(|_| ())
}

fn udp_socket() -> std::io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

/// Starts the master daemon.
pub fn start_master(
    spec: DaemonSpec,
    mesh: Arc<Mesh>,
    counters: Arc<SyncCounters>,
) -> Result<Daemon, String> {
    check_interface(&spec)?;
    let fail =
        |what: &str, e: std::io::Error| format!("sync master on {}: {what}: {e}", spec.interface);
    let socket = udp_socket().map_err(|e| fail("socket", e))?;
    socket
        .bind_device(Some(spec.interface.as_bytes()))
        .map_err(|e| fail("bind to the interface", e))?;
    // Bound to the device, multicast leaves by it: the device is the
    // route's output interface.
    socket
        .set_multicast_ttl_v4(u32::from(spec.ttl))
        .map_err(|e| fail("multicast TTL", e))?;
    socket
        .set_multicast_loop_v4(false)
        .map_err(|e| fail("multicast loop", e))?;
    let to = SockAddr::from(SocketAddrV4::new(spec.group, spec.port));
    // What waited on the rings while no master ran is stale.
    for ring in &mesh.sync_out {
        while ring.pop().is_some() {}
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let (syncid, maxlen) = (spec.syncid, spec.maxlen);
    let thread = std::thread::Builder::new()
        .name("rvs-sync-master".into())
        .spawn(move || {
            // Records of the largest kind (with rvs's local option) that
            // fill a datagram: sent at once when that many wait.
            let full = (maxlen.saturating_sub(8) / 44).clamp(1, 255);
            let mut pending: Vec<SyncConn> = Vec::with_capacity(full * 4);
            let mut oldest: Option<Instant> = None;
            while !stopping.load(Relaxed) {
                for ring in &mesh.sync_out {
                    while let Some(record) = ring.pop() {
                        pending.push(record);
                        oldest.get_or_insert_with(Instant::now);
                    }
                }
                let due = oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER);
                if pending.len() >= full || (due && !pending.is_empty()) {
                    for datagram in wire::encode(syncid, &pending, maxlen) {
                        match socket.send_to(&datagram, &to) {
                            Ok(_) => {
                                counters.sent_datagrams.fetch_add(1, Relaxed);
                                counters
                                    .sent_conns
                                    .fetch_add(u64::from(datagram[4]), Relaxed);
                            }
                            Err(_) => {
                                counters.send_errors.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    pending.clear();
                    oldest = None;
                } else {
                    std::thread::sleep(MASTER_IDLE);
                }
            }
        })
        .map_err(|e| format!("cannot start the sync master: {e}"))?;
    Ok(Daemon {
        spec,
        stop,
        thread: Some(thread),
    })
}

/// Starts the backup daemon for a dataplane of `place.count` workers.
pub fn start_backup(
    spec: DaemonSpec,
    mesh: Arc<Mesh>,
    place: WorkerPlace,
    counters: Arc<SyncCounters>,
) -> Result<Daemon, String> {
    let index = interface_index(&spec.interface)?;
    let fail =
        |what: &str, e: std::io::Error| format!("sync backup on {}: {what}: {e}", spec.interface);
    let socket = udp_socket().map_err(|e| fail("socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| fail("address reuse", e))?;
    socket
        .bind_device(Some(spec.interface.as_bytes()))
        .map_err(|e| fail("bind to the interface", e))?;
    socket
        .bind(&SockAddr::from(SocketAddrV4::new(spec.group, spec.port)))
        .map_err(|e| fail(&format!("bind {}:{}", spec.group, spec.port), e))?;
    socket
        .join_multicast_v4_n(&spec.group, &InterfaceIndexOrAddress::Index(index))
        .map_err(|e| fail(&format!("join {}", spec.group), e))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| fail("receive timeout", e))?;
    let socket: std::net::UdpSocket = socket.into();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let syncid = spec.syncid;
    let thread = std::thread::Builder::new()
        .name("rvs-sync-backup".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 65536];
            while !stopping.load(Relaxed) {
                let Ok(len) = socket.recv(&mut buffer) else {
                    continue;
                };
                receive(&buffer[..len], syncid, &mesh, place, &counters);
            }
        })
        .map_err(|e| format!("cannot start the sync backup: {e}"))?;
    Ok(Daemon {
        spec,
        stop,
        thread: Some(thread),
    })
}

/// A backup's handling of one datagram.
pub fn receive(
    datagram: &[u8],
    syncid: u8,
    mesh: &Mesh,
    place: WorkerPlace,
    counters: &SyncCounters,
) {
    match wire::decode(datagram, syncid) {
        Ok(message) => {
            counters.received_datagrams.fetch_add(1, Relaxed);
            counters
                .skipped_records
                .fetch_add(message.skipped as u64, Relaxed);
            for conn in message.conns {
                counters.received_conns.fetch_add(1, Relaxed);
                let owner = usize::from(place.owner_of_client(conn.caddr));
                if mesh.sync_in[owner].push(conn).is_err() {
                    counters.ring_full.fetch_add(1, Relaxed);
                }
            }
        }
        Err(error) => {
            counters.dropped[error_slot(error)].fetch_add(1, Relaxed);
        }
    }
}
