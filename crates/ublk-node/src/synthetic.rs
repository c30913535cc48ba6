//! `SyntheticQueue`: the dispatch microbenchmark's stand-in for a device
//! queue. It offers the same calls as `NativeDevice` (`queueBuffer`,
//! `queueRing`, `complete`, ...), so the production `QueueDispatcher` drives
//! it unchanged, and its `run` feeds batches from a Rust thread
//! (`ublk_core::synthetic::run`) through the production ring and threadsafe
//! function.

use crate::error::OutcomeError;
use crate::queue_port::{self, core_error, notify_function, JsSink};
use crate::workers::DeviceHub;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use ublk_core::buffer::{IoBufferRegion, TagBuffers};
use ublk_core::device::{DeviceShared, QueueShared};
use ublk_core::dispatch::CompletionQueue;
use ublk_core::router::QueueRouter;

/// What a synthetic run measured, or why it failed.
#[napi(object)]
pub struct SyntheticOutcome {
    pub error: Option<OutcomeError>,
    pub requests: f64,
    pub batches: f64,
    /// Wall time of the whole run in nanoseconds.
    pub elapsed_ns: f64,
}

type SyntheticResult = std::result::Result<ublk_core::synthetic::SyntheticReport, ublk_core::UblkError>;

fn outcome_of(result: SyntheticResult) -> SyntheticOutcome {
    match result {
        Ok(r) => SyntheticOutcome {
            error: None,
            requests: r.requests as f64,
            batches: r.batches as f64,
            elapsed_ns: r.elapsed.as_nanos() as f64,
        },
        Err(e) => SyntheticOutcome { error: Some(OutcomeError::from_core(&e)), requests: 0.0, batches: 0.0, elapsed_ns: 0.0 },
    }
}

type SyntheticResolver = Box<dyn FnOnce(Env) -> Result<SyntheticOutcome> + Send>;

/// A queue without a kernel: `depth` tags of `slotBytes` each.
#[napi]
pub struct SyntheticQueue {
    queue: QueueShared,
    /// Once shared with workers: the stand-in device they attach to, and its token.
    hub: Option<(Arc<DeviceHub>, u32)>,
    buffer_handed_out: bool,
    ring_handed_out: bool,
    running: Arc<AtomicBool>,
}

#[napi]
impl SyntheticQueue {
    #[napi(constructor)]
    pub fn new(depth: u32, slot_bytes: u32) -> Result<Self> {
        if depth == 0 || depth > 4096 || slot_bytes == 0 || !slot_bytes.is_multiple_of(4096) {
            return Err(Error::new(Status::InvalidArg, "depth must be 1-4096 and slotBytes a positive multiple of 4096"));
        }
        let region = IoBufferRegion::new(depth as usize, slot_bytes as usize).map_err(core_error)?;
        let queue = QueueShared {
            buffers: Arc::new(TagBuffers::new(Arc::new(region))),
            completions: Arc::new(CompletionQueue::new(depth as usize).map_err(core_error)?),
            cpus: Default::default(),
        };
        Ok(SyntheticQueue {
            queue,
            hub: None,
            buffer_handed_out: false,
            ring_handed_out: false,
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The queue's buffer region as one external ArrayBuffer (queue 0 only).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_buffer<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        if queue != 0 || self.buffer_handed_out {
            return Err(Error::new(Status::InvalidArg, "a synthetic queue has one buffer, queue 0's, handed out once"));
        }
        let value = crate::buffers::external_region(env, self.queue.buffers.region().clone())?;
        self.buffer_handed_out = true;
        Ok(value)
    }

    /// The queue's rings as one external ArrayBuffer (queue 0 only, once).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_ring<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        if queue != 0 || self.ring_handed_out {
            return Err(Error::new(Status::InvalidArg, "a synthetic queue has one ring, queue 0's, handed out once"));
        }
        let value = queue_port::external_ring(env, &self.queue)?;
        self.ring_handed_out = true;
        Ok(value)
    }

    /// Like `NativeDevice.wake`.
    #[napi]
    pub fn wake(&self, _queue: u32) {
        self.queue.completions.nudge();
    }

    #[napi]
    pub fn slot_bytes(&self, _queue: u32) -> u32 {
        self.queue.buffers.region().stride() as u32
    }

    /// Takes `(io id, result)` pairs, checked exactly like `NativeDevice.complete`.
    #[napi]
    pub fn complete(&self, _queue: u32, pairs: Int32ArraySlice) -> i32 {
        queue_port::complete(&self.queue.completions, &pairs)
    }

    /// Like `NativeDevice.replaceSlot`: the tag's later requests use a fresh slot.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn replace_slot<'env>(&self, env: &'env Env, queue: u32, id: u32) -> Result<Unknown<'env>> {
        queue_port::replace_external_slot(env, &self.queue, queue, id)
    }

    /// Completions dropped by the checks so far.
    #[napi]
    pub fn rejected_completions(&self, _queue: u32) -> f64 {
        self.queue.completions.rejected() as f64
    }

    /// The floor under `run`: the same round trip with a Rust thread as the
    /// handler (eventfd wake each way, no JavaScript).
    #[napi(ts_return_type = "Promise<SyntheticOutcome>")]
    pub fn run_floor<'env>(&mut self, env: &'env Env, batch: u32, requests: f64) -> Result<Object<'env>> {
        self.spawn_run(env, batch, requests, move |completions, batch, requests| {
            ublk_core::synthetic::run_floor(completions, batch, requests, 4096)
        })
    }

    /// Makes this queue queue 0 of a stand-in device that a worker thread
    /// attaches to exactly as to a real one (`attachQueue(token, 0, ...)`);
    /// returns the token. `runRouted` then goes through the device's router.
    #[napi]
    pub fn share_with_workers(&mut self) -> u32 {
        if let Some((_, token)) = &self.hub {
            return *token;
        }
        let queue = QueueShared {
            buffers: self.queue.buffers.clone(),
            completions: self.queue.completions.clone(),
            cpus: Default::default(),
        };
        let hub = Arc::new(DeviceHub {
            shared: Arc::new(DeviceShared::with_queues(vec![queue])),
            router: Arc::new(QueueRouter::new(1)),
        });
        let token = crate::workers::register(&hub);
        self.hub = Some((hub, token));
        token
    }

    /// Like `run`, through the router of `shareWithWorkers` to the worker
    /// attached there: worker mode's path.
    #[napi(ts_return_type = "Promise<SyntheticOutcome>")]
    pub fn run_routed<'env>(&mut self, env: &'env Env, batch: u32, requests: f64) -> Result<Object<'env>> {
        let router = match &self.hub {
            Some((hub, _)) => hub.router.clone(),
            None => return Err(Error::new(Status::GenericFailure, "shareWithWorkers() first")),
        };
        self.spawn_run(env, batch, requests, move |completions, batch, requests| {
            ublk_core::synthetic::run(&*router, &completions, batch, requests, 4096)
        })
    }

    /// Sends `requests` 4 KiB READs through the request ring in batches of
    /// `batch` from a Rust thread, each batch once the previous one
    /// completed; `onRequests(queue)` is the dispatcher's notification.
    #[napi(ts_return_type = "Promise<SyntheticOutcome>")]
    pub fn run<'env>(
        &mut self,
        env: &'env Env,
        on_requests: Function<u32, ()>,
        batch: u32,
        requests: f64,
    ) -> Result<Object<'env>> {
        let sink = JsSink { tsfn: notify_function(on_requests)? };
        self.spawn_run(env, batch, requests, move |completions, batch, requests| {
            ublk_core::synthetic::run(&sink, &completions, batch, requests, 4096)
        })
    }
}

impl SyntheticQueue {
    /// Checks the arguments and runs `source` on a thread of its own; the
    /// promise resolves with what it measured.
    fn spawn_run<'env>(
        &mut self,
        env: &'env Env,
        batch: u32,
        requests: f64,
        source: impl FnOnce(Arc<CompletionQueue>, u16, u64) -> SyntheticResult + Send + 'static,
    ) -> Result<Object<'env>> {
        if self.running.load(Ordering::Acquire) {
            return Err(Error::new(Status::GenericFailure, "a synthetic run is already going"));
        }
        let depth = self.queue.buffers.region().depth() as u32;
        if batch == 0 || batch > depth || requests.is_nan() || requests < 1.0 {
            return Err(Error::new(Status::InvalidArg, format!("batch must be 1-{depth} and requests at least 1")));
        }
        let (deferred, promise) = env.create_deferred::<SyntheticOutcome, SyntheticResolver>()?;
        let completions = self.queue.completions.clone();
        self.running.store(true, Ordering::Release);
        let running = self.running.clone();
        let requests = requests as u64;
        std::thread::Builder::new()
            .name("ublk-synthetic".into())
            .spawn(move || {
                let outcome = outcome_of(source(completions, batch as u16, requests));
                running.store(false, Ordering::Release);
                deferred.resolve(Box::new(move |_| Ok(outcome)));
            })
            .map_err(|e| {
                self.running.store(false, Ordering::Release);
                Error::new(Status::GenericFailure, format!("cannot spawn the synthetic source: {e}"))
            })?;
        Ok(promise)
    }
}
