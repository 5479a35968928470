//! A burst in stages, so that its memory reads overlap.
//!
//! At a million tracked connections nearly every connection the packets of a
//! burst belong to is a cache (and TLB) miss twice over: its index bucket,
//! then its entry. Handled one packet at a time, each miss is waited for in
//! turn. Here the burst goes through the steps of [`Engine::handle`] in
//! stages instead, each over every packet before the next begins (as
//! DPDK's bulk hash lookups and VPP's graph nodes do):
//!
//! 1. take the packets, and ask for each one's headers;
//! 2. classify each (the one parse, kept as its verdict), hash its
//!    connection key, and ask for the key's index bucket;
//! 3. read each bucket (arrived meanwhile) and ask for the entry it points
//!    to, noting it for the lookup to try first; a burst with a SYN also
//!    asks for the free entry the first insert will take;
//! 4. process each packet, in order, from its verdict and hash: the lookup
//!    and everything after it as for a single packet, finding its lines in
//!    cache.
//!
//! Stages 1-3 only read and prefetch: every decision is taken in stage 4,
//! in arrival order, exactly as packet-at-a-time handling takes it (a SYN
//! early in the burst creates the connection a later packet finds). The
//! forwarding modes never see a burst.

use crate::buf::PacketBuf;
use crate::conn::KeyHash;
use crate::counters::{bump, DropReason};
use crate::dpdk::prefetch;

use super::classify::Verdict;
use super::{Engine, PacketIo};

/// Packets staged together: DPDK's usual burst.
pub const STAGE: usize = 32;

/// One packet between the stages.
pub(super) struct Staged<P> {
    packet: P,
    verdict: Result<Verdict, DropReason>,
    hash: KeyHash,
}

impl<P: PacketBuf> Engine<P> {
    /// Processes the packets received together from port `in_port` (config
    /// index), in stages (module docs); the same outcome as
    /// [`Engine::handle`] on each in turn.
    pub fn handle_burst(
        &mut self,
        packets: impl IntoIterator<Item = P>,
        in_port: u16,
        io: &mut impl PacketIo<P>,
    ) {
        // Taken out so that the stages can borrow the engine; its capacity
        // was reserved in `new` and survives, so nothing allocates.
        let mut staged = std::mem::take(&mut self.staged);
        let mut packets = packets.into_iter().peekable();
        while packets.peek().is_some() {
            let mut bytes = 0;
            for packet in packets.by_ref().take(STAGE) {
                if let Some(first) = packet.data().first() {
                    prefetch(first);
                }
                bytes += packet.len() as u64;
                staged.push(Staged {
                    packet,
                    verdict: Err(DropReason::NotForUs),
                    hash: KeyHash::default(),
                });
            }
            bump(&self.counters.rx_packets, staged.len() as u64);
            bump(&self.counters.rx_bytes, bytes);
            for s in staged.iter_mut() {
                s.verdict = self.classify(&mut s.packet, in_port);
                if let Ok(Verdict::Flow(flow)) = &s.verdict {
                    s.hash = self.conns.key_hash(&flow.key);
                    self.conns.prefetch_bucket(s.hash);
                }
            }
            let mut opens = false;
            for s in staged.iter_mut() {
                if let Ok(Verdict::Flow(flow)) = &s.verdict {
                    opens |= flow.is_opening_syn();
                    self.conns.prefetch_entry(&mut s.hash);
                }
            }
            if opens {
                // The free list's head: where the burst's first insert lands.
                self.conns.prefetch_free();
            }
            for s in staged.drain(..) {
                if let Err(reason) = self.dispatch(s.packet, in_port, s.verdict, s.hash, true, io) {
                    self.counters.count_drop(reason);
                }
            }
        }
        self.staged = staged;
    }
}
