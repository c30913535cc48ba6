//! The IO buffers of one queue: one region, one `stride`-sized slot per tag.
//! The kernel copies WRITE data into a tag's slot before the request reaches
//! us and copies READ data out of it on commit.
//!
//! Normally the region is our own page-aligned anonymous mapping, which
//! JavaScript sees as one external ArrayBuffer. Runtimes that refuse external
//! buffers (a V8 sandbox) get a *borrowed* region instead: memory of an
//! ArrayBuffer JavaScript allocated, whose owner keeps it alive.

use crate::error::{last_errno, UblkError};
use std::ptr::NonNull;

/// One queue's buffer region. Freed (munmap) when the last owner drops it:
/// the queue thread holds one reference until its ring is gone, the
/// JavaScript ArrayBuffer another until it is garbage collected.
pub struct IoBufferRegion {
    base: NonNull<u8>,
    len: usize,
    stride: usize,
    /// False for borrowed memory, which is not ours to unmap.
    mapped: bool,
}

// SAFETY: the region is plain memory owned by this value; all access goes
// through raw pointers whose users (the kernel for a tag in flight, or JS for
// a tag it was handed) are serialised by the ublk protocol: a tag's slot is
// touched by one side at a time.
unsafe impl Send for IoBufferRegion {}
unsafe impl Sync for IoBufferRegion {}

impl IoBufferRegion {
    /// Maps `depth * stride` bytes; `stride` must be a multiple of the page size.
    pub fn new(depth: usize, stride: usize) -> Result<IoBufferRegion, UblkError> {
        let len = depth * stride;
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(UblkError::Os { what: "mmap of the IO buffers", errno: last_errno() });
        }
        let base = NonNull::new(p as *mut u8).expect("mmap returned NULL without MAP_FAILED");
        Ok(IoBufferRegion { base, len, stride, mapped: true })
    }

    /// A region over memory someone else allocated (a JavaScript
    /// ArrayBuffer), `depth` slots of `stride` bytes from `base`.
    ///
    /// # Safety
    /// `base` must point at `depth * stride` writable bytes that stay
    /// allocated, and are not moved, until every queue thread and the kernel
    /// are done with the region: that is, until `run_device` has returned.
    pub unsafe fn borrowed(base: *mut u8, depth: usize, stride: usize) -> Result<IoBufferRegion, UblkError> {
        let base = NonNull::new(base).ok_or(UblkError::InvalidConfig("a borrowed IO buffer region has no memory".into()))?;
        Ok(IoBufferRegion { base, len: depth * stride, stride, mapped: false })
    }

    /// Whether the region is our own mapping (false: borrowed memory).
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }

    /// The start of the region (page aligned unless borrowed).
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Bytes in the whole region.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per tag.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The slot of `tag`, the address given to the kernel in FETCH and COMMIT_AND_FETCH.
    pub fn slot(&self, tag: u16) -> *mut u8 {
        debug_assert!((tag as usize + 1) * self.stride <= self.len);
        // SAFETY: tag < depth, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(tag as usize * self.stride) }
    }
}

impl Drop for IoBufferRegion {
    fn drop(&mut self) {
        if !self.mapped {
            return; // borrowed memory is freed by its owner
        }
        // SAFETY: base/len are exactly what mmap returned; nobody holds the
        // region any more (this is the last owner).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_page_aligned_and_writable() {
        let r = IoBufferRegion::new(4, 8192).unwrap();
        assert_eq!(r.base() as usize % 4096, 0);
        assert_eq!(r.slot(3) as usize - r.base() as usize, 3 * 8192);
        // SAFETY: slot 3 has 8192 bytes inside the mapping.
        unsafe { r.slot(3).write_bytes(0xab, 8192) };
        assert_eq!(r.len(), 4 * 8192);
    }
}
