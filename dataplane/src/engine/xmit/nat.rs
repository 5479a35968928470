//! NAT ("Masq", ipvsadm `-m`): client → VIP:vport becomes client →
//! real:rport; the real's reply comes back through rvs (its default route)
//! and leaves as VIP:vport → client. Ports may be mapped.

use crate::buf::PacketBuf;
use crate::conn::Conn;
use crate::counters::DropReason;

use super::{rewrite, Carried};
use crate::engine::icmp::{error_to_client, translate_error};
use crate::engine::{Engine, PacketIo};

/// From the client's side: to the real.
#[inline(always)]
pub(super) fn to_real<P: PacketBuf>(
    engine: &mut Engine<P>,
    mut packet: P,
    conn: &Conn,
    carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    match carried {
        Carried::Packet => rewrite(&mut packet, None, Some((conn.real, conn.real_port)))?,
        // About a packet rvs sent the client: the real sent it to the client.
        Carried::IcmpError => translate_error(
            &mut packet,
            None,
            Some(conn.real),
            (conn.real, conn.real_port),
            (conn.local, conn.local_port),
        )?,
    }
    engine.forward(packet, conn.real, io)
}

/// From the real's side: to the client, from the VIP.
#[inline(always)]
pub(super) fn to_client<P: PacketBuf>(
    engine: &mut Engine<P>,
    mut packet: P,
    conn: &Conn,
    carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    match carried {
        Carried::Packet => rewrite(&mut packet, Some((conn.vip, conn.vport)), None)?,
        Carried::IcmpError => error_to_client(&mut packet, conn)?,
    }
    engine.forward(packet, conn.client, io)
}
