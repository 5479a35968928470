//! ICMP: echo replies, errors about tracked connections translated both
//! ways, and the errors rvs originates (fragmentation needed).

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::ConnKey;
use crate::counters::{bump, DropReason};
use crate::snapshot::ForwardMode;
use crate::tcp_state::Direction;
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};

use super::*;

/// Most of the offending packet an ICMP error quotes (576-byte datagram).
pub(super) const ICMP_QUOTE_MAX: usize = 576 - IPV4_LEN - 8;

impl<P: PacketBuf> Engine<P> {
    /// Turns an echo request to an owned address into its reply, in place.
    pub(super) fn icmp_echo(&mut self, packet: &mut P) -> Result<(), DropReason> {
        let data = &mut packet.data_mut()[ETH_LEN..];
        let mut ip = Ipv4Packet::new_checked(&mut *data).map_err(|_| DropReason::Malformed)?;
        if !IcmpPacket::new_checked(ip.payload())
            .map_err(|_| DropReason::Malformed)?
            .verify_checksum()
        {
            return Err(DropReason::BadChecksum);
        }
        let (src, dst) = (ip.src(), ip.dst());
        // Swapping the two addresses leaves the header checksum unchanged.
        ip.set_src(dst);
        ip.set_dst(src);
        let mut message =
            IcmpPacket::new_checked(ip.payload_mut()).map_err(|_| DropReason::Malformed)?;
        message.make_echo_reply();
        Ok(())
    }

    /// Tells the sender of `original` that it must fit in `mtu` bytes.
    pub(super) fn frag_needed(&mut self, original: &P, mtu: u16, io: &mut impl PacketIo<P>) {
        let result = self.icmp_error_to_sender(
            original,
            icmp::DEST_UNREACHABLE,
            icmp::code::FRAG_NEEDED,
            u32::from(mtu),
            io,
        );
        if let Err(reason) = result {
            self.counters.count_drop(reason);
        }
    }

    /// Builds an ICMP error about `original` and sends it to its source.
    pub(super) fn icmp_error_to_sender(
        &mut self,
        original: &P,
        msg_type: u8,
        code: u8,
        rest: u32,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let offending = &original.data()[ETH_LEN..];
        let ip = Ipv4Packet::new_checked(offending).map_err(|_| DropReason::Malformed)?;
        let sender = ip.src();
        let quote = &offending[..usize::from(ip.total_len()).min(ICMP_QUOTE_MAX)];
        let (port, _) = self.snapshot.route(sender).ok_or(DropReason::NoRoute)?;
        let source = self
            .snapshot
            .source_address(port, sender)
            .ok_or(DropReason::NoRoute)?;
        let mut error = io.alloc().ok_or(DropReason::NoBuffer)?;
        let len = ETH_LEN + IPV4_LEN + 8 + quote.len();
        if !error.append(len) {
            return Err(DropReason::NoBuffer);
        }
        let data = error.data_mut();
        EthernetFrame::new_checked(&mut data[..])
            .map_err(|_| DropReason::Malformed)?
            .set_ethertype(EtherType::IPV4);
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
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])
        .map_err(|_| DropReason::Malformed)?;
        let icmp_start = ETH_LEN + IPV4_LEN;
        data[icmp_start + 8..].copy_from_slice(quote);
        let mut message =
            IcmpPacket::new_checked(&mut data[icmp_start..]).map_err(|_| DropReason::Malformed)?;
        message.set_msg_type(msg_type);
        message.set_code(code);
        message.set_rest_of_header(rest);
        message.fill_checksum();
        bump(&self.counters.icmp_errors_sent, 1);
        self.forward(error, sender, io)
    }

    /// An ICMP error (destination unreachable, time exceeded) about a tracked
    /// connection: translated like the connection's own packets and passed
    /// to the other side, as IPVS does. It never creates a connection.
    pub(super) fn icmp_error(
        &mut self,
        mut packet: P,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let quoted = {
            let outer = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
                .map_err(|_| DropReason::Malformed)?;
            let message =
                IcmpPacket::new_checked(outer.payload()).map_err(|_| DropReason::Malformed)?;
            let inner = Ipv4Packet::new_checked_quoted(message.payload())
                .map_err(|_| DropReason::Malformed)?;
            let ports = inner.payload();
            if ports.len() < 4 || !matches!(inner.protocol(), protocol::TCP | protocol::UDP) {
                return Err(DropReason::NotForUs);
            }
            // The packet the error is about, seen in the direction it answers.
            ConnKey {
                proto: inner.protocol(),
                src: inner.dst(),
                src_port: u16::from_be_bytes([ports[2], ports[3]]),
                dst: inner.src(),
                dst_port: u16::from_be_bytes([ports[0], ports[1]]),
            }
        };
        if steer && self.place.count > 1 {
            let owner = self.owner(quoted.src, quoted.dst, quoted.dst_port);
            if owner != self.place.index {
                return self.redirect(owner, packet, io);
            }
        }
        let (id, direction) = self.conns.lookup(&quoted).ok_or(DropReason::NotForUs)?;
        let conn = *self.conns.get(id);
        bump(&self.counters.icmp_errors_forwarded, 1);
        if direction == Direction::Input {
            // From the client's side, about a packet rvs sent it.
            match conn.forward {
                ForwardMode::Dr => self.forward(packet, conn.real, io),
                ForwardMode::Tun => {
                    self.encapsulate(&mut packet, conn.real, io)?;
                    self.forward(packet, conn.real, io)
                }
                ForwardMode::Nat | ForwardMode::FullNat => {
                    // The real sent (real:rport → local:lport).
                    translate_icmp(
                        &mut packet,
                        (conn.forward == ForwardMode::FullNat).then_some(conn.local),
                        Some(conn.real),
                        (conn.real, conn.real_port),
                        (conn.local, conn.local_port),
                    )?;
                    self.forward(packet, conn.real, io)
                }
            }
        } else {
            // From the real's side: the client sent (client:cport → vip:vport).
            let outer_src = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])
                .map_err(|_| DropReason::Malformed)?
                .src();
            translate_icmp(
                &mut packet,
                (outer_src == conn.real).then_some(conn.vip),
                Some(conn.client),
                (conn.client, conn.client_port),
                (conn.vip, conn.vport),
            )?;
            self.forward(packet, conn.client, io)
        }
    }
}

/// Rewrites an ICMP error in place: the outer source (if `outer_src`) and
/// destination (if `outer_dst`), and the quoted packet's source and
/// destination address and port. Errors are rare, so checksums are simply
/// recomputed (the quoted transport checksum is left as quoted: receivers do
/// not check it).
pub(super) fn translate_icmp<P: PacketBuf>(
    packet: &mut P,
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    inner_src: (Ipv4Addr, u16),
    inner_dst: (Ipv4Addr, u16),
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut outer = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    if let Some(addr) = outer_src {
        outer.set_src(addr);
    }
    if let Some(addr) = outer_dst {
        outer.set_dst(addr);
    }
    outer.fill_checksum();
    let mut message =
        IcmpPacket::new_checked(outer.payload_mut()).map_err(|_| DropReason::Malformed)?;
    {
        let mut inner = Ipv4Packet::new_checked_quoted(message.payload_mut())
            .map_err(|_| DropReason::Malformed)?;
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
