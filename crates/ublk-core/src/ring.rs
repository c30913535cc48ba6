//! A queue's shared rings: the memory one queue thread and the JavaScript
//! thread serving that queue both map (JS sees it as one ArrayBuffer), set up
//! once per queue, so that no request and no completion needs an allocation
//! or a copy into a fresh array on its way.
//!
//! - The *request ring*: the queue thread writes each request it reaped as
//!   `wire::REQUEST_WORDS` words at its tail, publishes the tail once per loop
//!   turn, and notifies JS (a threadsafe-function call) only if no earlier
//!   notification is still unread (`NOTIFY`). JS keeps its own read cursor.
//! - The *completion ring*: JS writes `(io id, result)` pairs at its tail and
//!   publishes it; the queue thread takes them (checked against the
//!   `TagTable`, exactly like `CompletionQueue::push`) and moves the head. JS
//!   wakes the queue thread (its eventfd) only if that thread said it waits
//!   (`WAITING`), and only one waker claims each wait.
//!
//! Positions run freely over `u32` and index a ring of `capacity` entries (a
//! power of two at least the queue depth) by their low bits. A request's
//! entry is unread only while its tag is held, so at most `depth` entries are
//! ever unread: the queue thread cannot overrun a consumer. JS cannot be
//! trusted the same way, so what it writes (tail, ids, results) is checked
//! before it reaches the kernel.
//!
//! Every access to the memory goes through `AtomicU32`: the other side is
//! another thread (JS uses `Atomics` for the header words and plain typed
//! array access for entries, ordered by the header words' sequentially
//! consistent stores and loads).

use crate::buffer::IoBufferRegion;
use crate::dispatch::wire;
use crate::error::UblkError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Word offsets of the header (each on its own 64-byte line), exported to JS.
pub mod header {
    /// The request ring's tail: requests before it are published.
    pub const REQUEST_TAIL: usize = 0;
    /// 1 while a notification JS has not started reading is outstanding.
    pub const NOTIFY: usize = 16;
    /// The completion ring's tail, written by JS.
    pub const COMPLETION_TAIL: usize = 32;
    /// The completion ring's head, written by the queue thread.
    pub const COMPLETION_HEAD: usize = 48;
    /// 1 while the queue thread waits (or is about to) for its eventfd.
    pub const WAITING: usize = 64;
    /// The layout, written once when the rings are set up, so that JS reads
    /// it from the rings themselves: `RingLayout::capacity`...
    pub const CAPACITY: usize = 80;
    /// ...`RingLayout::requests`...
    pub const REQUESTS_AT: usize = 81;
    /// ...and `RingLayout::completions`.
    pub const COMPLETIONS_AT: usize = 82;
    /// Words before the request entries.
    pub const WORDS: usize = 128;
}

/// Where everything lies in a ring of a queue of `depth` tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Entries in each ring: `depth` rounded up to a power of two.
    pub capacity: usize,
    /// Word offset of the request entries (`capacity * REQUEST_WORDS` words).
    pub requests: usize,
    /// Word offset of the completion entries (`capacity * COMPLETION_WORDS` words).
    pub completions: usize,
    /// Bytes of the whole thing, a multiple of the page size.
    pub bytes: usize,
}

impl RingLayout {
    pub fn new(depth: usize) -> RingLayout {
        let capacity = depth.max(1).next_power_of_two();
        let requests = header::WORDS;
        let completions = requests + capacity * wire::REQUEST_WORDS;
        let words = completions + capacity * wire::COMPLETION_WORDS;
        RingLayout { capacity, requests, completions, bytes: (words * 4).next_multiple_of(4096) }
    }
}

/// One queue's rings, over memory of `RingLayout::bytes` (our own mapping, or
/// an ArrayBuffer JS allocated where external buffers are refused).
pub struct QueueRing {
    region: Arc<IoBufferRegion>,
    layout: RingLayout,
}

impl QueueRing {
    /// Rings for a queue of `depth` tags, in a fresh zeroed mapping.
    pub fn new(depth: usize) -> Result<QueueRing, UblkError> {
        let layout = RingLayout::new(depth);
        QueueRing::over(Arc::new(IoBufferRegion::new(1, layout.bytes)?), depth)
    }

    /// Rings over `region`, which must be zeroed and at least
    /// `RingLayout::new(depth).bytes` long.
    pub fn over(region: Arc<IoBufferRegion>, depth: usize) -> Result<QueueRing, UblkError> {
        let layout = RingLayout::new(depth);
        if region.len() < layout.bytes || !(region.base() as usize).is_multiple_of(4) {
            return Err(UblkError::InvalidConfig(format!(
                "a queue ring of depth {depth} needs {} bytes, 4-byte aligned; got {}",
                layout.bytes,
                region.len()
            )));
        }
        let ring = QueueRing { region, layout };
        ring.word(header::CAPACITY).store(layout.capacity as u32, Ordering::Relaxed);
        ring.word(header::REQUESTS_AT).store(layout.requests as u32, Ordering::Relaxed);
        ring.word(header::COMPLETIONS_AT).store(layout.completions as u32, Ordering::SeqCst);
        Ok(ring)
    }

    pub fn layout(&self) -> RingLayout {
        self.layout
    }

    /// The memory, to hand to JS.
    pub fn region(&self) -> &Arc<IoBufferRegion> {
        &self.region
    }

    fn word(&self, index: usize) -> &AtomicU32 {
        assert!(index * 4 < self.layout.bytes, "ring word {index} out of range");
        // SAFETY: `index` is within the region (asserted; `over` checked the
        // length and the base's 4-byte alignment), and the region lives as long as `self`. AtomicU32 has the
        // layout of u32, and all our accesses are atomic: JS on the other
        // thread may write any word at any time without a data race in Rust's
        // terms.
        unsafe { &*(self.region.base().add(index * 4) as *const AtomicU32) }
    }

    fn mask(&self) -> u32 {
        self.layout.capacity as u32 - 1
    }

    // The request ring: written by the queue thread.

    /// Writes the request at position `pos` (published later by `publish_requests`).
    pub fn write_request(&self, pos: u32, request: [u32; wire::REQUEST_WORDS]) {
        let at = self.layout.requests + (pos & self.mask()) as usize * wire::REQUEST_WORDS;
        for (i, word) in request.into_iter().enumerate() {
            self.word(at + i).store(word, Ordering::Relaxed);
        }
    }

    /// The request at `pos`, as a consumer reads it.
    pub fn read_request(&self, pos: u32) -> [u32; wire::REQUEST_WORDS] {
        let at = self.layout.requests + (pos & self.mask()) as usize * wire::REQUEST_WORDS;
        std::array::from_fn(|i| self.word(at + i).load(Ordering::Relaxed))
    }

    /// Makes the requests before `tail` visible to the consumer.
    pub fn publish_requests(&self, tail: u32) {
        self.word(header::REQUEST_TAIL).store(tail, Ordering::SeqCst);
    }

    pub fn request_tail(&self) -> u32 {
        self.word(header::REQUEST_TAIL).load(Ordering::SeqCst)
    }

    /// True if the caller must notify the consumer: no notification it has
    /// not started reading is outstanding. (The consumer clears `NOTIFY`
    /// before it reads the tail, so requests published after that read are
    /// always notified.)
    pub fn claim_notify(&self) -> bool {
        self.word(header::NOTIFY).swap(1, Ordering::SeqCst) == 0
    }

    /// Forgets an outstanding notification: it failed, or its consumer is
    /// gone and a new one starts.
    pub fn reset_notify(&self) {
        self.word(header::NOTIFY).store(0, Ordering::SeqCst);
    }

    /// What a consumer does when notified, before it reads the tail.
    pub fn consume_notify(&self) {
        self.reset_notify();
    }

    // The completion ring: written by JS, read by the queue thread.

    /// Whether completions are published that the queue thread has not taken.
    pub fn completions_pending(&self) -> bool {
        self.word(header::COMPLETION_TAIL).load(Ordering::SeqCst) != self.word(header::COMPLETION_HEAD).load(Ordering::Relaxed)
    }

    /// Hands every published completion to `take(io id, result)` and frees
    /// their entries. A tail more than `capacity` ahead of the head cannot
    /// come from a correct producer: then only the newest `capacity` entries
    /// are read and the rest count as dropped (returned).
    pub fn take_completions(&self, mut take: impl FnMut(u32, i32)) -> usize {
        let head = self.word(header::COMPLETION_HEAD).load(Ordering::Relaxed);
        let tail = self.word(header::COMPLETION_TAIL).load(Ordering::SeqCst);
        let published = tail.wrapping_sub(head);
        let skipped = published.saturating_sub(self.layout.capacity as u32);
        let mut pos = head.wrapping_add(skipped);
        while pos != tail {
            let at = self.layout.completions + (pos & self.mask()) as usize * wire::COMPLETION_WORDS;
            take(self.word(at).load(Ordering::Relaxed), self.word(at + 1).load(Ordering::Relaxed) as i32);
            pos = pos.wrapping_add(1);
        }
        self.word(header::COMPLETION_HEAD).store(tail, Ordering::SeqCst);
        skipped as usize
    }

    /// Writes and publishes completions as JS does (for Rust consumers of
    /// the request ring: the dispatch microbenchmark's floor and tests).
    /// False if the ring has no room for all of them (nothing is written).
    pub fn push_completions(&self, pairs: &[(u32, i32)]) -> bool {
        let tail = self.word(header::COMPLETION_TAIL).load(Ordering::Relaxed);
        let head = self.word(header::COMPLETION_HEAD).load(Ordering::SeqCst);
        if tail.wrapping_sub(head) as usize + pairs.len() > self.layout.capacity {
            return false;
        }
        for (i, &(id, result)) in pairs.iter().enumerate() {
            let at = self.layout.completions + (tail.wrapping_add(i as u32) & self.mask()) as usize * wire::COMPLETION_WORDS;
            self.word(at).store(id, Ordering::Relaxed);
            self.word(at + 1).store(result as u32, Ordering::Relaxed);
        }
        self.word(header::COMPLETION_TAIL).store(tail.wrapping_add(pairs.len() as u32), Ordering::SeqCst);
        true
    }

    // The queue thread's wait flag.

    /// The queue thread is about to wait: producers must wake it.
    pub fn set_waiting(&self) {
        self.word(header::WAITING).store(1, Ordering::SeqCst);
    }

    /// The queue thread runs: nobody needs to wake it.
    pub fn clear_waiting(&self) {
        self.word(header::WAITING).store(0, Ordering::SeqCst);
    }

    /// True for exactly one caller per wait: the one that must wake it.
    pub fn claim_wake(&self) -> bool {
        self.word(header::WAITING).compare_exchange(1, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_rounds_to_a_power_of_two_and_whole_pages() {
        let l = RingLayout::new(100);
        assert_eq!(l.capacity, 128);
        assert_eq!(l.requests, header::WORDS);
        assert_eq!(l.completions, header::WORDS + 128 * wire::REQUEST_WORDS);
        assert_eq!(l.bytes % 4096, 0);
        assert!(l.bytes >= (l.completions + 128 * wire::COMPLETION_WORDS) * 4);
        assert_eq!(RingLayout::new(4096).capacity, 4096);
        let ring = QueueRing::new(100).unwrap();
        let written =
            [header::CAPACITY, header::REQUESTS_AT, header::COMPLETIONS_AT].map(|w| ring.word(w).load(Ordering::SeqCst));
        assert_eq!(written, [128, l.requests as u32, l.completions as u32], "the rings describe themselves");
    }

    #[test]
    fn requests_wrap_around_the_ring() {
        let ring = QueueRing::new(3).unwrap();
        for pos in u32::MAX - 5..=u32::MAX {
            ring.write_request(pos, [pos, 1, 2, 3, 4]);
            assert_eq!(ring.read_request(pos), [pos, 1, 2, 3, 4]);
        }
        ring.write_request(0, [7, 0, 0, 0, 8]);
        assert_eq!(ring.read_request(4), [7, 0, 0, 0, 8], "capacity 4: position 4 is entry 0");
    }

    #[test]
    fn completions_are_taken_once_and_a_runaway_tail_is_bounded() {
        let ring = QueueRing::new(4).unwrap();
        assert!(!ring.completions_pending());
        assert!(ring.push_completions(&[(1, 512), (2, -5)]));
        assert!(ring.completions_pending());
        let mut got = Vec::new();
        assert_eq!(ring.take_completions(|id, r| got.push((id, r))), 0);
        assert_eq!(got, vec![(1, 512), (2, -5)]);
        assert!(!ring.completions_pending());
        assert!(!ring.push_completions(&[(0, 0); 5]), "more than the capacity is refused");
        // A tail JS set far ahead: only `capacity` entries are read.
        ring.word(header::COMPLETION_TAIL).store(2 + 1000, Ordering::SeqCst);
        let mut n = 0;
        assert_eq!(ring.take_completions(|_, _| n += 1), 996);
        assert_eq!(n, 4);
        assert!(!ring.completions_pending());
    }

    #[test]
    fn one_notification_and_one_wake_per_round() {
        let ring = QueueRing::new(8).unwrap();
        assert!(ring.claim_notify());
        assert!(!ring.claim_notify(), "still unread");
        ring.consume_notify();
        assert!(ring.claim_notify());
        assert!(!ring.claim_wake(), "not waiting");
        ring.set_waiting();
        assert!(ring.claim_wake());
        assert!(!ring.claim_wake(), "one waker per wait");
    }
}
