//! The file backend's native helpers (`ublk_core::backing`), run on libuv's
//! thread pool so fallocate and the block-device ioctls never block the JS
//! thread. They resolve with an outcome (`{ error? }`) that the TypeScript
//! layer turns into a `UblkError`, so the request fails with the real errno.

use crate::error::{to_napi, OutcomeError, TaskOutcome};
use napi::bindgen_prelude::*;
use napi::Task;
use napi_derive::napi;

#[derive(Clone, Copy)]
enum RangeOp {
    Discard,
    WriteZeroes,
}

pub struct RangeTask {
    op: RangeOp,
    fd: i32,
    offset: u64,
    length: u64,
}

impl Task for RangeTask {
    type Output = Option<OutcomeError>;
    type JsValue = TaskOutcome;

    fn compute(&mut self) -> Result<Self::Output> {
        let done = match self.op {
            RangeOp::Discard => ublk_core::backing::discard(self.fd, self.offset, self.length),
            RangeOp::WriteZeroes => ublk_core::backing::write_zeroes(self.fd, self.offset, self.length),
        };
        Ok(done.err().map(|e| OutcomeError::from_core(&e)))
    }

    fn resolve(&mut self, _env: Env, error: Self::Output) -> Result<Self::JsValue> {
        Ok(TaskOutcome { error })
    }
}

fn range_task(op: RangeOp, fd: i32, offset: f64, length: f64) -> AsyncTask<RangeTask> {
    AsyncTask::new(RangeTask { op, fd, offset: offset as u64, length: length as u64 })
}

/// Releases `[offset, offset + length)` of the open file `fd`: a punched hole
/// (the size is kept), or BLKDISCARD on a block device.
#[napi(ts_return_type = "Promise<TaskOutcome>")]
pub fn backing_discard(fd: i32, offset: f64, length: f64) -> AsyncTask<RangeTask> {
    range_task(RangeOp::Discard, fd, offset, length)
}

/// Makes `[offset, offset + length)` of `fd` read back as zeros (zero range
/// or punched hole; BLKZEROOUT on a block device).
#[napi(ts_return_type = "Promise<TaskOutcome>")]
pub fn backing_write_zeroes(fd: i32, offset: f64, length: f64) -> AsyncTask<RangeTask> {
    range_task(RangeOp::WriteZeroes, fd, offset, length)
}

/// Bytes in the open file or block device `fd`.
#[napi]
pub fn backing_size(fd: i32) -> napi::Result<f64, String> {
    ublk_core::backing::size(fd).map(|b| b as f64).map_err(to_napi)
}
