//! DR ("Route", ipvsadm `-g`): only the Ethernet addresses change; the
//! real holds the VIP and answers the client directly.

use crate::buf::PacketBuf;
use crate::conn::Conn;
use crate::counters::DropReason;

use super::Carried;
use crate::engine::{Engine, PacketIo};

/// From the client's side: to the real, unchanged above Ethernet; an ICMP
/// error travels unchanged too (it quotes what the real itself sent).
#[inline(always)]
pub(super) fn to_real<P: PacketBuf>(
    engine: &mut Engine<P>,
    packet: P,
    conn: &Conn,
    _carried: Carried,
    io: &mut impl PacketIo<P>,
) -> Result<(), DropReason> {
    engine.forward(packet, conn.real, io)
}
