//! Transmission by forwarding mode: the one place that dispatches on a
//! packet's direction and its connection's mode, for every path that sends
//! a connection's packets (established and first packets, one-packet
//! scheduling, ICMP errors about a connection).
//!
//! Each mode's file has `to_real` (a packet from the client's side) and,
//! where replies come back through rvs, `to_client` (a packet from the
//! real's side); each takes a packet of the connection or an ICMP error
//! about it ([`Carried`]) and ends in [`Engine::forward`]:
//!
//! | mode | toward the real | toward the client |
//! |---|---|---|
//! | `nat` | destination → real:rport | source → VIP:vport |
//! | `fullnat` | source → LIP:lport, destination → real:rport | source → VIP:vport, destination → client:cport |
//! | `dr` | only the MACs | (as NAT, for a real routing back through rvs) |
//! | `tun` | wrapped in IPv4 to the real | (as NAT, for a real routing back through rvs) |
//!
//! The dispatch and the modes' functions are `#[inline(always)]`: each is a
//! step of every packet, and left out of line they cost about 20
//! instructions per packet (`bash bench/ir.sh`).

mod dr;
mod fullnat;
pub(in crate::engine) use fullnat::LocalUse;
mod nat;
mod tun;

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::Conn;
use crate::counters::DropReason;
use crate::tcp_state::Direction;
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::PortsMut;
use rvs_control::model::Forward;

use super::{Engine, PacketIo, ETH_LEN};

/// What goes out for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Carried {
    /// One of the connection's own packets.
    Packet,
    /// An ICMP error about one of its packets: the quoted packet is
    /// translated as the connection's packets are.
    IcmpError,
}

impl<P: PacketBuf> Engine<P> {
    /// Sends `packet` of connection `conn`, which travels in `direction`
    /// ([`Direction::Input`]: from the client's side), as `conn`'s mode
    /// wants it.
    #[inline(always)]
    pub(in crate::engine) fn xmit(
        &mut self,
        packet: P,
        conn: &Conn,
        direction: Direction,
        carried: Carried,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        // Only where ports' MTUs differ can a packet that came in fit one
        // and not the next; rvs does not fragment.
        if carried == Carried::Packet
            && packet.len() > ETH_LEN + usize::from(self.snapshot.min_mtu())
        {
            let toward = match direction {
                Direction::Output => conn.client,
                _ => conn.real,
            };
            self.fits_egress(&packet, toward, io)?;
        }
        if direction == Direction::Output {
            return match conn.forward {
                Forward::FullNat => fullnat::to_client(self, packet, conn, carried, io),
                // DR and TUN replies reach rvs only from a real that routes
                // through it; they are un-NATed as NAT's are.
                Forward::Nat | Forward::Dr | Forward::Tun => {
                    nat::to_client(self, packet, conn, carried, io)
                }
            };
        }
        match conn.forward {
            Forward::Nat => nat::to_real(self, packet, conn, carried, io),
            Forward::FullNat => fullnat::to_real(self, packet, conn, carried, io),
            Forward::Dr => dr::to_real(self, packet, conn, carried, io),
            Forward::Tun => tun::to_real(self, packet, conn, carried, io),
        }
    }
}

impl<P: PacketBuf> Engine<P> {
    /// Refuses `packet`, still as it arrived, if it is too big for the port
    /// the route to `toward` leaves by: dropped, and with DF its sender is
    /// told the MTU that fits, quoting the packet it sent.
    #[cold]
    fn fits_egress(
        &mut self,
        packet: &P,
        toward: std::net::Ipv4Addr,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        let (port, _) = self.snapshot.route(toward).ok_or(DropReason::NoRoute)?;
        let mtu = self.snapshot.ports[usize::from(port)].mtu;
        if packet.len() <= ETH_LEN + usize::from(mtu) {
            return Ok(());
        }
        let dont_frag = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])?.dont_frag();
        if dont_frag {
            self.frag_needed(packet, mtu, io);
        }
        Err(DropReason::FragNeeded)
    }
}

/// Rewrites the source and/or destination address and port of a TCP or UDP
/// packet, patching every checksum incrementally (RFC 1624).
fn rewrite<P: PacketBuf>(
    packet: &mut P,
    new_src: Option<(Ipv4Addr, u16)>,
    new_dst: Option<(Ipv4Addr, u16)>,
) -> Result<(), DropReason> {
    let l3 = &mut packet.data_mut()[ETH_LEN..];
    let mut ip = Ipv4Packet::new_checked(&mut *l3)?;
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
            let mut tcp = TcpPacket::new_checked(l4)?;
            rewrite_ports(&mut tcp, (old_src, old_dst), new_src, new_dst);
        }
        _ => {
            let mut udp = UdpPacket::new_checked(l4)?;
            rewrite_ports(&mut udp, (old_src, old_dst), new_src, new_dst);
        }
    }
    Ok(())
}

/// The transport half of [`rewrite`]: new ports, and the checksum patched
/// for every address and port that changes.
#[inline]
fn rewrite_ports(
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
