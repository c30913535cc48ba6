//! Queue buffer regions as JavaScript ArrayBuffers, without copying.

use napi::bindgen_prelude::*;
use napi::sys;
use std::sync::Arc;
use ublk_core::buffer::IoBufferRegion;

unsafe extern "C" fn release_region(_env: sys::napi_env, _data: *mut std::ffi::c_void, hint: *mut std::ffi::c_void) {
    // SAFETY: `hint` is the Box<Arc<IoBufferRegion>> leaked in
    // `external_region`; V8 calls this finalizer exactly once.
    drop(unsafe { Box::from_raw(hint as *mut Arc<IoBufferRegion>) });
}

/// Wraps the whole region in one external ArrayBuffer that keeps the region
/// alive until it is garbage collected. Fails loudly (code
/// `ERR_UBLK_NO_EXTERNAL_BUFFERS`) on runtimes that refuse external buffers:
/// a copy would silently lose what READ handlers write.
pub fn external_region(env: &Env, region: Arc<IoBufferRegion>) -> Result<Unknown<'_>> {
    let base = region.base();
    let len = region.len();
    let hint = Box::into_raw(Box::new(region));
    let mut value = std::ptr::null_mut();
    // SAFETY: `base` points at `len` bytes that the leaked Arc (`hint`) keeps
    // mapped until `release_region` runs; the region is wrapped only once.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(env.raw(), base.cast(), len, Some(release_region), hint.cast(), &mut value)
    };
    if status != sys::Status::napi_ok {
        // SAFETY: on failure V8 did not take the hint; reclaim it.
        drop(unsafe { Box::from_raw(hint) });
        if status == sys::Status::napi_no_external_buffers_allowed {
            return Err(Error::new(
                Status::GenericFailure,
                "ERR_UBLK_NO_EXTERNAL_BUFFERS: this runtime refuses external ArrayBuffers (V8 sandbox)".to_string(),
            ));
        }
        return Err(Error::new(Status::GenericFailure, format!("napi_create_external_arraybuffer failed ({status})")));
    }
    // SAFETY: `value` is a live napi_value of this env's current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}
