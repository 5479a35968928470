//! FullNAT: local-address allocation.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::ConnKey;

use crate::engine::*;

/// Local ports probed for one new FullNAT connection before giving up.
pub(in crate::engine) const LADDR_PROBES: u32 = 64;

impl<P: PacketBuf> Engine<P> {
    /// A free FullNAT local address and port of this worker for a connection
    /// to `real:real_port`: free means no tracked connection uses
    /// (LIP, port, real, real port) yet, so one LIP:port serves several reals
    /// at once. Bounded work: at most [`LADDR_PROBES`] ports per LIP.
    pub(in crate::engine) fn local_address(
        &mut self,
        service: usize,
        proto: u8,
        real: Ipv4Addr,
        real_port: u16,
    ) -> Option<(Ipv4Addr, u16)> {
        let lips = &self.snapshot.services[service].local_addresses;
        let ports = self.local_ports;
        if lips.is_empty() || ports.count == 0 {
            return None;
        }
        let probes = LADDR_PROBES.min(ports.count);
        for turn in 0..lips.len() {
            let (lip, index) = lips[(self.lip_turn + turn) % lips.len()];
            let cursor = &mut self.lip_cursor[index as usize];
            for _ in 0..probes {
                let port = ports.port(*cursor);
                *cursor = (*cursor + 1) % ports.count;
                let reply = ConnKey {
                    proto,
                    src: real,
                    src_port: real_port,
                    dst: lip,
                    dst_port: port,
                };
                if self.conns.lookup(&reply).is_none() {
                    self.lip_turn = self.lip_turn.wrapping_add(1);
                    return Some((lip, port));
                }
            }
        }
        None
    }
}
