//! A synthetic request source for the dispatch microbenchmark. It stands in
//! for a queue thread without a kernel: it writes batches of READ requests
//! into the queue's request ring and publishes them through the same
//! `RequestSink` production uses, and waits for their completions on the same
//! `CompletionQueue` and eventfd. What it measures is the JS hop: the
//! notification, the handlers, and the completions back through the ring.

use crate::dispatch::{publish_and_notify, wire, CompletionQueue, RequestSink};
use crate::error::{last_errno, UblkError};
use crate::ring::QueueRing;
use libublk::sys;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct SyntheticReport {
    pub requests: u64,
    pub batches: u64,
    pub elapsed: Duration,
}

/// How long to wait for a batch's completions before giving up.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `requests` READs of `bytes` each, `batch` at a time (tags
/// `0..batch`, so at most `batch` in flight), waiting for each batch to
/// complete before sending the next. Every completion must report `bytes`.
pub fn run(
    sink: &dyn RequestSink,
    completions: &CompletionQueue,
    batch: u16,
    requests: u64,
    bytes: u32,
) -> Result<SyntheticReport, UblkError> {
    if batch == 0 || bytes == 0 || !bytes.is_multiple_of(512) {
        return Err(UblkError::InvalidConfig(format!(
            "batch {batch} and bytes {bytes}: need a batch > 0 and a multiple of 512 bytes"
        )));
    }
    let nr_sectors = bytes / 512;
    let ring = completions.ring();
    let mut tail = ring.request_tail();
    let mut ids = Vec::with_capacity(batch as usize);
    let mut taken = Vec::new();
    let mut sector = 0u64;
    let mut done = 0u64;
    let mut batches = 0u64;
    let started = Instant::now();
    while done < requests {
        let n = (batch as u64).min(requests - done) as u32;
        ids.clear();
        for tag in 0..n {
            let id = completions.tags().issue(tag as u16).ok_or_else(|| {
                UblkError::InvalidConfig(format!("batch {batch} is deeper than the queue ({})", completions.tags().depth()))
            })?;
            ring.write_request(
                tail.wrapping_add(tag),
                [id, sys::UBLK_IO_OP_READ, sector as u32, (sector >> 32) as u32, nr_sectors],
            );
            ids.push(id);
            sector += nr_sectors as u64;
        }
        tail = tail.wrapping_add(n);
        if !sink.publish(0, ring, &ids, tail) {
            return Err(UblkError::Os { what: "delivering a synthetic batch", errno: libc::EIO });
        }
        let mut outstanding = n;
        while outstanding > 0 {
            // Like a queue thread: wait only when nothing is pending.
            if completions.about_to_wait() {
                wait_readable(completions.eventfd(), COMPLETION_TIMEOUT)?;
                completions.drain_eventfd();
            }
            completions.running();
            completions.take(&mut taken);
            for pair in taken.chunks_exact(2) {
                if pair[1] != bytes as i32 {
                    return Err(UblkError::Os { what: "a synthetic request's completion", errno: (-pair[1]).max(libc::EIO) });
                }
                outstanding = outstanding.saturating_sub(1);
            }
            taken.clear();
        }
        done += n as u64;
        batches += 1;
    }
    Ok(SyntheticReport { requests: done, batches, elapsed: started.elapsed() })
}

/// The floor under the JS hop: the same round trip with a Rust thread as the
/// handler. It is notified through an eventfd, reads the requests from the
/// ring and writes their completions into the completion ring, exactly as the
/// JS dispatcher does. No JavaScript, no allocation per request.
struct RustEcho {
    state: Arc<EchoState>,
}

struct EchoState {
    wake: std::os::fd::OwnedFd,
    completions: Arc<CompletionQueue>,
    stop: std::sync::atomic::AtomicBool,
}

impl RequestSink for RustEcho {
    fn publish(&self, _qid: u16, ring: &QueueRing, _ids: &[u32], tail: u32) -> bool {
        publish_and_notify(ring, tail, || {
            signal(&self.state.wake);
            true
        })
    }
}

fn signal(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
}

/// Like `run`, with the Rust echo thread as the handler: the floor the JS
/// figures are a ratio to.
pub fn run_floor(completions: Arc<CompletionQueue>, batch: u16, requests: u64, bytes: u32) -> Result<SyntheticReport, UblkError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::Ordering;
    // SAFETY: eventfd(2) with constant flags; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(UblkError::Os { what: "eventfd", errno: last_errno() });
    }
    let state = Arc::new(EchoState {
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        wake: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        completions: completions.clone(),
        stop: std::sync::atomic::AtomicBool::new(false),
    });
    let echo = state.clone();
    // Where `run` starts writing; read before it can.
    let mut cursor = completions.ring().request_tail();
    let handler = std::thread::spawn(move || {
        let ring = echo.completions.ring();
        let mut pairs: Vec<(u32, i32)> = Vec::new();
        while !echo.stop.load(Ordering::Acquire) {
            if wait_readable(echo.wake.as_raw_fd(), Duration::from_millis(100)).is_err() {
                continue;
            }
            let mut value = 0u64;
            // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
            unsafe { libc::read(echo.wake.as_raw_fd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
            ring.consume_notify();
            let tail = ring.request_tail();
            pairs.clear();
            while cursor != tail {
                let r = ring.read_request(cursor);
                pairs.push((r[wire::REQUEST_IO_ID], (r[wire::REQUEST_NR_SECTORS] * 512) as i32));
                cursor = cursor.wrapping_add(1);
            }
            if !pairs.is_empty() && ring.push_completions(&pairs) {
                echo.completions.wake_if_waiting();
            }
        }
    });
    let result = run(&RustEcho { state: state.clone() }, &completions, batch, requests, bytes);
    state.stop.store(true, Ordering::Release);
    signal(&state.wake);
    let _ = handler.join();
    result
}

fn wait_readable(fd: i32, timeout: Duration) -> Result<(), UblkError> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        match r {
            1.. => return Ok(()),
            0 => return Err(UblkError::Os { what: "waiting for synthetic completions", errno: libc::ETIMEDOUT }),
            _ if last_errno() == libc::EINTR => continue,
            _ => return Err(UblkError::Os { what: "poll", errno: last_errno() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completes every request at once from another thread, like a sync handler.
    struct Echo(Arc<CompletionQueue>);

    impl RequestSink for Echo {
        fn publish(&self, _qid: u16, ring: &QueueRing, ids: &[u32], tail: u32) -> bool {
            ring.publish_requests(tail);
            let first = tail.wrapping_sub(ids.len() as u32);
            let pairs: Vec<i32> = (0..ids.len() as u32)
                .map(|i| ring.read_request(first.wrapping_add(i)))
                .flat_map(|r| [r[wire::REQUEST_IO_ID] as i32, (r[wire::REQUEST_NR_SECTORS] * 512) as i32])
                .collect();
            let q = self.0.clone();
            std::thread::spawn(move || q.push(&pairs));
            true
        }
    }

    #[test]
    fn runs_every_request_in_batches() {
        let q = Arc::new(CompletionQueue::new(8).unwrap());
        let report = run(&Echo(q.clone()), &q, 8, 100, 4096).unwrap();
        assert_eq!((report.requests, report.batches), (100, 13));
    }

    #[test]
    fn the_rust_floor_runs_every_request() {
        let q = Arc::new(CompletionQueue::new(16).unwrap());
        let report = run_floor(q, 16, 1000, 4096).unwrap();
        assert_eq!(report.requests, 1000);
    }

    #[test]
    fn a_failed_completion_is_an_error() {
        struct Fail(Arc<CompletionQueue>);
        impl RequestSink for Fail {
            fn publish(&self, _qid: u16, _ring: &QueueRing, ids: &[u32], _tail: u32) -> bool {
                self.0.push(&[ids[0] as i32, -libc::EIO]);
                true
            }
        }
        let q = Arc::new(CompletionQueue::new(8).unwrap());
        assert!(run(&Fail(q.clone()), &q, 1, 1, 4096).is_err());
    }
}
