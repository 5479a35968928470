//! The owned mbuf, RX bursts and buffered TX: the per-packet part of the DPDK
//! layer. Per-packet mbuf field access (data pointer, lengths) is plain Rust
//! here and nowhere else.

use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use super::Mempool;
use crate::buf::PacketBuf;

/// Packets per RX and TX burst.
pub const BURST: usize = 32;

/// One packet buffer owned by rvs; returned to its pool on drop.
///
/// Invariant: a single-segment mbuf (`nb_segs == 1`), so `data_len ==
/// pkt_len`. RX drops multi-segment packets before they become an `Mbuf`.
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value; moving it to another
// thread moves that ownership (DPDK mbufs are not tied to a thread; the pool is
// multi-thread safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A fresh, empty packet from `pool`; `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: pool is a valid pktmbuf pool for the process lifetime.
        let raw = unsafe { dpdk_sys::rvs_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw).map(Mbuf)
    }

    #[inline]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf for our whole lifetime.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { self.0.as_mut() }
    }

    #[inline]
    fn into_raw(self) -> *mut rte_mbuf {
        let ptr = self.0.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// The DPDK port the packet was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    #[inline]
    fn set_len(&mut self, len: u16) {
        let m = self.raw_mut();
        m.data_len = len;
        m.pkt_len = u32::from(len);
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody uses it after this.
        unsafe { dpdk_sys::rvs_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's
        // data room (DPDK invariant for a single-segment mbuf).
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in `data`, and we own the mbuf exclusively (refcnt 1:
        // rvs never clones or shares mbufs).
        unsafe {
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len) - usize::from(m.data_off) - usize::from(m.data_len)
    }

    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        if len > self.headroom() {
            return false;
        }
        let m = self.raw_mut();
        m.data_off -= len as u16;
        let new_len = m.data_len + len as u16;
        self.set_len(new_len);
        true
    }

    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        let m = self.raw_mut();
        if len > usize::from(m.data_len) {
            return false;
        }
        m.data_off += len as u16;
        let new_len = m.data_len - len as u16;
        self.set_len(new_len);
        true
    }

    #[inline]
    fn append(&mut self, len: usize) -> bool {
        if len > self.tailroom() {
            return false;
        }
        let new_len = self.raw().data_len + len as u16;
        self.set_len(new_len);
        true
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < usize::from(self.raw().data_len) {
            self.set_len(len as u16);
        }
    }
}

/// One RX burst in a fixed array: no allocation per burst. Packets not taken
/// out are freed when the burst is refilled or dropped.
pub struct RxBurst {
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
    next: usize,
}

// SAFETY: the burst owns the mbufs it holds, like a collection of Mbuf.
unsafe impl Send for RxBurst {}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
            next: 0,
        }
    }
}

impl RxBurst {
    /// Receives up to [`BURST`] packets from `queue` of `port`; returns how
    /// many arrived.
    #[inline]
    pub fn receive(&mut self, port: u16, queue: u16) -> usize {
        self.release();
        // SAFETY: pkts has room for BURST pointers; the PMD fills `len` of them
        // with mbufs whose ownership passes to us.
        let len = unsafe {
            dpdk_sys::rvs_eth_rx_burst(port, queue, self.pkts.as_mut_ptr(), BURST as u16)
        };
        self.len = usize::from(len);
        self.next = 0;
        self.len
    }

    fn release(&mut self) {
        while let Some(m) = self.next_raw() {
            drop(Mbuf(m));
        }
    }

    #[inline]
    fn next_raw(&mut self) -> Option<NonNull<rte_mbuf>> {
        if self.next >= self.len {
            return None;
        }
        let raw = self.pkts[self.next];
        self.next += 1;
        NonNull::new(raw)
    }

    /// The next received packet; `Err` carries a multi-segment packet, which
    /// rvs does not process (its caller counts and drops it).
    #[inline]
    pub fn next_packet(&mut self) -> Option<Result<Mbuf, Mbuf>> {
        let mbuf = Mbuf(self.next_raw()?);
        if mbuf.raw().nb_segs == 1 {
            Some(Ok(mbuf))
        } else {
            Some(Err(mbuf))
        }
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        self.release();
    }
}

/// Packets waiting to go out on one TX queue, flushed as a burst.
pub struct TxBuffer {
    port: u16,
    queue: u16,
    pkts: [*mut rte_mbuf; BURST],
    len: usize,
}

// SAFETY: the buffer owns the mbufs it holds.
unsafe impl Send for TxBuffer {}

impl TxBuffer {
    pub fn new(port: u16, queue: u16) -> Self {
        TxBuffer {
            port,
            queue,
            pkts: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    /// Queues `pkt`; a full buffer is flushed first. Returns the number of
    /// packets the NIC refused (freed here) by that flush.
    #[inline]
    pub fn push(&mut self, pkt: Mbuf) -> usize {
        let dropped = if self.len == BURST { self.flush() } else { 0 };
        self.pkts[self.len] = pkt.into_raw();
        self.len += 1;
        dropped
    }

    /// Packets queued and not yet flushed.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Sends the queued packets. What the queue does not take after a second
    /// try is freed; returns how many that were (TX-full drops).
    #[inline]
    pub fn flush(&mut self) -> usize {
        let mut sent = 0;
        for _ in 0..2 {
            if sent == self.len {
                break;
            }
            // SAFETY: pkts[sent..len] are mbufs we own; the PMD takes
            // ownership of the first `n` of them.
            let n = unsafe {
                dpdk_sys::rvs_eth_tx_burst(
                    self.port,
                    self.queue,
                    self.pkts.as_mut_ptr().add(sent),
                    (self.len - sent) as u16,
                )
            };
            sent += usize::from(n);
        }
        let dropped = self.len - sent;
        for raw in &self.pkts[sent..self.len] {
            if let Some(m) = NonNull::new(*raw) {
                drop(Mbuf(m));
            }
        }
        self.len = 0;
        dropped
    }
}

impl Drop for TxBuffer {
    fn drop(&mut self) {
        for raw in &self.pkts[..self.len] {
            if let Some(m) = NonNull::new(*raw) {
                drop(Mbuf(m));
            }
        }
    }
}
