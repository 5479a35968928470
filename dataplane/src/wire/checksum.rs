//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! A checksum is built in two steps: [`sum`] and [`pseudo_header_ipv4`] give
//! *partial sums*, one's complement sums of 16-bit big-endian words kept in a
//! `u32`; partial sums are added with plain `+` and turned into the field value
//! by [`finish`]. Every partial sum returned here is below 2^19, so adding a
//! handful of them cannot overflow.
//!
//! A header whose checksum field is correct sums (checksum included) to
//! 0xFFFF, so [`finish`] over it gives 0: that is how `verify_checksum`
//! methods check.
//!
//! The update functions implement RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`.
//! Unlike RFC 1141's formula it cannot produce the wrong one of the two
//! one's complement zeros: for a checksum that was correct before the change
//! it gives exactly what a full recompute gives (over data not all zero).

use std::net::Ipv4Addr;

/// One's complement sum of `data` as big-endian 16-bit words, an odd last
/// byte padded with a zero byte. The result is folded to at most 0xFFFF.
///
/// Adds 32-bit words into a 64-bit accumulator (RFC 1071 section 2(B):
/// the one's complement sum is independent of word size up to the final fold)
/// so the loop does half as many additions and no carry handling.
// Forced inline, as `compute`: the IPv4 header check of every packet.
#[inline(always)]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    match *words.remainder() {
        [a, b, c] => acc += u64::from(u32::from_be_bytes([a, b, c, 0])),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])) << 16,
        [a] => acc += u64::from(a) << 24,
        _ => {}
    }
    // 64 -> 33 -> 32 bits, then the usual 32 -> 16 fold.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    u32::from(fold(acc as u32))
}

/// Folds the carries of a partial sum back into 16 bits (end-around carry).
/// Any nonzero sum folds to a value in 1..=0xFFFF.
pub const fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum field value for a partial sum: its folded one's complement.
pub const fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// The checksum of `data` alone, as stored in an IPv4 or ICMP header.
#[inline(always)]
pub fn compute(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo-header that TCP and UDP checksums cover
/// (RFC 793 section 3.1, RFC 768): source, destination, zero, protocol and
/// the transport length (header plus data).
pub fn pseudo_header_ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let [s0, s1, s2, s3] = src.octets();
    let [d0, d1, d2, d3] = dst.octets();
    u32::from(u16::from_be_bytes([s0, s1]))
        + u32::from(u16::from_be_bytes([s2, s3]))
        + u32::from(u16::from_be_bytes([d0, d1]))
        + u32::from(u16::from_be_bytes([d2, d3]))
        + u32::from(proto)
        + u32::from(len)
}

/// The checksum after a 16-bit word it covers changed from `old` to `new`
/// (RFC 1624 equation 3).
pub const fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(!csum as u32 + !old as u32 + new as u32)
}

/// The checksum after a 32-bit field it covers, such as an IPv4 address,
/// changed from `old` to `new`. The field must start on an even offset.
pub const fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let old_hi = (old >> 16) as u16;
    let old_lo = old as u16;
    let new_hi = (new >> 16) as u16;
    let new_lo = new as u16;
    !fold(!csum as u32 + !old_hi as u32 + !old_lo as u32 + new_hi as u32 + new_lo as u32)
}

/// The checksum after an IPv4 address it covers (directly or through the
/// pseudo-header) changed from `old` to `new`.
pub fn update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, old.to_bits(), new.to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious RFC 1071 loop, 16 bits at a time, to check [`sum`] against.
    fn reference_sum(data: &[u8]) -> u32 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    #[rustfmt::skip]
    const CLASSIC_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
        0xb8, 0x61, // checksum
        0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn classic_ipv4_header() {
        let mut header = CLASSIC_HEADER;
        assert_eq!(compute(&header), 0, "a correct header sums to 0xffff");
        header[10..12].fill(0);
        assert_eq!(compute(&header), 0xb861);
    }

    #[test]
    fn known_sums() {
        // (data, folded sum): RFC 1071 section 3's example, odd lengths, empty.
        let cases: [(&[u8], u32); 6] = [
            (&[], 0),
            (&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0xddf2),
            (&[0xab], 0xab00),
            (&[0x12, 0x34, 0x56], 0x6834),
            (&[0xff, 0xff, 0xff, 0xff, 0x00, 0x01], 0x0001),
            (&[0x00, 0x00, 0x00, 0x00, 0x00], 0),
        ];
        for (data, expected) in cases {
            assert_eq!(sum(data), expected, "{data:02x?}");
        }
    }

    #[test]
    fn fold_and_finish() {
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0002_0001), 0x0003);
        assert_eq!(finish(0xffff), 0);
        assert_eq!(finish(0), 0xffff);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(192, 168, 7, 200);
        #[rustfmt::skip]
        let bytes = [10, 0, 0, 1, 192, 168, 7, 200, 0, 6, 0x05, 0xdc];
        assert_eq!(
            u32::from(fold(pseudo_header_ipv4(src, dst, 6, 1500))),
            sum(&bytes)
        );
    }

    #[test]
    fn update_on_the_classic_header() {
        // Rewrite the destination 192.168.0.199 -> 10.1.2.3 and the TTL.
        let mut header = CLASSIC_HEADER;
        let csum = u16::from_be_bytes([header[10], header[11]]);
        let csum = update_u32(csum, 0xc0a8_00c7, 0x0a01_0203);
        let csum = update_u16(csum, 0x4011, 0x3f11);
        header[16..20].copy_from_slice(&[10, 1, 2, 3]);
        header[8] = 0x3f;
        header[10..12].fill(0);
        assert_eq!(csum, compute(&header));
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(sum(&data), reference_sum(&data));
        }

        /// Patching any even-aligned word of a checksummed buffer
        /// incrementally equals recomputing.
        #[test]
        fn update_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..64),
            at in any::<prop::sample::Index>(),
            new16 in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            data.truncate(data.len() & !1);
            let csum = compute(&data);

            let word = at.index(data.len() / 2) * 2;
            let old16 = u16::from_be_bytes([data[word], data[word + 1]]);
            data[word..word + 2].copy_from_slice(&new16.to_be_bytes());
            let csum = update_u16(csum, old16, new16);
            prop_assert_eq!(csum, compute(&data));

            let old32 = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            data[0..4].copy_from_slice(&new32.to_be_bytes());
            let csum = update_u32(csum, old32, new32);
            prop_assert_eq!(csum, compute(&data));
        }
    }
}
