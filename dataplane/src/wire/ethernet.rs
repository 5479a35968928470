//! Ethernet II frames (IEEE 802.3 with an EtherType, RFC 894).
//!
//! The view covers the 14-byte header; the payload is everything behind it,
//! including any padding up to the 60-byte minimum frame (the FCS is stripped
//! by the NIC). VLAN tags are not parsed: a tagged frame reports
//! [`EtherType::VLAN`].

use core::fmt;

use super::{read_mac, read_u16, Layer, Result, WireError};

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    pub fn is_broadcast(self) -> bool {
        self == MacAddr::BROADCAST
    }

    /// The group bit (I/G) is set; broadcast is a multicast address too.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub const fn is_unicast(self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The EtherType field: what the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// An IEEE 802.1Q tag follows.
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub const HEADER_LEN: usize = field::ETHERTYPE.end;

    /// Wraps `buffer`, which must hold at least the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let len = buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::truncated(Layer::Ethernet, Self::HEADER_LEN, len));
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::DST])
    }

    pub fn src(&self) -> MacAddr {
        read_mac(&self.buffer.as_ref()[field::SRC])
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(&self.buffer.as_ref()[field::ETHERTYPE]))
    }

    /// Everything behind the header, padding included.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    pub fn set_src(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[Self::HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures;
    use crate::wire::ErrorKind;

    #[test]
    fn parse_fixtures() {
        let cases: [(&[u8], MacAddr, MacAddr, EtherType, usize); 3] = [
            (
                &fixtures::TCP_SYN_FRAME,
                MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]),
                EtherType::IPV4,
                60,
            ),
            (
                &fixtures::ICMP_ECHO_FRAME,
                MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]),
                EtherType::IPV4,
                46,
            ),
            (
                &fixtures::ARP_REQUEST_FRAME,
                MacAddr::BROADCAST,
                MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                EtherType::ARP,
                46,
            ),
        ];
        for (bytes, dst, src, ethertype, payload_len) in cases {
            let frame = EthernetFrame::new_checked(bytes).unwrap();
            assert_eq!(frame.dst(), dst);
            assert_eq!(frame.src(), src);
            assert_eq!(frame.ethertype(), ethertype);
            assert_eq!(frame.payload().len(), payload_len);
            assert_eq!(frame.payload(), &bytes[14..]);
        }
    }

    #[test]
    fn truncated() {
        for len in 0..EthernetFrame::<&[u8]>::HEADER_LEN {
            let error = EthernetFrame::new_checked(&fixtures::TCP_SYN_FRAME[..len]).unwrap_err();
            assert_eq!(error.layer, Layer::Ethernet);
            assert_eq!(
                error.kind,
                ErrorKind::Truncated {
                    needed: 14,
                    found: len
                }
            );
        }
        let frame = EthernetFrame::new_checked(&fixtures::TCP_SYN_FRAME[..14]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn setters_round_trip() {
        let mut bytes = fixtures::TCP_SYN_FRAME;
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        let dst = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
        let src = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
        frame.set_dst(dst);
        frame.set_src(src);
        frame.set_ethertype(EtherType::ARP);
        frame.payload_mut()[0] = 0x46;
        assert_eq!(frame.dst(), dst);
        assert_eq!(frame.src(), src);
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload()[0], 0x46);
        assert_eq!(
            &frame.into_inner()[..14],
            &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 6]
        );
    }

    #[test]
    fn mac_addr() {
        let cases = [
            (MacAddr::BROADCAST, "ff:ff:ff:ff:ff:ff", true, true),
            (
                MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]),
                "01:00:5e:00:00:fb",
                false,
                true,
            ),
            (
                MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]),
                "52:54:00:ab:cd:ef",
                false,
                false,
            ),
            (MacAddr::ZERO, "00:00:00:00:00:00", false, false),
        ];
        for (mac, text, broadcast, multicast) in cases {
            assert_eq!(mac.to_string(), text);
            assert_eq!(mac.is_broadcast(), broadcast, "{mac}");
            assert_eq!(mac.is_multicast(), multicast, "{mac}");
            assert_eq!(mac.is_unicast(), !multicast, "{mac}");
        }
        assert_eq!(EtherType::IPV4.to_string(), "0x0800");
    }
}
