//! Classification: what a received frame is, parsed once.

use crate::buf::PacketBuf;
use crate::counters::{bump, DropReason};
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::{TcpFlags, TcpPacket};
use crate::wire::udp::UdpPacket;

use super::*;

/// The L4 facts of a TCP or UDP packet the path needs.
#[derive(Clone, Copy)]
pub(super) struct L4 {
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    pub(super) syn: bool,
    pub(super) fin: bool,
    pub(super) ack: bool,
    pub(super) rst: bool,
}

impl<P: PacketBuf> Engine<P> {
    pub(super) fn classify(
        &mut self,
        packet: P,
        in_port: u16,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let Some(port) = self.snapshot.ports.get(usize::from(in_port)) else {
            return Err(DropReason::NotForUs);
        };
        let frame = EthernetFrame::new_checked(packet.data()).map_err(|_| DropReason::Malformed)?;
        let (dst, src) = (frame.dst(), frame.src());
        if src == port.mac {
            // Our own transmission seen again (af_packet queues of one port).
            return Err(DropReason::NotForUs);
        }
        let ethertype = frame.ethertype();
        if ethertype == EtherType::ARP {
            if dst != port.mac && !dst.is_broadcast() {
                return Err(DropReason::NotForUs);
            }
            return self.arp(packet, in_port, io);
        }
        if dst != port.mac {
            return Err(DropReason::NotForUs);
        }
        if ethertype == EtherType::IPV4 {
            self.ipv4(packet, in_port, src, steer, io)
        } else {
            Err(DropReason::Unsupported)
        }
    }

    pub(super) fn ipv4(
        &mut self,
        mut packet: P,
        in_port: u16,
        src_mac: MacAddr,
        steer: bool,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let l3 = &packet.data()[ETH_LEN..];
        let ip = Ipv4Packet::new_checked(l3).map_err(|_| DropReason::Malformed)?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        if ip.is_fragment() {
            return Err(DropReason::IpFragment);
        }
        let (src, dst, proto) = (ip.src(), ip.dst(), ip.protocol());
        let frame_len = ETH_LEN + usize::from(ip.total_len());
        let l4 = match proto {
            protocol::TCP => {
                let tcp =
                    TcpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
                let flags = tcp.flags();
                Some(L4 {
                    src_port: tcp.src_port(),
                    dst_port: tcp.dst_port(),
                    syn: flags.contains(TcpFlags::SYN),
                    fin: flags.contains(TcpFlags::FIN),
                    ack: flags.contains(TcpFlags::ACK),
                    rst: flags.contains(TcpFlags::RST),
                })
            }
            protocol::UDP => {
                let udp =
                    UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::Malformed)?;
                Some(L4 {
                    src_port: udp.src_port(),
                    dst_port: udp.dst_port(),
                    syn: false,
                    fin: false,
                    ack: false,
                    rst: false,
                })
            }
            _ => None,
        };
        let icmp_type = if proto == protocol::ICMP {
            Some(
                IcmpPacket::new_checked(ip.payload())
                    .map_err(|_| DropReason::Malformed)?
                    .msg_type(),
            )
        } else {
            None
        };
        // Ethernet padding must not travel on (it would follow an outer header).
        packet.truncate(frame_len);

        if let Some(l4) = l4 {
            if steer && self.place.count > 1 {
                let owner = self.owner(src, dst, l4.dst_port);
                if owner != self.place.index {
                    return self.redirect(owner, packet, io);
                }
            }
            return self.l4(packet, proto, src, dst, l4, io);
        }
        let local = self.snapshot.is_vip(dst) || self.snapshot.is_port_address(dst);
        match icmp_type {
            Some(icmp::DEST_UNREACHABLE | icmp::TIME_EXCEEDED) => {
                self.icmp_error(packet, steer, io)
            }
            Some(icmp::ECHO_REQUEST) if local => {
                self.icmp_echo(&mut packet)?;
                let port_mac = self.snapshot.ports[usize::from(in_port)].mac;
                bump(&self.counters.icmp_echo_replies, 1);
                transmit(&self.counters, io, in_port, port_mac, src_mac, packet);
                Ok(())
            }
            _ if local => Err(DropReason::Unsupported),
            _ => Err(DropReason::NotForUs),
        }
    }
}
