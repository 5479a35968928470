//! IPVS connection synchronisation, protocol version 1, on the wire
//! (REFERENCE.md §10; Linux `net/netfilter/ipvs/ip_vs_sync.c`): the
//! messages a master multicasts and a backup reads, byte for byte as the
//! kernel builds and checks them, so that rvs and kernel directors can sync
//! with each other. Encoding and decoding only; no sockets here.
//!
//! A message is an 8-byte header (`0`, syncid, be16 size of the whole
//! datagram, connection count, version 1, two zero bytes) and up to 255
//! connection records, each 4-byte aligned. An IPv4 record is 36 bytes
//! (type 0, protocol, be16 version 0 / length, be32 flags, be16 state,
//! be16 cport, vport, dport, be32 fwmark, be32 timeout in seconds, be32
//! caddr, vaddr, daddr) followed by options, each type, length, data. rvs
//! adds one option of its own, FullNAT's local address and port, with type
//! bit 0x40 set: the kernel skips options so marked that it does not know.

use std::fmt;
use std::net::Ipv4Addr;

/// The multicast group and port of IPVS sync (`--mcast-group`, `--mcast-port`).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const DEFAULT_PORT: u16 = 8848;
/// Payload of a 1500-byte MTU datagram: the kernel's default `sync_maxlen`.
pub const DEFAULT_MAXLEN: usize = 1500 - 20 - 8;
/// The smallest `sync_maxlen` that holds a message: its header and one
/// IPv4 connection record.
pub const MIN_MAXLEN: usize = HEADER_LEN + V4_LEN;
/// The largest: a whole UDP datagram's payload (65535 - 20 - 8), as
/// ipvsadm's `--sync-maxlen` bound.
pub const MAX_MAXLEN: usize = 65535 - 20 - 8;

const HEADER_LEN: usize = 8;
const V4_LEN: usize = 36;
const VERSION: u8 = 1;
/// Low 12 bits of `ver_size`: the record's length; high 4: its version (0).
const SIZE_MASK: u16 = 0x0fff;

/// Option types (`IPVS_OPT_*`); bit 0x40 marks an option receivers may skip.
const OPT_SEQ_DATA: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;
const OPT_IGNORABLE: u8 = 0x40;
/// rvs's FullNAT local address (4 bytes) and port (2), skipped by kernels.
pub const OPT_RVS_LOCAL: u8 = OPT_IGNORABLE | 0x10;
/// Bytes of the sequence option's data: two `ip_vs_seq` (init_seq, delta,
/// previous_delta, each be32).
const SEQ_DATA_LEN: usize = 24;

/// Connection flags the kernel sends (`IP_VS_CONN_F_*`).
pub mod flags {
    /// Forwarding method, the low 3 bits: NAT (masquerading).
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const FWD_MASK: u32 = 0x0007;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    /// Output and input sequence adjustment (the SEQ_DATA option).
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// What a receiver takes (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// One synced connection (or persistence template), as a record carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` ([`flags`]).
    pub flags: u32,
    /// IPVS's state number (TCP: ESTABLISHED 1, ... ; UDP 0).
    pub state: u16,
    pub caddr: Ipv4Addr,
    pub cport: u16,
    pub vaddr: Ipv4Addr,
    pub vport: u16,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub fwmark: u32,
    /// Seconds.
    pub timeout: u32,
    /// TCP sequence adjustments (the SEQ_DATA option), as sent.
    pub seq: Option<[u8; SEQ_DATA_LEN]>,
    /// FullNAT's local address and port (rvs's own option).
    pub local: Option<(Ipv4Addr, u16)>,
}

impl SyncConn {
    fn record_len(&self) -> usize {
        V4_LEN + self.seq.map_or(0, |_| 2 + SEQ_DATA_LEN) + self.local.map_or(0, |_| 2 + 6)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = self.record_len() as u16;
        out.push(0); // type: IPv4
        out.push(self.protocol);
        out.extend_from_slice(&(len & SIZE_MASK).to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.state.to_be_bytes());
        out.extend_from_slice(&self.cport.to_be_bytes());
        out.extend_from_slice(&self.vport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.fwmark.to_be_bytes());
        out.extend_from_slice(&self.timeout.to_be_bytes());
        out.extend_from_slice(&self.caddr.octets());
        out.extend_from_slice(&self.vaddr.octets());
        out.extend_from_slice(&self.daddr.octets());
        if let Some(seq) = &self.seq {
            out.extend_from_slice(&[OPT_SEQ_DATA, SEQ_DATA_LEN as u8]);
            out.extend_from_slice(seq);
        }
        if let Some((addr, port)) = self.local {
            out.extend_from_slice(&[OPT_RVS_LOCAL, 6]);
            out.extend_from_slice(&addr.octets());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
}

/// Builds the datagrams for `conns` under `syncid`, each at most `maxlen`
/// bytes and 255 connections, records 4-byte aligned as the kernel pads
/// them (padding before a record, none after the last). ONE_PACKET
/// connections are never synced and are left out.
pub fn encode(syncid: u8, conns: &[SyncConn], maxlen: usize) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut count = 0u8;
    let finish = |buf: &mut Vec<u8>, count: u8, out: &mut Vec<Vec<u8>>| {
        if count > 0 {
            let size = buf.len() as u16;
            buf[2..4].copy_from_slice(&size.to_be_bytes());
            buf[4] = count;
            out.push(std::mem::take(buf));
        }
    };
    for conn in conns.iter().filter(|c| c.flags & flags::ONE_PACKET == 0) {
        let pad = (4 - current.len() % 4) % 4;
        if current.is_empty()
            || current.len() + pad + conn.record_len() > maxlen
            || count == u8::MAX
        {
            finish(&mut current, count, &mut datagrams);
            current = vec![0, syncid, 0, 0, 0, VERSION, 0, 0];
            count = 0;
        } else {
            current.resize(current.len() + pad, 0);
        }
        conn.write(&mut current);
        count += 1;
    }
    finish(&mut current, count, &mut datagrams);
    datagrams
}

/// Why a datagram was dropped as a whole, as the kernel drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// Shorter than a header.
    TooShort,
    /// The header's size is not the datagram's.
    BadSize,
    /// Another director's syncid (when ours is not 0).
    OtherSyncid,
    /// Not version 1 (version 0 messages are not read by rvs).
    UnsupportedVersion,
    /// A record runs past the end, or has a record version other than 0.
    Truncated,
    /// A record's options are malformed (a zero or overlong length, a
    /// repeated or wrongly sized sequence option, an unknown record type).
    BadRecord,
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncError::TooShort => "shorter than a sync header",
            SyncError::BadSize => "size field differs from the datagram's length",
            SyncError::OtherSyncid => "another syncid",
            SyncError::UnsupportedVersion => "not sync protocol version 1",
            SyncError::Truncated => "a connection record runs past the end",
            SyncError::BadRecord => "a malformed connection record",
        })
    }
}

impl std::error::Error for SyncError {}

/// A datagram read: its syncid, its connections, and how many records were
/// skipped one by one as the kernel skips them (IPv6, an unknown mandatory
/// option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub syncid: u8,
    pub conns: Vec<SyncConn>,
    pub skipped: usize,
}

/// Reads `datagram` as a backup with `syncid` (0: accept every syncid).
pub fn decode(datagram: &[u8], syncid: u8) -> Result<Message, SyncError> {
    if datagram.len() < 4 {
        return Err(SyncError::TooShort);
    }
    if usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) != datagram.len() {
        return Err(SyncError::BadSize);
    }
    if syncid != 0 && datagram[1] != syncid {
        return Err(SyncError::OtherSyncid);
    }
    if datagram.len() < HEADER_LEN
        || datagram[0] != 0
        || datagram[5] != VERSION
        || datagram[6..8] != [0, 0]
    {
        return Err(SyncError::UnsupportedVersion);
    }
    let count = usize::from(datagram[4]);
    let mut message = Message {
        syncid: datagram[1],
        conns: Vec::with_capacity(count),
        skipped: 0,
    };
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let record = datagram.get(at..at + V4_LEN).ok_or(SyncError::Truncated)?;
        let ver_size = u16::from_be_bytes([record[2], record[3]]);
        let size = usize::from(ver_size & SIZE_MASK);
        let end = at + size;
        if end > datagram.len() || ver_size >> 12 != 0 {
            return Err(SyncError::Truncated);
        }
        match read_record(&datagram[at..end])? {
            Some(conn) => message.conns.push(conn),
            None => message.skipped += 1,
        }
        at += (size + 3) & !3;
    }
    Ok(message)
}

/// One record (exactly its `size` bytes): the connection, none for one to
/// skip, or an error that drops the whole datagram.
fn read_record(record: &[u8]) -> Result<Option<SyncConn>, SyncError> {
    let be16 = |i: usize| u16::from_be_bytes([record[i], record[i + 1]]);
    let be32 =
        |i: usize| u32::from_be_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
    let addr = |i: usize| Ipv4Addr::new(record[i], record[i + 1], record[i + 2], record[i + 3]);
    let ipv6 = record[0] & 1 != 0;
    if !ipv6 && record[0] != 0 {
        return Err(SyncError::BadRecord);
    }
    if ipv6 {
        // rvs is IPv4 only; the kernel without IPv6 skips these too.
        return Ok(None);
    }
    if record.len() < V4_LEN {
        return Err(SyncError::Truncated);
    }
    let mut conn = SyncConn {
        protocol: record[1],
        flags: be32(4) & flags::BACKUP_MASK,
        state: be16(8),
        cport: be16(10),
        vport: be16(12),
        dport: be16(14),
        fwmark: be32(16),
        timeout: be32(20),
        caddr: addr(24),
        vaddr: addr(28),
        daddr: addr(32),
        seq: None,
        local: None,
    };
    let mut skip = false;
    let mut at = V4_LEN;
    let (mut pe_data, mut pe_name) = (false, false);
    while at < record.len() {
        if at + 2 > record.len() {
            return Err(SyncError::BadRecord);
        }
        let (kind, len) = (record[at], usize::from(record[at + 1]));
        let data = record
            .get(at + 2..at + 2 + len)
            .filter(|_| len > 0)
            .ok_or(SyncError::BadRecord)?;
        match kind & !OPT_IGNORABLE {
            OPT_SEQ_DATA => {
                if len != SEQ_DATA_LEN || conn.seq.is_some() {
                    return Err(SyncError::BadRecord);
                }
                let mut seq = [0; SEQ_DATA_LEN];
                seq.copy_from_slice(data);
                conn.seq = Some(seq);
            }
            OPT_PE_DATA | OPT_PE_NAME => {
                // Persistence engines (SIP) rvs does not have: the kernel
                // without that engine skips the record.
                let seen = if kind & !OPT_IGNORABLE == OPT_PE_DATA {
                    &mut pe_data
                } else {
                    &mut pe_name
                };
                if *seen {
                    return Err(SyncError::BadRecord);
                }
                *seen = true;
                skip = true;
            }
            _ if kind == OPT_RVS_LOCAL && len == 6 => {
                conn.local = Some((
                    Ipv4Addr::new(data[0], data[1], data[2], data[3]),
                    u16::from_be_bytes([data[4], data[5]]),
                ));
            }
            _ if kind & OPT_IGNORABLE != 0 => {}
            // An unknown mandatory option: this record is skipped.
            _ => skip = true,
        }
        at += 2 + len;
    }
    Ok((!skip).then_some(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp_conn() -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::MASQ,
            state: 1,
            caddr: ip("198.51.100.7"),
            cport: 40000,
            vaddr: ip("10.0.0.100"),
            vport: 80,
            daddr: ip("192.168.0.11"),
            dport: 8080,
            fwmark: 0,
            timeout: 900,
            seq: None,
            local: None,
        }
    }

    /// The bytes of one IPv4 record laid out field by field as
    /// `struct ip_vs_sync_v4` (include/net/ip_vs.h order, network order).
    fn kernel_record(c: &SyncConn, size: u16) -> Vec<u8> {
        let mut r = vec![0u8, c.protocol];
        r.extend(size.to_be_bytes()); // ver_size: version 0, length
        r.extend(c.flags.to_be_bytes());
        r.extend(c.state.to_be_bytes());
        r.extend(c.cport.to_be_bytes());
        r.extend(c.vport.to_be_bytes());
        r.extend(c.dport.to_be_bytes());
        r.extend(c.fwmark.to_be_bytes());
        r.extend(c.timeout.to_be_bytes());
        r.extend(c.caddr.octets());
        r.extend(c.vaddr.octets());
        r.extend(c.daddr.octets());
        r
    }

    /// `struct ip_vs_sync_mesg`: reserved 0, syncid, be16 size, nr_conns,
    /// version 1, spare 0.
    fn kernel_header(syncid: u8, size: u16, count: u8) -> Vec<u8> {
        let mut h = vec![0, syncid];
        h.extend(size.to_be_bytes());
        h.extend([count, 1, 0, 0]);
        h
    }

    #[test]
    fn one_connection_is_the_kernels_bytes() {
        let c = tcp_conn();
        let mut expected = kernel_header(5, 8 + 36, 1);
        expected.extend(kernel_record(&c, 36));
        assert_eq!(
            expected,
            [
                0, 5, 0, 44, 1, 1, 0, 0, // header
                0, 6, 0, 36, 0, 0, 0, 0, 0, 1, 0x9c, 0x40, 0, 80, 0x1f, 0x90, // type..dport
                0, 0, 0, 0, 0, 0, 0x03, 0x84, // fwmark, timeout 900
                198, 51, 100, 7, 10, 0, 0, 100, 192, 168, 0, 11,
            ]
        );
        assert_eq!(encode(5, &[c], DEFAULT_MAXLEN), [expected.clone()]);
        let message = decode(&expected, 5).unwrap();
        assert_eq!(message.conns, [c]);
        assert_eq!((message.syncid, message.skipped), (5, 0));
        // A backup with syncid 0 takes every syncid.
        assert_eq!(decode(&expected, 0).unwrap().conns, [c]);
    }

    #[test]
    fn options_are_padded_to_four_bytes_between_records() {
        let mut a = tcp_conn();
        a.seq = Some(core::array::from_fn(|i| i as u8));
        let mut b = tcp_conn();
        b.cport = 40001;
        b.flags = flags::TEMPLATE | flags::NO_CPORT;
        b.local = Some((ip("10.99.2.200"), 2049));
        // a: 36 + 2 + 24 = 62 bytes, padded to 64; b: 36 + 2 + 6 = 44.
        let mut expected = kernel_header(1, 8 + 64 + 44, 2);
        expected.extend(kernel_record(&a, 62));
        expected.extend([OPT_SEQ_DATA, 24]);
        expected.extend(0u8..24);
        expected.extend([0, 0]);
        expected.extend(kernel_record(&b, 44));
        expected.extend([0x50, 6, 10, 99, 2, 200, 0x08, 0x01]);
        assert_eq!(encode(1, &[a, b], DEFAULT_MAXLEN), [expected.clone()]);
        assert_eq!(decode(&expected, 1).unwrap().conns, [a, b]);
    }

    #[test]
    fn batches_stay_within_maxlen_and_one_packet_conns_are_not_sent() {
        let conns: Vec<SyncConn> = (0..100)
            .map(|i| SyncConn {
                cport: 1000 + i,
                ..tcp_conn()
            })
            .collect();
        let datagrams = encode(9, &conns, DEFAULT_MAXLEN);
        // (1472 - 8) / 36 = 40 records a datagram.
        assert_eq!(
            datagrams.iter().map(|d| d[4]).collect::<Vec<_>>(),
            [40, 40, 20]
        );
        assert!(datagrams.iter().all(|d| d.len() <= DEFAULT_MAXLEN));
        let back: Vec<SyncConn> = datagrams
            .iter()
            .flat_map(|d| decode(d, 9).unwrap().conns)
            .collect();
        assert_eq!(back, conns);
        let one = SyncConn {
            flags: flags::ONE_PACKET,
            ..tcp_conn()
        };
        assert!(encode(9, &[one], DEFAULT_MAXLEN).is_empty());
        // At most 255 records, however large maxlen.
        let many: Vec<SyncConn> = (0..300)
            .map(|i| SyncConn {
                cport: i,
                ..tcp_conn()
            })
            .collect();
        let big = encode(9, &many, 65_000);
        assert_eq!(big.iter().map(|d| d[4]).collect::<Vec<_>>(), [255, 45]);
    }

    #[test]
    fn garbage_truncation_wrong_version_and_syncid_are_refused() {
        let good = encode(3, &[tcp_conn(), tcp_conn()], DEFAULT_MAXLEN).remove(0);
        assert_eq!(decode(&good[..3], 3), Err(SyncError::TooShort));
        for cut in [8, 20, 44, 60] {
            let mut short = good[..cut].to_vec();
            short[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            assert_eq!(decode(&short, 3), Err(SyncError::Truncated), "{cut}");
        }
        assert_eq!(decode(&good[..good.len() - 1], 3), Err(SyncError::BadSize));
        assert_eq!(decode(&good, 4), Err(SyncError::OtherSyncid));
        let mut v0 = good.clone();
        v0[5] = 0;
        assert_eq!(decode(&v0, 3), Err(SyncError::UnsupportedVersion));
        let mut reserved = good.clone();
        reserved[0] = 2;
        assert_eq!(decode(&reserved, 3), Err(SyncError::UnsupportedVersion));
        let mut record_version = good.clone();
        record_version[10] |= 0x10;
        assert_eq!(decode(&record_version, 3), Err(SyncError::Truncated));
        // Every single-byte change of a valid datagram decodes or is refused,
        // never panics.
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut d = good.clone();
                d[i] ^= 1 << bit;
                let _ = decode(&d, 0);
            }
        }
    }

    #[test]
    fn unknown_options_skip_the_record_or_are_ignored() {
        let c = tcp_conn();
        let with_option = |kind: u8| {
            let mut d = kernel_header(1, 8 + 40 + 36, 2);
            d.extend(kernel_record(&c, 40));
            d.extend([kind, 2, 0xaa, 0xbb]);
            d.extend(kernel_record(&c, 36));
            d
        };
        // Mandatory and unknown: that record skipped, the next one read.
        let m = decode(&with_option(0x07), 1).unwrap();
        assert_eq!((m.conns.len(), m.skipped), (1, 1));
        // Marked ignorable: the record read.
        let m = decode(&with_option(0x47), 1).unwrap();
        assert_eq!((m.conns.len(), m.skipped), (2, 0));
        // A zero-length option drops the datagram.
        let mut zero = with_option(0x47);
        zero[8 + 37] = 0;
        assert_eq!(decode(&zero, 1), Err(SyncError::BadRecord));
    }
}
