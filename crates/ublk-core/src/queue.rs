//! One hardware queue's server loop, run on a dedicated thread.
//!
//! The thread primes the queue (FETCH_REQ for every tag, each with its slot
//! in the queue's `IoBufferRegion`), keeps a multishot poll on the queue's
//! completion eventfd armed on the same ring, and then loops: reap CQEs,
//! write new requests into the queue's request ring and publish them through
//! the `RequestSink` once per turn, and turn the completions handlers gave
//! back into COMMIT_AND_FETCH_REQ commands.

use crate::buffer::TagBuffers;
use crate::dispatch::{CompletionQueue, Handling, Leaving};
use crate::error::{libublk_errno, UblkError};
use io_uring::{cqueue, opcode, types};
use libublk::io::{BufDesc, UblkDev, UblkQueue};
use libublk::{sys, UblkIORes, UblkUringData};
use std::sync::Arc;

/// user_data of our eventfd poll: bit 63 marks it as the target's own IO, so
/// libublk does not count it as a ublk command.
const EVENTFD_USER_DATA: u64 = UblkUringData::Target as u64 | 0xffff;

/// How a queue thread's loop ended.
enum Exit {
    /// The device stopped (or the queue was abandoned): drop the queue.
    Done,
    /// The device is being left to a successor: keep the queue (see `run`).
    Parked,
}

/// Everything a queue thread needs; moved onto the thread.
pub struct QueueServer {
    pub qid: u16,
    pub dev: Arc<UblkDev>,
    pub buffers: Arc<TagBuffers>,
    pub completions: Arc<CompletionQueue>,
    pub handling: Handling,
    /// The CPU (of those the kernel maps to this hardware queue) to pin the
    /// thread to, see [`one_cpu_of`]; empty: leave it unpinned.
    pub cpus: Vec<usize>,
    pub switches: QueueSwitches,
}

/// The queue-thread behaviours that can be turned off for measuring what
/// they do: each is on unless its environment variable is `0`, read once per
/// device by [`QueueSwitches::from_env`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSwitches {
    /// `UBLK_QUEUE_AFFINITY`: pin each queue thread to one CPU of its queue's
    /// set ([`one_cpu_of`]).
    pub pin: bool,
    /// `UBLK_QUEUE_YIELD`: yield the CPU (`sched_yield`) after handing a
    /// single request (a batch of one, as at QD1) to a handler thread pinned
    /// to the same CPU (a queue worker). The worker then serves it at once,
    /// and a synchronous handler's completion is there when the queue thread
    /// runs again: it takes it without sleeping and without being woken
    /// through the eventfd. Measured in `bench/results/2026-12-05-queue-yield.md`,
    /// where a yield after every batch (slower CPU-bound handlers) is not
    /// kept either.
    pub yield_after_publish: bool,
    /// `UBLK_QUEUE_PKRU`: take the kernel's default rights for the memory
    /// protection keys the thread inherited restricted
    /// (`crate::protection_keys`).
    pub default_pkeys: bool,
}

impl QueueSwitches {
    pub fn from_env() -> Self {
        QueueSwitches {
            pin: switch_from_env("UBLK_QUEUE_AFFINITY"),
            yield_after_publish: switch_from_env("UBLK_QUEUE_YIELD"),
            default_pkeys: switch_from_env("UBLK_QUEUE_PKRU"),
        }
    }
}

/// One CPU of a queue's GET_QUEUE_AFFINITY set, as ublksrv and libublk's
/// `UBLK_DEV_F_SINGLE_CPU_AFFINITY` pin their queue threads: a thread allowed
/// on every CPU of a large set keeps migrating between them. The choice
/// rotates with the device and queue ids, so that single-queue devices (whose
/// set is every CPU) spread over the CPUs instead of all landing on the first.
///
/// Measured on 7.3 in one guest boot (2 vCPUs, 1 queue, whose set is both):
/// pinning to one CPU instead of the set took the JS NullBackend's 4k
/// randread QD128 from 6.6-10.1k to 7.9-13.0k IOPS.
pub fn one_cpu_of(set: &[usize], dev_id: u32, qid: usize) -> Vec<usize> {
    if set.is_empty() {
        return Vec::new();
    }
    vec![set[(dev_id as usize + qid) % set.len()]]
}

/// Pins the calling thread to `cpus` (best effort: a failure, e.g. CPUs
/// this process may not use, leaves it where it was). Returns whether it did.
pub fn pin_to(cpus: &[usize]) -> bool {
    if cpus.is_empty() {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET is called
    // only for CPUs below CPU_SETSIZE, and sched_setaffinity reads the set
    // for its stated size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// A queue-thread behaviour that is on unless the variable `name` is `0`.
fn switch_from_env(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v != "0")
}

/// Blocks every signal on the calling thread, so signals go to the JS thread
/// and never interrupt `io_uring_enter` here.
pub fn block_signals() {
    // SAFETY: sigfillset/pthread_sigmask on a local, fully initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl QueueServer {
    /// Runs the queue until the device stops or the queue is abandoned.
    /// Must be called on a fresh thread: the queue's ring is thread-local.
    pub fn run(self) -> Result<(), UblkError> {
        block_signals();
        if self.switches.default_pkeys {
            let _ = crate::protection_keys::take_queue_rights();
        }
        // PR_SET_IO_FLUSHER keeps reclaim from waiting on this thread's own IO;
        // it needs CAP_SYS_RESOURCE and its failure is harmless.
        libublk::ctrl::UblkCtrl::init_queue_thread();
        let _ = pin_to(&self.cpus);
        let queue = match UblkQueue::new(self.qid, &self.dev) {
            Ok(q) => q,
            Err(e) => {
                // Unblock START_DEV's wait for this queue; it then fails.
                self.dev.notify_buffer_registration_complete(true);
                self.completions.mark_closed();
                return Err(UblkError::Queue { qid: self.qid, what: "queue setup", errno: libublk_errno(&e) });
            }
        };
        let result = self.serve(&queue);
        self.completions.mark_closed();
        match result {
            Ok(Exit::Parked) => {
                // A hand-off without QUIESCE_DEV: the queue, its ring and
                // the commands the kernel holds stay as they are until the
                // process exits, which the kernel takes as the server's
                // death (under the device's recovery mode). Leaving the loop
                // instead would drop the queue, and on 6.1 unregistering its
                // files then waits for those commands forever (seen there:
                // 6.1 only cancels them once the thread is exiting).
                // What is not kernel-facing goes now (the handlers' notify
                // function keeps the JS event loop alive).
                let QueueServer { handling, completions, buffers, .. } = self;
                drop(handling);
                completions.mark_parked();
                drop(completions);
                let _kept = (queue, buffers);
                loop {
                    std::thread::park();
                }
            }
            Ok(Exit::Done) => {
                drop(queue);
                Ok(())
            }
            Err(e) => {
                drop(queue);
                Err(e)
            }
        }
    }

    fn arm_eventfd(&self, queue: &UblkQueue) -> Result<(), UblkError> {
        let sqe = opcode::PollAdd::new(types::Fd(self.completions.eventfd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(EVENTFD_USER_DATA);
        queue.ublk_submit_sqe_sync(sqe).map_err(|e| UblkError::Queue {
            qid: self.qid,
            what: "arming the completion eventfd",
            errno: libublk_errno(&e),
        })
    }

    /// Queues COMMIT_AND_FETCH_REQ for each checked `(tag, result)` pair.
    fn commit(&self, queue: &UblkQueue, pairs: &[i32]) {
        for pair in pairs.chunks_exact(2) {
            let tag = pair[0] as u16;
            // Pairs come from `CompletionQueue::push`, which only lets tags
            // of this queue through; each has a slot (maybe a replacement).
            if let Some(slot) = self.buffers.address(tag) {
                let _ = queue.complete_io_cmd_unified(tag, BufDesc::RawAddress(slot), Ok(UblkIORes::Result(pair[1])));
            }
        }
    }

    /// Fails every request of a batch that could not be handed to the
    /// handlers with EIO, through the same checked path as any completion.
    fn fail_batch(&self, ids: &[u32]) {
        let pairs: Vec<i32> = ids.iter().flat_map(|&id| [id as i32, -libc::EIO]).collect();
        let _ = self.completions.push(&pairs);
    }

    fn serve(&self, queue: &UblkQueue) -> Result<Exit, UblkError> {
        let depth = queue.nr_tags() as u16;
        if self.buffers.region().depth() < depth as usize || self.completions.tags().depth() < depth as usize {
            self.dev.notify_buffer_registration_complete(true);
            return Err(UblkError::InvalidConfig(format!("queue {} has {depth} tags but buffers for fewer", self.qid)));
        }
        for tag in 0..depth {
            let slot = self.buffers.address(tag).expect("the region has a slot for every tag (checked above)");
            // The deprecated call is the only one that FETCHes with a raw
            // address (our region's slot); it counts the command in flight.
            // The SQE is queued by the call itself; the returned future is
            // only for async targets and our loop reaps the CQE directly.
            #[allow(deprecated, clippy::let_underscore_future)]
            let _ = queue.submit_io_cmd(tag, sys::UBLK_U_IO_FETCH_REQ, slot, -1);
        }
        self.arm_eventfd(queue)?;
        self.dev.notify_buffer_registration_complete(false);

        let null_in_queue = matches!(self.handling, Handling::NullInQueue);
        let mut completions: Vec<i32> = Vec::new();
        let mut served_here: Vec<i32> = Vec::new();
        // This turn's requests, by io id (reused: no allocation per turn),
        // and the request ring's tail: this thread is its only writer.
        let mut batch_ids: Vec<u32> = Vec::with_capacity(depth as usize);
        let mut tail: u32 = self.completions.ring().request_tail();
        let mut lost: Vec<u16> = Vec::new();
        loop {
            if let Handling::Sink(sink) = &self.handling {
                sink.take_lost(self.qid, &mut lost);
                if !lost.is_empty() {
                    let ids: Vec<u32> = lost.drain(..).filter_map(|tag| self.completions.tags().held_id(tag)).collect();
                    self.fail_batch(&ids);
                }
            }
            // Commit what handlers completed until nothing is pending as
            // this thread goes to wait; from then on pushes wake it.
            while !self.completions.about_to_wait() {
                self.completions.take(&mut completions);
                self.commit(queue, &completions);
                completions.clear();
            }
            let ring = self.completions.ring();
            let leaving = self.completions.leaving();
            let mut woken = false;
            let mut rearm = false;
            let turn = queue.flush_and_wake_io_tasks(
                |user_data, cqe, _last| {
                    if user_data >> 63 == 1 {
                        if user_data == EVENTFD_USER_DATA {
                            woken = true;
                            rearm |= !cqueue::more(cqe.flags());
                        }
                        return;
                    }
                    let tag = (user_data & 0xffff) as u16;
                    // While leaving, new requests stay here unserved: the
                    // kernel re-issues or fails them when the process exits.
                    if cqe.result() == sys::UBLK_IO_RES_OK as i32 && leaving == Leaving::No {
                        let iod = *queue.get_iod(tag);
                        if null_in_queue {
                            let bytes = iod.nr_sectors as usize * 512;
                            let res = match self.buffers.region().slot_bytes(tag, bytes) {
                                // SAFETY: `slot_bytes` checked that the slot
                                // holds the request's `bytes`.
                                Some(slot) => unsafe { crate::null_target::serve(iod.op_flags, iod.nr_sectors, slot) },
                                None => -libc::EIO,
                            };
                            served_here.extend_from_slice(&[tag as i32, res]);
                            return;
                        }
                        let Some(id) = self.completions.tags().issue(tag) else { return };
                        // At most `depth` requests are unread (each holds its
                        // tag), and the ring has room for `depth`.
                        ring.write_request(
                            tail.wrapping_add(batch_ids.len() as u32),
                            [id, iod.op_flags, iod.start_sector as u32, (iod.start_sector >> 32) as u32, iod.nr_sectors],
                        );
                        batch_ids.push(id);
                    }
                    // UBLK_IO_RES_ABORT: the device is going away and libublk
                    // marks the queue stopping; other negative results lose
                    // the tag, which only happens on teardown.
                },
                1,
            );
            self.completions.running();
            match turn {
                Ok(_) => {}
                Err(libublk::UblkError::QueueIsDown) => return Ok(Exit::Done),
                Err(libublk::UblkError::IOError(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(UblkError::Queue { qid: self.qid, what: "io_uring_enter", errno: libublk_errno(&e) }),
            }
            // Park only here, once the turn submitted every commit queued
            // before it (a leaving turn issues and serves nothing itself).
            if leaving == Leaving::Now || (leaving == Leaving::Drain && !self.completions.tags().any_held()) {
                return Ok(Exit::Parked);
            }
            if let (false, Handling::Sink(sink)) = (batch_ids.is_empty(), &self.handling) {
                tail = tail.wrapping_add(batch_ids.len() as u32);
                if !sink.publish(self.qid, ring, &batch_ids, tail) {
                    self.fail_batch(&batch_ids);
                } else if self.switches.yield_after_publish && batch_ids.len() == 1 && self.completions.handler_shares_cpu() {
                    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
                    unsafe { libc::sched_yield() };
                }
            }
            batch_ids.clear();
            if !served_here.is_empty() {
                self.commit(queue, &served_here);
                served_here.clear();
            }
            if woken {
                self.completions.drain_eventfd();
                if self.completions.is_abandoned() {
                    return Ok(Exit::Done);
                }
            }
            if rearm && !queue.is_stopping() {
                self.arm_eventfd(queue)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{one_cpu_of, switch_from_env, QueueSwitches};

    #[test]
    fn one_cpu_of_a_queue_set_rotates_with_device_and_queue() {
        assert_eq!(one_cpu_of(&[], 0, 0), Vec::<usize>::new());
        assert_eq!(one_cpu_of(&[3], 7, 1), vec![3], "a single-CPU set is kept");
        assert_eq!(one_cpu_of(&[0, 1], 0, 0), vec![0]);
        assert_eq!(one_cpu_of(&[0, 1], 1, 0), vec![1], "the next device takes the next CPU");
        assert_eq!(one_cpu_of(&[2, 5, 6], 0, 4), vec![5]);
    }

    #[test]
    fn a_switch_is_off_only_at_zero() {
        // A name no other test reads, so setting it races with nothing.
        const NAME: &str = "UBLK_TEST_SWITCH_FROM_ENV";
        std::env::remove_var(NAME);
        assert!(switch_from_env(NAME), "on when unset");
        std::env::set_var(NAME, "0");
        assert!(!switch_from_env(NAME));
        std::env::set_var(NAME, "1");
        assert!(switch_from_env(NAME));
        std::env::remove_var(NAME);
    }

    #[test]
    fn each_queue_switch_reads_its_own_variable() {
        // The only test that reads these names; what was set before is put back.
        let names = ["UBLK_QUEUE_AFFINITY", "UBLK_QUEUE_YIELD", "UBLK_QUEUE_PKRU"];
        let saved: Vec<_> = names.iter().map(std::env::var_os).collect();
        let off = |s: QueueSwitches| [!s.pin, !s.yield_after_publish, !s.default_pkeys];
        for (i, name) in names.iter().enumerate() {
            names.iter().for_each(|n| std::env::remove_var(n));
            std::env::set_var(name, "0");
            let expected: Vec<bool> = (0..names.len()).map(|j| j == i).collect();
            assert_eq!(off(QueueSwitches::from_env()).to_vec(), expected, "{name}=0");
        }
        for (name, value) in names.iter().zip(saved) {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
}
