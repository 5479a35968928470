//! ICMP: echo replies, errors about tracked connections passed on
//! translated, and the errors rvs originates (fragmentation needed).
//!
//! An error about a tracked connection (destination unreachable, time
//! exceeded) goes where the connection's packets in the same direction go,
//! rewritten by its forwarding mode (`xmit`'s `Carried::IcmpError`, with the
//! translations here): the outer
//! header like a packet of the connection, the quoted packet like one going
//! the other way. It never creates a connection. Errors are rare, so their
//! checksums are computed afresh rather than patched.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::{Conn, ConnKey};
use crate::counters::{bump, DropReason};
use crate::tcp_state::Direction;
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};

use super::l2::transmit;
use super::{Engine, PacketIo, ETH_LEN, IPV4_LEN};

/// Most of the offending packet an ICMP error quotes (576-byte datagram).
const ICMP_QUOTE_MAX: usize = 576 - IPV4_LEN - 8;

impl<P: PacketBuf> Engine<P> {
    /// Answers an echo request to an address rvs owns, from `src_mac` on
    /// `in_port`, turning it into its reply in place.
    // Kept out of the flow path: rare next to TCP/UDP packets.
    #[inline(never)]
    pub(super) fn echo(
        &mut self,
        mut packet: P,
        in_port: u16,
        src_mac: MacAddr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        {
            let mut ip = Ipv4Packet::new_checked(&mut packet.data_mut()[ETH_LEN..])?;
            if !IcmpPacket::new_checked(ip.payload())?.verify_checksum() {
                return Err(DropReason::BadChecksum);
            }
            let (src, dst) = (ip.src(), ip.dst());
            // Swapping the two addresses leaves the header checksum unchanged.
            ip.set_src(dst);
            ip.set_dst(src);
            IcmpPacket::new_checked(ip.payload_mut())?.make_echo_reply();
        }
        let port_mac = self.snapshot.ports[usize::from(in_port)].mac;
        bump(&self.counters.icmp_echo_replies, 1);
        transmit(&self.counters, io, in_port, port_mac, src_mac, packet);
        Ok(())
    }

    /// The tracked connection an ICMP error is about, and the direction the
    /// error travels in it; `quoted` is the quoted packet's key seen the way
    /// the error travels. An error about no tracked connection is not for
    /// rvs.
    // Kept out of the flow path: rare next to TCP/UDP packets.
    #[inline(never)]
    pub(super) fn icmp_error(&mut self, quoted: &ConnKey) -> Result<(Conn, Direction), DropReason> {
        let (id, direction) = self.conns.lookup(quoted).ok_or(DropReason::NotForUs)?;
        bump(&self.counters.icmp_errors_forwarded, 1);
        Ok((*self.conns.get(id), direction))
    }

    /// Tells the sender of `original` that it must fit in `mtu` bytes.
    pub(super) fn frag_needed(&mut self, original: &P, mtu: u16, io: &mut impl PacketIo<P>) {
        // From the port, as a router on the path answers.
        let result = self.error_to_sender(
            original,
            (icmp::DEST_UNREACHABLE, icmp::code::FRAG_NEEDED),
            u32::from(mtu),
            None,
            io,
        );
        if let Err(reason) = result {
            self.counters.count_drop(reason);
        }
    }

    /// Builds an ICMP error of (type, code) about `original` and sends it
    /// to its source, from `from` or else the address of the port toward
    /// the sender.
    pub(super) fn error_to_sender(
        &mut self,
        original: &P,
        (msg_type, code): (u8, u8),
        rest: u32,
        from: Option<Ipv4Addr>,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let offending = &original.data()[ETH_LEN..];
        let ip = Ipv4Packet::new_checked(offending)?;
        let sender = ip.src();
        let quote = &offending[..usize::from(ip.total_len()).min(ICMP_QUOTE_MAX)];
        let (port, _) = self.snapshot.route(sender).ok_or(DropReason::NoRoute)?;
        let source = match from {
            Some(from) => from,
            None => self
                .snapshot
                .source_address(port, sender)
                .ok_or(DropReason::NoRoute)?,
        };
        let mut error = io.alloc().ok_or(DropReason::NoBuffer)?;
        let len = ETH_LEN + IPV4_LEN + 8 + quote.len();
        if !error.append(len) {
            return Err(DropReason::NoBuffer);
        }
        let data = error.data_mut();
        EthernetFrame::new_checked(&mut data[..])?.set_ethertype(EtherType::IPV4);
        self.ident = self.ident.wrapping_add(1);
        Ipv4Repr {
            src: source,
            dst: sender,
            protocol: protocol::ICMP,
            ttl: 64,
            dscp_ecn: 0,
            ident: self.ident,
            dont_frag: false,
            payload_len: (8 + quote.len()) as u16,
        }
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])?;
        let icmp_start = ETH_LEN + IPV4_LEN;
        data[icmp_start + 8..].copy_from_slice(quote);
        let mut message = IcmpPacket::new_checked(&mut data[icmp_start..])?;
        message.set_msg_type(msg_type);
        message.set_code(code);
        message.set_rest_of_header(rest);
        message.fill_checksum();
        bump(&self.counters.icmp_errors_sent, 1);
        self.forward(error, sender, io)
    }
}

/// Makes an error from the real's side, about a packet rvs sent toward the
/// real, one about the client's own packet (client:cport → vip:vport), to
/// the client; an error the real itself sent then comes from the VIP.
pub(super) fn error_to_client<P: PacketBuf>(packet: &mut P, conn: &Conn) -> Result<(), DropReason> {
    let outer_src = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])?.src();
    translate_error(
        packet,
        (outer_src == conn.real).then_some(conn.vip),
        Some(conn.client),
        (conn.client, conn.client_port),
        (conn.vip, conn.vport),
    )
}

/// Rewrites an ICMP error in place: the outer source (if `outer_src`) and
/// destination (if `outer_dst`), and the quoted packet's source and
/// destination address and port. Errors are rare, so checksums are simply
/// recomputed (the quoted transport checksum is left as quoted: receivers do
/// not check it).
pub(super) fn translate_error<P: PacketBuf>(
    packet: &mut P,
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    inner_src: (Ipv4Addr, u16),
    inner_dst: (Ipv4Addr, u16),
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut outer = Ipv4Packet::new_checked(&mut *l3)?;
    if let Some(addr) = outer_src {
        outer.set_src(addr);
    }
    if let Some(addr) = outer_dst {
        outer.set_dst(addr);
    }
    outer.fill_checksum();
    let mut message = IcmpPacket::new_checked(outer.payload_mut())?;
    {
        let mut inner = Ipv4Packet::new_checked_quoted(message.payload_mut())?;
        inner.set_src(inner_src.0);
        inner.set_dst(inner_dst.0);
        inner.fill_checksum();
        let ports = inner.payload_mut();
        if ports.len() >= 4 {
            ports[0..2].copy_from_slice(&inner_src.1.to_be_bytes());
            ports[2..4].copy_from_slice(&inner_dst.1.to_be_bytes());
        }
    }
    message.fill_checksum();
    Ok(())
}
