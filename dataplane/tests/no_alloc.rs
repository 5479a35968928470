//! The packet path allocates nothing: after the engine is built, thousands of
//! packets of every kind (new connections, established traffic both ways,
//! ARP, ICMP, held packets, malformed frames, expiry) go through it while a
//! counting global allocator watches this thread.
//!
//! Together with the rest of the design (no Mutex or other lock type anywhere
//! in the engine, per-worker state, counters as relaxed single-writer stores,
//! no I/O in the engine), this is how rvs checks that the per-packet path has
//! no allocation, lock or syscall; `bench/fastpath-syscalls.sh` checks the
//! running rvsd's worker thread for syscalls.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use rvs_control::model::{Forward, SchedulerKind};
use rvs_dataplane::buf::VecBuf;
use rvs_dataplane::engine::PacketIo;
use rvs_dataplane::wire::arp::ArpOperation;
use rvs_dataplane::wire::ethernet::MacAddr;
use rvs_dataplane::wire::icmp::{self, IcmpPacket};
use rvs_dataplane::wire::ipv4::protocol;
use rvs_dataplane::wire::tcp::TcpFlags;

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    /// Allocations of this thread (this test) while it watched.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if WATCHING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Packet I/O that, like a mempool, hands out buffers made in advance and
/// keeps what is sent in storage reserved in advance.
struct Preallocated {
    free: Vec<VecBuf>,
    sent: Vec<(u16, VecBuf)>,
}

impl PacketIo<VecBuf> for Preallocated {
    fn send(&mut self, port: u16, packet: VecBuf) {
        assert!(
            self.sent.len() < self.sent.capacity(),
            "test sized too small"
        );
        self.sent.push((port, packet));
    }
    fn alloc(&mut self) -> Option<VecBuf> {
        self.free.pop()
    }
    fn redirect(&mut self, _worker: u16, packet: VecBuf) -> Result<(), VecBuf> {
        Err(packet)
    }
    fn share_neighbour(&mut self, _: std::net::Ipv4Addr, _: MacAddr, _: u16) {}
}

#[test]
fn the_packet_path_does_not_allocate() {
    packets_allocate_nothing(&[real(r1(), 8080, 1), real(r2(), 8080, 2)], false);
}

/// The same frames in bursts, as a worker hands them over
/// (`Engine::handle_burst` and its stages).
#[test]
fn the_burst_packet_path_does_not_allocate() {
    packets_allocate_nothing(&[real(r1(), 8080, 1), real(r2(), 8080, 2)], true);
}

/// FullNAT: a local port taken by each new connection and given back by
/// each that goes.
#[test]
fn the_fullnat_packet_path_does_not_allocate() {
    packets_allocate_nothing(
        &[
            real_via(Forward::FullNat, r1(), 8080, 1),
            real_via(Forward::FullNat, r2(), 8080, 2),
        ],
        true,
    );
}

/// Frames one at a time through `Engine::handle`, or with `bursts` each run
/// of frames from one port (at most 32) through `Engine::handle_burst`.
fn packets_allocate_nothing(reals: &[Real], bursts: bool) {
    const CONNS: u16 = 2000;
    let mut h = harness(SchedulerKind::Wlc, reals, 4096);

    // Every frame is built before watching starts.
    let mut frames: Vec<(u16, VecBuf)> = Vec::new();
    let mut push = |port: u16, frame: Vec<u8>| frames.push((port, VecBuf::new(&frame)));
    for i in 0..CONNS {
        let sport = 10_000 + i;
        push(
            CLIENT_PORT,
            from_client(tcp(client(), sport, vip(), 80, TcpFlags::SYN, &[])),
        );
        // Replies come from whichever real was picked; both are offered and
        // the one that matches no connection is dropped (also a path).
        for (mac, addr) in [(R1_MAC, r1()), (R2_MAC, r2())] {
            push(REAL_PORT, syn_ack(mac, addr, sport));
        }
        push(
            CLIENT_PORT,
            from_client(tcp(
                client(),
                sport,
                vip(),
                80,
                TcpFlags::ACK | TcpFlags::PSH,
                b"GET / HTTP/1.1\r\n\r\n",
            )),
        );
        push(
            CLIENT_PORT,
            from_client(tcp(
                client(),
                sport,
                vip(),
                80,
                TcpFlags::FIN | TcpFlags::ACK,
                &[],
            )),
        );
        push(
            CLIENT_PORT,
            from_client(udp(client(), sport, vip(), 53, b"q", true)),
        );
    }
    // A real the engine has never resolved: held, ARP request built from the pool.
    push(
        REAL_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            MacAddr([2, 0, 0, 0, 0, 0x77]),
            r1(),
            MacAddr::ZERO,
            vip(),
        ),
    );
    push(
        CLIENT_PORT,
        arp_frame(
            ArpOperation::REQUEST,
            CLIENT_MAC,
            client(),
            MacAddr::ZERO,
            vip(),
        ),
    );
    let mut echo = [0u8; 16];
    echo[0] = icmp::ECHO_REQUEST;
    IcmpPacket::new_checked(&mut echo[..])
        .unwrap()
        .fill_checksum();
    push(
        CLIENT_PORT,
        from_client(ipv4(client(), vip(), protocol::ICMP, &echo)),
    );
    push(CLIENT_PORT, vec![0xff; 20]);
    push(
        CLIENT_PORT,
        from_client(tcp(client(), 9, vip(), 81, TcpFlags::SYN, &[])),
    );
    let mut fragment = from_client(tcp(client(), 9, vip(), 80, TcpFlags::SYN, &[]));
    fragment[14 + 6] |= 0x20;
    push(CLIENT_PORT, fragment);

    let total = frames.len();
    let mut io = Preallocated {
        free: (0..64).map(|_| VecBuf::empty()).collect(),
        sent: Vec::with_capacity(total * 2),
    };

    WATCHING.with(|w| w.set(true));
    let mut frames = frames.drain(..).peekable();
    while let Some((port, frame)) = frames.next() {
        if !bursts {
            h.engine.handle(frame, port, &mut io);
            continue;
        }
        let mut run = 1;
        let rest = std::iter::from_fn(|| {
            let next = frames.next_if(|(p, _)| *p == port && run < 32)?;
            run += 1;
            Some(next.1)
        });
        h.engine
            .handle_burst(std::iter::once(frame).chain(rest), port, &mut io);
    }
    for now in [2, 30, 200, 1000, 2000] {
        h.engine.set_now(now);
        for _ in 0..64 {
            h.engine.tick(&mut io);
        }
    }
    WATCHING.with(|w| w.set(false));

    let allocations = ALLOCATIONS.with(Cell::get);
    assert_eq!(
        allocations, 0,
        "the packet path allocated {allocations} times"
    );
    // The run did real work: connections were made and then all expired.
    let counters = h.counters.read();
    assert_eq!(counters.conns_created, u64::from(CONNS) * 2, "{counters:?}");
    assert_eq!(counters.conns_current, 0);
    assert!(
        io.sent.len() > usize::from(CONNS) * 4,
        "only {} frames went out",
        io.sent.len()
    );
}
