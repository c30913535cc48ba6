//! Worker mode: a JavaScript worker thread per queue. The main thread's
//! `NativeDevice` routes each queue's requests through a `QueueRouter`; a
//! worker reaches the device by its token (a process-wide registry: the
//! addon is loaded once per process, each worker with its own env) and
//! attaches a threadsafe function into its own event loop for its queue.
//! Its `QueueAttachment` offers the calls a dispatcher needs, for that queue.

use crate::queue_port::{self, notify_function, JsSink};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use ublk_core::device::{DeviceShared, QueueShared};
use ublk_core::dispatch::RequestSink;
use ublk_core::router::QueueRouter;

/// What a worker needs of a device: its queues and its router.
pub struct DeviceHub {
    pub shared: Arc<DeviceShared>,
    pub router: Arc<QueueRouter>,
}

fn registry() -> &'static Mutex<HashMap<u32, Weak<DeviceHub>>> {
    static HUBS: OnceLock<Mutex<HashMap<u32, Weak<DeviceHub>>>> = OnceLock::new();
    HUBS.get_or_init(Default::default)
}

/// Registers `hub` and returns its token (unique in the process).
pub fn register(hub: &Arc<DeviceHub>) -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let token = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut hubs = registry().lock().unwrap_or_else(|e| e.into_inner());
    hubs.retain(|_, hub| hub.strong_count() > 0);
    hubs.insert(token, Arc::downgrade(hub));
    token
}

fn lookup(token: u32) -> Option<Arc<DeviceHub>> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).get(&token)?.upgrade()
}

/// A worker's hold on the one queue it serves.
#[napi]
pub struct QueueAttachment {
    hub: Arc<DeviceHub>,
    queue: u32,
    /// The request ring position this worker starts reading at.
    start: u32,
    buffer_handed_out: bool,
    ring_handed_out: bool,
    attached: bool,
}

/// Attaches the calling worker to queue `queue` of the device with `token`:
/// `onRequests(queue)` is called on this thread whenever requests wait in the
/// queue's request ring for it, from `ringStart` on (requests that waited for
/// a worker first). Throws if the device is gone, or the queue already has a
/// worker.
#[napi]
pub fn attach_queue(token: u32, queue: u32, on_requests: Function<u32, ()>) -> Result<QueueAttachment> {
    let hub = lookup(token).ok_or_else(|| Error::new(Status::InvalidArg, format!("no live device has token {token}")))?;
    let qid = u16::try_from(queue).map_err(|_| Error::new(Status::InvalidArg, format!("no queue {queue}")))?;
    // Workers attach before ADD_DEV (when there are no queues yet) and again
    // after a restart.
    let queues = hub.shared.queues();
    let ring = queues.as_deref().and_then(|qs| qs.get(queue as usize)).map(|q| q.completions.ring());
    let sink = Arc::new(JsSink { tsfn: notify_function(on_requests)? }) as Arc<dyn RequestSink>;
    let Some(start) = hub.router.attach(qid, ring, sink) else {
        return Err(Error::new(
            Status::GenericFailure,
            format!("queue {queue} has a worker already, or the device has no such queue"),
        ));
    };
    drop(queues);
    Ok(QueueAttachment { hub, queue, start, buffer_handed_out: false, ring_handed_out: false, attached: true })
}

impl QueueAttachment {
    fn check(&self, queue: u32) -> Result<()> {
        if queue != self.queue {
            return Err(Error::new(Status::InvalidArg, format!("this worker serves queue {}, not {queue}", self.queue)));
        }
        Ok(())
    }

    fn with_queue<R>(&self, queue: u32, f: impl FnOnce(&QueueShared) -> Result<R>) -> Result<R> {
        self.check(queue)?;
        let queues = self.hub.shared.queues().ok_or_else(|| Error::new(Status::GenericFailure, "the device has no queues"))?;
        let q = queues.get(queue as usize).ok_or_else(|| Error::new(Status::InvalidArg, format!("no queue {queue}")))?;
        f(q)
    }
}

#[napi]
impl QueueAttachment {
    /// Pins the calling thread (the worker's) to the CPUs its queue's thread
    /// is pinned to, so that the hand-offs between the two stay on one CPU.
    /// Returns whether it did: not if the queue thread is not pinned, or the
    /// kernel refused (a CPU this process may not use).
    //
    // Measured on 7.3 in one guest boot (TCG, 2 vCPUs; 3 alternating
    // rounds): NullBackend in worker mode on 1 queue went from 0.9k to
    // 1.2k IOPS at 4k randread QD1 (p50 720-790 to 545-570 µs) and from
    // 8.7-10.4k to 11.1-11.8k at QD128; on 2 queues QD1 p50 fell from
    // 750-870 to 610-680 µs and QD128 stayed within noise.
    #[napi]
    pub fn pin_to_queue_cpus(&self, queue: u32) -> Result<bool> {
        self.with_queue(queue, |q| {
            let pinned = ublk_core::queue::pin_to(&q.cpus.get().cloned().unwrap_or_default());
            q.completions.set_handler_shares_cpu(pinned);
            Ok(pinned)
        })
    }

    /// The queue's buffer region as one external ArrayBuffer in this
    /// worker's isolate (handed out once per attachment).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_buffer<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        if self.buffer_handed_out {
            return Err(Error::new(Status::GenericFailure, format!("queue {queue}'s buffer was already handed out")));
        }
        let region = self.with_queue(queue, |q| Ok(q.buffers.region().clone()))?;
        let value = crate::buffers::external_region(env, region)?;
        self.buffer_handed_out = true;
        Ok(value)
    }

    /// Tags whose slot was replaced (after a timeout, maybe in an earlier
    /// worker), each with its current slot: `[tag, ArrayBuffer]` pairs.
    #[napi(ts_return_type = "Array<[number, ArrayBuffer]>")]
    pub fn replaced_slots<'env>(&self, env: &'env Env, queue: u32) -> Result<Vec<(u32, Unknown<'env>)>> {
        let slots = self.with_queue(queue, |q| Ok(q.buffers.replacements()))?;
        slots.into_iter().map(|(tag, slot)| Ok((tag as u32, crate::buffers::external_region(env, slot)?))).collect()
    }

    #[napi]
    pub fn slot_bytes(&self, queue: u32) -> Result<u32> {
        self.with_queue(queue, |q| Ok(q.buffers.region().stride() as u32))
    }

    /// Exactly `NativeDevice.complete`, for this worker's queue.
    #[napi]
    pub fn complete(&self, queue: u32, pairs: Int32ArraySlice) -> Result<i32> {
        self.check(queue)?;
        Ok(self.hub.shared.with_queue(queue as usize, |q| queue_port::complete(&q.completions, &pairs)).unwrap_or(-1))
    }

    /// Exactly `NativeDevice.replaceSlot`, for this worker's queue.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn replace_slot<'env>(&self, env: &'env Env, queue: u32, id: u32) -> Result<Unknown<'env>> {
        self.with_queue(queue, |q| queue_port::replace_external_slot(env, q, queue, id))
    }

    /// The queue's rings in this worker's isolate (handed out once per attachment).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_ring<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        if self.ring_handed_out {
            return Err(Error::new(Status::GenericFailure, format!("queue {queue}'s ring was already handed out")));
        }
        let value = self.with_queue(queue, |q| queue_port::external_ring(env, q))?;
        self.ring_handed_out = true;
        Ok(value)
    }

    /// The request ring position this worker starts reading at.
    #[napi]
    pub fn ring_start(&self, queue: u32) -> Result<u32> {
        self.check(queue)?;
        Ok(self.start)
    }

    /// Exactly `NativeDevice.wake`, for this worker's queue.
    #[napi]
    pub fn wake(&self, queue: u32) -> Result<()> {
        self.check(queue)?;
        self.hub.shared.with_queue(queue as usize, |q| q.completions.nudge());
        Ok(())
    }

    /// Stops receiving requests (they wait for the next worker) and lets the
    /// requests this worker still holds fail with EIO. Idempotent.
    #[napi]
    pub fn detach(&mut self) {
        if std::mem::take(&mut self.attached) {
            detach(&self.hub, self.queue);
        }
    }
}

/// Detaches queue `queue`'s worker and has its queue thread fail what the
/// worker held. Those requests' slots are retired first, as after a timeout:
/// native work the worker started (a thread-pool read into a request's
/// buffer) may still write them after the tags are reused. A successor's
/// dispatcher sees the replacements (`replacedSlots`).
pub fn detach(hub: &DeviceHub, queue: u32) -> bool {
    let queues = hub.shared.queues();
    let q = queues.as_deref().and_then(|qs| qs.get(queue as usize));
    let detached = hub.router.detach(queue as u16, |tag| {
        if let Some(q) = q.filter(|q| q.completions.tags().held_id(tag).is_some()) {
            // Best effort: without a fresh slot the tag keeps its own.
            let _ = q.buffers.replace(tag);
        }
    });
    if let Some(q) = q {
        q.completions.set_handler_shares_cpu(false);
        q.completions.nudge();
    }
    detached
}
