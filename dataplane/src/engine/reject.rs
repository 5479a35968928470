//! Closed ports: what a TCP SYN or a UDP datagram to an address of rvs (a
//! VIP, a port's) on a port with no service gets back when the operator
//! asks for it (`closed_ports: reject`): a TCP RST (RFC 793's reset
//! generation) or an ICMP port unreachable, as the director's own stack
//! would answer in kernel LVS, so that the client fails at once instead of
//! after its full timeout. At most [`REJECTS_PER_SECOND`] per worker, never
//! to a martian source, never in answer to a RST; the packet itself is
//! dropped and counted either way.

use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::icmp;
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use crate::wire::tcp::{TcpFlags, TcpPacket};

use super::classify::Flow;
use super::{Engine, PacketIo, ETH_LEN, IPV4_LEN};

/// Answers per worker per second, at most.
pub(super) const REJECTS_PER_SECOND: u32 = 1000;

/// Bytes of a TCP header without options.
const TCP_LEN: usize = 20;

impl<P: PacketBuf> Engine<P> {
    /// Answers `packet` of `flow`, to a closed port, if the operator wants
    /// it and the budget allows.
    pub(super) fn reject(&mut self, packet: &P, flow: &Flow, io: &mut impl PacketIo<P>) {
        if !self.snapshot.reject_closed_ports
            || self.rejects_left == 0
            || self.snapshot.is_martian(flow.key.src)
            || flow.rst()
        {
            return;
        }
        self.rejects_left -= 1;
        let answered = if flow.key.proto == protocol::TCP {
            self.reset(packet, flow, io)
        } else {
            // From the address it was sent to, as a host answers.
            self.error_to_sender(
                packet,
                (icmp::DEST_UNREACHABLE, icmp::code::PORT_UNREACHABLE),
                0,
                Some(flow.key.dst),
                io,
            )
        };
        if let Err(reason) = answered {
            self.counters.count_drop(reason);
        }
    }

    /// Sends the RST RFC 793 answers `packet` (a TCP segment) with.
    fn reset(
        &mut self,
        packet: &P,
        flow: &Flow,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (seq, ack, flags) = {
            let ip = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])?;
            let segment = TcpPacket::new_checked(ip.payload())?;
            if flow.ack() {
                (segment.ack(), 0, TcpFlags::RST)
            } else {
                let length =
                    segment.payload().len() as u32 + u32::from(flow.syn()) + u32::from(flow.fin());
                (
                    0,
                    segment.seq().wrapping_add(length),
                    TcpFlags::RST | TcpFlags::ACK,
                )
            }
        };
        let key = &flow.key;
        let mut rst = io.alloc().ok_or(DropReason::NoBuffer)?;
        if !rst.append(ETH_LEN + IPV4_LEN + TCP_LEN) {
            return Err(DropReason::NoBuffer);
        }
        let data = rst.data_mut();
        EthernetFrame::new_checked(&mut data[..])?.set_ethertype(EtherType::IPV4);
        self.ident = self.ident.wrapping_add(1);
        Ipv4Repr {
            src: key.dst,
            dst: key.src,
            protocol: protocol::TCP,
            ttl: 64,
            dscp_ecn: 0,
            ident: self.ident,
            dont_frag: true,
            payload_len: TCP_LEN as u16,
        }
        .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])?;
        let tcp = &mut data[ETH_LEN + IPV4_LEN..];
        tcp.fill(0);
        tcp[12] = (TCP_LEN as u8 / 4) << 4;
        let mut segment = TcpPacket::new_checked(tcp)?;
        segment.set_src_port(key.dst_port);
        segment.set_dst_port(key.src_port);
        segment.set_seq(seq);
        segment.set_ack(ack);
        segment.set_flags(flags);
        segment.fill_checksum(key.dst, key.src);
        self.forward(rst, key.src, io)
    }
}
