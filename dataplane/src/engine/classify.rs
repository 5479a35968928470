//! Classification: what a received frame is, from one parse of its headers.
//!
//! Everything the later steps decide on is read here, once: the Ethernet
//! addresses, the IPv4 header (checksum, fragments), the TCP or UDP ports and
//! flags, the ICMP type and, for an ICMP error, the connection key of the
//! packet it quotes. A frame that is not for rvs, or that rvs cannot handle
//! (longer than the port's MTU, source-routed), ends here as a
//! [`DropReason`]; the rewrites later re-open the headers
//! through views whose checks this parse already passed.

use std::net::Ipv4Addr;

use crate::buf::PacketBuf;
use crate::conn::ConnKey;
use crate::counters::DropReason;
use crate::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{protocol, Ipv4Packet};
use crate::wire::tcp::{TcpFlags, TcpPacket};
use crate::wire::udp::UdpPacket;

use super::{Engine, ETH_LEN, IPV4_LEN};

/// What a received frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// ARP to or for this port: to learn from and perhaps answer.
    Arp,
    /// An ICMP echo request to an address rvs owns, from `src_mac`.
    Echo { src_mac: MacAddr },
    /// A TCP or UDP packet.
    Flow(Flow),
    /// An ICMP error (destination unreachable, time exceeded) quoting a TCP
    /// or UDP packet; `quoted` is the key of a packet going the other way,
    /// i.e. the one the error travels with.
    IcmpError { quoted: ConnKey },
}

/// A TCP or UDP packet as the connection path sees it. Small enough (16
/// bytes with its verdict) to travel in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Flow {
    pub(super) key: ConnKey,
    /// TCP's control bits; none for UDP.
    pub(super) flags: TcpFlags,
}

impl Flow {
    pub(super) fn syn(&self) -> bool {
        self.flags.contains(TcpFlags::SYN)
    }

    pub(super) fn fin(&self) -> bool {
        self.flags.contains(TcpFlags::FIN)
    }

    pub(super) fn ack(&self) -> bool {
        self.flags.contains(TcpFlags::ACK)
    }

    pub(super) fn rst(&self) -> bool {
        self.flags.contains(TcpFlags::RST)
    }

    /// A SYN that opens a connection: no ACK, no RST.
    pub(super) fn is_opening_syn(&self) -> bool {
        self.syn() && !self.ack() && !self.rst()
    }
}

impl<P: PacketBuf> Engine<P> {
    /// Parses `packet`, received on `in_port`, into its [`Verdict`]. Cuts
    /// any Ethernet padding off an IPv4 packet: it must not travel on (it
    /// would end up after an outer header).
    #[inline]
    pub(super) fn classify(&self, packet: &mut P, in_port: u16) -> Result<Verdict, DropReason> {
        let port = self
            .snapshot
            .ports
            .get(usize::from(in_port))
            .ok_or(DropReason::NotForUs)?;
        let data = packet.data();
        let frame = EthernetFrame::new_checked(data)?;
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
            return Ok(Verdict::Arp);
        }
        if dst != port.mac {
            return Err(DropReason::NotForUs);
        }
        if ethertype != EtherType::IPV4 {
            return Err(DropReason::Unsupported);
        }
        let ip = Ipv4Packet::new_checked(&data[ETH_LEN..])?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadChecksum);
        }
        if ip.is_fragment() {
            return Err(DropReason::IpFragment);
        }
        if usize::from(ip.total_len()) > usize::from(port.mtu) {
            return Err(DropReason::Oversize);
        }
        if ip.header_len() > IPV4_LEN && ip.source_routed() {
            return Err(DropReason::SourceRoute);
        }
        let frame_len = ETH_LEN + usize::from(ip.total_len());
        let verdict = self.transport(&ip, src)?;
        packet.truncate(frame_len);
        Ok(verdict)
    }

    /// The verdict on an IPv4 packet from `src_mac` that passed its checks,
    /// by its transport header. Always inlined into `classify`: returned
    /// across a call, the verdict costs about 15 instructions per packet.
    #[inline(always)]
    fn transport(&self, ip: &Ipv4Packet<&[u8]>, src_mac: MacAddr) -> Result<Verdict, DropReason> {
        let (src, dst, proto) = (ip.src(), ip.dst(), ip.protocol());
        let key = |src_port, dst_port| ConnKey {
            proto,
            src,
            src_port,
            dst,
            dst_port,
        };
        let verdict = match proto {
            protocol::TCP => {
                let tcp = TcpPacket::new_checked(ip.payload())?;
                Verdict::Flow(Flow {
                    key: key(tcp.src_port(), tcp.dst_port()),
                    flags: tcp.flags(),
                })
            }
            protocol::UDP => {
                let udp = UdpPacket::new_checked(ip.payload())?;
                Verdict::Flow(Flow {
                    key: key(udp.src_port(), udp.dst_port()),
                    flags: TcpFlags::empty(),
                })
            }
            protocol::ICMP => {
                let message = IcmpPacket::new_checked(ip.payload())?;
                match message.msg_type() {
                    icmp::DEST_UNREACHABLE | icmp::TIME_EXCEEDED => Verdict::IcmpError {
                        quoted: quoted_key(message.payload())?,
                    },
                    icmp::ECHO_REQUEST if self.snapshot.owns(dst) => Verdict::Echo { src_mac },
                    _ => return Err(self.unhandled(dst)),
                }
            }
            _ => return Err(self.unhandled(dst)),
        };
        Ok(verdict)
    }

    /// Why a packet to `dst` that rvs has no use for is dropped.
    fn unhandled(&self, dst: Ipv4Addr) -> DropReason {
        if self.snapshot.owns(dst) {
            DropReason::Unsupported
        } else {
            DropReason::NotForUs
        }
    }
}

/// The connection key of the packet an ICMP error is about, seen in the
/// direction the error travels (the quoted packet's source and destination
/// swapped). Only TCP and UDP packets, quoted with their ports, have one.
fn quoted_key(payload: &[u8]) -> Result<ConnKey, DropReason> {
    let inner = Ipv4Packet::new_checked_quoted(payload)?;
    let ports = inner.payload();
    if ports.len() < 4 || !matches!(inner.protocol(), protocol::TCP | protocol::UDP) {
        return Err(DropReason::NotForUs);
    }
    Ok(ConnKey {
        proto: inner.protocol(),
        src: inner.dst(),
        src_port: u16::from_be_bytes([ports[2], ports[3]]),
        dst: inner.src(),
        dst_port: u16::from_be_bytes([ports[0], ports[1]]),
    })
}
