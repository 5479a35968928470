//! UDP headers (RFC 768).
//!
//! [`UdpPacket::new_checked`] promises `8 <= len() <= buffer length`; the
//! datagram ends at `len()`, and bytes behind it are not part of it.
//!
//! The checksum is optional over IPv4: a checksum field of 0 means the sender
//! computed none, and a computed checksum of 0 is sent as 0xFFFF (its one's
//! complement twin). So [`UdpPacket::verify_checksum`] accepts a 0 field,
//! [`UdpPacket::fill_checksum`] never writes 0, and the incremental setters
//! leave a 0 field alone: a datagram without a checksum stays without one.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{read_u16, ErrorKind, Layer, Result, WireError};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LEN: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// The checksum field of a datagram sent without a checksum.
const NO_CHECKSUM: u16 = 0;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const HEADER_LEN: usize = field::CHECKSUM.end;

    /// Wraps `buffer`, checking the length field against it.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let data = buffer.as_ref();
        let available = data.len();
        if available < Self::HEADER_LEN {
            return Err(WireError::truncated(
                Layer::Udp,
                Self::HEADER_LEN,
                available,
            ));
        }
        let total = usize::from(read_u16(&data[field::LEN]));
        if total < Self::HEADER_LEN || total > available {
            return Err(WireError::new(
                Layer::Udp,
                ErrorKind::BadTotalLen { total, available },
            ));
        }
        Ok(UdpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus data, in bytes.
    #[expect(
        clippy::len_without_is_empty,
        reason = "the header's length field, at least 8 after new_checked"
    )]
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LEN])
    }

    /// The checksum field; 0 means the datagram carries none.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The end of the datagram, clamped to the buffer so that no setter can
    /// make a later slice panic.
    fn end(&self) -> usize {
        let len = usize::from(self.len());
        len.clamp(Self::HEADER_LEN, self.buffer.as_ref().len())
    }

    /// The datagram's data, up to `len()`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..self.end()]
    }

    /// The checksum the datagram should carry between `src` and `dst`, as the
    /// field would hold it (never 0), given what the field holds now.
    fn checksum_over(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let end = self.end();
        let datagram = &self.buffer.as_ref()[..end];
        let pseudo = checksum::pseudo_header_ipv4(src, dst, protocol::UDP, end as u16);
        checksum::finish(pseudo + checksum::sum(datagram))
    }

    /// True if the checksum is correct for a datagram from `src` to `dst`,
    /// or the datagram carries none.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == NO_CHECKSUM || self.checksum_over(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes the checksum field as is; 0 turns checksumming off.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Computes the checksum for a datagram from `src` to `dst`, writing a
    /// computed 0 as 0xFFFF.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let checksum = nonzero(self.checksum_over(src, dst));
        self.set_checksum(checksum);
    }

    /// Patches a present checksum with RFC 1624 for one 16- or 32-bit field
    /// change; an absent one stays absent.
    fn patch_checksum(&mut self, update: impl FnOnce(u16) -> u16) {
        let checksum = self.checksum();
        if checksum != NO_CHECKSUM {
            self.set_checksum(nonzero(update(checksum)));
        }
    }

    /// Patches the checksum for a rewrite of the source or destination IPv4
    /// address from `old` to `new` (covered through the pseudo-header).
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        self.patch_checksum(|checksum| checksum::update_addr(checksum, old, new));
    }

    /// Rewrites the source port, patching a present checksum.
    pub fn set_src_port_incremental(&mut self, port: u16) {
        let old = self.src_port();
        self.patch_checksum(|checksum| checksum::update_u16(checksum, old, port));
        self.set_src_port(port);
    }

    /// Rewrites the destination port, patching a present checksum.
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        let old = self.dst_port();
        self.patch_checksum(|checksum| checksum::update_u16(checksum, old, port));
        self.set_dst_port(port);
    }

    /// The datagram's data, up to `len()`, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }
}

/// A computed checksum as UDP sends it: 0 would mean "none", so 0xFFFF.
const fn nonzero(checksum: u16) -> u16 {
    if checksum == 0 {
        0xffff
    } else {
        checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, L4};
    use proptest::prelude::*;

    const DNS: &[u8] = &fixtures::UDP_DNS_FRAME;
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

    /// 10.0.0.1:1000 -> 10.0.0.2:2000 with data chosen so the computed
    /// checksum is 0, hence sent as 0xFFFF.
    #[rustfmt::skip]
    const COMPUTES_TO_ZERO: [u8; 10] = [
        0x03, 0xe8, 0x07, 0xd0, // 1000 -> 2000
        0x00, 0x0a, 0xff, 0xff, // length 10, checksum 0xffff
        0xe0, 0x1f,
    ];

    #[test]
    fn parse_dns() {
        let udp = UdpPacket::new_checked(&DNS[L4..]).unwrap();
        assert_eq!(udp.src_port(), 53000);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 37);
        assert_eq!(udp.checksum(), 0xc571);
        assert_eq!(udp.payload(), &DNS[L4 + 8..]);
        assert_eq!(udp.payload()[12..20], *b"\x07example");
        assert!(udp.verify_checksum(CLIENT, SERVER));
        assert!(!udp.verify_checksum(SERVER, Ipv4Addr::new(192, 168, 0, 11)));
    }

    #[test]
    fn no_checksum() {
        let frame = fixtures::UDP_NO_CHECKSUM_FRAME;
        let mut udp = UdpPacket::new_checked(frame[L4..].to_vec()).unwrap();
        assert_eq!(udp.checksum(), 0);
        assert!(udp.verify_checksum(CLIENT, SERVER));
        assert!(udp.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));

        udp.update_checksum_for_addr(CLIENT, Ipv4Addr::new(203, 0, 113, 7));
        udp.set_src_port_incremental(61000);
        udp.set_dst_port_incremental(5353);
        assert_eq!(udp.checksum(), 0, "a disabled checksum stays disabled");
        assert_eq!((udp.src_port(), udp.dst_port()), (61000, 5353));

        udp.fill_checksum(CLIENT, SERVER);
        assert_ne!(udp.checksum(), 0);
        assert!(udp.verify_checksum(CLIENT, SERVER));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let udp = UdpPacket::new_checked(&COMPUTES_TO_ZERO[..]).unwrap();
        assert!(udp.verify_checksum(src, dst));
        let mut datagram = COMPUTES_TO_ZERO;
        let mut udp = UdpPacket::new_checked(&mut datagram[..]).unwrap();
        udp.set_checksum(0x1234);
        udp.fill_checksum(src, dst);
        assert_eq!(udp.checksum(), 0xffff);
    }

    /// SNAT of the DNS query to 203.0.113.7:61000; 0x2adc is that datagram's
    /// checksum computed outside this crate.
    #[test]
    fn snat_dns() {
        let public = Ipv4Addr::new(203, 0, 113, 7);
        let mut udp = UdpPacket::new_checked(DNS[L4..].to_vec()).unwrap();
        udp.update_checksum_for_addr(CLIENT, public);
        udp.set_src_port_incremental(61000);
        assert_eq!(udp.checksum(), 0x2adc);
        assert!(udp.verify_checksum(public, SERVER));
    }

    #[test]
    fn corrupted_byte_detected() {
        for at in 0..DNS.len() - L4 {
            let mut datagram = DNS[L4..].to_vec();
            datagram[at] ^= 0x01;
            match UdpPacket::new_checked(&datagram[..]) {
                Ok(udp) => assert!(!udp.verify_checksum(CLIENT, SERVER), "byte {at}"),
                Err(_) => assert!(
                    (4..6).contains(&at),
                    "byte {at}: only the length can fail to parse"
                ),
            }
        }
    }

    #[test]
    fn malformed() {
        let bad_len = |total, available| {
            WireError::new(Layer::Udp, ErrorKind::BadTotalLen { total, available })
        };
        // (name, length field, buffer length, expected error)
        let cases = [
            ("empty", 37, 0, WireError::truncated(Layer::Udp, 8, 0)),
            ("7 bytes", 37, 7, WireError::truncated(Layer::Udp, 8, 7)),
            ("length 0", 0, 37, bad_len(0, 37)),
            ("length 7", 7, 37, bad_len(7, 37)),
            ("length 38 > 37", 38, 37, bad_len(38, 37)),
            ("length 37 > 36", 37, 36, bad_len(37, 36)),
        ];
        for (name, len, available, expected) in cases {
            let mut datagram = DNS[L4..].to_vec();
            datagram[4..6].copy_from_slice(&u16::to_be_bytes(len));
            let error = UdpPacket::new_checked(&datagram[..available]).unwrap_err();
            assert_eq!(error, expected, "{name}");
        }
        for len in 0..DNS.len() - L4 {
            assert!(UdpPacket::new_checked(&DNS[L4..L4 + len]).is_err(), "{len}");
        }
    }

    /// A buffer longer than the length field: the datagram ends at `len()`.
    #[test]
    fn trailing_bytes_ignored() {
        let mut buffer = DNS[L4..].to_vec();
        buffer.extend_from_slice(&[0xee; 9]);
        let mut udp = UdpPacket::new_checked(&mut buffer[..]).unwrap();
        assert_eq!(udp.payload().len(), 29);
        assert!(udp.verify_checksum(CLIENT, SERVER));
        udp.set_len(0xffff);
        assert_eq!(udp.payload_mut().len(), 38);
        udp.set_len(0);
        assert!(udp.payload().is_empty());
        let _ = udp.verify_checksum(CLIENT, SERVER);
    }

    proptest! {
        /// Address and port rewrites patched with RFC 1624 give what a full
        /// recompute gives, 0 -> 0xFFFF rule included; a datagram without a
        /// checksum keeps none.
        #[test]
        fn incremental_matches_recompute(
            mut datagram in proptest::collection::vec(any::<u8>(), 8..100),
            addrs in any::<[[u8; 4]; 4]>(),
            ports in any::<[u16; 2]>(),
            which in 0..16u8,
            with_checksum in any::<bool>(),
        ) {
            let len = datagram.len() as u16;
            datagram[4..6].copy_from_slice(&len.to_be_bytes());
            let [src, dst, new_src, new_dst] = addrs.map(Ipv4Addr::from);
            let mut udp = UdpPacket::new_checked(&mut datagram[..]).unwrap();
            if with_checksum {
                udp.fill_checksum(src, dst);
            } else {
                udp.set_checksum(0);
            }

            let src = if which & 1 != 0 {
                udp.update_checksum_for_addr(src, new_src);
                new_src
            } else {
                src
            };
            let dst = if which & 2 != 0 {
                udp.update_checksum_for_addr(dst, new_dst);
                new_dst
            } else {
                dst
            };
            if which & 4 != 0 {
                udp.set_src_port_incremental(ports[0]);
            }
            if which & 8 != 0 {
                udp.set_dst_port_incremental(ports[1]);
            }
            let incremental = udp.checksum();
            if with_checksum {
                prop_assert!(udp.verify_checksum(src, dst));
                udp.fill_checksum(src, dst);
                prop_assert_eq!(incremental, udp.checksum());
            } else {
                prop_assert_eq!(incremental, 0);
            }
        }

        /// Forcing the computed checksum to 0 (by choosing the last data
        /// word) exercises the 0xFFFF rule through the incremental path.
        #[test]
        fn incremental_around_zero(
            mut datagram in proptest::collection::vec(any::<u8>(), 8..50),
            addrs in any::<[[u8; 4]; 3]>(),
        ) {
            datagram.truncate(datagram.len() / 2 * 2);
            datagram.extend_from_slice(&[0; 4]);
            let len = datagram.len();
            datagram[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            let [src, dst, new_src] = addrs.map(Ipv4Addr::from);
            let mut udp = UdpPacket::new_checked(&mut datagram[..]).unwrap();
            udp.set_checksum(0);
            let needed = udp.checksum_over(new_src, dst);
            udp.payload_mut()[len - 10..].copy_from_slice(&needed.to_be_bytes());
            // Now the datagram from new_src computes to 0; start from src.
            udp.fill_checksum(src, dst);
            udp.update_checksum_for_addr(src, new_src);
            prop_assert_eq!(udp.checksum(), 0xffff);
            prop_assert!(udp.verify_checksum(new_src, dst));
        }
    }
}
