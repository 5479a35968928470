//! Steering: which worker owns a connection, the hand-over to it, and the
//! share of the FullNAT local ports each worker allocates from.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::counters::{bump, DropReason};
use crate::snapshot::Snapshot;

use super::classify::Verdict;
use super::{Engine, PacketIo};

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
pub(super) struct LocalPorts {
    base: u32,
    stride: u32,
    pub(super) count: u32,
}

impl LocalPorts {
    pub(super) fn new(snapshot: &Snapshot, place: WorkerPlace) -> Self {
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
    pub(super) fn port(&self, k: u32) -> u16 {
        (self.base + k * self.stride) as u16
    }
}

impl<P: PacketBuf> Engine<P> {
    /// The worker that must handle a packet of this verdict when it is not
    /// this one: the owner of the connection of a TCP/UDP packet, or of the
    /// one an ICMP error is about. ARP and echo requests are handled where
    /// they arrive.
    #[inline]
    pub(super) fn other_owner(&self, verdict: &Verdict) -> Option<u16> {
        if self.place.count <= 1 {
            return None;
        }
        let key = match verdict {
            Verdict::Flow(flow) => &flow.key,
            Verdict::IcmpError { quoted } => quoted,
            Verdict::Arp | Verdict::Echo { .. } => return None,
        };
        let owner = self.owner(key.src, key.dst, key.dst_port);
        (owner != self.place.index).then_some(owner)
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

    /// Hands `packet` to worker `owner`.
    pub(super) fn redirect(
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
}
