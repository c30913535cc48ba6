//! The hand-off between a queue thread and the request handlers.
//!
//! Requests go out in batches: after each turn of its loop a queue thread
//! hands every request it reaped to a `RequestSink` as one flat `u32` array
//! (`REQUEST_WORDS` words per request). Completions come back the same way:
//! handlers push `(tag, result)` pairs onto the queue's `CompletionQueue`,
//! whose eventfd wakes the queue thread through its own ring, but only when
//! that thread is about to block or blocked: a busy queue thread picks the
//! pairs up before it next waits, and nobody pays for a wake-up.

use crate::error::{last_errno, UblkError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Words per request in a batch: tag, op_flags, start_sector low and high
/// halves, nr_sectors (the fields of `ublksrv_io_desc` a handler needs).
pub const REQUEST_WORDS: usize = 5;

/// Where a queue thread delivers its batches. Called on the queue thread;
/// must not block.
pub trait RequestSink: Send + Sync {
    fn deliver(&self, qid: u16, batch: Vec<u32>);
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

/// Completions waiting for one queue thread, plus its wake-up eventfd.
pub struct CompletionQueue {
    pending: Mutex<Vec<i32>>,
    eventfd: OwnedFd,
    /// Set to make the queue thread leave its loop at once (teardown of a
    /// device whose requests cannot finish).
    abandon: AtomicBool,
    /// Set when the queue thread has left its loop: completions are dropped.
    closed: AtomicBool,
    /// Set while the queue thread waits (or is about to wait) for CQEs: only
    /// then does a push need the eventfd.
    waiting: AtomicBool,
}

impl CompletionQueue {
    pub fn new() -> Result<CompletionQueue, UblkError> {
        // SAFETY: eventfd(2) with constant flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(UblkError::Os { what: "eventfd", errno: last_errno() });
        }
        Ok(CompletionQueue {
            pending: Mutex::new(Vec::new()),
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            abandon: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waiting: AtomicBool::new(true),
        })
    }

    /// Queues `(tag, result)` pairs, flattened, and wakes the queue thread if
    /// it waits and was not already due to wake. Returns false once the
    /// queue is gone.
    pub fn push(&self, pairs: &[i32]) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let was_empty = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = pending.is_empty();
            pending.extend_from_slice(pairs);
            was_empty
        };
        // Pairs with the fence in `about_to_wait`: either this load sees the
        // queue thread waiting (and wakes it), or that thread's check sees
        // the pairs just queued.
        fence(Ordering::SeqCst);
        if was_empty && self.waiting.load(Ordering::Relaxed) {
            self.wake();
        }
        true
    }

    /// The queue thread is going to block for CQEs: returns true if it may,
    /// false if completions are pending (take them first, then ask again).
    pub fn about_to_wait(&self) -> bool {
        self.waiting.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let idle = self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        if !idle {
            self.waiting.store(false, Ordering::Relaxed);
        }
        idle
    }

    /// The queue thread is running again: pushes need not wake it.
    pub fn running(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Moves every pending pair into `into` (which the caller reuses).
    pub fn take(&self, into: &mut Vec<i32>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *pending, into);
    }

    /// Tells the queue thread to stop serving and leave its loop.
    pub fn abandon(&self) {
        self.abandon.store(true, Ordering::Release);
        self.wake();
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandon.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
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

    #[test]
    fn pushes_are_taken_in_order_and_wake_once() {
        let q = CompletionQueue::new().unwrap();
        assert!(q.push(&[3, 4096]));
        assert!(q.push(&[5, -5]));
        let mut got = Vec::new();
        q.take(&mut got);
        assert_eq!(got, vec![3, 4096, 5, -5]);
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64.
        let n = unsafe { libc::read(q.eventfd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
        assert_eq!((n, value), (8, 1), "one wake-up for two pushes into an empty queue");
    }

    #[test]
    fn a_running_queue_thread_is_not_woken() {
        let q = CompletionQueue::new().unwrap();
        q.running();
        assert!(q.push(&[1, 0]));
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64 from a non-blocking eventfd.
        let n = unsafe { libc::read(q.eventfd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
        assert_eq!(n, -1, "no wake-up while the queue thread runs");
        assert!(!q.about_to_wait(), "it finds the pair before it waits");
        let mut got = Vec::new();
        q.take(&mut got);
        assert!(q.about_to_wait());
        assert!(q.push(&[2, 0]));
        let n = unsafe { libc::read(q.eventfd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
        assert_eq!(n, 8, "a waiting queue thread is woken");
    }

    #[test]
    fn closed_queue_drops_completions() {
        let q = CompletionQueue::new().unwrap();
        q.mark_closed();
        assert!(!q.push(&[1, 0]));
    }
}
