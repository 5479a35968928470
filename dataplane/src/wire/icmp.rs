//! ICMP for IPv4 (RFC 792).
//!
//! The view is over a whole ICMP message, the IP payload; the checksum covers
//! all of it and no pseudo-header. [`IcmpPacket::new_checked`] promises only
//! the 8-byte header: type, code, checksum and the 4 "rest of header" bytes
//! whose meaning depends on the type (echo identifier and sequence number,
//! the next-hop MTU of a fragmentation-needed error (RFC 1191), ...).
//!
//! An error message (destination unreachable, time exceeded) quotes the IP
//! header and first 8 payload bytes of the packet that caused it; read the
//! quote with [`Ipv4Packet::new_checked_quoted`](super::ipv4::Ipv4Packet::new_checked_quoted).

use super::checksum;
use super::{read_u16, read_u32, Layer, Result, WireError};

// ICMP message types, as found in [`IcmpPacket::msg_type`].
pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;

/// ICMP codes, by message type.
pub mod code {
    // Destination unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    pub const HOST_UNREACHABLE: u8 = 1;
    pub const PROTOCOL_UNREACHABLE: u8 = 2;
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Fragmentation needed and DF set; the next-hop MTU is in the low 16
    /// bits of the rest of the header.
    pub const FRAG_NEEDED: u8 = 4;
    // Time exceeded.
    pub const TTL_EXCEEDED: u8 = 0;
    pub const REASSEMBLY_TIME_EXCEEDED: u8 = 1;
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    /// Type and code as the one 16-bit word the checksum sees.
    pub const TYPE_CODE: Range<usize> = 0..2;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST_OF_HEADER: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
}

/// A view of an ICMP message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub const HEADER_LEN: usize = field::REST_OF_HEADER.end;

    /// Wraps `buffer`, which must hold at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<IcmpPacket<T>> {
        let available = buffer.as_ref().len();
        if available < Self::HEADER_LEN {
            return Err(WireError::truncated(
                Layer::Icmp,
                Self::HEADER_LEN,
                available,
            ));
        }
        Ok(IcmpPacket { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type: [`ECHO_REQUEST`], [`DEST_UNREACHABLE`], ...
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// See [`code`].
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Header bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::REST_OF_HEADER])
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// The sequence number of an echo request or reply.
    pub fn echo_seq(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQ])
    }

    /// Everything behind the 8-byte header: echo data, or the quoted
    /// datagram of an error.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..]
    }

    /// True if the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::compute(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn set_rest_of_header(&mut self, rest: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&rest.to_be_bytes());
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::compute(self.buffer.as_ref());
        self.set_checksum(checksum);
    }

    /// Turns an echo request into its reply in place: type 0, same code,
    /// identifier, sequence number and data, checksum patched (RFC 1624).
    /// Returns false, changing nothing, if this is not an echo request.
    /// Swapping the IP addresses is the caller's; it leaves the IP header
    /// checksum as it is.
    pub fn make_echo_reply(&mut self) -> bool {
        if self.msg_type() != ECHO_REQUEST {
            return false;
        }
        let old = read_u16(&self.buffer.as_ref()[field::TYPE_CODE]);
        let new = u16::from_be_bytes([ECHO_REPLY, self.code()]);
        let checksum = checksum::update_u16(self.checksum(), old, new);
        self.set_msg_type(ECHO_REPLY);
        self.set_checksum(checksum);
        true
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[Self::HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, L3, L4};
    use crate::wire::ipv4::{protocol, Ipv4Packet};
    use crate::wire::tcp::TcpPacket;
    use crate::wire::ErrorKind;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// The ICMP message of the echo fixture, without the Ethernet padding.
    const ECHO: &[u8] = fixtures::ICMP_ECHO_FRAME.split_at(L4 + 24).0.split_at(L4).1;

    /// Fragmentation needed (MTU 1500) quoting the TCP SYN fixture's IP header
    /// and first 8 TCP bytes; checksum 0xb9f1 computed outside this crate.
    #[rustfmt::skip]
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0xb9, 0xf1, // type 3, code 4, checksum
        0x00, 0x00, 0x05, 0xdc, // unused, next-hop MTU 1500
        // quoted IP header: total length 60, of which 28 bytes are quoted
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x0a, 0x74,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        // quoted TCP: ports 54321 -> 80, seq 0x12345678
        0xd4, 0x31, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78,
    ];

    #[test]
    fn parse_echo_request() {
        let icmp = IcmpPacket::new_checked(ECHO).unwrap();
        assert_eq!(icmp.msg_type(), ECHO_REQUEST);
        assert_eq!(icmp.code(), 0);
        assert_eq!(icmp.checksum(), 0xa27f);
        assert_eq!(icmp.rest_of_header(), 0x1234_0001);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (0x1234, 1));
        assert_eq!(icmp.payload(), b"abcdefghijklmnop");
        assert!(icmp.verify_checksum());

        // The same message reached through the IP view of the padded frame.
        let ip = Ipv4Packet::new_checked(&fixtures::ICMP_ECHO_FRAME[L3..]).unwrap();
        assert_eq!(ip.protocol(), protocol::ICMP);
        assert_eq!(ip.payload(), ECHO);
    }

    #[test]
    fn echo_request_into_reply() {
        let mut message = ECHO.to_vec();
        let mut icmp = IcmpPacket::new_checked(&mut message[..]).unwrap();
        assert!(icmp.make_echo_reply());
        assert_eq!(icmp.msg_type(), ECHO_REPLY);
        assert_eq!(icmp.checksum(), fixtures::ICMP_ECHO_REPLY_CHECKSUM);
        assert!(icmp.verify_checksum());
        assert_eq!((icmp.echo_ident(), icmp.echo_seq()), (0x1234, 1));
        // A reply is not turned into anything.
        assert!(!icmp.make_echo_reply());
        assert_eq!(message[..4], [0x00, 0x00, 0xaa, 0x7f]);
    }

    #[test]
    fn corrupted_byte_detected() {
        for at in 0..ECHO.len() {
            let mut message = ECHO.to_vec();
            message[at] ^= 0x01;
            assert!(
                !IcmpPacket::new_checked(&message[..])
                    .unwrap()
                    .verify_checksum(),
                "byte {at}"
            );
        }
    }

    #[test]
    fn truncated() {
        for len in 0..8 {
            let error = IcmpPacket::new_checked(&ECHO[..len]).unwrap_err();
            assert_eq!(error.layer, Layer::Icmp);
            assert_eq!(
                error.kind,
                ErrorKind::Truncated {
                    needed: 8,
                    found: len
                }
            );
        }
        let icmp = IcmpPacket::new_checked(&ECHO[..8]).unwrap();
        assert!(icmp.payload().is_empty());
    }

    /// Builds the fragmentation-needed error the way the packet path will
    /// and reads the quoted datagram back.
    #[test]
    fn frag_needed_error() {
        let quoted_len = FRAG_NEEDED.len() - 8;
        let mut message = [0xaa; 36];
        let mut icmp = IcmpPacket::new_checked(&mut message[..]).unwrap();
        icmp.set_msg_type(DEST_UNREACHABLE);
        icmp.set_code(code::FRAG_NEEDED);
        icmp.set_rest_of_header(1500);
        icmp.payload_mut()
            .copy_from_slice(&fixtures::TCP_SYN_FRAME[L3..L3 + quoted_len]);
        icmp.fill_checksum();
        assert_eq!(message, FRAG_NEEDED);

        let icmp = IcmpPacket::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.rest_of_header() & 0xffff, 1500);
        let quoted = Ipv4Packet::new_checked_quoted(icmp.payload()).unwrap();
        assert_eq!(quoted.total_len(), 60);
        assert_eq!(quoted.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(quoted.payload().len(), 8);
        assert!(
            TcpPacket::new_checked(quoted.payload()).is_err(),
            "only 8 bytes of TCP"
        );
        assert_eq!(quoted.payload()[..4], [0xd4, 0x31, 0x00, 0x50]);
    }

    proptest! {
        /// The in-place echo reply's patched checksum equals a recompute.
        #[test]
        fn echo_reply_matches_recompute(
            mut message in proptest::collection::vec(any::<u8>(), 8..100),
            code in any::<u8>(),
        ) {
            message[0] = ECHO_REQUEST;
            message[1] = code;
            let mut icmp = IcmpPacket::new_checked(&mut message[..]).unwrap();
            icmp.fill_checksum();
            prop_assert!(icmp.make_echo_reply());
            let incremental = icmp.checksum();
            prop_assert!(icmp.verify_checksum());
            icmp.fill_checksum();
            prop_assert_eq!(incremental, icmp.checksum());
            prop_assert_eq!(icmp.code(), code);
        }

        #[test]
        fn setters_round_trip(msg_type in any::<u8>(), code in any::<u8>(), rest in any::<u32>()) {
            let mut message = ECHO.to_vec();
            let mut icmp = IcmpPacket::new_checked(&mut message[..]).unwrap();
            icmp.set_msg_type(msg_type);
            icmp.set_code(code);
            icmp.set_rest_of_header(rest);
            icmp.fill_checksum();
            let icmp = IcmpPacket::new_checked(&message[..]).unwrap();
            prop_assert_eq!((icmp.msg_type(), icmp.code(), icmp.rest_of_header()), (msg_type, code, rest));
            prop_assert!(icmp.verify_checksum());
            prop_assert_eq!(icmp.payload(), b"abcdefghijklmnop");
        }
    }
}
