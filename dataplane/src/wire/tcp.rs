//! TCP headers (RFC 9293).
//!
//! The view is over a whole segment: the IP payload, which
//! [`Ipv4Packet::payload`](super::ipv4::Ipv4Packet::payload) already ends at
//! the IP total length. The checksum covers the whole buffer plus the IPv4
//! pseudo-header, so the buffer must hold exactly the segment.
//!
//! [`TcpPacket::new_checked`] promises `20 <= header_len() <= buffer length`.
//! Options are kept as bytes and not interpreted.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::protocol;
use super::{read_u16, read_u32, ErrorKind, Layer, Result, WireError};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    /// Data offset in the high nibble; the low bits are reserved.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS_START: usize = URGENT.end;
}

/// The eight TCP control bits (byte 13 of the header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (TcpFlags::FIN, "FIN"),
        (TcpFlags::SYN, "SYN"),
        (TcpFlags::RST, "RST"),
        (TcpFlags::PSH, "PSH"),
        (TcpFlags::ACK, "ACK"),
        (TcpFlags::URG, "URG"),
        (TcpFlags::ECE, "ECE"),
        (TcpFlags::CWR, "CWR"),
    ];

    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any flag of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, other: TcpFlags) {
        self.0 |= other.0;
    }
}

/// `TcpFlags(SYN | ACK)`.
impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TcpFlags(")?;
        let mut first = true;
        for (flag, name) in TcpFlags::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// The length of a header without options.
    pub const MIN_HEADER_LEN: usize = field::OPTIONS_START;

    /// Wraps `buffer`, checking the data offset against it.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let data = buffer.as_ref();
        let available = data.len();
        if available < Self::MIN_HEADER_LEN {
            return Err(WireError::truncated(
                Layer::Tcp,
                Self::MIN_HEADER_LEN,
                available,
            ));
        }
        let header_len = usize::from(data[field::DATA_OFFSET] >> 4) * 4;
        if header_len < Self::MIN_HEADER_LEN {
            return Err(WireError::new(
                Layer::Tcp,
                ErrorKind::BadHeaderLen(header_len),
            ));
        }
        if header_len > available {
            return Err(WireError::truncated(Layer::Tcp, header_len, available));
        }
        Ok(TcpPacket { buffer })
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

    pub fn seq(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ])
    }

    pub fn ack(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK])
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    pub fn window(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WINDOW])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    pub fn urgent(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The option bytes between the fixed header and the data.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS_START..self.header_len()]
    }

    /// The segment's data.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The checksum field the segment should carry between `src` and `dst`,
    /// given what the checksum field holds now: 0 when it is correct.
    fn checksum_over(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let data = self.buffer.as_ref();
        // An IP payload is below 64 KiB, so the length fits.
        let pseudo = checksum::pseudo_header_ipv4(src, dst, protocol::TCP, data.len() as u16);
        checksum::finish(pseudo + checksum::sum(data))
    }

    /// True if the checksum is correct for a segment from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum_over(src, dst) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn set_ack(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&ack.to_be_bytes());
    }

    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    pub fn set_window(&mut self, window: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&window.to_be_bytes());
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    pub fn set_urgent(&mut self, urgent: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&urgent.to_be_bytes());
    }

    /// Recomputes the checksum from scratch for a segment from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let checksum = self.checksum_over(src, dst);
        self.set_checksum(checksum);
    }

    /// Patches the checksum for a rewrite of the source or destination IPv4
    /// address from `old` to `new`, which the checksum covers through the
    /// pseudo-header. The IP header itself is the caller's to rewrite.
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let checksum = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(checksum);
    }

    /// Rewrites the source port, patching the checksum (RFC 1624).
    pub fn set_src_port_incremental(&mut self, port: u16) {
        let checksum = checksum::update_u16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(checksum);
    }

    /// Rewrites the destination port, patching the checksum (RFC 1624).
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        let checksum = checksum::update_u16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(checksum);
    }

    /// Rewrites the sequence number, patching the checksum (sequence
    /// translation, as for SYN cookies).
    pub fn set_seq_incremental(&mut self, seq: u32) {
        let checksum = checksum::update_u32(self.checksum(), self.seq(), seq);
        self.set_seq(seq);
        self.set_checksum(checksum);
    }

    /// Rewrites the acknowledgment number, patching the checksum.
    pub fn set_ack_incremental(&mut self, ack: u32) {
        let checksum = checksum::update_u32(self.checksum(), self.ack(), ack);
        self.set_ack(ack);
        self.set_checksum(checksum);
    }

    /// The option bytes, writable (to clamp an MSS option, say).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..header_len]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::fixtures::{self, L4};
    use proptest::prelude::*;

    const SYN: &[u8] = &fixtures::TCP_SYN_FRAME;
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// An established-connection segment with data: 10.0.0.2:80 ->
    /// 10.0.0.1:54321, ACK|PSH, "HTTP/1.1 200 OK\r\n". Checksum 0x2322
    /// computed outside this crate.
    #[rustfmt::skip]
    const DATA_SEGMENT: [u8; 37] = [
        0x00, 0x50, 0xd4, 0x31, // 80 -> 54321
        0x9a, 0xbc, 0xde, 0xf0, // seq
        0x12, 0x34, 0x56, 0x79, // ack
        0x50, 0x18, 0x01, 0xf5, // data offset 5, PSH|ACK, window 501
        0x23, 0x22, 0x00, 0x00, // checksum, urgent
        b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', b' ',
        b'2', b'0', b'0', b' ', b'O', b'K', b'\r', b'\n',
    ];

    #[test]
    fn parse_syn() {
        let tcp = TcpPacket::new_checked(&SYN[L4..]).unwrap();
        assert_eq!(tcp.src_port(), 54321);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq(), 0x1234_5678);
        assert_eq!(tcp.ack(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert_eq!(tcp.window(), 64240);
        assert_eq!(tcp.checksum(), 0xae14);
        assert_eq!(tcp.urgent(), 0);
        assert_eq!(tcp.options(), &SYN[L4 + 20..]);
        assert_eq!(tcp.options()[..4], [0x02, 0x04, 0x05, 0xb4]);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(CLIENT, SERVER));
        assert!(!tcp.verify_checksum(SERVER, CLIENT.to_bits().wrapping_add(1).into()));
    }

    #[test]
    fn parse_data_segment() {
        let tcp = TcpPacket::new_checked(&DATA_SEGMENT[..]).unwrap();
        assert_eq!(tcp.header_len(), 20);
        assert_eq!(tcp.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert!(tcp.flags().contains(TcpFlags::ACK));
        assert!(!tcp.flags().contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(tcp.flags().intersects(TcpFlags::SYN | TcpFlags::ACK));
        assert!(tcp.options().is_empty());
        assert_eq!(tcp.payload(), b"HTTP/1.1 200 OK\r\n");
        assert!(tcp.verify_checksum(SERVER, CLIENT));
    }

    #[test]
    fn corrupted_byte_detected() {
        for at in 0..DATA_SEGMENT.len() {
            let mut segment = DATA_SEGMENT;
            segment[at] ^= 0x01;
            match TcpPacket::new_checked(&segment[..]) {
                Ok(tcp) => assert!(!tcp.verify_checksum(SERVER, CLIENT), "byte {at}"),
                Err(_) => assert_eq!(at, 12, "only the data offset can fail to parse"),
            }
        }
    }

    #[test]
    fn malformed() {
        // (name, data offset byte, buffer length, expected error)
        let cases = [
            ("empty", 0xa0, 0, WireError::truncated(Layer::Tcp, 20, 0)),
            (
                "19 bytes",
                0xa0,
                19,
                WireError::truncated(Layer::Tcp, 20, 19),
            ),
            (
                "offset 0",
                0x00,
                40,
                WireError::new(Layer::Tcp, ErrorKind::BadHeaderLen(0)),
            ),
            (
                "offset 4",
                0x40,
                40,
                WireError::new(Layer::Tcp, ErrorKind::BadHeaderLen(16)),
            ),
            (
                "offset 10, 39 bytes",
                0xa0,
                39,
                WireError::truncated(Layer::Tcp, 40, 39),
            ),
            (
                "offset 15, 40 bytes",
                0xf0,
                40,
                WireError::truncated(Layer::Tcp, 60, 40),
            ),
        ];
        for (name, offset, len, expected) in cases {
            let mut segment = SYN[L4..].to_vec();
            segment[12] = offset;
            assert_eq!(
                TcpPacket::new_checked(&segment[..len]).unwrap_err(),
                expected,
                "{name}"
            );
        }
        for len in 0..40 {
            assert!(TcpPacket::new_checked(&SYN[L4..L4 + len]).is_err(), "{len}");
        }
    }

    #[test]
    fn fill_checksum_matches_fixture() {
        let mut segment = DATA_SEGMENT;
        let mut tcp = TcpPacket::new_checked(&mut segment[..]).unwrap();
        tcp.set_checksum(0xdead);
        tcp.fill_checksum(SERVER, CLIENT);
        assert_eq!(tcp.checksum(), 0x2322);
    }

    /// FullNAT on a SYN: client -> vip:80 becomes laddr:40000 -> real:8080;
    /// 0x819c is the rewritten segment's checksum computed outside this crate.
    #[test]
    fn fullnat_syn() {
        let laddr = Ipv4Addr::new(172, 16, 0, 1);
        let real = Ipv4Addr::new(172, 16, 1, 10);
        let mut segment = SYN[L4..].to_vec();
        let mut tcp = TcpPacket::new_checked(&mut segment[..]).unwrap();
        tcp.update_checksum_for_addr(CLIENT, laddr);
        tcp.update_checksum_for_addr(SERVER, real);
        tcp.set_src_port_incremental(40000);
        tcp.set_dst_port_incremental(8080);
        assert!(tcp.verify_checksum(laddr, real));
        assert_eq!(tcp.checksum(), 0x819c);
    }

    #[test]
    fn flags_debug() {
        assert_eq!(
            format!("{:?}", TcpFlags::SYN | TcpFlags::ACK),
            "TcpFlags(SYN | ACK)"
        );
        assert_eq!(format!("{:?}", TcpFlags::empty()), "TcpFlags()");
        assert_eq!(TcpFlags::from_bits(0x12).bits(), 0x12);
        let mut flags = TcpFlags::FIN;
        flags |= TcpFlags::RST;
        assert!(flags.contains(TcpFlags::FIN) && flags.contains(TcpFlags::RST));
        assert!(flags.contains(TcpFlags::empty()));
        assert!(!flags.intersects(TcpFlags::empty()));
    }

    fn any_segment() -> impl Strategy<Value = Vec<u8>> {
        (0..=10usize, proptest::collection::vec(any::<u8>(), 60..120)).prop_map(
            |(option_words, mut bytes)| {
                bytes[12] = ((5 + option_words) as u8) << 4;
                bytes
            },
        )
    }

    proptest! {
        /// Address and port rewrites patched with RFC 1624 give what a full
        /// recompute gives.
        #[test]
        fn incremental_matches_recompute(
            mut segment in any_segment(),
            data_len in 0..60usize,
            addrs in any::<[[u8; 4]; 4]>(),
            ports in any::<[u16; 2]>(),
            seq in any::<[u32; 2]>(),
            which in 0..64u8,
        ) {
            let header_len = usize::from(segment[12] >> 4) * 4;
            segment.truncate(header_len + data_len);
            let [src, dst, new_src, new_dst] = addrs.map(Ipv4Addr::from);
            let mut tcp = TcpPacket::new_checked(&mut segment[..]).unwrap();
            tcp.fill_checksum(src, dst);
            prop_assert!(tcp.verify_checksum(src, dst));

            let src = if which & 1 != 0 {
                tcp.update_checksum_for_addr(src, new_src);
                new_src
            } else {
                src
            };
            let dst = if which & 2 != 0 {
                tcp.update_checksum_for_addr(dst, new_dst);
                new_dst
            } else {
                dst
            };
            if which & 4 != 0 {
                tcp.set_src_port_incremental(ports[0]);
            }
            if which & 8 != 0 {
                tcp.set_dst_port_incremental(ports[1]);
            }
            if which & 16 != 0 {
                tcp.set_seq_incremental(seq[0]);
            }
            if which & 32 != 0 {
                tcp.set_ack_incremental(seq[1]);
            }
            let incremental = tcp.checksum();
            prop_assert!(tcp.verify_checksum(src, dst));
            tcp.fill_checksum(src, dst);
            prop_assert_eq!(incremental, tcp.checksum());
        }

        /// Fields written by the setters read back unchanged.
        #[test]
        fn setters_round_trip(
            ports in any::<[u16; 2]>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            urgent in any::<u16>(),
        ) {
            let mut segment = DATA_SEGMENT;
            let mut tcp = TcpPacket::new_checked(&mut segment[..]).unwrap();
            tcp.set_src_port(ports[0]);
            tcp.set_dst_port(ports[1]);
            tcp.set_seq(seq);
            tcp.set_ack(ack);
            tcp.set_flags(TcpFlags::from_bits(flags));
            tcp.set_window(window);
            tcp.set_urgent(urgent);
            tcp.fill_checksum(CLIENT, SERVER);
            let tcp = TcpPacket::new_checked(&segment[..]).unwrap();
            prop_assert_eq!((tcp.src_port(), tcp.dst_port()), (ports[0], ports[1]));
            prop_assert_eq!((tcp.seq(), tcp.ack()), (seq, ack));
            prop_assert_eq!(tcp.flags().bits(), flags);
            prop_assert_eq!((tcp.window(), tcp.urgent()), (window, urgent));
            prop_assert_eq!(tcp.header_len(), 20);
            prop_assert_eq!(tcp.payload(), b"HTTP/1.1 200 OK\r\n");
            prop_assert!(tcp.verify_checksum(CLIENT, SERVER));
        }
    }
}
