//! TUN: IP-in-IP encapsulation.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};

use crate::engine::*;

impl<P: PacketBuf> Engine<P> {
    /// TUN: wraps the IPv4 packet in an outer header from rvs to `real`.
    /// Too big for the egress MTU: dropped, and with DF set the client is
    /// told the MTU that fits (ICMP fragmentation needed).
    pub(in crate::engine) fn encapsulate(
        &mut self,
        packet: &mut P,
        real: Ipv4Addr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (port, _) = self.snapshot.route(real).ok_or(DropReason::NoRoute)?;
        let mtu = usize::from(self.snapshot.ports[usize::from(port)].mtu);
        let source = self
            .snapshot
            .source_address(port, real)
            .ok_or(DropReason::NoRoute)?;
        let inner = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
            .map_err(|_| DropReason::Malformed)?;
        let (total, dont_frag, tos) = (inner.total_len(), inner.dont_frag(), inner.dscp_ecn());
        if usize::from(total) + IPV4_LEN > mtu {
            if dont_frag {
                self.frag_needed(packet, (mtu - IPV4_LEN) as u16, io);
            }
            return Err(DropReason::FragNeeded);
        }
        if !packet.prepend(IPV4_LEN) {
            return Err(DropReason::NoBuffer);
        }
        self.ident = self.ident.wrapping_add(1);
        let data = packet.data_mut();
        data.copy_within(IPV4_LEN..IPV4_LEN + ETH_LEN, 0);
        Ipv4Repr {
            src: source,
            dst: real,
            protocol: protocol::IPIP,
            ttl: 64,
            dscp_ecn: tos,
            ident: self.ident,
            dont_frag,
            payload_len: total,
        }
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])
        .map_err(|_| DropReason::Malformed)
    }
}
