//! The hand-off between a queue thread and the request handlers.
//!
//! Requests go out through the queue's request ring (`ring`): after each turn
//! of its loop a queue thread writes every request it reaped there
//! (`wire::REQUEST_WORDS` words each) and hands them to a `RequestSink`,
//! which publishes them and notifies the handlers. Completions come back as
//! `(io id, result)` pairs, through the completion ring or `push`, into the
//! queue's `CompletionQueue`, whose eventfd wakes the queue thread through its
//! own io_uring, but only when that thread is about to block or blocked: a
//! busy queue thread picks the pairs up before it next waits, and nobody pays
//! for a wake-up.
//!
//! The completion path is the boundary between JavaScript and the kernel, so
//! every pair is checked against the queue's `TagTable`: only the completion
//! of a request that is with the handlers, given once, reaches the kernel.
//! Out-of-range tags, repeats and stale completions (of an earlier request on
//! the same tag) are dropped and counted.

use crate::error::{last_errno, UblkError};
use crate::ring::QueueRing;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// The layout of what crosses to JavaScript, said once here (the addon
/// exports it to JS).
pub mod wire {
    /// Words per request in the request ring.
    pub const REQUEST_WORDS: usize = 5;
    /// Word 0: the io id, `tag | generation << IO_ID_GENERATION_SHIFT`.
    pub const REQUEST_IO_ID: usize = 0;
    /// Word 1: `ublksrv_io_desc.op_flags` (op in the low 8 bits, `UBLK_IO_F_*` above).
    pub const REQUEST_OP_FLAGS: usize = 1;
    /// Word 2: `ublksrv_io_desc.start_sector`, low 32 bits (512-byte sectors).
    pub const REQUEST_START_SECTOR_LO: usize = 2;
    /// Word 3: `start_sector`, high 32 bits.
    pub const REQUEST_START_SECTOR_HI: usize = 3;
    /// Word 4: `ublksrv_io_desc.nr_sectors` (512-byte sectors).
    pub const REQUEST_NR_SECTORS: usize = 4;
    /// Words per completion: the io id, then the result (bytes done, or a
    /// negative errno).
    pub const COMPLETION_WORDS: usize = 2;
    /// The tag is the io id's low 16 bits...
    pub const IO_ID_TAG_MASK: u32 = 0xffff;
    /// ...and a per-tag generation, counting requests on that tag, the 15
    /// bits above. Bit 31 is never set in an io id.
    pub const IO_ID_GENERATION_SHIFT: u32 = 16;
    pub const IO_ID_GENERATION_MASK: u32 = 0x7fff;
    /// The most negative result that is an errno (`-MAX_ERRNO`); a result
    /// below it reaches the kernel as -EIO.
    pub const MIN_ERRNO_RESULT: i32 = -4095;
}

/// Set in a `TagTable` entry while the handlers hold that io id.
const HELD: u32 = 1 << 31;

/// Which request each tag of a queue is, and whether the handlers hold it.
/// Written by the queue thread when it hands a request out (`issue`) and by
/// whoever completes it (`settle`); lock-free.
pub struct TagTable {
    /// Per tag: the last io id issued, with `HELD` while the handlers have it.
    entries: Box<[AtomicU32]>,
}

impl TagTable {
    pub fn new(depth: usize) -> TagTable {
        TagTable { entries: (0..depth).map(|tag| AtomicU32::new(tag as u32)).collect() }
    }

    pub fn depth(&self) -> usize {
        self.entries.len()
    }

    /// Marks `tag` as handed to the handlers under a fresh io id, and returns
    /// the id; None for a tag beyond the depth. Called by the queue thread
    /// only, for a tag the kernel just gave it.
    pub fn issue(&self, tag: u16) -> Option<u32> {
        let entry = self.entries.get(tag as usize)?;
        let last = entry.load(Ordering::Relaxed) & !HELD;
        let generation = ((last >> wire::IO_ID_GENERATION_SHIFT) + 1) & wire::IO_ID_GENERATION_MASK;
        let id = tag as u32 | generation << wire::IO_ID_GENERATION_SHIFT;
        entry.store(id | HELD, Ordering::Release);
        Some(id)
    }

    /// Takes `id` back from the handlers: true exactly once per issued id;
    /// false for an id that is out of range, no longer held (completed
    /// already) or not the tag's current request.
    pub fn settle(&self, id: u32) -> bool {
        if id & HELD != 0 {
            return false;
        }
        match self.entries.get((id & wire::IO_ID_TAG_MASK) as usize) {
            Some(entry) => entry.compare_exchange(id | HELD, id, Ordering::AcqRel, Ordering::Relaxed).is_ok(),
            None => false,
        }
    }

    /// Whether `id` is the request the handlers hold on its tag now.
    pub fn is_held(&self, id: u32) -> bool {
        id & HELD == 0
            && self.entries.get((id & wire::IO_ID_TAG_MASK) as usize).is_some_and(|e| e.load(Ordering::Acquire) == id | HELD)
    }

    /// The io id the handlers hold on `tag`, if they hold one.
    pub fn held_id(&self, tag: u16) -> Option<u32> {
        let entry = self.entries.get(tag as usize)?.load(Ordering::Acquire);
        (entry & HELD != 0).then_some(entry & !HELD)
    }

    /// Whether the handlers hold any request of this queue.
    pub fn any_held(&self) -> bool {
        self.entries.iter().any(|e| e.load(Ordering::Acquire) & HELD != 0)
    }

    /// The tag of an io id.
    pub fn tag_of(id: u32) -> u16 {
        (id & wire::IO_ID_TAG_MASK) as u16
    }
}

/// Where a queue thread hands its requests. Each turn, the queue thread
/// writes the requests it reaped into the queue's request ring and calls
/// `publish` once, from the queue thread; it must not block. Returns false
/// when the requests could not be handed over (the receiver is gone): the
/// caller then fails them.
pub trait RequestSink: Send + Sync {
    /// Requests `ids` were written to `ring` before position `tail`: make
    /// them visible (`QueueRing::publish_requests`) and notify the handlers.
    fn publish(&self, qid: u16, ring: &QueueRing, ids: &[u32], tail: u32) -> bool;

    /// Tags whose requests were delivered to a receiver that is gone (a
    /// worker that died): the queue thread fails those still held with EIO.
    fn take_lost(&self, _qid: u16, _into: &mut Vec<u16>) {}
}

/// Publishes `tail` and calls `notify` unless a notification is still
/// unread; a failed notification is forgotten (returns false).
pub fn publish_and_notify(ring: &QueueRing, tail: u32, notify: impl FnOnce() -> bool) -> bool {
    ring.publish_requests(tail);
    if ring.claim_notify() && !notify() {
        ring.reset_notify();
        return false;
    }
    true
}

/// Who serves a device's requests.
#[derive(Clone)]
pub enum Handling {
    /// Batches go to a sink (the JavaScript handlers).
    Sink(Arc<dyn RequestSink>),
    /// The queue thread serves them itself as a null target, without the JS
    /// hop (`null_target`): a diagnostic that measures what the hop costs.
    NullInQueue,
}

/// Completions waiting for one queue thread, plus its wake-up eventfd. They
/// arrive two ways: through the queue's completion ring (what the JS
/// dispatchers write, checked when the queue thread takes them) and through
/// `push` (checked at once), the path of everything else.
pub struct CompletionQueue {
    /// Checked `(tag, result)` pairs, flattened.
    pending: Mutex<Vec<i32>>,
    ring: QueueRing,
    tags: TagTable,
    /// Completions the checks dropped since the queue started.
    rejected: AtomicU64,
    eventfd: OwnedFd,
    /// Set to make the queue thread leave its loop at once (teardown of a
    /// device whose requests cannot finish).
    abandon: AtomicBool,
    /// Set when the queue thread has left its loop: completions are dropped.
    closed: AtomicBool,
    /// Hand-off without QUIESCE_DEV (`Leaving`): hand the handlers nothing
    /// more, commit what they complete, then park (see `QueueServer::run`).
    leaving: AtomicU8,
    /// Set by the queue thread once it parked.
    parked: AtomicBool,
    /// Set while the thread serving the handlers is pinned to the queue
    /// thread's CPU (a queue worker): the queue thread then yields that CPU
    /// after handing it a single request (`QueueSwitches::yield_after_publish`).
    handler_shares_cpu: AtomicBool,
}

/// How far a queue is in leaving its device to a successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// Serving.
    No = 0,
    /// New requests stay with the queue thread unserved; the thread parks
    /// once the handlers hold none.
    Drain = 1,
    /// Park now, whatever the handlers still hold.
    Now = 2,
}

impl CompletionQueue {
    /// A queue of `depth` tags, with its rings in a fresh mapping.
    pub fn new(depth: usize) -> Result<CompletionQueue, UblkError> {
        CompletionQueue::with_ring(depth, QueueRing::new(depth)?)
    }

    /// A queue of `depth` tags over `ring`.
    pub fn with_ring(depth: usize, ring: QueueRing) -> Result<CompletionQueue, UblkError> {
        if ring.layout().capacity < depth {
            return Err(UblkError::InvalidConfig(format!("a ring of {} entries for {depth} tags", ring.layout().capacity)));
        }
        // SAFETY: eventfd(2) with constant flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(UblkError::Os { what: "eventfd", errno: last_errno() });
        }
        // Until the queue thread first runs, a completion must wake it.
        ring.set_waiting();
        Ok(CompletionQueue {
            pending: Mutex::new(Vec::new()),
            ring,
            tags: TagTable::new(depth),
            rejected: AtomicU64::new(0),
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            abandon: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            leaving: AtomicU8::new(Leaving::No as u8),
            parked: AtomicBool::new(false),
            handler_shares_cpu: AtomicBool::new(false),
        })
    }

    /// Says whether the thread serving the handlers now runs on the queue
    /// thread's CPU (set by a worker that pinned itself there, cleared when
    /// it detaches).
    pub fn set_handler_shares_cpu(&self, shares: bool) {
        self.handler_shares_cpu.store(shares, Ordering::Relaxed);
    }

    /// See `set_handler_shares_cpu`.
    pub fn handler_shares_cpu(&self) -> bool {
        self.handler_shares_cpu.load(Ordering::Relaxed)
    }

    /// The queue's shared rings.
    pub fn ring(&self) -> &QueueRing {
        &self.ring
    }

    /// The queue's tags, for the queue thread to `issue` requests from.
    pub fn tags(&self) -> &TagTable {
        &self.tags
    }

    /// Completions the checks dropped so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Queues `(io id, result)` pairs, flattened, after checking each against
    /// the tag table (see the module doc), and wakes the queue thread if it
    /// waits and nobody woke it yet. Returns how many pairs were dropped (a
    /// trailing odd word counts as one), or None once the queue is gone
    /// (everything is dropped then).
    pub fn push(&self, pairs: &[i32]) -> Option<usize> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut rejected = pairs.len() % wire::COMPLETION_WORDS;
        let queued = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let before = pending.len();
            for pair in pairs.chunks_exact(wire::COMPLETION_WORDS) {
                match self.check(pair[0] as u32, pair[1]) {
                    Some((tag, result)) => pending.extend_from_slice(&[tag as i32, result]),
                    None => rejected += 1,
                }
            }
            pending.len() > before
        };
        if rejected > 0 {
            self.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        }
        if queued {
            self.wake_if_waiting();
        }
        Some(rejected)
    }

    /// The `(tag, result)` a completion of `id` commits, if `id` is held.
    fn check(&self, id: u32, result: i32) -> Option<(u16, i32)> {
        if !self.tags.settle(id) {
            return None;
        }
        Some((TagTable::tag_of(id), if result < wire::MIN_ERRNO_RESULT { -libc::EIO } else { result }))
    }

    /// Wakes the queue thread if it waits and no one else claimed the wake:
    /// for whoever just queued completions.
    pub fn wake_if_waiting(&self) {
        // Pairs with the fence in `about_to_wait`: either the claim sees the
        // queue thread waiting (and wakes it), or that thread's check sees
        // the completions just queued.
        fence(Ordering::SeqCst);
        if self.ring.claim_wake() {
            self.wake();
        }
    }

    /// The queue thread is going to block for CQEs: returns true if it may,
    /// false if completions are pending (take them first, then ask again).
    pub fn about_to_wait(&self) -> bool {
        self.ring.set_waiting();
        fence(Ordering::SeqCst);
        let idle = self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() && !self.ring.completions_pending();
        if !idle {
            self.ring.clear_waiting();
        }
        idle
    }

    /// The queue thread is running again: pushes need not wake it.
    pub fn running(&self) {
        self.ring.clear_waiting();
    }

    /// Moves every pending `(tag, result)` pair into `into` (which the
    /// caller reuses), those of the completion ring checked now.
    pub fn take(&self, into: &mut Vec<i32>) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *pending, into);
        }
        let mut dropped = 0u64;
        let skipped = self.ring.take_completions(|id, result| match self.check(id, result) {
            Some((tag, result)) => into.extend_from_slice(&[tag as i32, result]),
            None => dropped += 1,
        });
        let rejected = dropped + skipped as u64;
        if rejected > 0 {
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
        }
    }

    /// Tells the queue thread to stop serving and leave its loop.
    pub fn abandon(&self) {
        self.abandon.store(true, Ordering::Release);
        self.wake();
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandon.load(Ordering::Acquire)
    }

    /// Asks the queue thread to stop serving and park (`Leaving`).
    pub fn leave(&self, how: Leaving) {
        self.leaving.fetch_max(how as u8, Ordering::AcqRel);
        self.wake();
    }

    pub fn leaving(&self) -> Leaving {
        match self.leaving.load(Ordering::Acquire) {
            0 => Leaving::No,
            1 => Leaving::Drain,
            _ => Leaving::Now,
        }
    }

    /// Whether the queue thread has parked.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Acquire)
    }

    pub(crate) fn mark_parked(&self) {
        self.parked.store(true, Ordering::Release);
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Wakes the queue thread (if it waits) to look at its queue again.
    pub fn nudge(&self) {
        self.wake();
    }

    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. EAGAIN
        // (counter saturated) still leaves the eventfd readable, so the
        // result can be ignored.
        unsafe { libc::write(self.eventfd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Resets the eventfd counter after a wake-up.
    pub(crate) fn drain_eventfd(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.eventfd.as_raw_fd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_eventfd(q: &CompletionQueue) -> (isize, u64) {
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64 from a non-blocking eventfd.
        let n = unsafe { libc::read(q.eventfd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
        (n, value)
    }

    #[test]
    fn pushes_are_taken_in_order_and_wake_once() {
        let q = CompletionQueue::new(8).unwrap();
        let (a, b) = (q.tags().issue(3).unwrap(), q.tags().issue(5).unwrap());
        assert_eq!(q.push(&[a as i32, 4096]), Some(0));
        assert_eq!(q.push(&[b as i32, -5]), Some(0));
        let mut got = Vec::new();
        q.take(&mut got);
        assert_eq!(got, vec![3, 4096, 5, -5]);
        assert_eq!(read_eventfd(&q), (8, 1), "one wake-up for two pushes into an empty queue");
    }

    #[test]
    fn a_running_queue_thread_is_not_woken() {
        let q = CompletionQueue::new(4).unwrap();
        q.running();
        let id = q.tags().issue(1).unwrap();
        assert_eq!(q.push(&[id as i32, 0]), Some(0));
        assert_eq!(read_eventfd(&q).0, -1, "no wake-up while the queue thread runs");
        assert!(!q.about_to_wait(), "it finds the pair before it waits");
        let mut got = Vec::new();
        q.take(&mut got);
        assert!(q.about_to_wait());
        let id = q.tags().issue(2).unwrap();
        assert_eq!(q.push(&[id as i32, 0]), Some(0));
        assert_eq!(read_eventfd(&q).0, 8, "a waiting queue thread is woken");
    }

    #[test]
    fn closed_queue_drops_completions() {
        let q = CompletionQueue::new(4).unwrap();
        let id = q.tags().issue(0).unwrap();
        q.mark_closed();
        assert_eq!(q.push(&[id as i32, 0]), None);
    }

    #[test]
    fn only_the_current_request_of_a_held_tag_completes_and_only_once() {
        let q = CompletionQueue::new(4).unwrap();
        let first = q.tags().issue(2).unwrap();
        assert_eq!(q.push(&[first as i32, 512]), Some(0));
        assert_eq!(q.push(&[first as i32, 512]), Some(1), "a repeat is dropped");
        let second = q.tags().issue(2).unwrap();
        assert_ne!(first, second, "a new request on the tag has a new io id");
        assert_eq!(q.push(&[first as i32, 512]), Some(1), "a stale completion is dropped");
        assert_eq!(q.push(&[3, 0]), Some(1), "a tag that was never issued is dropped");
        assert_eq!(q.push(&[4, 0, 1000, 0, -1, 0]), Some(3), "out-of-range and negative ids are dropped");
        assert_eq!(q.push(&[(second | HELD) as i32, 0]), Some(1), "the HELD bit is not part of an io id");
        assert_eq!(q.push(&[second as i32, -100_000, 7]), Some(1), "the odd word is dropped, the pair kept");
        let mut got = Vec::new();
        q.take(&mut got);
        assert_eq!(got, vec![2, 512, 2, -libc::EIO], "a result below -4095 becomes EIO");
        assert_eq!(q.rejected(), 8);
        assert_eq!(q.tags().issue(9), None, "no tag beyond the depth is issued");
        let third = q.tags().issue(2).unwrap();
        assert!(q.tags().is_held(third) && !q.tags().is_held(second) && !q.tags().is_held(third | HELD));
    }

    #[test]
    fn generations_wrap_within_fifteen_bits() {
        let t = TagTable::new(1);
        let mut last = t.issue(0).unwrap();
        for _ in 0..=wire::IO_ID_GENERATION_MASK + 1 {
            assert!(t.settle(last));
            let id = t.issue(0).unwrap();
            assert_eq!(id & HELD, 0);
            assert_eq!(TagTable::tag_of(id), 0);
            assert_ne!(id, last);
            last = id;
        }
    }
}
