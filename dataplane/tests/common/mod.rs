//! Shared by the engine tests: an in-memory engine with two ports (client
//! side 10.99.1.0/24, real side 10.99.2.0/24), VIP 10.99.1.100 with TCP :80
//! and UDP :53 services, and builders for the frames that cross it.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_control::model::Forward;
use rvs_control::model::SchedulerKind;
use rvs_dataplane::buf::{PacketBuf, VecBuf};
use rvs_dataplane::counters::{DropReason, RealBook, RealCounters, WorkerCounters};
use rvs_dataplane::engine::{Engine, EngineLimits, PacketIo, WorkerPlace};
use rvs_dataplane::sched::Thresholds;
use rvs_dataplane::snapshot::{PortInfo, PortRange, Prefix, RealInfo, ServiceInfo, Snapshot};
use rvs_dataplane::tcp_state::StateTimeouts;
use rvs_dataplane::wire::arp::{self, ArpOperation};
use rvs_dataplane::wire::ethernet::{EtherType, EthernetFrame, MacAddr};
use rvs_dataplane::wire::ipv4::{protocol, Ipv4Packet, Ipv4Repr};
use rvs_dataplane::wire::tcp::{TcpFlags, TcpPacket};
use rvs_dataplane::wire::udp::UdpPacket;

pub const CLIENT_PORT: u16 = 0;
pub const REAL_PORT: u16 = 1;
pub const DIR_MAC0: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0]);
pub const DIR_MAC1: MacAddr = MacAddr([0x02, 0xd1, 0, 0, 0, 0]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
pub const R1_MAC: MacAddr = MacAddr([0x02, 0x11, 0, 0, 0, 0x11]);
pub const R2_MAC: MacAddr = MacAddr([0x02, 0x11, 0, 0, 0, 0x12]);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn client() -> Ipv4Addr {
    ip("10.99.1.2")
}
pub fn vip() -> Ipv4Addr {
    ip("10.99.1.100")
}
pub fn r1() -> Ipv4Addr {
    ip("10.99.2.11")
}
pub fn r2() -> Ipv4Addr {
    ip("10.99.2.12")
}

/// Collects what the engine sends; hands out buffers on request.
#[derive(Default)]
pub struct Capture {
    pub sent: Vec<(u16, Vec<u8>)>,
    pub no_buffers: bool,
    /// Packets handed to another worker: (worker, frame).
    pub redirected: Vec<(u16, Vec<u8>)>,
    /// Neighbours told to the other workers.
    pub shared: Vec<(Ipv4Addr, MacAddr, u16)>,
    /// Redirect rings refuse everything.
    pub rings_full: bool,
    /// Frames handed to the kernel: (port, frame).
    pub kernel: Vec<(u16, Vec<u8>)>,
    /// Connection copies handed to the master sync daemon.
    pub synced: Vec<rvs_control::sync::SyncConn>,
}

impl PacketIo<VecBuf> for Capture {
    fn send(&mut self, port: u16, packet: VecBuf) {
        self.sent.push((port, packet.data().to_vec()));
    }
    fn alloc(&mut self) -> Option<VecBuf> {
        (!self.no_buffers).then(VecBuf::empty)
    }
    fn redirect(&mut self, worker: u16, packet: VecBuf) -> Result<(), VecBuf> {
        if self.rings_full {
            return Err(packet);
        }
        self.redirected.push((worker, packet.data().to_vec()));
        Ok(())
    }
    fn share_neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16) {
        self.shared.push((ip, mac, port));
    }
    fn to_kernel(&mut self, port: u16, packet: VecBuf) -> Result<(), VecBuf> {
        self.kernel.push((port, packet.data().to_vec()));
        Ok(())
    }
    fn sync_out(&mut self, record: rvs_control::sync::SyncConn) -> bool {
        self.synced.push(record);
        true
    }
}

impl Capture {
    pub fn take(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }
}

pub struct Real {
    pub address: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
    pub forward: Forward,
}

pub fn real(address: Ipv4Addr, port: u16, weight: u32) -> Real {
    real_via(Forward::Nat, address, port, weight)
}

pub fn real_via(forward: Forward, address: Ipv4Addr, port: u16, weight: u32) -> Real {
    Real {
        address,
        port,
        weight,
        forward,
    }
}

/// The FullNAT local address of the test snapshot (on the real-side port).
pub fn lip() -> Ipv4Addr {
    ip("10.99.2.100")
}

/// What a test engine looks like beyond its reals.
#[derive(Clone, Copy)]
pub struct Setup {
    pub connections: usize,
    pub place: WorkerPlace,
    pub lip_ports: PortRange,
    pub real_port_mtu: u16,
    /// Persistence timeout of the TCP service.
    pub persistent: Option<u32>,
    /// The TCP service is a port-zero service (every port of the VIP).
    pub port_zero: bool,
    /// (upper, lower) connection thresholds of every real.
    pub thresholds: (u32, u32),
    /// `closed_ports: reject`.
    pub reject_closed_ports: bool,
    /// Both ports have a kernel interface.
    pub kernel: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            connections: 64,
            place: WorkerPlace::SINGLE,
            lip_ports: PortRange::default(),
            real_port_mtu: 1500,
            persistent: None,
            port_zero: false,
            thresholds: (0, 0),
            reject_closed_ports: false,
            kernel: false,
        }
    }
}

pub struct Harness {
    pub engine: Engine<VecBuf>,
    pub io: Capture,
    pub counters: Arc<WorkerCounters>,
    pub real_counters: Arc<[RealCounters]>,
}

pub fn harness(scheduler: SchedulerKind, reals: &[Real], connections: usize) -> Harness {
    harness_with(
        scheduler,
        reals,
        Setup {
            connections,
            ..Setup::default()
        },
    )
}

pub fn harness_with(scheduler: SchedulerKind, reals: &[Real], setup: Setup) -> Harness {
    let connections = setup.connections;
    let fullnat = reals.iter().any(|r| r.forward == Forward::FullNat);
    let local_addresses = if fullnat { vec![(lip(), 0)] } else { vec![] };
    let ports = vec![
        PortInfo {
            name: "client".into(),
            mac: DIR_MAC0,
            addresses: vec![Prefix::new(ip("10.99.1.1"), 24)],
            mtu: 1500,
            kernel: setup.kernel,
            floating: Vec::new(),
        },
        PortInfo {
            name: "real".into(),
            mac: DIR_MAC1,
            addresses: vec![Prefix::new(ip("10.99.2.1"), 24), Prefix::new(lip(), 24)],
            mtu: setup.real_port_mtu,
            kernel: setup.kernel,
            floating: Vec::new(),
        },
    ];
    let real_infos: Vec<RealInfo> = reals
        .iter()
        .enumerate()
        .map(|(i, r)| RealInfo {
            address: r.address,
            port: r.port,
            weight: r.weight,
            forward: r.forward,
            id: i as u32,
            thresholds: Thresholds {
                upper: setup.thresholds.0,
                lower: setup.thresholds.1,
            },
            drained: false,
        })
        .collect();
    let services = vec![
        ServiceInfo {
            local_addresses: local_addresses.clone(),
            persistent: setup.persistent,
            ..ServiceInfo::new(
                0,
                protocol::TCP,
                vip(),
                if setup.port_zero { 0 } else { 80 },
                scheduler,
                real_infos.clone(),
            )
        },
        ServiceInfo {
            local_addresses,
            ..ServiceInfo::new(
                1,
                protocol::UDP,
                vip(),
                53,
                scheduler,
                real_infos
                    .into_iter()
                    .map(|r| RealInfo {
                        id: r.id + reals.len() as u32,
                        ..r
                    })
                    .collect(),
            )
        },
    ];
    let snapshot = Arc::new(
        Snapshot::new(ports, vec![], services, StateTimeouts::default())
            .with_lip_ports(setup.lip_ports)
            .with_reject_closed_ports(setup.reject_closed_ports),
    );
    let counters = Arc::new(WorkerCounters::default());
    let book = Arc::new(
        RealBook::new(usize::from(setup.place.index) + 1, snapshot.real_id_bound())
            .with_local_addresses(&[lip()]),
    );
    let real_counters = Arc::clone(&book.workers[usize::from(setup.place.index)]);
    let mut engine = Engine::new(
        snapshot,
        setup.place,
        EngineLimits {
            connections,
            arp_pending: 8,
            expire_budget: 1024,
            unverified: connections / 2,
        },
        Arc::clone(&counters),
        book,
    );
    engine.set_now(1);
    let mut h = Harness {
        engine,
        io: Capture::default(),
        counters,
        real_counters,
    };
    // Every neighbour announces itself first, as it would by ARPing us.
    h.rx(
        CLIENT_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            CLIENT_MAC,
            client(),
            MacAddr::ZERO,
            vip(),
        ),
    );
    h.rx(
        REAL_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            R1_MAC,
            r1(),
            MacAddr::ZERO,
            ip("10.99.2.1"),
        ),
    );
    h.rx(
        REAL_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            R2_MAC,
            r2(),
            MacAddr::ZERO,
            ip("10.99.2.1"),
        ),
    );
    h.io.take();
    h
}

impl Harness {
    pub fn rx(&mut self, port: u16, frame: Vec<u8>) {
        self.engine.handle(VecBuf::new(&frame), port, &mut self.io);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.counters.drops_of(reason)
    }

    /// Sends `frame` in on `port`, expects exactly one frame out, returns it.
    pub fn one(&mut self, port: u16, frame: Vec<u8>) -> (u16, Vec<u8>) {
        self.rx(port, frame);
        let mut sent = self.io.take();
        assert_eq!(sent.len(), 1, "expected one frame out, got {}", sent.len());
        sent.pop().unwrap()
    }
}

pub fn ethernet(src: MacAddr, dst: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + payload.len()];
    let mut eth = EthernetFrame::new_checked(&mut frame[..]).unwrap();
    eth.set_src(src);
    eth.set_dst(dst);
    eth.set_ethertype(ethertype);
    frame[14..].copy_from_slice(payload);
    frame
}

pub fn arp_frame(
    op: ArpOperation,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut body = [0u8; 28];
    arp::emit(&mut body, op, sender_mac, sender_ip, target_mac, target_ip).unwrap();
    let dst = if op == ArpOperation::REQUEST {
        MacAddr::BROADCAST
    } else {
        target_mac
    };
    ethernet(sender_mac, dst, EtherType::ARP, &body)
}

/// An IPv4 packet as the tests' hosts send them: TTL 64, DF, ident 0x1234.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ipv4_from(src, dst, proto, 0x1234, true, l4)
}

/// An IPv4 packet with ident `ident` and DF `dont_frag`, TTL 64: what rvs
/// originates (TUN outer headers, ICMP errors).
pub fn ipv4_from(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    dont_frag: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = vec![0u8; 20 + payload.len()];
    Ipv4Repr {
        src,
        dst,
        protocol: proto,
        ttl: 64,
        dscp_ecn: 0,
        ident,
        dont_frag,
        payload_len: payload.len() as u16,
    }
    .emit(&mut packet)
    .unwrap();
    packet[20..].copy_from_slice(payload);
    packet
}

/// An ICMP message of `msg_type`/`code` with the 4 bytes after the
/// checksum `rest` and then `payload`, checksum filled.
pub fn icmp_message(msg_type: u8, code: u8, rest: u32, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![0u8; 8 + payload.len()];
    message[0] = msg_type;
    message[1] = code;
    message[4..8].copy_from_slice(&rest.to_be_bytes());
    message[8..].copy_from_slice(payload);
    rvs_dataplane::wire::icmp::IcmpPacket::new_checked(&mut message[..])
        .unwrap()
        .fill_checksum();
    message
}

pub fn tcp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let mut segment = vec![0u8; 20 + payload.len()];
    segment[12] = 5 << 4;
    segment[20..].copy_from_slice(payload);
    let mut t = TcpPacket::new_checked(&mut segment[..]).unwrap();
    t.set_src_port(sport);
    t.set_dst_port(dport);
    t.set_seq(1000);
    t.set_ack(if flags.contains(TcpFlags::ACK) {
        2000
    } else {
        0
    });
    t.set_flags(flags);
    t.set_window(65535);
    t.fill_checksum(src, dst);
    ipv4(src, dst, protocol::TCP, &segment)
}

pub fn udp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
    checksum: bool,
) -> Vec<u8> {
    let mut datagram = vec![0u8; 8 + payload.len()];
    datagram[8..].copy_from_slice(payload);
    let mut u = UdpPacket::new_checked_len_unset(&mut datagram);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    if checksum {
        u.fill_checksum(src, dst);
    }
    ipv4(src, dst, protocol::UDP, &datagram)
}

/// UdpPacket::new_checked needs the length field set first.
pub trait UdpNew<'a> {
    fn new_checked_len_unset(buf: &'a mut Vec<u8>) -> UdpPacket<&'a mut [u8]>;
}
impl<'a> UdpNew<'a> for UdpPacket<&'a mut [u8]> {
    fn new_checked_len_unset(buf: &'a mut Vec<u8>) -> UdpPacket<&'a mut [u8]> {
        let len = buf.len() as u16;
        buf[4..6].copy_from_slice(&len.to_be_bytes());
        UdpPacket::new_checked(&mut buf[..]).unwrap()
    }
}

pub fn from_client(frame_ip: Vec<u8>) -> Vec<u8> {
    ethernet(CLIENT_MAC, DIR_MAC0, EtherType::IPV4, &frame_ip)
}

pub fn from_real(mac: MacAddr, frame_ip: Vec<u8>) -> Vec<u8> {
    ethernet(mac, DIR_MAC1, EtherType::IPV4, &frame_ip)
}

pub fn syn(sport: u16) -> Vec<u8> {
    from_client(tcp(client(), sport, vip(), 80, TcpFlags::SYN, &[]))
}

/// The SYN/ACK real `addr` (at `mac`, port 8080) answers [`syn`] with.
pub fn syn_ack(mac: MacAddr, addr: Ipv4Addr, sport: u16) -> Vec<u8> {
    from_real(
        mac,
        tcp(
            addr,
            8080,
            client(),
            sport,
            TcpFlags::SYN | TcpFlags::ACK,
            &[],
        ),
    )
}

/// The real (address, port) a client → VIP frame was sent to.
pub fn destination(frame: &[u8]) -> (Ipv4Addr, u16) {
    let packet = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let l4 = packet.payload();
    (packet.dst(), u16::from_be_bytes([l4[2], l4[3]]))
}

/// Checks every checksum of an IPv4 TCP/UDP frame from scratch.
pub fn assert_checksums_valid(frame: &[u8]) {
    let packet = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(packet.verify_checksum(), "IPv4 header checksum");
    match packet.protocol() {
        protocol::TCP => assert!(
            TcpPacket::new_checked(packet.payload())
                .unwrap()
                .verify_checksum(packet.src(), packet.dst()),
            "TCP checksum"
        ),
        protocol::UDP => assert!(
            UdpPacket::new_checked(packet.payload())
                .unwrap()
                .verify_checksum(packet.src(), packet.dst()),
            "UDP checksum"
        ),
        _ => {}
    }
}

/// A client address (10.99.1.x) whose connections worker `worker` owns.
pub fn client_owned_by(place: WorkerPlace, worker: u16) -> Ipv4Addr {
    (2..=250)
        .map(|i| Ipv4Addr::new(10, 99, 1, i))
        .find(|c| place.owner_of_client(*c) == worker)
        .expect("some client of 10.99.1.0/24 belongs to each worker")
}

/// One row of a packet table, in katran's shape: a description, the frame
/// that goes in (after `before`, whose output is not checked, such as the
/// SYN that opens a connection), and what must come of it.
pub struct Case {
    pub what: &'static str,
    pub before: Vec<(u16, Vec<u8>)>,
    /// (port, frame).
    pub input: (u16, Vec<u8>),
    pub expect: Expect,
}

impl Case {
    pub fn new(what: &'static str, port: u16, frame: Vec<u8>, expect: Expect) -> Case {
        Case {
            what,
            before: Vec::new(),
            input: (port, frame),
            expect,
        }
    }

    /// The same case after `frames` went in first.
    pub fn after(mut self, frames: Vec<(u16, Vec<u8>)>) -> Case {
        self.before = frames;
        self
    }
}

/// What a frame must come to: frames out byte for byte (port, frame) in
/// order, the drop counted, the worker it is handed to. Whatever is not
/// named must not happen: no other frame, drop or hand-over.
#[derive(Default)]
pub struct Expect {
    pub sent: Vec<(u16, Vec<u8>)>,
    pub dropped: Option<DropReason>,
    pub redirected_to: Option<u16>,
    /// Handed, unchanged, to the kernel interface of this port.
    pub kernel: Option<u16>,
}

impl Expect {
    pub fn sent(port: u16, frame: Vec<u8>) -> Expect {
        Expect {
            sent: vec![(port, frame)],
            ..Expect::default()
        }
    }

    pub fn dropped(reason: DropReason) -> Expect {
        Expect {
            dropped: Some(reason),
            ..Expect::default()
        }
    }

    pub fn to_kernel(port: u16) -> Expect {
        Expect {
            kernel: Some(port),
            ..Expect::default()
        }
    }

    pub fn redirected(worker: u16) -> Expect {
        Expect {
            redirected_to: Some(worker),
            ..Expect::default()
        }
    }

    /// Also counted as dropped for `reason` (a frame answered and dropped,
    /// such as one too big to encapsulate).
    pub fn and_dropped(mut self, reason: DropReason) -> Expect {
        self.dropped = Some(reason);
        self
    }
}

/// Runs every case of `table` on a fresh engine from `setup`: the runner of
/// every packet table. Checks, per case, the frames sent (and that every
/// TCP/UDP frame sent has valid checksums), the drop counted and the
/// hand-over to another worker.
pub fn run_table(table: Vec<Case>, setup: impl Fn() -> Harness) {
    for case in table {
        let what = case.what;
        let mut h = setup();
        for (port, frame) in case.before {
            h.rx(port, frame);
        }
        h.io.take();
        h.io.redirected.clear();
        h.io.kernel.clear();
        let before = h.counters.read();
        let (port, frame) = case.input;
        h.rx(port, frame.clone());
        let sent = h.io.take();
        assert_eq!(
            sent.len(),
            case.expect.sent.len(),
            "{what}: frames out {sent:02x?}"
        );
        for (i, ((port, out), (want_port, want))) in sent.iter().zip(&case.expect.sent).enumerate()
        {
            assert_eq!(port, want_port, "{what}: port of frame {i}");
            assert_eq!(
                out, want,
                "{what}: frame {i}\n got  {out:02x?}\n want {want:02x?}"
            );
            if matches!(EthernetFrame::new_checked(&out[..]), Ok(f) if f.ethertype() == EtherType::IPV4)
            {
                assert_checksums_valid(out);
            }
        }
        let after = h.counters.read();
        let drops: Vec<DropReason> = DropReason::ALL
            .into_iter()
            .filter(|r| after.drops_of(*r) != before.drops_of(*r))
            .collect();
        let want_drops: Vec<DropReason> = case.expect.dropped.into_iter().collect();
        assert_eq!(drops, want_drops, "{what}: drops counted");
        if let Some(reason) = case.expect.dropped {
            assert_eq!(
                after.drops_of(reason) - before.drops_of(reason),
                1,
                "{what}: {reason:?} counted once"
            );
        }
        let redirected: Vec<u16> = h.io.redirected.iter().map(|(worker, _)| *worker).collect();
        let want_redirect: Vec<u16> = case.expect.redirected_to.into_iter().collect();
        assert_eq!(redirected, want_redirect, "{what}: handed over");
        if let Some((_, handed)) = h.io.redirected.first() {
            assert_eq!(handed, &frame, "{what}: handed over unchanged");
        }
        let to_kernel: Vec<(u16, Vec<u8>)> = std::mem::take(&mut h.io.kernel);
        let want_kernel: Vec<(u16, Vec<u8>)> = case
            .expect
            .kernel
            .map(|port| (port, frame.clone()))
            .into_iter()
            .collect();
        assert_eq!(to_kernel, want_kernel, "{what}: handed to the kernel");
    }
}
