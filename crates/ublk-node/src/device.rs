//! `NativeDevice`: the JS handle of one ublk device. It spawns the device's
//! controller thread (`ublk_core::device::run_device`), notifies JavaScript of
//! requests in each queue's request ring through a threadsafe function,
//! exposes each queue's rings and buffer region as ArrayBuffers, and wakes
//! the queue threads when completions need them.

use crate::buffers::{external_buffers_allowed, JsRegions};
use crate::error::OutcomeError;
use crate::queue_port::{self, core_error, notify_function, JsSink};
use crate::workers::DeviceHub;
use napi::bindgen_prelude::*;
use napi::JsDeferred;
use napi_derive::napi;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use ublk_core::device::{run_device, ControlMsg, DeviceInfo, DeviceShared, Handoff, SuppliedQueue};
use ublk_core::dispatch::{Handling, RequestSink};
use ublk_core::ring::RingLayout;
use ublk_core::router::QueueRouter;
use ublk_core::DeviceConfig;

/// Device options as the TypeScript layer passes them (already validated
/// there, and validated again by the core). Sizes are bytes.
#[napi(object)]
pub struct NativeDeviceOptions {
    /// Device id; -1 or absent lets the kernel pick.
    pub id: Option<i32>,
    /// Capacity in bytes.
    pub size: f64,
    pub logical_block_size: Option<u32>,
    pub physical_block_size: Option<u32>,
    pub queues: Option<u32>,
    pub queue_depth: Option<u32>,
    /// Largest request in bytes (a multiple of 4096).
    pub max_io_size: Option<u32>,
    pub read_only: Option<bool>,
    pub rotational: Option<bool>,
    pub discard: Option<bool>,
    pub write_cache: Option<bool>,
    pub fua: Option<bool>,
    /// Where the IO buffers live: "external" (memory we map, shown to JS as
    /// external ArrayBuffers) or "js" (ArrayBuffers V8 allocates). Absent:
    /// "external" unless the runtime refuses external buffers.
    pub buffers: Option<String>,
    /// Diagnostic: serve every request in the queue thread as a null target
    /// (zeros on read), never calling JavaScript.
    pub rust_null_handler: Option<bool>,
    /// Worker mode: each queue's requests go to the worker attached for it
    /// (`attachQueue(device.token, queue, onRequests)`), not to `start`'s
    /// `onRequests`.
    pub workers: Option<bool>,
    /// `off` (the default), `reissue`, `fail-inflight` or `fail-io`.
    pub recovery: Option<String>,
    /// Re-attach to the existing device `id` instead of adding one.
    pub recover: Option<bool>,
}

/// A JS number that must be a whole count within `u16`.
fn small_count(name: &str, value: Option<u32>, default: u16) -> Result<u16> {
    match value {
        None => Ok(default),
        Some(v) => u16::try_from(v).map_err(|_| Error::new(Status::InvalidArg, format!("{name} {v} is out of range"))),
    }
}

impl NativeDeviceOptions {
    /// The core's config; what does not fit its types is refused here, and
    /// `DeviceConfig::validate` checks the rest before any kernel call.
    fn to_config(&self) -> Result<DeviceConfig> {
        let d = DeviceConfig::default();
        if !(self.size.is_finite() && self.size >= 0.0 && self.size.fract() == 0.0 && self.size <= 2f64.powi(53)) {
            return Err(Error::new(Status::InvalidArg, format!("size {} is not a whole number of bytes", self.size)));
        }
        Ok(DeviceConfig {
            id: self.id.unwrap_or(d.id),
            size: self.size as u64,
            logical_block_size: self.logical_block_size.unwrap_or(d.logical_block_size),
            physical_block_size: self.physical_block_size.unwrap_or(d.physical_block_size),
            nr_queues: small_count("queues", self.queues, d.nr_queues)?,
            queue_depth: small_count("queueDepth", self.queue_depth, d.queue_depth)?,
            max_io_bytes: self.max_io_size.unwrap_or(d.max_io_bytes),
            read_only: self.read_only.unwrap_or(d.read_only),
            rotational: self.rotational.unwrap_or(d.rotational),
            discard: self.discard.unwrap_or(d.discard),
            write_cache: self.write_cache.unwrap_or(d.write_cache),
            fua: self.fua.unwrap_or(d.fua),
            recovery: match self.recovery.as_deref() {
                None => d.recovery,
                Some(name) => ublk_core::config::Recovery::parse(name)
                    .ok_or_else(|| Error::new(Status::InvalidArg, format!("recovery {name:?} is not a recovery mode")))?,
            },
            recover: self.recover.unwrap_or(d.recover),
        })
    }
}

/// What the kernel reports for a live device.
#[napi(object)]
pub struct NativeDeviceInfo {
    pub id: u32,
    pub queues: u32,
    pub queue_depth: u32,
    /// Bytes per tag buffer.
    pub max_io_buf_bytes: u32,
    /// `UBLK_F_*` flags of the device.
    pub flags: f64,
    pub ublksrv_pid: i32,
    pub state: u32,
    /// `off`, `reissue`, `fail-inflight` or `fail-io`, from the flags.
    pub recovery: String,
    /// "external" or "js": where the IO buffers live (see the options).
    pub buffers: String,
}

/// How `start()` ended: `value` when live, `error` otherwise.
#[napi(object)]
pub struct StartOutcome {
    pub error: Option<OutcomeError>,
    pub value: Option<NativeDeviceInfo>,
}

/// How the device's life ended: `error` if stopping or deleting failed;
/// `handoff` when it was detached: `quiesced` (a successor may recover it
/// now) or `at-exit` (once this process exits).
#[napi(object)]
#[derive(Clone)]
pub struct CloseOutcome {
    pub error: Option<OutcomeError>,
    pub handoff: Option<String>,
}

impl From<DeviceInfo> for NativeDeviceInfo {
    fn from(i: DeviceInfo) -> Self {
        NativeDeviceInfo {
            id: i.id,
            queues: i.nr_queues as u32,
            queue_depth: i.queue_depth as u32,
            max_io_buf_bytes: i.max_io_buf_bytes,
            flags: i.flags as f64,
            ublksrv_pid: i.ublksrv_pid,
            state: i.state as u32,
            recovery: ublk_core::config::Recovery::of_flags(i.flags).name().to_string(),
            buffers: String::new(),
        }
    }
}

/// Which of a queue's memories JS asks for.
#[derive(Clone, Copy)]
enum QueueMemory {
    Buffers,
    Ring,
}

type OutcomeResolver = Box<dyn FnOnce(Env) -> Result<StartOutcome> + Send>;
type ClosedResolver = Box<dyn FnOnce(Env) -> Result<CloseOutcome> + Send>;

/// Who waits for the controller thread to finish, or how it finished.
enum Lifecycle {
    Idle,
    Running(Vec<JsDeferred<CloseOutcome, ClosedResolver>>),
    Finished(CloseOutcome),
}

/// One ublk device, from `start()` to the end of `close()`.
#[napi(custom_finalize)]
pub struct NativeDevice {
    config: DeviceConfig,
    buffers_option: Option<String>,
    rust_null_handler: bool,
    shared: Arc<DeviceShared>,
    control: Option<Sender<ControlMsg>>,
    lifecycle: Arc<Mutex<Lifecycle>>,
    controller: Option<std::thread::JoinHandle<()>>,
    buffers_handed_out: Vec<bool>,
    rings_handed_out: Vec<bool>,
    /// The IO buffers JavaScript allocated, when external ones are refused.
    js_regions: Option<JsRegions>,
    /// The queues' rings in memory JavaScript allocated, likewise.
    js_rings: Option<JsRegions>,
    /// Worker mode: the router and the token workers find it by.
    hub: Option<(Arc<DeviceHub>, u32)>,
}

fn settle_closed(d: JsDeferred<CloseOutcome, ClosedResolver>, outcome: CloseOutcome) {
    d.resolve(Box::new(move |_| Ok(outcome)));
}

#[napi]
impl NativeDevice {
    /// Checks the options' types and ranges (throws on what does not fit);
    /// the kernel is not touched before `start`.
    #[napi(constructor)]
    pub fn new(options: NativeDeviceOptions) -> Result<Self> {
        let config = options.to_config()?;
        config.validate().map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
        let shared = Arc::new(DeviceShared::default());
        let hub = options.workers.unwrap_or(false).then(|| {
            let hub =
                Arc::new(DeviceHub { shared: shared.clone(), router: Arc::new(QueueRouter::new(config.nr_queues as usize)) });
            let token = crate::workers::register(&hub);
            (hub, token)
        });
        Ok(NativeDevice {
            config,
            hub,
            buffers_option: options.buffers.clone(),
            rust_null_handler: options.rust_null_handler.unwrap_or(false),
            shared,
            control: None,
            lifecycle: Arc::new(Mutex::new(Lifecycle::Idle)),
            controller: None,
            buffers_handed_out: Vec::new(),
            rings_handed_out: Vec::new(),
            js_regions: None,
            js_rings: None,
        })
    }

    /// Adds and starts the device on its own controller thread. From the
    /// moment the queues are primed (START_DEV's partition scan needs them),
    /// `onRequests(queue)` is called whenever requests wait in that queue's
    /// request ring (`queueRing`); with `rustNullHandler` there is no
    /// `onRequests`. Resolves with the kernel's device info, or an error
    /// outcome.
    #[napi(ts_return_type = "Promise<StartOutcome>")]
    pub fn start<'env>(&mut self, env: &'env Env, on_requests: Option<Function<u32, ()>>) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred::<StartOutcome, OutcomeResolver>()?;
        if !matches!(*self.lifecycle.lock().unwrap(), Lifecycle::Idle) {
            return Err(Error::new(Status::GenericFailure, "the device was already started"));
        }
        let handling = match (on_requests, self.rust_null_handler) {
            (None, false) if self.hub.is_some() => {
                Handling::Sink(self.hub.as_ref().unwrap().0.router.clone() as Arc<dyn RequestSink>)
            }
            (Some(_), _) if self.hub.is_some() => {
                return Err(Error::new(
                    Status::InvalidArg,
                    "a worker-mode device takes no onRequests: workers attach to its queues",
                ))
            }
            (None, true) => Handling::NullInQueue,
            (Some(on_requests), false) => {
                Handling::Sink(Arc::new(JsSink { tsfn: notify_function(on_requests)? }) as Arc<dyn RequestSink>)
            }
            (Some(_), true) => {
                return Err(Error::new(Status::InvalidArg, "rustNullHandler serves requests itself: pass no onRequests"))
            }
            (None, false) => return Err(Error::new(Status::InvalidArg, "onRequests is required")),
        };
        let use_js_buffers = match self.buffers_option.as_deref() {
            None => !external_buffers_allowed(env),
            Some("external") => false,
            Some("js") => true,
            Some(other) => {
                return Err(Error::new(Status::InvalidArg, format!("buffers must be \"external\" or \"js\", not {other:?}")))
            }
        };
        let mut supplied = Vec::new();
        if use_js_buffers {
            // Sized for what was asked: the kernel may grant fewer queues,
            // never more, and never larger slots.
            let stride = (self.config.max_io_bytes as usize).next_multiple_of(4096);
            let (queues, depth) = (self.config.nr_queues as usize, self.config.queue_depth as usize);
            let (regions, buffers) = JsRegions::allocate(env, queues, depth, stride)?;
            self.js_regions = Some(regions);
            let (rings, ring_memory) = JsRegions::allocate(env, queues, 1, RingLayout::new(depth).bytes)?;
            self.js_rings = Some(rings);
            supplied = buffers.into_iter().zip(ring_memory).map(|(buffers, ring)| SuppliedQueue { buffers, ring }).collect();
        }
        let buffers = if use_js_buffers { "js" } else { "external" };
        let (tx, rx) = std::sync::mpsc::channel();
        self.control = Some(tx);
        *self.lifecycle.lock().unwrap() = Lifecycle::Running(Vec::new());

        let config = self.config.clone();
        let shared = self.shared.clone();
        let lifecycle = self.lifecycle.clone();
        let spawned = std::thread::Builder::new().name("ublk-control".into()).spawn(move || {
            let result = run_device(config, shared, supplied, handling, rx, move |started| {
                let outcome = match started {
                    Ok(info) => {
                        let info = NativeDeviceInfo { buffers: buffers.to_string(), ..info.into() };
                        StartOutcome { error: None, value: Some(info) }
                    }
                    Err(e) => StartOutcome { error: Some(OutcomeError::from_core(&e)), value: None },
                };
                deferred.resolve(Box::new(move |_| Ok(outcome)));
            });
            let outcome = match result {
                Ok(ending) => CloseOutcome { error: None, handoff: ending.map(|h| h.name().to_string()) },
                Err(e) => CloseOutcome { error: Some(OutcomeError::from_core(&e)), handoff: None },
            };
            let waiters = match std::mem::replace(&mut *lifecycle.lock().unwrap(), Lifecycle::Finished(outcome.clone())) {
                Lifecycle::Running(w) => w,
                _ => Vec::new(),
            };
            for w in waiters {
                settle_closed(w, outcome.clone());
            }
        });
        match spawned {
            Ok(handle) => self.controller = Some(handle),
            Err(e) => {
                *self.lifecycle.lock().unwrap() = Lifecycle::Idle;
                return Err(Error::new(Status::GenericFailure, format!("cannot spawn the ublk control thread: {e}")));
            }
        }
        Ok(promise)
    }

    /// The buffer region of queue `queue` as one external ArrayBuffer: tag
    /// `t`'s data is at `t * maxIoBufBytes`. Handed out once per queue (V8
    /// forbids two live external buffers over the same memory).
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_buffer<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        self.hand_out(env, queue, QueueMemory::Buffers)
    }

    /// Bytes per tag slot in queue `queue`'s buffer region.
    #[napi]
    pub fn slot_bytes(&self, queue: u32) -> Result<u32> {
        self.shared
            .with_queue(queue as usize, |q| q.buffers.region().stride() as u32)
            .ok_or_else(|| Error::new(Status::InvalidArg, format!("no queue {queue}")))
    }

    /// Completes requests of `queue`: `pairs` holds (io id, result) pairs,
    /// result being the bytes done or a negative errno. Each pair is checked
    /// first: only a request the handlers hold, completed once, reaches the
    /// kernel. Returns how many pairs were dropped by the checks, or -1 once
    /// the queue has stopped (all are dropped then). Throws for a queue the
    /// device does not have.
    #[napi]
    pub fn complete(&self, queue: u32, pairs: Int32ArraySlice) -> Result<i32> {
        match self.shared.with_queue(queue as usize, |q| queue_port::complete(&q.completions, &pairs)) {
            Some(result) => Ok(result),
            None if self.shared.queues().is_none() => Ok(-1),
            None => Err(Error::new(Status::InvalidArg, format!("the device has no queue {queue}"))),
        }
    }

    /// Retires the slot of request `id` (held by a handler that timed out and
    /// may still write it): the tag's next request goes to a fresh slot,
    /// returned as an ArrayBuffer. Throws unless `id` is a request the
    /// handlers hold now.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn replace_slot<'env>(&mut self, env: &'env Env, queue: u32, id: u32) -> Result<Unknown<'env>> {
        let queues = self.shared.queues().ok_or_else(|| Error::new(Status::GenericFailure, "the device has no queues"))?;
        let q = queues.get(queue as usize).ok_or_else(|| Error::new(Status::InvalidArg, format!("no queue {queue}")))?;
        match &mut self.js_regions {
            Some(js) => {
                let tag = queue_port::held_tag(q, queue, id)?;
                let slot = js.add(env, 1, q.buffers.region().stride())?;
                q.buffers.replace_with(tag, slot).map_err(core_error)?;
                js.last(env)
            }
            None => queue_port::replace_external_slot(env, q, queue, id),
        }
    }

    /// Queue `queue`'s rings (request and completion ring, laid out as their
    /// header says) as one ArrayBuffer, handed out once per queue.
    #[napi(ts_return_type = "ArrayBuffer")]
    pub fn queue_ring<'env>(&mut self, env: &'env Env, queue: u32) -> Result<Unknown<'env>> {
        self.hand_out(env, queue, QueueMemory::Ring)
    }

    /// Wakes queue `queue`'s thread, for a dispatcher that published
    /// completions and claimed the wake-up (`RING_WAITING`).
    #[napi]
    pub fn wake(&self, queue: u32) {
        self.shared.with_queue(queue as usize, |q| q.completions.nudge());
    }

    /// Worker mode: the token a worker passes to `attachQueue`.
    #[napi(getter)]
    pub fn token(&self) -> Option<u32> {
        self.hub.as_ref().map(|(_, token)| *token)
    }

    /// Worker mode: queue `queue`'s worker is gone (it died): its requests
    /// wait in the ring for the next one, and what it held fails with EIO. Returns whether a
    /// worker was attached.
    #[napi]
    pub fn detach_queue(&self, queue: u32) -> bool {
        self.hub.as_ref().is_some_and(|(hub, _)| crate::workers::detach(hub, queue))
    }

    /// Completions of `queue` dropped by the checks of `complete` so far.
    #[napi]
    pub fn rejected_completions(&self, queue: u32) -> f64 {
        self.shared.rejected_completions(queue as usize) as f64
    }

    /// Stops and deletes the device: STOP_DEV (in-flight requests still get
    /// served), join the queue threads, DEL_DEV. Resolves when it is gone.
    #[napi(ts_return_type = "Promise<CloseOutcome>")]
    pub fn close<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        self.end(env, ControlMsg::Close)
    }

    /// Leaves the device to a successor (`recover`) instead of deleting it:
    /// QUIESCE_DEV where the device has it, else the queues stop serving and
    /// the kernel takes over at this process's exit. Resolves when this
    /// process may exit, with `handoff` saying which. The caller checks
    /// that the device was created with recovery.
    #[napi(ts_return_type = "Promise<CloseOutcome>")]
    pub fn detach<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        self.end(env, ControlMsg::Detach)
    }
}

#[napi]
impl NativeDevice {
    /// For process exit, when JavaScript can serve nothing more: abandons the
    /// queues (the kernel fails what they held), then stops and deletes the
    /// device, blocking until it is gone.
    #[napi]
    pub fn close_sync(&mut self) {
        self.shutdown();
    }
}

impl NativeDevice {
    /// Asks the controller to end the device's life by `how` (the first
    /// request wins); resolves when its thread has finished.
    fn end<'env>(&mut self, env: &'env Env, how: ControlMsg) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred::<CloseOutcome, ClosedResolver>()?;
        let mut lifecycle = self.lifecycle.lock().unwrap();
        match &mut *lifecycle {
            Lifecycle::Idle => settle_closed(deferred, CloseOutcome { error: None, handoff: None }),
            Lifecycle::Finished(outcome) => settle_closed(deferred, outcome.clone()),
            Lifecycle::Running(waiters) => {
                waiters.push(deferred);
                if let Some(tx) = self.control.take() {
                    let _ = tx.send(how);
                }
            }
        }
        Ok(promise)
    }

    /// Whether the queue threads keep the device (and its buffers) until the
    /// process exits: a detach without QUIESCE_DEV.
    fn parked_until_exit(&self) -> bool {
        matches!(&*self.lifecycle.lock().unwrap(), Lifecycle::Finished(o) if o.handoff.as_deref() == Some(Handoff::AtExit.name()))
    }

    /// Queue `queue`'s buffers or rings as one ArrayBuffer, once per queue.
    fn hand_out<'env>(&mut self, env: &'env Env, queue: u32, which: QueueMemory) -> Result<Unknown<'env>> {
        let queues = self
            .shared
            .queues()
            .ok_or_else(|| Error::new(Status::GenericFailure, "the device has no queues (not started, or closed)"))?;
        let q = queues.get(queue as usize).ok_or_else(|| Error::new(Status::InvalidArg, format!("no queue {queue}")))?;
        let (handed_out, js, name) = match which {
            QueueMemory::Buffers => (&mut self.buffers_handed_out, &self.js_regions, "buffer"),
            QueueMemory::Ring => (&mut self.rings_handed_out, &self.js_rings, "ring"),
        };
        if handed_out.len() < queues.len() {
            handed_out.resize(queues.len(), false);
        }
        if handed_out[queue as usize] {
            return Err(Error::new(Status::GenericFailure, format!("queue {queue}'s {name} was already handed out")));
        }
        let value = match (js, which) {
            (Some(js), _) => js.get(env, queue as usize)?,
            (None, QueueMemory::Buffers) => crate::buffers::external_region(env, q.buffers.region().clone())?,
            (None, QueueMemory::Ring) => queue_port::external_ring(env, q)?,
        };
        handed_out[queue as usize] = true;
        Ok(value)
    }

    /// Abandons the queues, tells the controller to stop and delete the
    /// device, and waits for its thread to end.
    fn shutdown(&mut self) {
        self.shared.abandon_queues();
        if let Some(tx) = self.control.take() {
            let _ = tx.send(ControlMsg::Close);
        }
        if let Some(handle) = self.controller.take() {
            let _ = handle.join();
        }
    }
}

impl ObjectFinalize for NativeDevice {
    fn finalize(mut self, env: Env) -> Result<()> {
        if self.js_regions.is_some() || self.js_rings.is_some() {
            // The kernel and the queue threads may use these buffers until
            // the controller ends; only then may V8 free them.
            self.shutdown();
            if self.parked_until_exit() {
                // The kernel may still write them until the process exits.
                std::mem::forget(self.js_regions.take());
                std::mem::forget(self.js_rings.take());
            }
            for mut js in [self.js_regions.take(), self.js_rings.take()].into_iter().flatten() {
                js.release(&env);
            }
        }
        Ok(())
    }
}

impl Drop for NativeDevice {
    fn drop(&mut self) {
        // Dropping the sender tells a still-running controller to close: a
        // device never outlives its handle.
        self.control.take();
    }
}
