//! Node-API bindings for the ublk core. Only glue lives here: argument
//! conversion and the mapping of `UblkError` to JavaScript errors; the
//! kernel-facing logic is in `ublk-core`.

// Under `cargo test` napi-derive registers nothing with Node, so the exported
// items look unused there; they are used by the addon build.
#![cfg_attr(test, allow(dead_code))]

mod backing;
mod buffers;
mod device;
mod error;
mod queue_port;
mod synthetic;
mod wire;
mod workers;

use napi_derive::napi;

/// The running kernel's ublk features as `kernelFeatures()` reports them.
#[napi(object)]
pub struct NativeKernelFeatures {
    /// The `UBLK_F_*` mask (bits 0-52 are exact in a JS number).
    pub mask: i64,
    /// `GET_FEATURES` (the kernel said) or `kernel version` (before 6.5: the
    /// mask is what the mainline release of that version has).
    pub source: String,
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
}

/// The running kernel's ublk features: GET_FEATURES on `/dev/ublk-control`
/// (Linux 6.5+), or inferred from the kernel version before that. Throws
/// with `code` `ENOENT` when the control device is missing, saying why.
#[napi]
pub fn kernel_features() -> napi::Result<NativeKernelFeatures, String> {
    let f = ublk_core::ctrl::kernel_features().map_err(error::to_napi)?;
    let source = match f.source {
        ublk_core::ctrl::FeatureSource::GetFeatures => "GET_FEATURES",
        ublk_core::ctrl::FeatureSource::KernelVersion => "kernel version",
    };
    Ok(NativeKernelFeatures { mask: f.mask as i64, source: source.to_string(), kernel: f.kernel.release })
}

/// Names of the `UBLK_F_*` bits set in `mask` (unknown bits as `bit N`).
#[napi]
pub fn feature_names(mask: i64) -> Vec<String> {
    ublk_core::features::feature_names(mask as u64)
}

/// One ublk device as `listDevices()` reports it.
#[napi(object)]
pub struct NativeDeviceSummary {
    pub id: u32,
    /// `UBLK_S_DEV_*`: 0 dead, 1 live, 2 quiesced, 3 fail-io.
    pub state: u32,
    pub queues: u32,
    pub queue_depth: u32,
    pub size: f64,
    /// The serving process the kernel recorded (-1 or 0: none).
    pub ublksrv_pid: i32,
    pub flags: f64,
    /// `off`, `reissue`, `fail-inflight` or `fail-io`, from the flags.
    pub recovery: String,
    pub logical_block_size: u32,
    pub physical_block_size: u32,
    /// Bytes per request buffer (the device's largest request).
    pub max_io_size: u32,
    pub read_only: bool,
    pub rotational: bool,
    pub write_cache: bool,
    pub fua: bool,
    pub discard: bool,
}

impl From<ublk_core::ctrl::DeviceSummary> for NativeDeviceSummary {
    fn from(d: ublk_core::ctrl::DeviceSummary) -> Self {
        use ublk_core::sys;
        let attr = |a: u32| d.attrs & a != 0;
        NativeDeviceSummary {
            id: d.id,
            state: d.state as u32,
            queues: d.nr_queues as u32,
            queue_depth: d.queue_depth as u32,
            size: d.size_bytes as f64,
            ublksrv_pid: d.ublksrv_pid,
            flags: d.flags as f64,
            recovery: ublk_core::config::Recovery::of_flags(d.flags).name().to_string(),
            logical_block_size: d.logical_block_size,
            physical_block_size: d.physical_block_size,
            max_io_size: d.max_io_buf_bytes,
            read_only: attr(sys::UBLK_ATTR_READ_ONLY),
            rotational: attr(sys::UBLK_ATTR_ROTATIONAL),
            write_cache: attr(sys::UBLK_ATTR_VOLATILE_CACHE),
            fua: attr(sys::UBLK_ATTR_FUA),
            discard: d.discard,
        }
    }
}

/// Every ublk device on the machine, from GET_DEV_INFO and GET_PARAMS.
#[napi]
pub fn list_devices() -> napi::Result<Vec<NativeDeviceSummary>, String> {
    let devices = ublk_core::ctrl::list_devices().map_err(error::to_napi)?;
    Ok(devices.into_iter().map(NativeDeviceSummary::from).collect())
}

/// What the kernel knows of device `id` (throws ENODEV when there is none).
#[napi]
pub fn describe_device(id: u32) -> napi::Result<NativeDeviceSummary, String> {
    Ok(ublk_core::ctrl::describe_device(id).map_err(error::to_napi)?.into())
}

/// A control-plane call that blocks on the kernel, run on the thread pool;
/// resolves with `{ error? }`.
pub struct ControlTask(Option<Box<dyn FnOnce() -> Result<(), ublk_core::UblkError> + Send>>);

impl ControlTask {
    fn new(
        call: impl FnOnce() -> Result<(), ublk_core::UblkError> + Send + 'static,
    ) -> napi::bindgen_prelude::AsyncTask<ControlTask> {
        napi::bindgen_prelude::AsyncTask::new(ControlTask(Some(Box::new(call))))
    }
}

impl napi::Task for ControlTask {
    type Output = Option<error::OutcomeError>;
    type JsValue = error::TaskOutcome;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let call = self.0.take().expect("a task is computed once");
        Ok(call().err().map(|e| error::OutcomeError::from_core(&e)))
    }

    fn resolve(&mut self, _env: napi::Env, error: Self::Output) -> napi::Result<Self::JsValue> {
        Ok(error::TaskOutcome { error })
    }
}

/// Deletes device `id` (DEL_DEV_ASYNC where the kernel has it), on the
/// thread pool. Resolves with `{ error? }`.
#[napi(ts_return_type = "Promise<TaskOutcome>")]
pub fn delete_device(id: u32) -> napi::bindgen_prelude::AsyncTask<ControlTask> {
    ControlTask::new(move || ublk_core::ctrl::delete_device(id))
}

/// Changes live device `id`'s capacity to `bytes` (UPDATE_SIZE, Linux
/// 6.16+), on the thread pool. Resolves with `{ error? }`; throws for a
/// size that is not a whole number of bytes.
#[napi(ts_return_type = "Promise<TaskOutcome>")]
pub fn resize_device(id: u32, bytes: f64) -> napi::Result<napi::bindgen_prelude::AsyncTask<ControlTask>> {
    if !(bytes.is_finite() && bytes > 0.0 && bytes.fract() == 0.0 && bytes <= 2f64.powi(53)) {
        return Err(napi::Error::new(napi::Status::InvalidArg, format!("size {bytes} is not a whole number of bytes")));
    }
    Ok(ControlTask::new(move || ublk_core::ctrl::resize_device(id, bytes as u64)))
}

/// The first step of `close({ ifUnused: true })` for device `id`, on the
/// thread pool: TRY_STOP_DEV where the kernel has it (7.0+; it also stops
/// the device), else a check of who holds `/dev/ublkbN` open. Resolves with
/// `{ error? }`: EBUSY, naming what holds it, while anything does.
#[napi(ts_return_type = "Promise<TaskOutcome>")]
pub fn stop_device_if_unused(id: u32) -> napi::bindgen_prelude::AsyncTask<ControlTask> {
    ControlTask::new(move || ublk_core::ctrl::stop_if_unused(id).map(|_| ()))
}
