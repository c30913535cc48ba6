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

unsafe extern "C" fn free_probe(_env: sys::napi_env, data: *mut std::ffi::c_void, _hint: *mut std::ffi::c_void) {
    // SAFETY: `data` is the Box<u64> leaked in `probe_external_buffers`.
    drop(unsafe { Box::from_raw(data as *mut u64) });
}

fn probe_external_buffers(env: &Env) -> bool {
    let data = Box::into_raw(Box::new(0u64));
    let mut value = std::ptr::null_mut();
    // SAFETY: `data` points at 8 live bytes owned by the finalizer from now on.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(env.raw(), data.cast(), 8, Some(free_probe), std::ptr::null_mut(), &mut value)
    };
    if status != sys::Status::napi_ok {
        // SAFETY: V8 did not take `data`.
        drop(unsafe { Box::from_raw(data) });
    }
    status != sys::Status::napi_no_external_buffers_allowed
}

/// Whether this runtime accepts external ArrayBuffers (probed once).
pub fn external_buffers_allowed(env: &Env) -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| probe_external_buffers(env))
}

/// The fallback for runtimes without external buffers: one ArrayBuffer per
/// queue, allocated by V8 and handed to the kernel as the queue's buffers
/// (still zero copy). Strong references keep them alive; whoever holds this
/// must not `release` it before the device's controller thread has ended.
pub struct JsRegions {
    refs: Vec<sys::napi_ref>,
}

impl JsRegions {
    /// Allocates `queues` ArrayBuffers of `depth * stride` bytes, and the
    /// borrowed regions over them.
    pub fn allocate(env: &Env, queues: usize, depth: usize, stride: usize) -> Result<(JsRegions, Vec<Arc<IoBufferRegion>>)> {
        let mut this = JsRegions { refs: Vec::with_capacity(queues) };
        let mut regions = Vec::with_capacity(queues);
        for _ in 0..queues {
            match this.add(env, depth, stride) {
                Ok(region) => regions.push(region),
                Err(e) => {
                    this.release(env);
                    return Err(e);
                }
            }
        }
        Ok((this, regions))
    }

    /// One more ArrayBuffer of `depth * stride` bytes, kept alive with the
    /// others; returns the borrowed region over it (its ArrayBuffer is the
    /// last reference, see `last`).
    pub fn add(&mut self, env: &Env, depth: usize, stride: usize) -> Result<Arc<IoBufferRegion>> {
        let mut data = std::ptr::null_mut();
        let mut value = std::ptr::null_mut();
        // SAFETY: plain N-API calls on the JS thread; results checked.
        let status = unsafe { sys::napi_create_arraybuffer(env.raw(), depth * stride, &mut data, &mut value) };
        if status != sys::Status::napi_ok {
            return Err(Error::new(
                Status::GenericFailure,
                format!("cannot allocate {} bytes of IO buffers ({status})", depth * stride),
            ));
        }
        let mut r = std::ptr::null_mut();
        // SAFETY: as above; the reference (count 1) keeps `value` alive.
        let status = unsafe { sys::napi_create_reference(env.raw(), value, 1, &mut r) };
        if status != sys::Status::napi_ok {
            return Err(Error::new(Status::GenericFailure, format!("napi_create_reference failed ({status})")));
        }
        self.refs.push(r);
        // SAFETY: V8 never moves an ArrayBuffer's backing store, and the
        // strong reference above keeps it allocated until `release`, which
        // the owner calls only after the device's threads have ended.
        let region = unsafe { IoBufferRegion::borrowed(data.cast(), depth, stride) }
            .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
        Ok(Arc::new(region))
    }

    /// The ArrayBuffer `add` made last.
    pub fn last<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        self.get(env, self.refs.len().wrapping_sub(1))
    }

    /// Queue `queue`'s ArrayBuffer.
    pub fn get<'env>(&self, env: &'env Env, queue: usize) -> Result<Unknown<'env>> {
        let r = self.refs.get(queue).ok_or_else(|| Error::new(Status::InvalidArg, format!("no queue {queue}")))?;
        let mut value = std::ptr::null_mut();
        // SAFETY: `r` is a live strong reference of this env.
        let status = unsafe { sys::napi_get_reference_value(env.raw(), *r, &mut value) };
        if status != sys::Status::napi_ok {
            return Err(Error::new(Status::GenericFailure, format!("napi_get_reference_value failed ({status})")));
        }
        // SAFETY: `value` is a live napi_value of the current scope.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
    }

    /// Drops the references, letting V8 free the buffers.
    pub fn release(&mut self, env: &Env) {
        for r in self.refs.drain(..) {
            // SAFETY: each reference is deleted exactly once.
            unsafe { sys::napi_delete_reference(env.raw(), r) };
        }
    }
}
