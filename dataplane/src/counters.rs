//! Per-worker counters: single writer (the worker), read and summed by the
//! control thread.
//!
//! A worker bumps its own counters with a relaxed load + store, which compiles
//! to plain moves: no locked instruction, no shared cache line with another
//! worker (each block is cache-line aligned). Readers may see a value a few
//! packets old, never a torn one.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Why a packet was dropped. Small and `Copy`: it is what the packet path
/// produces instead of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Failed to parse at some layer (truncated, bad lengths, bad version).
    Malformed,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// IPv4 fragment: rvs does not reassemble.
    IpFragment,
    /// Not addressed to this director (another MAC, or an IP it does not own
    /// and no connection it tracks).
    NotForUs,
    /// Ethertype or IP protocol rvs does not handle (IPv6, ...).
    Unsupported,
    /// TCP/UDP to an owned address with no service on that port.
    NoService,
    /// The service has no real that may take a new connection.
    NoReal,
    /// A TCP packet that is neither a SYN nor part of a tracked connection.
    NoConn,
    /// The connection table is full.
    ConnTableFull,
    /// No route to the destination.
    NoRoute,
    /// The queue of packets waiting for ARP is full.
    ArpPendingFull,
    /// The next hop did not answer ARP in time.
    ArpTimeout,
    /// No mbuf to build a reply or request.
    NoBuffer,
    /// The TX queue did not take the packet.
    TxFull,
    /// Packet spans several mbufs (jumbo frames): not handled.
    MultiSegment,
    /// FullNAT: no free local address port for a new connection.
    LaddrExhausted,
    /// The ring to the worker owning the connection was full.
    RedirectFull,
    /// Too big for the egress MTU (once encapsulated, for TUN); ICMP
    /// fragmentation needed sent back if DF.
    FragNeeded,
    /// A frame longer than the receiving port's MTU allows.
    Oversize,
    /// IPv4 options asking for source routing (LSRR, SSRR).
    SourceRoute,
    /// A new connection from a source no host may use: 0.0.0.0/8,
    /// 127.0.0.0/8, multicast, 240.0.0.0/4 and broadcast, a subnet's
    /// network or broadcast address, or an address of rvs itself.
    Martian,
    /// A packet that would start a connection with a wrong TCP or UDP
    /// checksum.
    BadL4Checksum,
    /// For the port's kernel interface, but the ring to it was full.
    KernelFull,
    /// A new connection to a VIP (or a packet to a floating address) this
    /// director does not hold now (`ownership: kernel`, keepalived's VRRP
    /// gave it to the other director).
    NotHeld,
}

impl DropReason {
    pub const ALL: [DropReason; 24] = [
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::IpFragment,
        DropReason::NotForUs,
        DropReason::Unsupported,
        DropReason::NoService,
        DropReason::NoReal,
        DropReason::NoConn,
        DropReason::ConnTableFull,
        DropReason::NoRoute,
        DropReason::ArpPendingFull,
        DropReason::ArpTimeout,
        DropReason::NoBuffer,
        DropReason::TxFull,
        DropReason::MultiSegment,
        DropReason::LaddrExhausted,
        DropReason::RedirectFull,
        DropReason::FragNeeded,
        DropReason::Oversize,
        DropReason::SourceRoute,
        DropReason::Martian,
        DropReason::BadL4Checksum,
        DropReason::KernelFull,
        DropReason::NotHeld,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::IpFragment => "ip_fragment",
            DropReason::NotForUs => "not_for_us",
            DropReason::Unsupported => "unsupported",
            DropReason::NoService => "no_service",
            DropReason::NoReal => "no_real",
            DropReason::NoConn => "no_conn",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::NoRoute => "no_route",
            DropReason::ArpPendingFull => "arp_pending_full",
            DropReason::ArpTimeout => "arp_timeout",
            DropReason::NoBuffer => "no_buffer",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::LaddrExhausted => "laddr_exhausted",
            DropReason::RedirectFull => "redirect_full",
            DropReason::FragNeeded => "frag_needed",
            DropReason::Oversize => "oversize",
            DropReason::SourceRoute => "source_route",
            DropReason::Martian => "martian",
            DropReason::BadL4Checksum => "bad_l4_checksum",
            DropReason::KernelFull => "kernel_full",
            DropReason::NotHeld => "not_held",
        }
    }
}

impl From<crate::wire::WireError> for DropReason {
    /// A header that fails its checks is malformed, whatever the layer, so
    /// that the packet path writes `?` on a header view.
    fn from(_: crate::wire::WireError) -> Self {
        DropReason::Malformed
    }
}

/// Adds `n` to a counter this thread alone writes.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts `n` from a counter this thread alone writes, stopping at 0.
#[inline]
pub fn decrement(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).saturating_sub(n), Relaxed);
}

/// Adds a signed `delta` to a counter this thread alone writes, stopping
/// at 0.
#[inline]
pub fn add_signed(counter: &AtomicU64, delta: i32) {
    let value = counter
        .load(Relaxed)
        .saturating_add_signed(i64::from(delta));
    counter.store(value, Relaxed);
}

/// Declares the worker counters once: the atomic block a worker writes, its
/// plain copy, the copy's sum and its list by name, all from one list.
macro_rules! worker_counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// One worker's counters.
        #[repr(align(64))]
        #[derive(Default)]
        pub struct WorkerCounters {
            $( $(#[$doc])* pub $name: AtomicU64, )*
            pub drops: [AtomicU64; DropReason::COUNT],
        }

        impl WorkerCounters {
            /// A plain copy of every counter.
            pub fn read(&self) -> CountersSnapshot {
                CountersSnapshot {
                    $( $name: self.$name.load(Relaxed), )*
                    drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
                }
            }
        }

        /// Counters as plain numbers, summable across workers.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct CountersSnapshot {
            $( pub $name: u64, )*
            pub drops: [u64; DropReason::COUNT],
        }

        impl CountersSnapshot {
            pub fn add(&mut self, other: &CountersSnapshot) {
                $( self.$name += other.$name; )*
                for (sum, n) in self.drops.iter_mut().zip(other.drops) {
                    *sum += n;
                }
            }

            /// Every counter but the drops, by the name stats output uses,
            /// in declaration order.
            pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$( (stringify!($name), self.$name), )*].into_iter()
            }
        }
    };
}

worker_counters! {
    rx_packets,
    rx_bytes,
    tx_packets,
    tx_bytes,
    conns_created,
    conns_expired,
    conns_current,
    /// Unreplied connections ended early to make room for new ones.
    conns_evicted,
    arp_requests_sent,
    arp_replies_sent,
    /// ARP packets whose sender is not on the receiving port's subnets:
    /// answered if they ask for us, never learned from.
    arp_refused,
    /// Neighbour entries evicted from a full table (updated once a second).
    neighbours_evicted,
    icmp_echo_replies,
    /// Packets handed to the worker owning their connection.
    redirected,
    /// ICMP errors rvs built (fragmentation needed).
    icmp_errors_sent,
    /// ICMP errors about a tracked connection, translated and forwarded.
    icmp_errors_forwarded,
    /// Rounds of the worker's loop, and those that found work: their ratio
    /// is the worker's load.
    polls,
    busy_polls,
    /// Connection sync as a master: copies handed to the sync daemon, and
    /// those its full ring dropped.
    sync_queued,
    sync_ring_full,
    /// Connection sync as a backup: received connections (and templates)
    /// installed, updated in place, refused for want of a matching service
    /// and real here (or of a FullNAT local address, or because another
    /// connection holds its keys), and refused by a full table.
    sync_installed,
    sync_updated,
    sync_unbound,
    sync_table_full,
}

impl WorkerCounters {
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }
}

impl CountersSnapshot {
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

/// Per-real traffic counters of one worker, indexed like the snapshot's reals.
#[repr(align(64))]
#[derive(Default)]
pub struct RealCounters {
    /// Connections scheduled to the real (IPVS "Conns").
    pub conns: AtomicU64,
    /// Current ActiveConn / InActConn as IPVS counts them.
    pub active: AtomicU64,
    pub inactive: AtomicU64,
    /// Persistence templates pointing at the real (PersistConn).
    pub persist: AtomicU64,
    pub in_packets: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_packets: AtomicU64,
    pub out_bytes: AtomicU64,
}

/// A real's counters summed over the workers ([`RealBook::totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealTotals {
    pub conns: u64,
    pub active: u64,
    pub inactive: u64,
    pub persist: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

/// Everything per real that workers share: each worker's own counters (one
/// writer each) and the IPVS OVERLOAD flag of each real, which whichever
/// worker binds or unbinds a connection sets or clears. Indexed by real id.
/// Beside them, each worker's use of the FullNAT local addresses.
pub struct RealBook {
    pub workers: Vec<Arc<[RealCounters]>>,
    pub overloaded: Box<[AtomicBool]>,
    pub local: LocalBook,
}

/// FullNAT local ports in use, per worker (one writer each) and local
/// address. Any address of a port may serve as a local address, and ports
/// change only with a restart: the addresses are known at start.
pub struct LocalBook {
    /// Sorted; what `LocalCounters::in_use` is indexed by.
    pub addresses: Box<[Ipv4Addr]>,
    pub workers: Vec<Arc<LocalCounters>>,
}

/// One worker's [`LocalBook`] row.
pub struct LocalCounters {
    /// Local ports the worker may give out per address: its share of
    /// `fullnat.port_min..=port_max`.
    pub ports: AtomicU64,
    /// Per address: ports with at least one of the worker's connections.
    pub in_use: Box<[AtomicU64]>,
}

impl LocalBook {
    /// A row per worker for `addresses` (any order, repeats ignored).
    pub fn new(workers: usize, addresses: &[Ipv4Addr]) -> Self {
        let mut addresses = addresses.to_vec();
        addresses.sort_unstable();
        addresses.dedup();
        LocalBook {
            workers: (0..workers)
                .map(|_| {
                    Arc::new(LocalCounters {
                        ports: AtomicU64::new(0),
                        in_use: addresses.iter().map(|_| AtomicU64::new(0)).collect(),
                    })
                })
                .collect(),
            addresses: addresses.into(),
        }
    }
}

impl RealBook {
    /// Counters for `reals` real ids on each of `workers` workers.
    pub fn new(workers: usize, reals: usize) -> Self {
        RealBook {
            workers: (0..workers)
                .map(|_| (0..reals).map(|_| RealCounters::default()).collect())
                .collect(),
            overloaded: (0..reals).map(|_| AtomicBool::new(false)).collect(),
            local: LocalBook::new(workers, &[]),
        }
    }

    /// The book with a [`LocalBook`] for local addresses among `addresses`.
    pub fn with_local_addresses(mut self, addresses: &[Ipv4Addr]) -> Self {
        self.local = LocalBook::new(self.workers.len(), addresses);
        self
    }

    /// ActiveConn and InActConn of real `id` over all workers.
    #[inline]
    pub fn connections(&self, id: u32) -> (u32, u32) {
        let (mut active, mut inactive) = (0u64, 0u64);
        for worker in &self.workers {
            if let Some(c) = worker.get(id as usize) {
                active += c.active.load(Relaxed);
                inactive += c.inactive.load(Relaxed);
            }
        }
        (active as u32, inactive as u32)
    }

    /// Every counter of real `id`, summed over the workers.
    pub fn totals(&self, id: u32) -> RealTotals {
        let mut t = RealTotals::default();
        for worker in &self.workers {
            if let Some(c) = worker.get(id as usize) {
                t.conns += c.conns.load(Relaxed);
                t.active += c.active.load(Relaxed);
                t.inactive += c.inactive.load(Relaxed);
                t.persist += c.persist.load(Relaxed);
                t.in_packets += c.in_packets.load(Relaxed);
                t.in_bytes += c.in_bytes.load(Relaxed);
                t.out_packets += c.out_packets.load(Relaxed);
                t.out_bytes += c.out_bytes.load(Relaxed);
            }
        }
        t
    }

    #[inline]
    pub fn is_overloaded(&self, id: u32) -> bool {
        self.overloaded
            .get(id as usize)
            .is_some_and(|f| f.load(Relaxed))
    }

    pub fn set_overloaded(&self, id: u32, overloaded: bool) {
        if let Some(flag) = self.overloaded.get(id as usize) {
            flag.store(overloaded, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_names_are_unique_and_indexed_in_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn snapshots_sum() {
        let a = WorkerCounters::default();
        let b = WorkerCounters::default();
        bump(&a.rx_packets, 3);
        bump(&b.rx_packets, 4);
        a.count_drop(DropReason::NoReal);
        b.count_drop(DropReason::NoReal);
        b.count_drop(DropReason::Malformed);
        let mut sum = a.read();
        sum.add(&b.read());
        assert_eq!(sum.rx_packets, 7);
        assert_eq!(sum.drops_of(DropReason::NoReal), 2);
        assert_eq!(sum.drops_of(DropReason::Malformed), 1);
        assert_eq!(sum.drops_of(DropReason::TxFull), 0);
    }
}
