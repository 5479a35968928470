//! Zero-copy views over packet headers.
//!
//! Each layer has a view type, `XxxPacket<T: AsRef<[u8]>>` (smoltcp's model):
//! it borrows or owns a byte buffer and reads fields straight out of it, with
//! the byte range of every field a named constant in the file's `field` module.
//! The buffer must hold the header at its start; whatever lies behind the
//! header is the payload.
//!
//! # Invariants
//!
//! * `new_checked` validates lengths once and is the only way to build a view.
//!   After it has returned `Ok`, no getter, setter or payload accessor panics,
//!   even if a setter later writes a nonsensical length: payload slices are
//!   clamped to the buffer.
//! * Nothing here allocates. Errors are a small `Copy` [`WireError`] naming the
//!   layer and what was wrong, so the packet path can turn them into drop
//!   counters.
//! * Multi-byte fields are in network byte order on the wire and in host order
//!   in the API; addresses are [`std::net::Ipv4Addr`] and [`ethernet::MacAddr`].
//! * Checksums are the Internet checksum (RFC 1071). The `*_incremental`
//!   setters patch the checksum for the changed field alone (RFC 1624), which
//!   is what NAT rewrites use on the fast path; the `fill_checksum` methods
//!   recompute from scratch.
//!
//! Only IPv4 is supported (see the README's limits).

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

/// What NAT rewrites in a TCP or UDP header: the ports, with the checksum
/// patched incrementally for them and for the pseudo-header addresses.
pub trait PortsMut {
    fn src_port(&self) -> u16;
    fn dst_port(&self) -> u16;
    /// Patches the checksum for an address of the pseudo-header changing.
    fn update_checksum_for_addr(&mut self, old: std::net::Ipv4Addr, new: std::net::Ipv4Addr);
    fn set_src_port_incremental(&mut self, port: u16);
    fn set_dst_port_incremental(&mut self, port: u16);
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PortsMut for tcp::TcpPacket<T> {
    fn src_port(&self) -> u16 {
        tcp::TcpPacket::src_port(self)
    }
    fn dst_port(&self) -> u16 {
        tcp::TcpPacket::dst_port(self)
    }
    fn update_checksum_for_addr(&mut self, old: std::net::Ipv4Addr, new: std::net::Ipv4Addr) {
        tcp::TcpPacket::update_checksum_for_addr(self, old, new)
    }
    fn set_src_port_incremental(&mut self, port: u16) {
        tcp::TcpPacket::set_src_port_incremental(self, port)
    }
    fn set_dst_port_incremental(&mut self, port: u16) {
        tcp::TcpPacket::set_dst_port_incremental(self, port)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PortsMut for udp::UdpPacket<T> {
    fn src_port(&self) -> u16 {
        udp::UdpPacket::src_port(self)
    }
    fn dst_port(&self) -> u16 {
        udp::UdpPacket::dst_port(self)
    }
    fn update_checksum_for_addr(&mut self, old: std::net::Ipv4Addr, new: std::net::Ipv4Addr) {
        udp::UdpPacket::update_checksum_for_addr(self, old, new)
    }
    fn set_src_port_incremental(&mut self, port: u16) {
        udp::UdpPacket::set_src_port_incremental(self, port)
    }
    fn set_dst_port_incremental(&mut self, port: u16) {
        udp::UdpPacket::set_dst_port_incremental(self, port)
    }
}

#[cfg(test)]
mod fixtures;

/// The protocol layer a [`WireError`] was found at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Ethernet,
    Arp,
    Ipv4,
    Tcp,
    Udp,
    Icmp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
        })
    }
}

/// What was wrong with a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The buffer is shorter than the header (or the header's own length
    /// field) requires.
    Truncated { needed: usize, found: usize },
    /// The IP version nibble is not 4.
    BadVersion(u8),
    /// A header length field (IPv4 IHL, TCP data offset) below the minimum,
    /// in bytes.
    BadHeaderLen(usize),
    /// A total length field (IPv4 total length, UDP length) that is shorter
    /// than the header or longer than the bytes available.
    BadTotalLen { total: usize, available: usize },
    /// A well-formed header of a kind rvs does not handle, such as ARP for
    /// anything but Ethernet/IPv4.
    Unsupported,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated { needed, found } => {
                write!(f, "truncated: need {needed} bytes, found {found}")
            }
            ErrorKind::BadVersion(version) => write!(f, "bad version {version}"),
            ErrorKind::BadHeaderLen(len) => write!(f, "bad header length {len}"),
            ErrorKind::BadTotalLen { total, available } => {
                write!(f, "bad total length {total} ({available} bytes available)")
            }
            ErrorKind::Unsupported => f.write_str("unsupported"),
        }
    }
}

/// A malformed or unsupported header: where and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireError {
    pub layer: Layer,
    pub kind: ErrorKind,
}

impl WireError {
    pub const fn new(layer: Layer, kind: ErrorKind) -> WireError {
        WireError { layer, kind }
    }

    pub(crate) const fn truncated(layer: Layer, needed: usize, found: usize) -> WireError {
        WireError::new(layer, ErrorKind::Truncated { needed, found })
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.layer, self.kind)
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = core::result::Result<T, WireError>;

// Field readers for the views. Callers pass a slice of a `field` range, so
// the length is fixed where it is written and the checks are compiled away.

fn read_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn read_mac(bytes: &[u8]) -> ethernet::MacAddr {
    ethernet::MacAddr([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]])
}

fn read_ipv4(bytes: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EtherType, EthernetFrame};
    use crate::wire::ipv4::{protocol, Ipv4Packet};
    use crate::wire::{arp::ArpPacket, icmp::IcmpPacket, tcp::TcpPacket, udp::UdpPacket};

    #[test]
    fn error_display() {
        let cases = [
            (
                WireError::truncated(Layer::Ipv4, 20, 12),
                "ipv4: truncated: need 20 bytes, found 12",
            ),
            (
                WireError::new(Layer::Ipv4, ErrorKind::BadVersion(6)),
                "ipv4: bad version 6",
            ),
            (
                WireError::new(Layer::Tcp, ErrorKind::BadHeaderLen(16)),
                "tcp: bad header length 16",
            ),
            (
                WireError::new(
                    Layer::Udp,
                    ErrorKind::BadTotalLen {
                        total: 100,
                        available: 60,
                    },
                ),
                "udp: bad total length 100 (60 bytes available)",
            ),
            (
                WireError::new(Layer::Arp, ErrorKind::Unsupported),
                "arp: unsupported",
            ),
            (
                WireError::truncated(Layer::Ethernet, 14, 0),
                "ethernet: truncated: need 14 bytes, found 0",
            ),
            (
                WireError::truncated(Layer::Icmp, 8, 7),
                "icmp: truncated: need 8 bytes, found 7",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    /// Parses a frame down to its transport header, the way the packet path
    /// will, verifying every checksum on the way.
    fn parse_frame(frame: &[u8]) -> Result<()> {
        let eth = EthernetFrame::new_checked(frame)?;
        match eth.ethertype() {
            EtherType::ARP => {
                ArpPacket::new_checked(eth.payload())?;
            }
            EtherType::IPV4 => {
                let ip = Ipv4Packet::new_checked(eth.payload())?;
                assert!(ip.verify_checksum());
                let (src, dst) = (ip.src(), ip.dst());
                match ip.protocol() {
                    protocol::TCP => {
                        assert!(TcpPacket::new_checked(ip.payload())?.verify_checksum(src, dst));
                    }
                    protocol::UDP => {
                        assert!(UdpPacket::new_checked(ip.payload())?.verify_checksum(src, dst));
                    }
                    protocol::ICMP => {
                        assert!(IcmpPacket::new_checked(ip.payload())?.verify_checksum());
                    }
                    other => panic!("fixture with protocol {other}"),
                }
            }
            other => panic!("fixture with ethertype {other}"),
        }
        Ok(())
    }

    /// Every frame fixture parses whole; cut anywhere inside its headers or
    /// before the end of the IP packet, it gives an error and never panics.
    #[test]
    fn every_prefix_of_every_fixture_is_an_error() {
        let cases: [(&str, &[u8], usize); 5] = [
            (
                "tcp syn",
                &fixtures::TCP_SYN_FRAME,
                fixtures::TCP_SYN_FRAME.len(),
            ),
            (
                "udp dns",
                &fixtures::UDP_DNS_FRAME,
                fixtures::UDP_DNS_FRAME.len(),
            ),
            (
                "udp no checksum",
                &fixtures::UDP_NO_CHECKSUM_FRAME,
                fixtures::UDP_NO_CHECKSUM_FRAME.len(),
            ),
            // The last two are padded to Ethernet's 60-byte minimum; the
            // padding may be cut without harm.
            ("icmp echo", &fixtures::ICMP_ECHO_FRAME, 14 + 44),
            ("arp request", &fixtures::ARP_REQUEST_FRAME, 14 + 28),
        ];
        for (name, frame, needed) in cases {
            assert_eq!(parse_frame(frame), Ok(()), "{name}");
            for len in 0..frame.len() {
                let result = parse_frame(&frame[..len]);
                if len < needed {
                    assert!(result.is_err(), "{name}: prefix of {len} bytes parsed");
                } else {
                    assert_eq!(result, Ok(()), "{name}: prefix of {len} bytes");
                }
            }
        }
    }
}
