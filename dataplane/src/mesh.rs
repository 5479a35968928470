//! What workers hand each other and what the control thread hands them, all
//! over bounded lock-free queues: packets for the worker owning their
//! connection (one ring per ordered pair of workers, so each ring has a
//! single producer), neighbours learned by ARP, configuration snapshots
//! (and the old ones back, to be freed off the packet path), and requests
//! the control thread asks a worker to answer between bursts ([`Ask`]),
//! and connection copies to and from the sync daemons.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use rvs_control::sync::SyncConn;

use crate::dpdk::Mbuf;
use crate::engine::ConnDump;
use crate::snapshot::Snapshot;
use crate::wire::ethernet::MacAddr;

/// Packets waiting in one redirect ring, at most.
pub const REDIRECT_RING: usize = 1024;
pub use rvs_control::config::KERNEL_RING;
/// Neighbour updates waiting for one worker, at most.
const NEIGHBOUR_RING: usize = 256;
/// Snapshots waiting for one worker, at most.
pub const SNAPSHOT_QUEUE: usize = 4;
/// Connection copies waiting in one worker's sync ring (either way), at
/// most: a second of 4,000 new connections, synced once each.
pub const SYNC_RING: usize = 4096;

/// (address, MAC, port index, seconds since confirmed).
pub type NeighbourEntry = (Ipv4Addr, MacAddr, u16, u32);

/// A request for up to `limit` connections from table position `from`.
#[derive(Clone, Copy, Debug)]
pub struct DumpRequest {
    pub from: usize,
    pub limit: usize,
}

/// The queues between the workers and the control thread.
pub struct Mesh {
    /// `packets[to][from]`: (packet, config port index).
    pub packets: Vec<Vec<ArrayQueue<(Mbuf, u16)>>>,
    pub neighbours: Vec<ArrayQueue<(Ipv4Addr, MacAddr, u16)>>,
    /// Per worker: snapshots to switch to, oldest first.
    pub snapshots: Vec<ArrayQueue<Arc<Snapshot>>>,
    /// Snapshots the workers are done with.
    pub retired: ArrayQueue<Arc<Snapshot>>,
    /// Per worker: a page of its connection table.
    pub dumps: Vec<Ask<DumpRequest, ConnDump>>,
    /// Per worker: its neighbour table.
    pub neighbour_tables: Vec<Ask<(), Vec<NeighbourEntry>>>,
    /// Per worker: frames for the kernel interface of a port, (frame,
    /// config port index), taken by the exception thread.
    pub to_kernel: Vec<ArrayQueue<(Mbuf, u16)>>,
    /// Frames the kernel sent, (frame, config port index): worker 0
    /// transmits them on its TX queue of that port.
    pub from_kernel: ArrayQueue<(Mbuf, u16)>,
    /// Per worker: copies of its connections for the master sync daemon.
    pub sync_out: Vec<ArrayQueue<SyncConn>>,
    /// Per worker: connections the backup sync daemon received for flows
    /// it owns, to install between bursts.
    pub sync_in: Vec<ArrayQueue<SyncConn>>,
}

impl Mesh {
    pub fn new(workers: usize) -> Self {
        fn per_worker<T>(workers: usize, capacity: usize) -> Vec<ArrayQueue<T>> {
            (0..workers).map(|_| ArrayQueue::new(capacity)).collect()
        }
        Mesh {
            packets: (0..workers)
                .map(|_| per_worker(workers, REDIRECT_RING))
                .collect(),
            neighbours: per_worker(workers, NEIGHBOUR_RING),
            snapshots: per_worker(workers, SNAPSHOT_QUEUE),
            retired: ArrayQueue::new(workers * (SNAPSHOT_QUEUE + 1)),
            dumps: (0..workers).map(|_| Ask::new()).collect(),
            neighbour_tables: (0..workers).map(|_| Ask::new()).collect(),
            to_kernel: per_worker(workers, KERNEL_RING),
            from_kernel: ArrayQueue::new(KERNEL_RING),
            sync_out: per_worker(workers, SYNC_RING),
            sync_in: per_worker(workers, SYNC_RING),
        }
    }
}

/// One question at a time from the control thread to one worker, and its
/// answer. The worker answers between bursts ([`Ask::answer`]), so the
/// packet path never waits; the control thread waits a bounded time
/// ([`ask_all`]) and a late answer is dropped by the next question.
pub struct Ask<Q, A> {
    questions: ArrayQueue<Q>,
    answers: ArrayQueue<A>,
}

/// Why a worker gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// A question asked before is still waiting for it.
    Busy,
    /// It did not answer within the wait.
    TimedOut,
}

impl<Q, A> Ask<Q, A> {
    pub fn new() -> Self {
        Ask {
            questions: ArrayQueue::new(1),
            answers: ArrayQueue::new(1),
        }
    }

    /// Worker side: answers the waiting question, if any, with `reply`.
    #[inline]
    pub fn answer(&self, reply: impl FnOnce(Q) -> A) {
        if let Some(question) = self.questions.pop() {
            // The control thread drops a stale answer before asking again,
            // so there is room unless it never collected the last one.
            let _ = self.answers.push(reply(question));
        }
    }

    /// Posts `question`, dropping an answer left from a question that timed
    /// out.
    fn post(&self, question: Q) -> Result<(), Unanswered> {
        while self.answers.pop().is_some() {}
        self.questions.push(question).map_err(|_| Unanswered::Busy)
    }

    /// Withdraws a question no answer came for in time.
    fn withdraw(&self) {
        while self.questions.pop().is_some() {}
    }
}

impl<Q, A> Default for Ask<Q, A> {
    fn default() -> Self {
        Self::new()
    }
}

/// How often the control thread looks for answers while it waits.
const POLL: Duration = Duration::from_micros(50);

/// Asks every worker of `asks` the question `question(worker)` at once and
/// waits up to `wait` for all of them; each gets its answer or why none
/// came, in worker order.
pub fn ask_all<Q, A>(
    asks: &[Ask<Q, A>],
    mut question: impl FnMut(usize) -> Q,
    wait: Duration,
) -> Vec<Result<A, Unanswered>> {
    let mut results: Vec<Option<Result<A, Unanswered>>> = asks
        .iter()
        .enumerate()
        .map(|(worker, ask)| ask.post(question(worker)).err().map(Err))
        .collect();
    let deadline = Instant::now() + wait;
    loop {
        for (ask, result) in asks.iter().zip(&mut results) {
            if result.is_none() {
                *result = ask.answers.pop().map(Ok);
            }
        }
        if results.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    asks.iter()
        .zip(results)
        .map(|(ask, result)| {
            result.unwrap_or_else(|| {
                ask.withdraw();
                Err(Unanswered::TimedOut)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    #[test]
    fn answers_come_back_in_worker_order_and_a_silent_worker_times_out() {
        let asks: Vec<Ask<u32, u32>> = (0..3).map(|_| Ask::new()).collect();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Workers 1 and 2 answer between their "bursts"; worker 0
                // never does.
                while !done.load(Relaxed) {
                    for ask in &asks[1..] {
                        ask.answer(|q| q * 10);
                    }
                    std::thread::yield_now();
                }
            });
            let results = ask_all(
                &asks,
                |worker| worker as u32 + 1,
                Duration::from_millis(500),
            );
            done.store(true, Relaxed);
            assert_eq!(results, [Err(Unanswered::TimedOut), Ok(20), Ok(30)]);
        });
        assert_eq!(
            asks[0].questions.len(),
            0,
            "the unanswered question is withdrawn"
        );
    }

    #[test]
    fn a_late_answer_is_dropped_and_a_waiting_question_makes_the_worker_busy() {
        let ask: Ask<u32, u32> = Ask::new();
        ask.post(1).unwrap();
        ask.answer(|q| q);
        // Question 1's answer came too late: asking again drops it.
        ask.post(2).unwrap();
        assert_eq!(ask.answers.len(), 0);
        assert_eq!(ask.post(3), Err(Unanswered::Busy));
        let results = ask_all(std::slice::from_ref(&ask), |_| 4, Duration::from_millis(1));
        assert_eq!(results, [Err(Unanswered::Busy)], "question 2 still waits");
        ask.answer(|q| q * 100);
        assert_eq!(ask.answers.pop(), Some(200));
    }
}
