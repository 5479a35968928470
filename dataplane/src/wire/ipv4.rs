//! IPv4 headers (RFC 791).
//!
//! [`Ipv4Packet::new_checked`] accepts a buffer that holds a whole IPv4 packet
//! and promises, for every accessor afterwards:
//!
//! * version is 4 and `20 <= header_len() <= buffer length`;
//! * `header_len() <= total_len() <= buffer length`. A buffer longer than
//!   `total_len` is fine (Ethernet pads short frames to 60 bytes); the payload
//!   ends at `total_len`, not at the end of the buffer.
//!
//! [`Ipv4Packet::new_checked_quoted`] makes the first promise only, for the
//! truncated datagram an ICMP error quotes.
//!
//! Options are kept as bytes ([`Ipv4Packet::options`]) and not interpreted.
//! Fragments are recognised ([`Ipv4Packet::is_fragment`]) but not reassembled.
//!
//! [`Ipv4Repr`] is the parsed form used to write a fresh header, for IPIP
//! encapsulation and ICMP errors.

use std::net::Ipv4Addr;

use super::checksum;
use super::{read_ipv4, read_u16, ErrorKind, Layer, Result, WireError};

/// IP protocol numbers (IANA), as found in [`Ipv4Packet::protocol`].
pub mod protocol {
    pub const ICMP: u8 = 1;
    /// IP in IP (RFC 2003), used for tunnel-mode forwarding to reals.
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG_OFFSET: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    /// TTL and protocol as the one 16-bit word the checksum sees.
    pub const TTL_PROTOCOL: Range<usize> = 8..10;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const OPTIONS_START: usize = DST.end;
}

const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS_START;

    /// Wraps `buffer` after checking the version and both length fields
    /// against it (see the module docs for what is promised afterwards).
    // Forced inline, as `header` and `verify_checksum`: the classifier's
    // per-packet checks, which LLVM otherwise leaves out of line there
    // (about 35 instructions per packet, `bash bench/ir.sh`).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let header_len = check_header(buffer.as_ref())?;
        let available = buffer.as_ref().len();
        let total = usize::from(read_u16(&buffer.as_ref()[field::TOTAL_LEN]));
        if total < header_len || total > available {
            return Err(WireError::new(
                Layer::Ipv4,
                ErrorKind::BadTotalLen { total, available },
            ));
        }
        Ok(Ipv4Packet { buffer })
    }

    /// Wraps the datagram an ICMP error quotes: its whole header but, as a
    /// rule, only the first 8 bytes of its payload. Checks the header as
    /// [`Ipv4Packet::new_checked`] does but not `total_len`, which describes
    /// the original datagram; [`Ipv4Packet::payload`] is the quoted part.
    pub fn new_checked_quoted(buffer: T) -> Result<Ipv4Packet<T>> {
        check_header(buffer.as_ref())?;
        Ok(Ipv4Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the high six bits, ECN in the low two.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::TOTAL_LEN])
    }

    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    fn flags_frag_offset(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLAGS_FRAG_OFFSET])
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_frag_offset() & FLAG_DONT_FRAG != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_frag_offset() & FLAG_MORE_FRAGS != 0
    }

    /// Offset of this fragment's data in the original payload, in bytes
    /// (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag_offset() & FRAG_OFFSET_MASK) * 8
    }

    /// True for any piece of a fragmented packet, the first included: only
    /// the first carries the transport header, so ports cannot be read from
    /// the others.
    pub fn is_fragment(&self) -> bool {
        self.flags_frag_offset() & (FLAG_MORE_FRAGS | FRAG_OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol; see [`protocol`].
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn src(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SRC])
    }

    pub fn dst(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::DST])
    }

    /// The header's byte length, clamped to the buffer so that no setter can
    /// make a later slice panic.
    #[inline]
    fn header_end(&self) -> usize {
        self.header_len().min(self.buffer.as_ref().len())
    }

    /// The whole header, options included (what an ICMP error quotes).
    #[inline(always)]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_end()]
    }

    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.header()[field::OPTIONS_START.min(self.header_end())..]
    }

    /// Whether the options ask for source routing (LSRR or SSRR, RFC 791),
    /// which a director must not honour: a packet would choose its own
    /// path behind it. Options are scanned up to the first malformed one.
    pub fn source_routed(&self) -> bool {
        const EOL: u8 = 0;
        const NOP: u8 = 1;
        const LSRR: u8 = 0x83;
        const SSRR: u8 = 0x89;
        let mut options = self.options();
        while let Some(&kind) = options.first() {
            match kind {
                EOL => return false,
                NOP => options = &options[1..],
                LSRR | SSRR => return true,
                _ => match options.get(1) {
                    Some(&len) if len >= 2 && usize::from(len) <= options.len() => {
                        options = &options[usize::from(len)..]
                    }
                    _ => return false,
                },
            }
        }
        false
    }

    /// True if the header checksum is correct.
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        checksum::compute(self.header()) == 0
    }

    fn payload_range(&self) -> core::ops::Range<usize> {
        let start = self.header_end();
        let end = usize::from(self.total_len()).min(self.buffer.as_ref().len());
        start..end.max(start)
    }

    /// The bytes from the end of the header to `total_len`; link-layer
    /// padding behind `total_len` is not part of it.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::TOTAL_LEN].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    /// Sets DF, clearing MF and the fragment offset: for a header that
    /// describes a whole packet.
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        let value = if dont_frag { FLAG_DONT_FRAG } else { 0 };
        self.buffer.as_mut()[field::FLAGS_FRAG_OFFSET].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = checksum::compute(self.header());
        self.set_checksum(checksum);
    }

    /// Rewrites the source address and patches the header checksum for it
    /// alone (RFC 1624). The TCP/UDP checksum, which also covers the
    /// address, is the caller's to patch.
    pub fn set_src_incremental(&mut self, addr: Ipv4Addr) {
        let checksum = checksum::update_addr(self.checksum(), self.src(), addr);
        self.set_src(addr);
        self.set_checksum(checksum);
    }

    /// Rewrites the destination address and patches the header checksum for
    /// it alone, like [`Ipv4Packet::set_src_incremental`].
    pub fn set_dst_incremental(&mut self, addr: Ipv4Addr) {
        let checksum = checksum::update_addr(self.checksum(), self.dst(), addr);
        self.set_dst(addr);
        self.set_checksum(checksum);
    }

    /// Decrements the TTL, patching the checksum, and returns the new TTL.
    /// A TTL of 0 is left as it is: the forwarding path drops packets whose
    /// TTL is 1 or less (answering with ICMP time exceeded) before this.
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let old = read_u16(&self.buffer.as_ref()[field::TTL_PROTOCOL]);
        let new = old - 0x0100;
        let checksum = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(checksum);
        ttl - 1
    }

    /// The payload (up to `total_len`), writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }
}

/// Checks the version and header length of the header at the start of
/// `data`, returning the header length.
fn check_header(data: &[u8]) -> Result<usize> {
    let available = data.len();
    let min_len = Ipv4Packet::<&[u8]>::MIN_HEADER_LEN;
    if available < min_len {
        return Err(WireError::truncated(Layer::Ipv4, min_len, available));
    }
    let version = data[field::VER_IHL] >> 4;
    if version != 4 {
        return Err(WireError::new(Layer::Ipv4, ErrorKind::BadVersion(version)));
    }
    let header_len = usize::from(data[field::VER_IHL] & 0x0f) * 4;
    if header_len < min_len {
        return Err(WireError::new(
            Layer::Ipv4,
            ErrorKind::BadHeaderLen(header_len),
        ));
    }
    if header_len > available {
        return Err(WireError::truncated(Layer::Ipv4, header_len, available));
    }
    Ok(header_len)
}

/// The fields of an option-less IPv4 header, for writing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// See [`protocol`].
    pub protocol: u8,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    /// Bytes behind the header; the header's total length is 20 more.
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// The largest `payload_len` a 20-byte header can describe.
    pub const MAX_PAYLOAD_LEN: u16 = u16::MAX - Ipv4Packet::<&[u8]>::MIN_HEADER_LEN as u16;

    /// Reads the fields of `packet`. Options, MF and the fragment offset are
    /// not represented; `payload_len` is `total_len - header_len`.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            payload_len: packet.payload_range().len() as u16,
        }
    }

    /// Writes a 20-byte header, checksum included, at the start of `buf`.
    /// Fails if `buf` is shorter than 20 bytes or `payload_len` exceeds
    /// [`Ipv4Repr::MAX_PAYLOAD_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let header_len = Ipv4Packet::<&[u8]>::MIN_HEADER_LEN;
        if self.payload_len > Self::MAX_PAYLOAD_LEN {
            return Err(WireError::new(
                Layer::Ipv4,
                ErrorKind::BadTotalLen {
                    total: header_len + usize::from(self.payload_len),
                    available: usize::from(u16::MAX),
                },
            ));
        }
        let available = buf.len();
        let Some(header) = buf.get_mut(..header_len) else {
            return Err(WireError::truncated(Layer::Ipv4, header_len, available));
        };
        header[field::VER_IHL] = 0x45;
        let mut packet = Ipv4Packet { buffer: header };
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(header_len as u16 + self.payload_len);
        packet.set_ident(self.ident);
        packet.set_unfragmented(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, L3};
    use proptest::prelude::*;

    /// RFC 1071's classic example header followed by its 95-byte payload
    /// (zeros; the header checksum does not cover it).
    #[rustfmt::skip]
    fn classic() -> Vec<u8> {
        let mut packet = vec![
            0x45, 0x00, 0x00, 0x73, // version 4, IHL 5, tos 0, total 115
            0x00, 0x00, 0x40, 0x00, // ident 0, DF
            0x40, 0x11, 0xb8, 0x61, // ttl 64, UDP, checksum 0xb861
            0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
            0xc0, 0xa8, 0x00, 0xc7, // 192.168.0.199
        ];
        packet.resize(115, 0);
        packet
    }

    /// IHL 6: one Router Alert option (RFC 2113), 8 bytes of payload.
    #[rustfmt::skip]
    const IHL6: [u8; 32] = [
        0x46, 0x00, 0x00, 0x20, // IHL 6, total 32
        0x42, 0x42, 0x40, 0x00, // ident 0x4242, DF
        0x40, 0x11, 0x4f, 0x84, // ttl 64, UDP, checksum 0x4f84
        0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02,
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22,
    ];

    /// IHL 7: Router Alert, three NOPs and End of Options list.
    #[rustfmt::skip]
    const IHL7: [u8; 36] = [
        0x47, 0x00, 0x00, 0x24, // IHL 7, total 36
        0x42, 0x43, 0x40, 0x00, // ident 0x4243, DF
        0x40, 0x11, 0x4c, 0x7e, // ttl 64, UDP, checksum 0x4c7e
        0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02,
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0x01, 0x01, 0x01, 0x00, // NOP NOP NOP EOL
        0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22,
    ];

    /// First fragment: MF set, offset 0.
    #[rustfmt::skip]
    const FIRST_FRAGMENT: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x55, 0x55, 0x20, 0x00,
        0x40, 0x11, 0xf1, 0x79, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// Last fragment: MF clear, offset 185 units (1480 bytes).
    #[rustfmt::skip]
    const LAST_FRAGMENT: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x55, 0x55, 0x00, 0xb9,
        0x40, 0x11, 0x10, 0xc1, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];

    struct Expected {
        header_len: usize,
        total_len: u16,
        ident: u16,
        protocol: u8,
        checksum: u16,
        src: [u8; 4],
        dst: [u8; 4],
        options_len: usize,
        payload_len: usize,
    }

    #[test]
    fn parse_fixtures() {
        let classic = classic();
        #[rustfmt::skip]
        let cases: [(&str, &[u8], Expected); 6] = [
            ("classic", &classic, Expected {
                header_len: 20, total_len: 115, ident: 0, protocol: protocol::UDP,
                checksum: 0xb861, src: [192, 168, 0, 1], dst: [192, 168, 0, 199],
                options_len: 0, payload_len: 95,
            }),
            ("tcp syn", &fixtures::TCP_SYN_FRAME[L3..], Expected {
                header_len: 20, total_len: 60, ident: 0x1c46, protocol: protocol::TCP,
                checksum: 0x0a74, src: [10, 0, 0, 1], dst: [10, 0, 0, 2],
                options_len: 0, payload_len: 40,
            }),
            ("udp dns", &fixtures::UDP_DNS_FRAME[L3..], Expected {
                header_len: 20, total_len: 57, ident: 0xbeef, protocol: protocol::UDP,
                checksum: 0xfa68, src: [192, 168, 0, 10], dst: [192, 168, 0, 1],
                options_len: 0, payload_len: 37,
            }),
            // 46 bytes of buffer for a 44-byte packet: Ethernet padding.
            ("icmp echo, padded", &fixtures::ICMP_ECHO_FRAME[L3..], Expected {
                header_len: 20, total_len: 44, ident: 1, protocol: protocol::ICMP,
                checksum: 0x26ce, src: [10, 0, 0, 1], dst: [10, 0, 0, 2],
                options_len: 0, payload_len: 24,
            }),
            ("ihl 6", &IHL6, Expected {
                header_len: 24, total_len: 32, ident: 0x4242, protocol: protocol::UDP,
                checksum: 0x4f84, src: [10, 0, 0, 1], dst: [10, 0, 0, 2],
                options_len: 4, payload_len: 8,
            }),
            ("ihl 7", &IHL7, Expected {
                header_len: 28, total_len: 36, ident: 0x4243, protocol: protocol::UDP,
                checksum: 0x4c7e, src: [10, 0, 0, 1], dst: [10, 0, 0, 2],
                options_len: 8, payload_len: 8,
            }),
        ];
        for (name, bytes, expected) in cases {
            let packet = Ipv4Packet::new_checked(bytes).unwrap();
            assert_eq!(packet.version(), 4, "{name}");
            assert_eq!(packet.header_len(), expected.header_len, "{name}");
            assert_eq!(packet.dscp_ecn(), 0, "{name}");
            assert_eq!(packet.total_len(), expected.total_len, "{name}");
            assert_eq!(packet.ident(), expected.ident, "{name}");
            assert!(packet.dont_frag(), "{name}");
            assert!(!packet.more_frags(), "{name}");
            assert_eq!(packet.frag_offset(), 0, "{name}");
            assert!(!packet.is_fragment(), "{name}");
            assert_eq!(packet.ttl(), 64, "{name}");
            assert_eq!(packet.protocol(), expected.protocol, "{name}");
            assert_eq!(packet.checksum(), expected.checksum, "{name}");
            assert_eq!(packet.src(), Ipv4Addr::from(expected.src), "{name}");
            assert_eq!(packet.dst(), Ipv4Addr::from(expected.dst), "{name}");
            assert!(packet.verify_checksum(), "{name}");
            assert_eq!(packet.header(), &bytes[..expected.header_len], "{name}");
            assert_eq!(packet.options().len(), expected.options_len, "{name}");
            assert_eq!(
                packet.payload(),
                &bytes[expected.header_len..usize::from(expected.total_len)],
                "{name}"
            );
            assert_eq!(packet.payload().len(), expected.payload_len, "{name}");
        }
    }

    #[test]
    fn options_are_skipped() {
        let packet = Ipv4Packet::new_checked(&IHL7[..]).unwrap();
        assert_eq!(
            packet.options(),
            &[0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]
        );
        assert_eq!(
            packet.payload(),
            &[0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22]
        );
    }

    #[test]
    fn fragments() {
        // (name, packet, more_frags, frag_offset in bytes)
        let cases: [(&str, &[u8], bool, u16); 2] = [
            ("first fragment", &FIRST_FRAGMENT, true, 0),
            ("last fragment", &LAST_FRAGMENT, false, 1480),
        ];
        for (name, bytes, more_frags, frag_offset) in cases {
            let packet = Ipv4Packet::new_checked(bytes).unwrap();
            assert!(packet.verify_checksum(), "{name}");
            assert!(packet.is_fragment(), "{name}");
            assert!(!packet.dont_frag(), "{name}");
            assert_eq!(packet.more_frags(), more_frags, "{name}");
            assert_eq!(packet.frag_offset(), frag_offset, "{name}");
        }
    }

    #[test]
    fn malformed() {
        // (name, byte offset, new value, expected error) applied to `classic`.
        let cases = [
            ("version 6", 0, 0x65, ErrorKind::BadVersion(6)),
            ("version 0", 0, 0x05, ErrorKind::BadVersion(0)),
            ("IHL 0", 0, 0x40, ErrorKind::BadHeaderLen(0)),
            ("IHL 4", 0, 0x44, ErrorKind::BadHeaderLen(16)),
            (
                "total_len < header_len",
                3,
                19,
                ErrorKind::BadTotalLen {
                    total: 19,
                    available: 115,
                },
            ),
            (
                "total_len 0",
                3,
                0,
                ErrorKind::BadTotalLen {
                    total: 0,
                    available: 115,
                },
            ),
            (
                "total_len > buffer",
                3,
                0x74,
                ErrorKind::BadTotalLen {
                    total: 116,
                    available: 115,
                },
            ),
            (
                "total_len 0xff73",
                2,
                0xff,
                ErrorKind::BadTotalLen {
                    total: 0xff73,
                    available: 115,
                },
            ),
        ];
        for (name, offset, value, kind) in cases {
            let mut bytes = classic();
            bytes[offset] = value;
            let error = Ipv4Packet::new_checked(&bytes[..]).unwrap_err();
            assert_eq!(error, WireError::new(Layer::Ipv4, kind), "{name}");
        }

        // IHL 15 (60 bytes) over a 40-byte buffer; IHL 7 (28) with total_len 24.
        let mut bytes = classic();
        bytes[0] = 0x4f;
        let error = Ipv4Packet::new_checked(&bytes[..40]).unwrap_err();
        assert_eq!(error, WireError::truncated(Layer::Ipv4, 60, 40));
        let mut bytes = IHL7;
        bytes[3] = 24;
        let error = Ipv4Packet::new_checked(&bytes[..]).unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::BadTotalLen {
                total: 24,
                available: 36
            }
        );
    }

    #[test]
    fn every_prefix_is_an_error() {
        let classic = classic();
        let cases: [&[u8]; 4] = [&classic, &IHL6, &IHL7, &fixtures::TCP_SYN_FRAME[L3..]];
        for bytes in cases {
            for len in 0..bytes.len() {
                assert!(Ipv4Packet::new_checked(&bytes[..len]).is_err(), "{len}");
            }
        }
        let error = Ipv4Packet::new_checked(&IHL7[..12]).unwrap_err();
        assert_eq!(error, WireError::truncated(Layer::Ipv4, 20, 12));
        assert_eq!(
            error.to_string(),
            "ipv4: truncated: need 20 bytes, found 12"
        );
    }

    /// Any one corrupted header byte is caught, by new_checked or by the
    /// checksum.
    #[test]
    fn corrupted_byte_detected() {
        for bytes in [&IHL7[..], &fixtures::UDP_DNS_FRAME[L3..]] {
            let header_len = usize::from(bytes[0] & 0x0f) * 4;
            for at in 0..header_len {
                for flip in [0x01, 0x80, 0xff] {
                    let mut corrupted = bytes.to_vec();
                    corrupted[at] ^= flip;
                    let caught = match Ipv4Packet::new_checked(&corrupted[..]) {
                        Ok(packet) => !packet.verify_checksum(),
                        Err(_) => true,
                    };
                    assert!(caught, "byte {at} ^ {flip:#x}");
                }
            }
        }
    }

    /// Setters can write lengths that no longer fit the buffer; accessors
    /// then clamp rather than panic.
    #[test]
    fn no_panic_after_bad_setters() {
        let mut bytes = IHL7;
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        for total_len in [0, 19, 27, 36, 37, 0xffff] {
            packet.set_total_len(total_len);
            let _ = packet.payload();
            let _ = packet.payload_mut();
            let _ = packet.options();
            let _ = packet.verify_checksum();
        }
        packet.set_total_len(0xffff);
        assert_eq!(packet.payload().len(), 8);
        packet.set_total_len(10);
        assert!(packet.payload().is_empty());
        let _ = Ipv4Repr::parse(&packet);
    }

    #[test]
    fn ttl_decrement() {
        let mut bytes = fixtures::TCP_SYN_FRAME[L3..].to_vec();
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        for expected in (0..64).rev() {
            assert_eq!(packet.decrement_ttl_incremental(), expected);
            assert!(packet.verify_checksum(), "ttl {expected}");
        }
        assert_eq!(packet.decrement_ttl_incremental(), 0);
        assert!(packet.verify_checksum());
    }

    /// The classic header DNAT'd to 10.1.2.3; 0x6dcd is that header's
    /// checksum computed from scratch outside this crate.
    #[test]
    fn dnat_classic() {
        let mut bytes = classic();
        let mut packet = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_dst_incremental(Ipv4Addr::new(10, 1, 2, 3));
        assert!(packet.verify_checksum());
        assert_eq!(packet.checksum(), 0x6dcd);
    }

    #[test]
    fn repr_emit_matches_fixture() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: protocol::TCP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0x1c46,
            dont_frag: true,
            payload_len: 40,
        };
        let mut buf = [0xaa; 20];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..], &fixtures::TCP_SYN_FRAME[L3..L3 + 20]);
        let packet = Ipv4Packet::new_checked(&fixtures::TCP_SYN_FRAME[L3..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), repr);
    }

    #[test]
    fn repr_emit_errors() {
        let mut repr = Ipv4Repr {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            protocol: protocol::IPIP,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: false,
            payload_len: 0,
        };
        let error = repr.emit(&mut [0; 19]).unwrap_err();
        assert_eq!(error, WireError::truncated(Layer::Ipv4, 20, 19));
        repr.payload_len = Ipv4Repr::MAX_PAYLOAD_LEN + 1;
        let error = repr.emit(&mut [0; 20]).unwrap_err();
        assert_eq!(
            error.kind,
            ErrorKind::BadTotalLen {
                total: 65536,
                available: 65535
            }
        );
        repr.payload_len = Ipv4Repr::MAX_PAYLOAD_LEN;
        let mut buf = [0; 20];
        repr.emit(&mut buf).unwrap();
        assert_eq!(read_u16(&buf[2..4]), 0xffff);
    }

    fn any_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            0..200u16,
        )
            .prop_map(
                |(src, dst, protocol, ttl, dscp_ecn, ident, dont_frag, payload_len)| Ipv4Repr {
                    src: src.into(),
                    dst: dst.into(),
                    protocol,
                    ttl,
                    dscp_ecn,
                    ident,
                    dont_frag,
                    payload_len,
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in any_repr()) {
            let mut buf = vec![0; 20 + usize::from(repr.payload_len)];
            repr.emit(&mut buf).unwrap();
            let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert!(!packet.is_fragment());
            prop_assert_eq!(packet.header_len(), 20);
            prop_assert_eq!(Ipv4Repr::parse(&packet), repr);
        }

        /// NAT rewrites patched with RFC 1624 give the checksum a full
        /// recompute gives, over random headers with random options.
        #[test]
        fn incremental_matches_recompute(
            repr in any_repr(),
            options in proptest::collection::vec(any::<u8>(), 0..=10),
            new_src in any::<[u8; 4]>(),
            new_dst in any::<[u8; 4]>(),
            which in 0..8u8,
        ) {
            let option_words = options.len() / 4;
            let header_len = 20 + option_words * 4;
            let mut buf = vec![0; header_len + usize::from(repr.payload_len)];
            repr.emit(&mut buf).unwrap();
            buf[20..header_len].copy_from_slice(&options[..option_words * 4]);
            buf[0] = 0x40 | (header_len / 4) as u8;
            let total_len = buf.len() as u16;
            buf[2..4].copy_from_slice(&total_len.to_be_bytes());
            let mut packet = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            packet.fill_checksum();

            if which & 1 != 0 {
                packet.set_src_incremental(new_src.into());
            }
            if which & 2 != 0 {
                packet.set_dst_incremental(new_dst.into());
            }
            if which & 4 != 0 {
                packet.decrement_ttl_incremental();
            }
            let incremental = packet.checksum();
            prop_assert!(packet.verify_checksum());
            packet.fill_checksum();
            prop_assert_eq!(incremental, packet.checksum());
        }
    }
}
