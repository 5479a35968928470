//! Layer 2: ARP (answers, learning, requests), the neighbours waiting list,
//! and routing plus transmission of every packet that leaves.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::counters::{bump, DropReason, WorkerCounters};
use crate::neigh::{Lookup, REACHABLE_SECS};
use crate::wire::arp::{self, ArpOperation, ArpPacket};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};

use super::{Engine, PacketIo, ETH_LEN};

impl<P: PacketBuf> Engine<P> {
    /// An ARP packet received on `in_port`: its sender is learned (and what
    /// waited for it sent), and a request for an address rvs answers on that
    /// port gets its reply.
    ///
    /// Only senders on the port's own subnets teach the table, as Linux only
    /// accepts them on an interface's subnets: a frame claiming an address of
    /// another segment (or of rvs itself) is answered if it asks for us but
    /// never changes where packets go. Every next hop rvs resolves is on a
    /// subnet of its port (routes name a connected next hop), so the replies
    /// to rvs's own requests always pass.
    // Kept out of the flow path: rare next to TCP/UDP packets.
    #[inline(never)]
    pub(super) fn arp(
        &mut self,
        mut packet: P,
        in_port: u16,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let data = packet.data().get(ETH_LEN..).ok_or(DropReason::Malformed)?;
        let request = ArpPacket::new_checked(data).map_err(|e| match e.kind {
            crate::wire::ErrorKind::Unsupported => DropReason::Unsupported,
            _ => DropReason::Malformed,
        })?;
        let operation = request.operation();
        let (sender_mac, sender_ip, target_ip) = (
            request.sender_mac(),
            request.sender_ip(),
            request.target_ip(),
        );
        let for_us = self.snapshot.answers_arp(in_port, target_ip);
        let port_mac = self.snapshot.ports[usize::from(in_port)].mac;

        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            if self.snapshot.on_subnet(in_port, sender_ip) && !self.snapshot.owns(sender_ip) {
                if self
                    .neighbours
                    .learn(sender_ip, sender_mac, in_port, self.now, for_us)
                {
                    self.release_held(sender_ip, in_port, io);
                }
                if for_us && self.place.count > 1 {
                    io.share_neighbour(sender_ip, sender_mac, in_port);
                }
            } else {
                bump(&self.counters.arp_refused, 1);
            }
        }
        if operation != ArpOperation::REQUEST || !for_us {
            // Replies to the kernel's own requests, and requests for its
            // addresses, are the kernel's.
            return self.kernel_or(packet, in_port, DropReason::NotForUs, io);
        }
        let data = packet.data_mut();
        {
            let mut reply = ArpPacket::new_checked(&mut data[ETH_LEN..])?;
            reply.set_operation(ArpOperation::REPLY);
            reply.set_target_mac(sender_mac);
            reply.set_target_ip(sender_ip);
            reply.set_sender_mac(port_mac);
            reply.set_sender_ip(target_ip);
        }
        bump(&self.counters.arp_replies_sent, 1);
        transmit(&self.counters, io, in_port, port_mac, sender_mac, packet);
        Ok(())
    }

    /// Sends every packet that waited for `ip` behind `port` to resolve.
    pub(super) fn release_held(&mut self, ip: Ipv4Addr, port: u16, io: &mut impl PacketIo<P>) {
        let Engine {
            snapshot,
            neighbours,
            counters,
            ..
        } = self;
        neighbours.release(ip, port, |port, mac, held| {
            let src = snapshot.ports[usize::from(port)].mac;
            transmit(counters, io, port, src, mac, held);
        });
    }

    /// Routes `packet` toward `dst`: straight out when the next hop's MAC is
    /// known, else held while ARP resolves it.
    pub(super) fn forward(
        &mut self,
        packet: P,
        dst: Ipv4Addr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let generation = self.neighbours.generation();
        if let Some(hop) = self.next_hops.get(dst, generation, self.now) {
            transmit(&self.counters, io, hop.port, hop.port_mac, hop.mac, packet);
            return Ok(());
        }
        let (port, next_hop) = self.snapshot.route(dst).ok_or(DropReason::NoRoute)?;
        let port_mac = self.snapshot.ports[usize::from(port)].mac;
        match self.neighbours.lookup(next_hop, port, self.now) {
            Lookup::Known { mac, refresh } => {
                transmit(&self.counters, io, port, port_mac, mac, packet);
                if refresh {
                    self.arp_request(next_hop, port, io);
                } else if let Some((mac, confirmed)) =
                    self.neighbours.fresh(next_hop, port, self.now)
                {
                    self.next_hops.put(NextHop {
                        dst,
                        port,
                        port_mac,
                        mac,
                        confirmed,
                        generation,
                    });
                }
                Ok(())
            }
            Lookup::Unknown { probe } => {
                let held = self.neighbours.hold(next_hop, port, self.now, packet);
                if probe {
                    self.arp_request(next_hop, port, io);
                }
                held.map_err(|_| DropReason::ArpPendingFull)
            }
        }
    }

    /// Broadcasts "who has `target`" on `port`.
    pub(super) fn arp_request(&mut self, target: Ipv4Addr, port: u16, io: &mut impl PacketIo<P>) {
        let Some(source) = self.snapshot.source_address(port, target) else {
            return;
        };
        let Some(mut packet) = io.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        let port_mac = self.snapshot.ports[usize::from(port)].mac;
        if !packet.append(ETH_LEN + ArpPacket::<&[u8]>::LEN) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        let data = packet.data_mut();
        let written = arp::emit(
            &mut data[ETH_LEN..],
            ArpOperation::REQUEST,
            port_mac,
            source,
            MacAddr::ZERO,
            target,
        );
        match (written, EthernetFrame::new_checked(&mut *data)) {
            (Ok(()), Ok(mut frame)) => frame.set_ethertype(EtherType::ARP),
            _ => {
                self.counters.count_drop(DropReason::NoBuffer);
                return;
            }
        }
        bump(&self.counters.arp_requests_sent, 1);
        transmit(
            &self.counters,
            io,
            port,
            port_mac,
            MacAddr::BROADCAST,
            packet,
        );
    }
}

/// Sets the Ethernet addresses and hands the packet to TX, counting it.
#[inline]
pub(super) fn transmit<P: PacketBuf>(
    counters: &WorkerCounters,
    io: &mut impl PacketIo<P>,
    port: u16,
    src: MacAddr,
    dst: MacAddr,
    mut packet: P,
) {
    if let Ok(mut frame) = EthernetFrame::new_checked(packet.data_mut()) {
        frame.set_src(src);
        frame.set_dst(dst);
    }
    bump(&counters.tx_packets, 1);
    bump(&counters.tx_bytes, packet.len() as u64);
    io.send(port, packet);
}

/// Where packets to one destination went: its route's port and the next
/// hop's MAC, as of neighbour-table generation `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NextHop {
    dst: Ipv4Addr,
    port: u16,
    port_mac: MacAddr,
    mac: MacAddr,
    /// When the neighbour was confirmed: the answer holds for
    /// [`REACHABLE_SECS`] from then.
    confirmed: u32,
    generation: u64,
}

/// The next hops of the last destinations, so that a packet to one of them
/// skips the route and neighbour lookups: a few slots by the destination's
/// low bits. An entry is used only while it is what those lookups would
/// answer without side effects: the same snapshot (emptied when one is
/// swapped in), the same neighbour-table generation (any learning,
/// forgetting or failure changes it) and the neighbour still reachable (no
/// refresh due). Otherwise the lookups run and may fill the slot again.
#[derive(Clone, Debug, Default)]
pub(super) struct NextHops {
    slots: [Option<NextHop>; NEXT_HOP_SLOTS],
}

const NEXT_HOP_SLOTS: usize = 8;

impl NextHops {
    #[inline]
    fn slot(dst: Ipv4Addr) -> usize {
        dst.to_bits() as usize % NEXT_HOP_SLOTS
    }

    #[inline]
    fn get(&self, dst: Ipv4Addr, generation: u64, now: u32) -> Option<NextHop> {
        self.slots[Self::slot(dst)].filter(|hop| {
            hop.dst == dst
                && hop.generation == generation
                && now.wrapping_sub(hop.confirmed) < REACHABLE_SECS
        })
    }

    fn put(&mut self, hop: NextHop) {
        self.slots[Self::slot(hop.dst)] = Some(hop);
    }

    /// Forgets every next hop (a new snapshot may route differently).
    pub(super) fn clear(&mut self) {
        self.slots = [None; NEXT_HOP_SLOTS];
    }
}
