//! The packet buffer the packet path works on.
//!
//! DPDK's mbuf implements [`PacketBuf`] in production (`dpdk::Mbuf`); [`VecBuf`]
//! implements it for unit tests, golden packet tests, fuzzing and in-memory
//! benchmarks. The packet logic only ever sees this trait, so nearly all of it
//! is testable without DPDK.
//!
//! A buffer is one contiguous run of bytes (`data`) with some free room in
//! front of it (headroom) to prepend an outer header and some behind it
//! (tailroom) to grow a packet in place.

/// A contiguous packet with headroom and tailroom.
pub trait PacketBuf {
    /// The packet bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes in front of the data.
    fn headroom(&self) -> usize;
    /// Free bytes behind the data.
    fn tailroom(&self) -> usize;
    /// Grows the packet at the front by `len` bytes (uninitialised content).
    /// Returns false, leaving the packet unchanged, when the headroom is short.
    fn prepend(&mut self, len: usize) -> bool;
    /// Removes `len` bytes from the front. False (unchanged) if `len > data().len()`.
    fn adj(&mut self, len: usize) -> bool;
    /// Grows the packet at the back by `len` bytes. False (unchanged) when the
    /// tailroom is short.
    fn append(&mut self, len: usize) -> bool;
    /// Cuts the packet to `len` bytes; a longer `len` is ignored.
    fn truncate(&mut self, len: usize);

    /// Length of the packet in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }

    /// True for a zero-length packet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap buffer implementing [`PacketBuf`], for tests and in-memory runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// Headroom a new buffer gets, as DPDK's `RTE_PKTMBUF_HEADROOM`.
    pub const DEFAULT_HEADROOM: usize = 128;
    /// Size of the whole buffer, as DPDK's default mbuf data room.
    pub const DEFAULT_SIZE: usize = 2048 + Self::DEFAULT_HEADROOM;

    /// A buffer holding `bytes` with the default headroom and room.
    pub fn new(bytes: &[u8]) -> Self {
        Self::with_room(bytes, Self::DEFAULT_HEADROOM, Self::DEFAULT_SIZE)
    }

    /// A buffer holding `bytes` behind `headroom` free bytes, `size` bytes in
    /// all (at least enough for the headroom and the bytes).
    pub fn with_room(bytes: &[u8], headroom: usize, size: usize) -> Self {
        let size = size.max(headroom + bytes.len());
        let mut storage = vec![0; size];
        storage[headroom..headroom + bytes.len()].copy_from_slice(bytes);
        VecBuf {
            storage,
            start: headroom,
            end: headroom + bytes.len(),
        }
    }

    /// An empty buffer with the default headroom and room.
    pub fn empty() -> Self {
        Self::new(&[])
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }

    fn headroom(&self) -> usize {
        self.start
    }

    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }

    fn prepend(&mut self, len: usize) -> bool {
        if len > self.start {
            return false;
        }
        self.start -= len;
        true
    }

    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }

    fn append(&mut self, len: usize) -> bool {
        if len > self.tailroom() {
            return false;
        }
        self.end += len;
        true
    }

    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_and_adj_move_the_front() {
        let mut buf = VecBuf::with_room(&[1, 2, 3], 4, 16);
        assert_eq!(buf.headroom(), 4);
        assert!(buf.prepend(2));
        assert_eq!(buf.len(), 5);
        buf.data_mut()[..2].copy_from_slice(&[9, 9]);
        assert_eq!(buf.data(), &[9, 9, 1, 2, 3]);
        assert!(!buf.prepend(3), "only 2 bytes of headroom are left");
        assert!(buf.adj(2));
        assert_eq!(buf.data(), &[1, 2, 3]);
        assert!(!buf.adj(4));
    }

    #[test]
    fn append_and_truncate_move_the_back() {
        let mut buf = VecBuf::with_room(&[1, 2, 3], 0, 5);
        assert!(buf.append(2));
        assert_eq!(buf.len(), 5);
        assert!(!buf.append(1));
        buf.truncate(1);
        assert_eq!(buf.data(), &[1]);
        buf.truncate(10);
        assert_eq!(buf.data(), &[1]);
    }
}
