//! The exception path, as the packet path sees it: on a port with a kernel
//! interface (`ports[].kernel_interface`), a frame the dataplane does not
//! own goes to the kernel instead of being dropped, so that the director's
//! own host (ping, ssh, health checks, VRRP, routing daemons) can use the
//! port. The frame is handed over as it came, through a bounded ring
//! ([`PacketIo::to_kernel`]); when the ring is full it is dropped and
//! counted (`kernel_full`). What the kernel sends back never comes through
//! here: it leaves through the port as the kernel wrote it (crate::kernel).
//!
//! What stays the dataplane's on such a port: its own transmissions seen
//! again, unicast frames to another MAC, everything of a VIP (a VIP is
//! rvs's, never the kernel's) or of a FullNAT local address, and the ARP
//! requests and ICMP echo requests rvs answers itself.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::counters::DropReason;
use crate::wire::ethernet::EthernetFrame;

use super::{Engine, PacketIo};

impl<P: PacketBuf> Engine<P> {
    /// Whether port `port` has a kernel interface.
    #[inline]
    fn has_kernel(&self, port: u16) -> bool {
        self.snapshot
            .ports
            .get(usize::from(port))
            .is_some_and(|p| p.kernel)
    }

    /// Whether a TCP/UDP packet to `dst` with no service, received on
    /// `port`, is the kernel's: the port has a kernel interface and `dst`
    /// is neither a VIP nor a local address.
    #[cold]
    #[inline(never)]
    pub(super) fn kernel_takes(&self, port: u16, dst: Ipv4Addr) -> bool {
        self.has_kernel(port) && !self.snapshot.is_vip(dst) && !self.snapshot.is_lip(dst)
    }

    /// Hands `packet` to the kernel of port `port` if it has one; otherwise
    /// it is dropped for `reason`. Out of line: never on a connection's way.
    #[cold]
    #[inline(never)]
    pub(super) fn kernel_or(
        &mut self,
        packet: P,
        port: u16,
        reason: DropReason,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        if !self.has_kernel(port) {
            return Err(reason);
        }
        io.to_kernel(port, packet)
            .map_err(|_| DropReason::KernelFull)
    }

    /// A frame classification refused for `reason`: the kernel's if it is
    /// one the kernel could want (for no one rvs knows, or of a kind rvs
    /// does not handle) from another host, to this port's MAC or to a
    /// group (broadcast, multicast such as VRRP's or OSPF's).
    #[cold]
    #[inline(never)]
    pub(super) fn unowned_frame(
        &mut self,
        packet: P,
        port: u16,
        reason: DropReason,
        io: &mut impl PacketIo<P>,
    ) -> Result<(), DropReason> {
        if !matches!(reason, DropReason::NotForUs | DropReason::Unsupported)
            || !self.has_kernel(port)
        {
            return Err(reason);
        }
        let Ok(frame) = EthernetFrame::new_checked(packet.data()) else {
            return Err(reason);
        };
        let mac = self.snapshot.ports[usize::from(port)].mac;
        let (dst, src) = (frame.dst(), frame.src());
        if src == mac || (dst != mac && dst.is_unicast()) {
            return Err(reason);
        }
        self.kernel_or(packet, port, reason, io)
    }
}
