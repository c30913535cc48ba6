//! Node-API bindings for the ublk core. Only glue lives here: argument
//! conversion and the mapping of `UblkError` to JavaScript errors; the
//! kernel-facing logic is in `ublk-core`.

mod backing;
mod buffers;
mod device;
mod error;
mod synthetic;

use napi_derive::napi;

/// The running kernel's ublk feature mask, read with GET_FEATURES on
/// `/dev/ublk-control` (Linux 6.5+). Throws with `code` `ENOENT` when the
/// control device is missing (`ublk_drv` not loaded).
#[napi]
pub fn kernel_features() -> napi::Result<i64, String> {
    let mask = ublk_core::ctrl::kernel_features().map_err(error::to_napi)?;
    Ok(mask as i64)
}

/// Names of the `UBLK_F_*` bits set in `mask` (unknown bits as `bit N`).
#[napi]
pub fn feature_names(mask: i64) -> Vec<String> {
    ublk_core::features::feature_names(mask as u64)
}
