//! Transmission per forwarding mode.

mod fullnat;
mod tun;

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::PortsMut;

use super::*;

/// Rewrites the source and/or destination address and port of a TCP or UDP
/// packet, patching every checksum incrementally (RFC 1624).
pub(in crate::engine) fn rewrite<P: PacketBuf>(
    packet: &mut P,
    new_src: Option<(Ipv4Addr, u16)>,
    new_dst: Option<(Ipv4Addr, u16)>,
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut ip = Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Malformed)?;
    let (old_src, old_dst, proto) = (ip.src(), ip.dst(), ip.protocol());
    if let Some((addr, _)) = new_src {
        if addr != old_src {
            ip.set_src_incremental(addr);
        }
    }
    if let Some((addr, _)) = new_dst {
        if addr != old_dst {
            ip.set_dst_incremental(addr);
        }
    }
    let l4 = ip.payload_mut();
    match proto {
        protocol::TCP => {
            let mut tcp = TcpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            rewrite_ports(&mut tcp, (old_src, old_dst), new_src, new_dst);
        }
        _ => {
            let mut udp = UdpPacket::new_checked(l4).map_err(|_| DropReason::Malformed)?;
            rewrite_ports(&mut udp, (old_src, old_dst), new_src, new_dst);
        }
    }
    Ok(())
}

/// The transport half of [`rewrite`]: new ports, and the checksum patched
/// for every address and port that changes.
#[inline]
pub(in crate::engine) fn rewrite_ports(
    l4: &mut impl PortsMut,
    (old_src, old_dst): (Ipv4Addr, Ipv4Addr),
    new_src: Option<(Ipv4Addr, u16)>,
    new_dst: Option<(Ipv4Addr, u16)>,
) {
    if let Some((addr, port)) = new_src {
        if addr != old_src {
            l4.update_checksum_for_addr(old_src, addr);
        }
        if port != l4.src_port() {
            l4.set_src_port_incremental(port);
        }
    }
    if let Some((addr, port)) = new_dst {
        if addr != old_dst {
            l4.update_checksum_for_addr(old_dst, addr);
        }
        if port != l4.dst_port() {
            l4.set_dst_port_incremental(port);
        }
    }
}
