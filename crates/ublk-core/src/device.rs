//! One ublk device's life, run on its own controller thread:
//! ADD_DEV, SET_PARAMS + START_DEV, serve until asked to close, then
//! STOP_DEV, join the queue threads and DEL_DEV.
//!
//! Every control command of a device is issued from this one thread (libublk's
//! control ring is per thread), never from the JS thread nor a queue thread:
//! START_DEV waits for every queue to be primed and for the partition scan,
//! whose reads the handlers must serve meanwhile.

use crate::buffer::{IoBufferRegion, TagBuffers};
use crate::config::DeviceConfig;
use crate::dispatch::{CompletionQueue, Handling, Leaving};
use crate::error::{libublk_errno, UblkError};
use crate::queue::{block_signals, QueueServer};
use crate::ring::QueueRing;
use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::io::UblkDev;
use libublk::UblkFlags;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the kernel settled on, reported once the device is live.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: u32,
    pub nr_queues: u16,
    pub queue_depth: u16,
    /// Bytes per tag slot (`max_io_buf_bytes`).
    pub max_io_buf_bytes: u32,
    /// The `UBLK_F_*` flags the device was added with.
    pub flags: u64,
    /// The serving process as the kernel recorded it.
    pub ublksrv_pid: i32,
    pub state: u16,
}

/// Memory a queue's owner supplies instead of our own mappings (see
/// `IoBufferRegion::borrowed`): the tag buffers and the rings' memory.
pub struct SuppliedQueue {
    pub buffers: Arc<IoBufferRegion>,
    /// Zeroed, at least `RingLayout::new(depth).bytes` long.
    pub ring: Arc<IoBufferRegion>,
}

/// The per-queue state other threads reach: the buffers and the completions
/// (which own the queue's rings).
pub struct QueueShared {
    pub buffers: Arc<TagBuffers>,
    pub completions: Arc<CompletionQueue>,
    /// The CPUs the queue thread is pinned to (empty: unpinned), set before
    /// it starts; a queue's worker joins them (`pin_to_queue_cpus`).
    pub cpus: std::sync::OnceLock<Vec<usize>>,
}

/// The part of a device the JS thread shares with its controller thread.
///
/// The queues exist from the moment ADD_DEV fixed how many there are until
/// the controller thread ends; their eventfds close then, not when the JS
/// handle happens to be garbage-collected. (A buffer region handed to JS
/// lives on as long as its ArrayBuffer does.)
#[derive(Default)]
pub struct DeviceShared {
    queues: RwLock<Option<Arc<[QueueShared]>>>,
    /// Each queue's count of rejected completions, kept when the queues go.
    final_rejected: RwLock<Vec<u64>>,
}

impl DeviceShared {
    /// The queues, while the device has them.
    pub fn queues(&self) -> Option<Arc<[QueueShared]>> {
        self.queues.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on queue `qid`, if the device has it (without touching the
    /// queues' reference count: this is the completion path).
    pub fn with_queue<R>(&self, qid: usize, f: impl FnOnce(&QueueShared) -> R) -> Option<R> {
        self.queues.read().unwrap_or_else(|e| e.into_inner()).as_ref()?.get(qid).map(f)
    }

    /// Shared state that has `queues` from the start (for stand-ins of a
    /// device without a kernel, like the dispatch microbenchmark's).
    pub fn with_queues(queues: Vec<QueueShared>) -> DeviceShared {
        let shared = DeviceShared::default();
        shared.set_queues(queues);
        shared
    }

    fn set_queues(&self, queues: Vec<QueueShared>) -> Arc<[QueueShared]> {
        let queues: Arc<[QueueShared]> = queues.into();
        *self.queues.write().unwrap_or_else(|e| e.into_inner()) = Some(queues.clone());
        queues
    }

    /// Drops the queues once nothing serves them any more.
    fn release(&self) {
        let queues = self.queues.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(queues) = queues {
            *self.final_rejected.write().unwrap_or_else(|e| e.into_inner()) =
                queues.iter().map(|q| q.completions.rejected()).collect();
        }
    }

    /// Completions of queue `qid` the checks dropped, while the device lives
    /// and after.
    pub fn rejected_completions(&self, qid: usize) -> u64 {
        self.with_queue(qid, |q| q.completions.rejected())
            .or_else(|| self.final_rejected.read().unwrap_or_else(|e| e.into_inner()).get(qid).copied())
            .unwrap_or(0)
    }

    /// Tells every queue thread to leave its loop now.
    pub fn abandon_queues(&self) {
        for q in self.queues().as_deref().unwrap_or_default() {
            q.completions.abandon();
        }
    }

    /// Tells every queue thread to stop serving and park (see `Leaving`).
    fn leave_queues(&self, how: Leaving) {
        for q in self.queues().as_deref().unwrap_or_default() {
            q.completions.leave(how);
        }
    }

    /// Whether every queue thread has parked; wakes those that have not, to
    /// look again (a thread waits for CQEs, and a drained queue has none).
    fn all_parked(&self) -> bool {
        let queues = self.queues();
        let mut all = true;
        for q in queues.as_deref().unwrap_or_default().iter().filter(|q| !q.completions.is_parked()) {
            q.completions.nudge();
            all = false;
        }
        all
    }
}

/// Messages to the controller thread.
pub enum ControlMsg {
    /// Stop and delete the device.
    Close,
    /// Leave the device to a successor (`recover`): see [`detach`].
    Detach,
}

/// How a detached device passes to its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// QUIESCE_DEV (6.16+) quiesced it and this process let go of it: a
    /// successor may recover it now, and nothing this process held failed.
    Quiesced,
    /// The queue threads stopped serving and keep the device until this
    /// process exits, which the kernel takes as the server's death under the
    /// device's recovery mode (kernels without QUIESCE_DEV).
    AtExit,
}

impl Handoff {
    pub fn name(self) -> &'static str {
        match self {
            Handoff::Quiesced => "quiesced",
            Handoff::AtExit => "at-exit",
        }
    }
}

/// How a device's life on the controller thread ended.
pub type Ending = Option<Handoff>;

/// How long STOP_DEV may wait for handlers before the queues are abandoned
/// (the kernel then fails the requests they still hold).
const STOP_GRACE: Duration = Duration::from_secs(10);

fn command_error(cmd: &'static str) -> impl Fn(libublk::UblkError) -> UblkError {
    move |e| UblkError::Command { cmd, errno: libublk_errno(&e) }
}

/// libublk returns some kernel failures as `Ok(-errno)`.
fn checked(cmd: &'static str, res: Result<i32, libublk::UblkError>) -> Result<(), UblkError> {
    match res {
        Ok(r) if r < 0 => Err(UblkError::Command { cmd, errno: -r }),
        Ok(_) => Ok(()),
        Err(e) => Err(command_error(cmd)(e)),
    }
}

fn add_device(config: &DeviceConfig) -> Result<UblkCtrl, UblkError> {
    // libublk deletes the device with the requested id if ADD_DEV fails, which
    // would remove someone else's device on EEXIST: refuse taken ids first.
    if config.id >= 0 && std::path::Path::new(&format!("/dev/ublkc{}", config.id)).exists() {
        return Err(UblkError::Command { cmd: "ADD_DEV", errno: libc::EEXIST });
    }
    crate::ctrl::ControlDevice::open()?; // a clear error when the module is missing
    let mut flags = config.recovery.ctrl_flags();
    crate::ctrl::require_features(flags, &format!("recovery '{}'", config.recovery.name()))?;
    // A device that outlives its server can also be handed over on purpose
    // (`detach`): with QUIESCE_DEV where the kernel has it (6.16+).
    let quiesce = libublk::sys::UBLK_F_QUIESCE as u64;
    if flags != 0 && crate::ctrl::kernel_features().is_ok_and(|f| f.mask & quiesce != 0) {
        flags |= quiesce;
    }
    if config.recovery == crate::config::Recovery::FailIo {
        return add_with_own_command(config, flags);
    }
    UblkCtrlBuilder::default()
        .name("ublk-node")
        .id(config.id)
        .nr_queues(config.nr_queues)
        .depth(config.queue_depth)
        .io_buf_bytes(config.max_io_bytes)
        .ctrl_flags(flags)
        .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV)
        .build()
        .map_err(command_error("ADD_DEV"))
}

/// ADD_DEV sent on our own control ring, then libublk's controller opened
/// on the new device as on an existing one (so it neither adds nor, when
/// dropped, deletes it: the controller thread deletes it as usual). For
/// flags libublk 0.4.8's builder refuses (its UBLK_DRV_F_ALL lacks
/// UBLK_F_USER_RECOVERY_FAIL_IO).
fn add_with_own_command(config: &DeviceConfig, flags: u64) -> Result<UblkCtrl, UblkError> {
    let mut info = libublk::sys::ublksrv_ctrl_dev_info {
        nr_hw_queues: config.nr_queues,
        queue_depth: config.queue_depth,
        max_io_buf_bytes: config.max_io_bytes,
        dev_id: if config.id >= 0 { config.id as u32 } else { u32::MAX },
        // SAFETY: getpid has no preconditions.
        ublksrv_pid: unsafe { libc::getpid() },
        flags,
        ..Default::default()
    };
    let id = crate::ctrl::ControlDevice::open()?.add(&mut info)?;
    json_placeholder(id);
    UblkCtrlBuilder::default()
        .name("ublk-node")
        .id(id as i32)
        .nr_queues(config.nr_queues)
        .depth(config.queue_depth)
        .io_buf_bytes(config.max_io_bytes)
        .build()
        .map_err(|e| {
            let _ = crate::ctrl::ControlDevice::open().and_then(|mut c| c.delete(id));
            command_error("GET_DEV_INFO")(e)
        })
}

/// libublk reloads a device's JSON state file (`/run/ublksrvd/NNNN.json`, as
/// ublksrv keeps it) when it opens an existing device, and prints "device
/// reload json failed" on stderr when there is none. We keep no state there
/// (the kernel has all a recovery needs), so an empty one stands in; libublk
/// removes it with the device (DEL_DEV).
fn json_placeholder(id: u32) {
    let path = std::path::Path::new(libublk::ctrl::UblkCtrl::run_dir().as_str()).join(format!("{id:04}.json"));
    if !path.exists() && std::fs::create_dir_all(UblkCtrl::run_dir()).is_ok() {
        let _ = std::fs::write(&path, "{}");
    }
}

/// Re-attaches to device `config.id`, which a dead (or detached) server
/// left waiting: checks that it exists, was added with recovery, has no live
/// server and has the geometry `config` asks for, then START_USER_RECOVERY
/// (libublk waits while the kernel still quiesces it). The queues are set
/// up next, and `start_dev` ends the recovery (END_USER_RECOVERY).
fn recover_device(config: &DeviceConfig) -> Result<UblkCtrl, UblkError> {
    let id = config.id as u32;
    let refuse = |errno, why: String| UblkError::NotRecoverable { id, errno, why };
    let info = match crate::ctrl::ControlDevice::open()?.dev_info(id) {
        Ok(info) => info,
        Err(UblkError::Command { errno: libc::ENODEV, .. }) => return Err(refuse(libc::ENODEV, "no such device".into())),
        Err(e) => return Err(e),
    };
    let flags = info.flags;
    if crate::config::Recovery::of_flags(flags) == crate::config::Recovery::Off {
        return Err(refuse(libc::EINVAL, "it was created without recovery (the `recovery` option)".into()));
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let server_alive = info.ublksrv_pid > 0 && unsafe { libc::kill(info.ublksrv_pid, 0) } == 0;
    if info.state == libublk::sys::UBLK_S_DEV_LIVE as u16 && server_alive {
        return Err(refuse(libc::EBUSY, format!("it is live, served by pid {}", info.ublksrv_pid)));
    }
    if info.nr_hw_queues != config.nr_queues || info.queue_depth != config.queue_depth {
        return Err(refuse(
            libc::EINVAL,
            format!(
                "it has {} queues of depth {}, not {} of {}",
                info.nr_hw_queues, info.queue_depth, config.nr_queues, config.queue_depth
            ),
        ));
    }
    json_placeholder(id);
    let ctrl = UblkCtrlBuilder::default()
        .name("ublk-node")
        .id(config.id)
        .nr_queues(config.nr_queues)
        .depth(config.queue_depth)
        .io_buf_bytes(info.max_io_buf_bytes)
        .dev_flags(UblkFlags::UBLK_DEV_F_RECOVER_DEV)
        .build()
        .map_err(command_error("GET_DEV_INFO"))?;
    checked("START_USER_RECOVERY", ctrl.start_user_recover())?;
    Ok(ctrl)
}

/// A live device as its controller thread holds it.
struct Running {
    /// The controller's reference, needed until START_DEV. Dropped right
    /// after, so that the queue threads hold the last references: when they
    /// exit (or are abandoned), `/dev/ublkcN` closes and the kernel fails the
    /// requests they held (7.x aborts them on release, not on ring exit),
    /// which is what lets a STOP_DEV blocked on them finish.
    dev: Option<Arc<UblkDev>>,
    threads: Vec<JoinHandle<Result<(), UblkError>>>,
}

impl Running {
    /// Joins the queue threads, returning the first error any reported.
    fn join(self) -> Result<(), UblkError> {
        let mut first = Ok(());
        for t in self.threads {
            let res = t.join().unwrap_or(Err(UblkError::Os { what: "queue thread (panicked)", errno: libc::EIO }));
            if first.is_ok() {
                first = res;
            }
        }
        drop(self.dev);
        first
    }
}

fn device_info(ctrl: &UblkCtrl) -> DeviceInfo {
    let i = ctrl.dev_info();
    DeviceInfo {
        id: i.dev_id,
        nr_queues: i.nr_hw_queues,
        queue_depth: i.queue_depth,
        max_io_buf_bytes: i.max_io_buf_bytes,
        flags: i.flags,
        ublksrv_pid: i.ublksrv_pid,
        state: i.state,
    }
}

fn spawn_queues(
    ctrl: &UblkCtrl,
    config: &DeviceConfig,
    shared: &DeviceShared,
    supplied: &[SuppliedQueue],
    handling: &Handling,
) -> Result<Running, UblkError> {
    let info = ctrl.dev_info();
    let params = config.ublk_params(info.max_io_buf_bytes);
    let dev = UblkDev::new(
        "ublk-node".to_string(),
        |dev: &mut UblkDev| {
            dev.tgt.dev_size = config.size;
            dev.tgt.params = params;
            // One extra SQE/CQE for the completion eventfd's poll.
            dev.tgt.sq_depth = info.queue_depth + 2;
            dev.tgt.cq_depth = info.queue_depth + 2;
            Ok(())
        },
        ctrl,
    )
    .map_err(|e| UblkError::Os { what: "opening /dev/ublkcN", errno: libublk_errno(&e) })?;
    let dev = Arc::new(dev);

    let depth = info.queue_depth as usize;
    let slot_bytes = info.max_io_buf_bytes as usize;
    let mut queues = Vec::with_capacity(info.nr_hw_queues as usize);
    for qid in 0..info.nr_hw_queues as usize {
        let region = match supplied.get(qid).map(|s| &s.buffers) {
            Some(r) if r.stride() >= slot_bytes && r.depth() >= depth => r.clone(),
            Some(r) => {
                return Err(UblkError::InvalidConfig(format!(
                    "queue {qid}'s supplied buffers hold {} bytes in slots of {}; the device needs {depth} slots of {slot_bytes}",
                    r.len(),
                    r.stride()
                )))
            }
            None if !supplied.is_empty() => return Err(UblkError::InvalidConfig(format!("no supplied buffers for queue {qid}"))),
            None => Arc::new(IoBufferRegion::new(depth, slot_bytes)?),
        };
        let ring = match supplied.get(qid) {
            Some(s) => QueueRing::over(s.ring.clone(), depth)?,
            None => QueueRing::new(depth)?,
        };
        queues.push(QueueShared {
            buffers: Arc::new(TagBuffers::new(region)),
            completions: Arc::new(CompletionQueue::with_ring(depth, ring)?),
            cpus: std::sync::OnceLock::new(),
        });
    }
    let queues = shared.set_queues(queues);

    let mut threads = Vec::with_capacity(queues.len());
    let switches = crate::queue::QueueSwitches::from_env();
    for (qid, q) in queues.iter().enumerate() {
        let mut affinity = libublk::ctrl::UblkQueueAffinity::new();
        // Without it (an error, or every CPU) the thread is not pinned.
        let cpus = match ctrl.get_queue_affinity(qid as u32, &mut affinity) {
            Ok(r) if r >= 0 && switches.pin => crate::queue::one_cpu_of(&affinity.to_bits_vec(), info.dev_id, qid),
            _ => Vec::new(),
        };
        let _ = q.cpus.set(cpus.clone());
        let server = QueueServer {
            qid: qid as u16,
            dev: dev.clone(),
            buffers: q.buffers.clone(),
            completions: q.completions.clone(),
            handling: handling.clone(),
            cpus,
            switches,
        };
        let spawned = std::thread::Builder::new().name(format!("ublk{}q{}", info.dev_id, qid)).spawn(move || server.run());
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Take down the queues already running before reporting.
                shared.abandon_queues();
                let _ = Running { dev: Some(dev), threads }.join();
                return Err(UblkError::Os { what: "spawning a queue thread", errno: e.raw_os_error().unwrap_or(libc::EAGAIN) });
            }
        }
    }
    Ok(Running { dev: Some(dev), threads })
}

/// Runs a device from ADD_DEV to DEL_DEV on the calling (controller) thread.
///
/// `on_started` is called once, with the live device's info or the error that
/// kept it from starting (everything created is then removed again). After a
/// successful start the device is served until `control` says `Close` or is
/// dropped; the result of the teardown is returned.
///
/// `supplied` is empty to have each queue's memory mapped here, or holds it
/// for every requested queue.
pub fn run_device(
    config: DeviceConfig,
    shared: Arc<DeviceShared>,
    supplied: Vec<SuppliedQueue>,
    handling: Handling,
    control: Receiver<ControlMsg>,
    on_started: impl FnOnce(Result<DeviceInfo, UblkError>),
) -> Result<Ending, UblkError> {
    block_signals();
    let result = serve_device(config, &shared, &supplied, &handling, control, on_started);
    // Every queue thread has been joined (or never ran): close the eventfds.
    shared.release();
    result
}

fn serve_device(
    config: DeviceConfig,
    shared: &Arc<DeviceShared>,
    supplied: &[SuppliedQueue],
    handling: &Handling,
    control: Receiver<ControlMsg>,
    on_started: impl FnOnce(Result<DeviceInfo, UblkError>),
) -> Result<Ending, UblkError> {
    if let Err(e) = config.validate() {
        on_started(Err(e));
        return Ok(None);
    }
    let ctrl = match if config.recover { recover_device(&config) } else { add_device(&config) } {
        Ok(c) => c,
        Err(e) => {
            on_started(Err(e));
            return Ok(None);
        }
    };
    // A device being recovered is someone's: a failed recovery leaves it
    // waiting for the next attempt instead of deleting it.
    let give_up = |ctrl: &UblkCtrl| {
        if !config.recover {
            let _ = ctrl.del_dev();
        }
    };
    let running = match spawn_queues(&ctrl, &config, shared, supplied, handling) {
        Ok(r) => r,
        Err(e) => {
            give_up(&ctrl);
            on_started(Err(e));
            return Ok(None);
        }
    };
    let mut running = running;
    let dev = running.dev.take().expect("the device is held until START_DEV");
    let started = if config.recover {
        let info = ctrl.dev_info();
        dev.wait_for_buffer_registration(info.nr_hw_queues as usize)
            .map_err(command_error("END_USER_RECOVERY"))
            // SAFETY: getpid has no preconditions.
            .and_then(|_| crate::ctrl::ControlDevice::open()?.end_user_recovery(info.dev_id, unsafe { libc::getpid() }))
    } else {
        checked("START_DEV", ctrl.start_dev(&dev))
    };
    drop(dev);
    if let Err(e) = started {
        shared.abandon_queues();
        // A queue thread's own error explains a failed start better.
        let e = running.join().err().unwrap_or(e);
        give_up(&ctrl);
        on_started(Err(e));
        return Ok(None);
    }
    // Refresh the cached info: START_DEV changed the state and the server pid.
    let _ = ctrl.read_dev_info();
    on_started(Ok(device_info(&ctrl)));

    // Serve until told to close (or the JS side is gone), or until a queue
    // thread ends on its own (the kernel stopped the device).
    loop {
        match control.recv_timeout(Duration::from_millis(500)) {
            Ok(ControlMsg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(ControlMsg::Detach) => return detach(&ctrl, running, shared).map(Some),
            Err(RecvTimeoutError::Timeout) if running.threads.iter().any(|t| t.is_finished()) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    stop_and_delete(ctrl, running, shared).map(|_| None)
}

/// How long QUIESCE_DEV may wait for each queue to have an idle tag, and
/// then for the queues to let go of the device.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Leaves a live device (created with recovery) to a successor, without
/// STOP_DEV or DEL_DEV. Where the device has UBLK_F_QUIESCE (6.16+),
/// QUIESCE_DEV: the kernel stops dispatching (new requests wait), cancels
/// the queues' idle FETCH commands, and the queue threads then leave and
/// release `/dev/ublkcN`; requests the handlers still held are re-issued to
/// the successor ('reissue') or failed ('fail-inflight'), as at a death.
/// Elsewhere, or if QUIESCE_DEV fails, the queue threads stop handing out
/// requests, let the handlers finish what they hold (up to STOP_GRACE), and
/// park: the process's exit then ends the server (`Handoff::AtExit`).
fn detach(ctrl: &UblkCtrl, running: Running, shared: &Arc<DeviceShared>) -> Result<Handoff, UblkError> {
    // This process no longer deletes the device, whatever happens next.
    ctrl.disown();
    if ctrl.dev_info().flags & libublk::sys::UBLK_F_QUIESCE as u64 != 0 {
        // On EBUSY (no idle tag in time) or EINTR the device refuses new IO
        // (the kernel does not undo its canceling mark), and parking below
        // still hands it over, at exit.
        if checked("QUIESCE_DEV", ctrl.quiesce_dev(QUIESCE_TIMEOUT.as_millis() as u64)).is_ok() {
            return let_go(ctrl, running, shared);
        }
    }
    shared.leave_queues(Leaving::Drain);
    let drained = wait_for(STOP_GRACE, || shared.all_parked());
    if !drained {
        shared.leave_queues(Leaving::Now);
        wait_for(STOP_GRACE, || shared.all_parked());
    }
    // The parked threads are never joined: they end with the process.
    drop(running.threads);
    drop(running.dev);
    Ok(Handoff::AtExit)
}

/// After QUIESCE_DEV: the queue threads leave and release `/dev/ublkcN`,
/// and the kernel marks the device QUIESCED once the last reference goes.
///
/// They are abandoned rather than left to notice their cancelled commands:
/// a completion committed after QUIESCE_DEV cancelled the idle commands
/// arms a fresh FETCH that the kernel never cancels until the ring closes,
/// so the queue would never drain by itself (seen on 7.3). What the
/// handlers still hold is re-issued or failed at the release, as at a death.
fn let_go(ctrl: &UblkCtrl, running: Running, shared: &Arc<DeviceShared>) -> Result<Handoff, UblkError> {
    let id = ctrl.dev_info().dev_id;
    let timed_out = UblkError::Command { cmd: "QUIESCE_DEV", errno: libc::ETIMEDOUT };
    shared.abandon_queues();
    if !wait_for(QUIESCE_TIMEOUT, || running.threads.iter().all(|t| t.is_finished())) {
        return Err(timed_out);
    }
    running.join()?;
    let quiesced = wait_for(QUIESCE_TIMEOUT, || {
        crate::ctrl::ControlDevice::open()
            .and_then(|mut c| c.dev_info(id))
            .is_ok_and(|i| i.state != libublk::sys::UBLK_S_DEV_LIVE as u16)
    });
    if quiesced {
        Ok(Handoff::Quiesced)
    } else {
        Err(timed_out)
    }
}

/// Polls `done` every 20 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop_and_delete(ctrl: UblkCtrl, running: Running, shared: &Arc<DeviceShared>) -> Result<(), UblkError> {
    // STOP_DEV waits for every started request, so handlers keep serving
    // meanwhile. If they cannot finish in time, abandon the queues: their
    // rings go away and the kernel fails the requests they held.
    let watchdog_shared = shared.clone();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = stopped_rx.recv_timeout(STOP_GRACE) {
            watchdog_shared.abandon_queues();
        }
    });
    let stop = checked("STOP_DEV", ctrl.stop_dev());
    drop(stopped_tx);
    let _ = watchdog.join();
    if stop.is_err() {
        shared.abandon_queues();
    }
    let joined = running.join();
    let del = checked("DEL_DEV", ctrl.del_dev());
    stop.and(del).and(joined)
}
