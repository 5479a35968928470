//! TUN ("Tunnel", ipvsadm `-i`): the packet is wrapped in an outer IPv4
//! header from rvs to the real (protocol 4, TTL 64, DF and TOS copied); the
//! real decapsulates it, holds the VIP and answers the client directly. A
//! packet too big for the egress MTU once wrapped is dropped, and with DF
//! set its sender is told the MTU that fits (ICMP fragmentation needed).

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::Conn;
use crate::counters::DropReason;
use crate::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};

use super::Carried;
use crate::engine::{Engine, PacketIo, ETH_LEN, IPV4_LEN};

/// From the client's side: wrapped, to the real; an ICMP error is wrapped
/// unchanged too (it quotes what the real itself sent).
#[inline(always)]
pub(super) fn to_real<P: PacketBuf>(
    engine: &mut Engine<P>,
    mut packet: P,
    conn: &Conn,
    _carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    encapsulate(engine, &mut packet, conn.real, io)?;
    engine.forward(packet, conn.real, io)
}

/// Wraps the IPv4 packet in an outer header from rvs to `real`.
fn encapsulate<P: PacketBuf>(
    engine: &mut Engine<P>,
    packet: &mut P,
    real: Ipv4Addr,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    let (port, _) = engine.snapshot.route(real).ok_or(DropReason::NoRoute)?;
    let mtu = usize::from(engine.snapshot.ports[usize::from(port)].mtu);
    let source = engine
        .snapshot
        .source_address(port, real)
        .ok_or(DropReason::NoRoute)?;
    let inner = Ipv4Packet::new_checked(&packet.data()[ETH_LEN..])?;
    let (total, dont_frag, tos) = (inner.total_len(), inner.dont_frag(), inner.dscp_ecn());
    if usize::from(total) + IPV4_LEN > mtu {
        if dont_frag {
            engine.frag_needed(packet, (mtu - IPV4_LEN) as u16, io);
        }
        return Err(DropReason::FragNeeded);
    }
    if !packet.prepend(IPV4_LEN) {
        return Err(DropReason::NoBuffer);
    }
    engine.ident = engine.ident.wrapping_add(1);
    let data = packet.data_mut();
    data.copy_within(IPV4_LEN..IPV4_LEN + ETH_LEN, 0);
    Ipv4Repr {
        src: source,
        dst: real,
        protocol: protocol::IPIP,
        ttl: 64,
        dscp_ecn: tos,
        ident: engine.ident,
        dont_frag,
        payload_len: total,
    }
    .emit(&mut data[ETH_LEN..ETH_LEN + IPV4_LEN])?;
    Ok(())
}
