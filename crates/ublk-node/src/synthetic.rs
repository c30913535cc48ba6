//! `SyntheticQueue`: the dispatch microbenchmark's stand-in for a device
//! queue. It offers the same `queueBuffer`/`slotBytes`/`complete` calls as
//! `NativeDevice`, so the production `QueueDispatcher` drives it unchanged,
//! and its `run` feeds batches from a Rust thread
//! (`ublk_core::synthetic::run`) through the production threadsafe function.

use crate::device::{batch_function, JsSink};
use crate::error::OutcomeError;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use ublk_core::buffer::{IoBufferRegion, TagBuffers};
use ublk_core::dispatch::CompletionQueue;

/// What a synthetic run measured, or why it failed.
#[napi(object)]
pub struct SyntheticOutcome {
    pub error: Option<OutcomeError>,
    pub requests: f64,
    pub batches: f64,
    /// Wall time of the whole run in nanoseconds.
    pub elapsed_ns: f64,
}

fn outcome_of(result: std::result::Result<ublk_core::synthetic::SyntheticReport, ublk_core::UblkError>) -> SyntheticOutcome {
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
    buffers: TagBuffers,
    completions: Arc<CompletionQueue>,
    buffer_handed_out: bool,
    running: Arc<AtomicBool>,
}

#[napi]
impl SyntheticQueue {
    #[napi(constructor)]
    pub fn new(depth: u32, slot_bytes: u32) -> Result<Self> {
        if depth == 0 || depth > 4096 || slot_bytes == 0 || !slot_bytes.is_multiple_of(4096) {
            return Err(Error::new(Status::InvalidArg, "depth must be 1-4096 and slotBytes a positive multiple of 4096"));
        }
        let core_err = |e: ublk_core::UblkError| Error::new(Status::GenericFailure, e.to_string());
        Ok(SyntheticQueue {
            buffers: TagBuffers::new(Arc::new(IoBufferRegion::new(depth as usize, slot_bytes as usize).map_err(core_err)?)),
            completions: Arc::new(CompletionQueue::new(depth as usize).map_err(core_err)?),
            buffer_handed_out: false,
            running: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The queue's buffer region as one external ArrayBuffer (queue 0 only).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_buffer<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        if queue != 0 || self.buffer_handed_out {
            return Err(Error::new(Status::InvalidArg, "a synthetic queue has one buffer, queue 0's, handed out once"));
        }
        let value = crate::buffers::external_region(env, self.buffers.region().clone())?;
        self.buffer_handed_out = true;
        Ok(value)
    }

    #[napi]
    pub fn slot_bytes(&self, _queue: u32) -> u32 {
        self.buffers.region().stride() as u32
    }

    /// Takes `(io id, result)` pairs, checked exactly like `NativeDevice.complete`.
    #[napi]
    pub fn complete(&self, _queue: u32, pairs: Int32ArraySlice) -> i32 {
        self.completions.push(&pairs).map_or(-1, |rejected| rejected as i32)
    }

    /// Like `NativeDevice.replaceSlot`: the tag's later requests use a fresh slot.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn replace_slot<'env>(&self, env: &'env Env, _queue: u32, id: u32) -> Result<Unknown<'env>> {
        if !self.completions.tags().is_held(id) {
            return Err(Error::new(Status::InvalidArg, format!("request {id} is not with the handlers")));
        }
        let slot = self
            .buffers
            .replace(ublk_core::dispatch::TagTable::tag_of(id))
            .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
        crate::buffers::external_region(env, slot)
    }

    /// Completions dropped by the checks so far.
    #[napi]
    pub fn rejected_completions(&self, _queue: u32) -> f64 {
        self.completions.rejected() as f64
    }

    /// The floor under `run`: the same round trip with a Rust thread as the
    /// handler (eventfd wake each way, no JavaScript).
    #[napi(ts_return_type = "Promise<SyntheticOutcome>")]
    pub fn run_floor<'env>(&mut self, env: &'env Env, batch: u32, requests: f64) -> Result<Object<'env>> {
        let depth = self.buffers.region().depth() as u32;
        if self.running.load(Ordering::Acquire) {
            return Err(Error::new(Status::GenericFailure, "a synthetic run is already going"));
        }
        if batch == 0 || batch > depth || requests.is_nan() || requests < 1.0 {
            return Err(Error::new(Status::InvalidArg, format!("batch must be 1-{depth} and requests at least 1")));
        }
        let (deferred, promise) = env.create_deferred::<SyntheticOutcome, SyntheticResolver>()?;
        let completions = self.completions.clone();
        self.running.store(true, Ordering::Release);
        let running = self.running.clone();
        let requests = requests as u64;
        std::thread::Builder::new()
            .name("ublk-synthetic".into())
            .spawn(move || {
                let outcome = outcome_of(ublk_core::synthetic::run_floor(completions, batch as u16, requests, 4096));
                running.store(false, Ordering::Release);
                deferred.resolve(Box::new(move |_| Ok(outcome)));
            })
            .map_err(|e| Error::new(Status::GenericFailure, format!("cannot spawn the synthetic source: {e}")))?;
        Ok(promise)
    }

    /// Sends `requests` 4 KiB READs to `onRequests` in batches of `batch`
    /// from a Rust thread, each batch once the previous one completed.
    #[napi(ts_return_type = "Promise<SyntheticOutcome>")]
    pub fn run<'env>(
        &mut self,
        env: &'env Env,
        on_requests: Function<FnArgs<(u32, Uint32Array)>, ()>,
        batch: u32,
        requests: f64,
    ) -> Result<Object<'env>> {
        if self.running.load(Ordering::Acquire) {
            return Err(Error::new(Status::GenericFailure, "a synthetic run is already going"));
        }
        let depth = self.buffers.region().depth() as u32;
        if batch == 0 || batch > depth || requests.is_nan() || requests < 1.0 {
            return Err(Error::new(Status::InvalidArg, format!("batch must be 1-{depth} and requests at least 1")));
        }
        let (deferred, promise) = env.create_deferred::<SyntheticOutcome, SyntheticResolver>()?;
        let sink = JsSink { tsfn: batch_function(on_requests)? };
        let completions = self.completions.clone();
        self.running.store(true, Ordering::Release);
        let running = self.running.clone();
        let requests = requests as u64;
        std::thread::Builder::new()
            .name("ublk-synthetic".into())
            .spawn(move || {
                let outcome = match ublk_core::synthetic::run(&sink, &completions, batch as u16, requests, 4096) {
                    Ok(r) => SyntheticOutcome {
                        error: None,
                        requests: r.requests as f64,
                        batches: r.batches as f64,
                        elapsed_ns: r.elapsed.as_nanos() as f64,
                    },
                    Err(e) => SyntheticOutcome {
                        error: Some(OutcomeError::from_core(&e)),
                        requests: 0.0,
                        batches: 0.0,
                        elapsed_ns: 0.0,
                    },
                };
                running.store(false, Ordering::Release);
                deferred.resolve(Box::new(move |_| Ok(outcome)));
            })
            .map_err(|e| Error::new(Status::GenericFailure, format!("cannot spawn the synthetic source: {e}")))?;
        Ok(promise)
    }
}
