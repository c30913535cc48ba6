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
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

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
        let len = region_len(depth, stride)?;
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
        let len = region_len(depth, stride)?;
        let base = NonNull::new(base).ok_or(UblkError::InvalidConfig("a borrowed IO buffer region has no memory".into()))?;
        Ok(IoBufferRegion { base, len, stride, mapped: false })
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

    /// Slots in the region.
    pub fn depth(&self) -> usize {
        self.len / self.stride
    }

    /// The slot of `tag`, the address given to the kernel in FETCH and
    /// COMMIT_AND_FETCH; None for a tag beyond the region (checked in every
    /// build: no safe call computes an address outside the region).
    pub fn slot(&self, tag: u16) -> Option<*mut u8> {
        if tag as usize >= self.depth() {
            return None;
        }
        // SAFETY: tag < depth, so `tag * stride + stride <= len`: the offset
        // stays inside the region.
        Some(unsafe { self.base.as_ptr().add(tag as usize * self.stride) })
    }

    /// The first `bytes` of `tag`'s slot, if the slot is that large.
    pub fn slot_bytes(&self, tag: u16, bytes: usize) -> Option<*mut u8> {
        if bytes > self.stride {
            return None;
        }
        self.slot(tag)
    }
}

/// Where each tag's next request goes: its slot in the queue's region,
/// unless that slot was retired and the tag given a slot of its own.
///
/// A slot is retired when its request is answered while a handler may still
/// touch it (the handler timed out): the kernel would reuse the slot for the
/// tag's next request, and a late READ handler writing it would corrupt that
/// request. The replacement is registered with the kernel at the commit that
/// answers the request; the old slot stays mapped as long as the late
/// handler's view of it.
pub struct TagBuffers {
    region: Arc<IoBufferRegion>,
    /// Per tag: the replacement slot's address, or null for the region's slot.
    replaced: Box<[AtomicPtr<u8>]>,
    /// Per tag: the replacement in use, kept mapped while the kernel may use it.
    owners: Mutex<Vec<Option<Arc<IoBufferRegion>>>>,
}

impl TagBuffers {
    pub fn new(region: Arc<IoBufferRegion>) -> TagBuffers {
        let depth = region.depth();
        TagBuffers {
            region,
            replaced: (0..depth).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            owners: Mutex::new(vec![None; depth]),
        }
    }

    /// The region of every tag's original slot.
    pub fn region(&self) -> &Arc<IoBufferRegion> {
        &self.region
    }

    /// The address `tag`'s next FETCH or COMMIT_AND_FETCH hands the kernel.
    pub fn address(&self, tag: u16) -> Option<*mut u8> {
        let replaced = self.replaced.get(tag as usize)?.load(Ordering::Acquire);
        if replaced.is_null() {
            self.region.slot(tag)
        } else {
            Some(replaced)
        }
    }

    /// The tags whose slot was replaced, with their current slot.
    pub fn replacements(&self) -> Vec<(u16, Arc<IoBufferRegion>)> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.iter().enumerate().filter_map(|(tag, slot)| Some((tag as u16, slot.clone()?))).collect()
    }

    /// Gives `tag` a freshly mapped slot from its next request on, and
    /// returns it (to show to JavaScript).
    pub fn replace(&self, tag: u16) -> Result<Arc<IoBufferRegion>, UblkError> {
        let slot = Arc::new(IoBufferRegion::new(1, self.region.stride())?);
        self.replace_with(tag, slot.clone())?;
        Ok(slot)
    }

    /// Like `replace`, with a slot someone else allocated (it must hold at
    /// least `stride` bytes).
    pub fn replace_with(&self, tag: u16, slot: Arc<IoBufferRegion>) -> Result<(), UblkError> {
        let entry = self.replaced.get(tag as usize).ok_or(UblkError::InvalidConfig(format!("no tag {tag} in this queue")))?;
        if slot.stride() < self.region.stride() {
            return Err(UblkError::InvalidConfig(format!(
                "a {}-byte slot for {}-byte requests",
                slot.stride(),
                self.region.stride()
            )));
        }
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        entry.store(slot.base(), Ordering::Release);
        owners[tag as usize] = Some(slot);
        Ok(())
    }
}

fn region_len(depth: usize, stride: usize) -> Result<usize, UblkError> {
    match depth.checked_mul(stride) {
        Some(len) if depth > 0 && stride > 0 => Ok(len),
        _ => Err(UblkError::InvalidConfig(format!("an IO buffer region of {depth} slots of {stride} bytes"))),
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
        let slot = r.slot(3).unwrap();
        assert_eq!(slot as usize - r.base() as usize, 3 * 8192);
        // SAFETY: slot 3 has 8192 bytes inside the mapping.
        unsafe { slot.write_bytes(0xab, 8192) };
        assert_eq!(r.len(), 4 * 8192);
    }

    #[test]
    fn a_replaced_slot_is_where_the_tag_goes_next() {
        let buffers = TagBuffers::new(Arc::new(IoBufferRegion::new(4, 4096).unwrap()));
        assert_eq!(buffers.address(2), buffers.region().slot(2));
        let fresh = buffers.replace(2).unwrap();
        assert_eq!(buffers.address(2), Some(fresh.base()));
        assert_eq!(buffers.address(1), buffers.region().slot(1), "other tags keep their slots");
        assert!(buffers.address(4).is_none());
        assert!(buffers.replace(4).is_err());
        let small = Arc::new(IoBufferRegion::new(1, 4096).unwrap());
        let big = TagBuffers::new(Arc::new(IoBufferRegion::new(2, 8192).unwrap()));
        assert!(big.replace_with(0, small).is_err(), "a replacement must hold a whole request");
    }

    #[test]
    fn no_address_outside_the_region() {
        let r = IoBufferRegion::new(4, 4096).unwrap();
        assert!(r.slot(4).is_none());
        assert!(r.slot(u16::MAX).is_none());
        assert!(r.slot_bytes(0, 4097).is_none());
        assert!(r.slot_bytes(3, 4096).is_some());
    }
}
