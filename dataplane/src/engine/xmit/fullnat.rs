//! FullNAT ("FullNat", DPVS): both ends are rewritten. Client → VIP:vport
//! becomes LIP:lport → real:rport, and the real's reply to LIP:lport leaves
//! as VIP:vport → client:cport; the real needs only a route back to the
//! local address (LIP).
//!
//! Local addresses and ports: each worker allocates only the ports of the
//! FullNAT range whose low bits are its index (so that a reply is steered to
//! the worker owning its connection), from each of the service's LIPs in
//! turn. A port is free for a new connection when no tracked connection uses
//! (LIP, port, real, real port): one LIP:port serves several reals at once.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnKey};
use crate::counters::{bump, decrement, DropReason, LocalBook, LocalCounters};

use super::{rewrite, Carried};
use crate::engine::icmp::{error_to_client, translate_error};
use crate::engine::{Engine, PacketIo};

/// Local ports probed for one new FullNAT connection before giving up.
const LADDR_PROBES: u32 = 64;

/// From the client's side: from the local address, to the real.
#[inline(always)]
pub(super) fn to_real<P: PacketBuf>(
    engine: &mut Engine<P>,
    mut packet: P,
    conn: &Conn,
    carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    let local = (conn.local, conn.local_port);
    let real = (conn.real, conn.real_port);
    match carried {
        Carried::Packet => rewrite(&mut packet, Some(local), Some(real))?,
        // About a packet rvs sent the client: the real sent it to the LIP.
        Carried::IcmpError => {
            translate_error(&mut packet, Some(conn.local), Some(conn.real), real, local)?
        }
    }
    engine.forward(packet, conn.real, io)
}

/// From the real's side: from the VIP, to the client.
#[inline(always)]
pub(super) fn to_client<P: PacketBuf>(
    engine: &mut Engine<P>,
    mut packet: P,
    conn: &Conn,
    carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    match carried {
        Carried::Packet => rewrite(
            &mut packet,
            Some((conn.vip, conn.vport)),
            Some((conn.client, conn.client_port)),
        )?,
        Carried::IcmpError => error_to_client(&mut packet, conn)?,
    }
    engine.forward(packet, conn.client, io)
}

/// This worker's local ports in use: per local address, its connections
/// per port, and the number of ports with any, published to its
/// [`LocalCounters`] for the metrics. Touched once when a connection is
/// made and once when it goes, never per packet.
pub(in crate::engine) struct LocalUse {
    addresses: Box<[Ipv4Addr]>,
    /// Per address of `addresses`, indexed by port: empty until a snapshot
    /// lists the address as a local address ([`LocalUse::prepare`]).
    refs: Vec<Box<[u32]>>,
    counters: Arc<LocalCounters>,
}

impl LocalUse {
    pub(in crate::engine) fn new(book: &LocalBook, worker: usize) -> Self {
        LocalUse {
            addresses: book.addresses.clone(),
            refs: book.addresses.iter().map(|_| Box::default()).collect(),
            counters: Arc::clone(&book.workers[worker]),
        }
    }

    /// Readies the counts of the local addresses of a snapshot taking
    /// effect (between bursts: never an allocation per packet), and
    /// publishes how many ports this worker gives out per address.
    pub(in crate::engine) fn prepare(&mut self, lips: &[Ipv4Addr], ports: u32) {
        for lip in lips {
            if let Ok(i) = self.addresses.binary_search(lip) {
                if self.refs[i].is_empty() {
                    self.refs[i] = vec![0; usize::from(u16::MAX) + 1].into_boxed_slice();
                }
            }
        }
        self.counters.ports.store(u64::from(ports), Relaxed);
    }

    /// A connection now uses `address:port`.
    pub(in crate::engine) fn take(&mut self, address: Ipv4Addr, port: u16) {
        self.adjust(address, port, 1);
    }

    /// A connection that used `address:port` went.
    pub(in crate::engine) fn release(&mut self, address: Ipv4Addr, port: u16) {
        self.adjust(address, port, -1);
    }

    /// Adds `delta` to the connections on `address:port`, and keeps the
    /// count of ports in use as it becomes, or stops being, one of them.
    fn adjust(&mut self, address: Ipv4Addr, port: u16, delta: i32) {
        let Ok(i) = self.addresses.binary_search(&address) else {
            return;
        };
        // Prepared: the address is one of a snapshot's.
        let Some(count) = self.refs[i].get_mut(usize::from(port)) else {
            return;
        };
        let was_used = *count > 0;
        *count = count.saturating_add_signed(delta);
        match (was_used, *count > 0) {
            (false, true) => bump(&self.counters.in_use[i], 1),
            (true, false) => decrement(&self.counters.in_use[i], 1),
            _ => {}
        }
    }
}

impl<P: PacketBuf> Engine<P> {
    /// A free FullNAT local address and port of this worker for a connection
    /// to `real:real_port`: free means no tracked connection uses
    /// (LIP, port, real, real port) yet, so one LIP:port serves several reals
    /// at once. Bounded work: at most [`LADDR_PROBES`] ports per LIP.
    pub(in crate::engine) fn local_address(
        &mut self,
        service: usize,
        proto: u8,
        real: Ipv4Addr,
        real_port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let lips = &self.snapshot.services[service].local_addresses;
        let ports = self.local_ports;
        if lips.is_empty() || ports.count == 0 {
            return None;
        }
        let probes = LADDR_PROBES.min(ports.count);
        for turn in 0..lips.len() {
            let (lip, index) = lips[(self.lip_turn + turn) % lips.len()];
            let cursor = &mut self.lip_cursor[index as usize];
            for _ in 0..probes {
                let port = ports.port(*cursor);
                *cursor = (*cursor + 1) % ports.count;
                let reply = ConnKey {
                    proto,
                    src: real,
                    src_port: real_port,
                    dst: lip,
                    dst_port: port,
                };
                if self.conns.lookup(&reply).is_none() {
                    self.lip_turn = self.lip_turn.wrapping_add(1);
                    return Some((lip, port));
                }
            }
        }
        None
    }
}
