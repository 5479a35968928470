//! ARP (RFC 826) for IPv4 over Ethernet, the only kind rvs answers.
//!
//! `new_checked` accepts only hardware type 1 (Ethernet), protocol type
//! 0x0800, hardware length 6 and protocol length 4, so after it every field
//! has a fixed place in the first [`ArpPacket::LEN`] bytes; anything else is
//! [`ErrorKind::Unsupported`]. Bytes behind the 28 (Ethernet padding) are
//! ignored.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, MacAddr};
use super::{read_ipv4, read_mac, read_u16, ErrorKind, Layer, Result, WireError};

/// The ARP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOperation(pub u16);

impl ArpOperation {
    pub const REQUEST: ArpOperation = ArpOperation(1);
    pub const REPLY: ArpOperation = ArpOperation(2);
}

const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const LEN: usize = field::TPA.end;

    /// Wraps `buffer`, which must hold an Ethernet/IPv4 ARP packet.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let data = buffer.as_ref();
        if data.len() < Self::LEN {
            return Err(WireError::truncated(Layer::Arp, Self::LEN, data.len()));
        }
        if read_u16(&data[field::HTYPE]) != HTYPE_ETHERNET
            || read_u16(&data[field::PTYPE]) != EtherType::IPV4.0
            || data[field::HLEN] != 6
            || data[field::PLEN] != 4
        {
            return Err(WireError::new(Layer::Arp, ErrorKind::Unsupported));
        }
        Ok(ArpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn operation(&self) -> ArpOperation {
        ArpOperation(read_u16(&self.buffer.as_ref()[field::OPER]))
    }

    pub fn sender_mac(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::SHA])
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_mac(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_operation(&mut self, operation: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&operation.0.to_be_bytes());
    }

    pub fn set_sender_mac(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    pub fn set_target_mac(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

/// Writes a complete Ethernet/IPv4 ARP packet into the first
/// [`ArpPacket::LEN`] bytes of `buf`.
pub fn emit(
    buf: &mut [u8],
    operation: ArpOperation,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Result<()> {
    let len = ArpPacket::<&[u8]>::LEN;
    let Some(buf) = buf.get_mut(..len) else {
        return Err(WireError::truncated(Layer::Arp, len, buf.len()));
    };
    buf[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    buf[field::PTYPE].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    buf[field::HLEN] = 6;
    buf[field::PLEN] = 4;
    buf[field::OPER].copy_from_slice(&operation.0.to_be_bytes());
    buf[field::SHA].copy_from_slice(&sender_mac.0);
    buf[field::SPA].copy_from_slice(&sender_ip.octets());
    buf[field::THA].copy_from_slice(&target_mac.0);
    buf[field::TPA].copy_from_slice(&target_ip.octets());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, L3};
    use proptest::prelude::*;

    const REQUEST: &[u8] = &fixtures::ARP_REQUEST_FRAME;

    #[test]
    fn parse_request() {
        let arp = ArpPacket::new_checked(&REQUEST[L3..]).unwrap();
        assert_eq!(arp.operation(), ArpOperation::REQUEST);
        assert_eq!(
            arp.sender_mac(),
            MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        );
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(arp.target_mac(), MacAddr::ZERO);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn truncated_at_every_length() {
        for len in 0..ArpPacket::<&[u8]>::LEN {
            let error = ArpPacket::new_checked(&REQUEST[L3..L3 + len]).unwrap_err();
            assert_eq!(error, WireError::truncated(Layer::Arp, 28, len));
        }
    }

    #[test]
    fn unsupported() {
        // (byte offset in the ARP packet, value) making it not Ethernet/IPv4.
        let cases = [
            ("htype 6 (IEEE 802)", 1, 6),
            ("ptype IPv6", 2, 0x86),
            ("hlen 8", 4, 8),
            ("plen 16", 5, 16),
        ];
        for (name, offset, value) in cases {
            let mut packet = REQUEST[L3..].to_vec();
            packet[offset] = value;
            let error = ArpPacket::new_checked(&packet[..]).unwrap_err();
            assert_eq!(
                error,
                WireError::new(Layer::Arp, ErrorKind::Unsupported),
                "{name}"
            );
        }
    }

    /// Answering a request in place: the reply the packet path will build.
    #[test]
    fn request_into_reply() {
        let mut packet = REQUEST[L3..L3 + 28].to_vec();
        let our_mac = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
        let mut arp = ArpPacket::new_checked(&mut packet[..]).unwrap();
        let (asker_mac, asker_ip, wanted_ip) = (arp.sender_mac(), arp.sender_ip(), arp.target_ip());
        arp.set_operation(ArpOperation::REPLY);
        arp.set_target_mac(asker_mac);
        arp.set_target_ip(asker_ip);
        arp.set_sender_mac(our_mac);
        arp.set_sender_ip(wanted_ip);

        let mut expected = [0; 28];
        emit(
            &mut expected,
            ArpOperation::REPLY,
            our_mac,
            wanted_ip,
            asker_mac,
            asker_ip,
        )
        .unwrap();
        assert_eq!(packet, expected);
    }

    #[test]
    fn emit_into_short_buffer() {
        let mut buf = [0; 27];
        let error = emit(
            &mut buf,
            ArpOperation::REQUEST,
            MacAddr::ZERO,
            Ipv4Addr::UNSPECIFIED,
            MacAddr::ZERO,
            Ipv4Addr::UNSPECIFIED,
        )
        .unwrap_err();
        assert_eq!(error, WireError::truncated(Layer::Arp, 28, 27));
    }

    #[test]
    fn emit_matches_fixture() {
        let mut buf = [0xaa; 28];
        emit(
            &mut buf,
            ArpOperation::REQUEST,
            MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            Ipv4Addr::new(10, 0, 0, 1),
            MacAddr::ZERO,
            Ipv4Addr::new(10, 0, 0, 2),
        )
        .unwrap();
        assert_eq!(&buf[..], &REQUEST[L3..L3 + 28]);
    }

    proptest! {
        #[test]
        fn emit_parse_round_trip(
            op in any::<u16>(),
            sender_mac in any::<[u8; 6]>(),
            sender_ip in any::<u32>(),
            target_mac in any::<[u8; 6]>(),
            target_ip in any::<u32>(),
        ) {
            let mut buf = [0; 60];
            let (sender_ip, target_ip) = (Ipv4Addr::from(sender_ip), Ipv4Addr::from(target_ip));
            emit(&mut buf, ArpOperation(op), MacAddr(sender_mac), sender_ip, MacAddr(target_mac), target_ip).unwrap();
            let arp = ArpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(arp.operation(), ArpOperation(op));
            prop_assert_eq!(arp.sender_mac(), MacAddr(sender_mac));
            prop_assert_eq!(arp.sender_ip(), sender_ip);
            prop_assert_eq!(arp.target_mac(), MacAddr(target_mac));
            prop_assert_eq!(arp.target_ip(), target_ip);
        }
    }
}
