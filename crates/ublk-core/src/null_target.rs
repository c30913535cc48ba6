//! A null target served inside the queue thread, without the JS hop.
//!
//! It does what `NullBackend` does in TypeScript (READ fills the tag's slot
//! with zeros, every other op succeeds) so that the two differ only by the
//! trip through JavaScript. It is a diagnostic: it measures what the JS hop
//! costs, and is not meant to serve real data.

use libublk::sys;

/// The result for one request: the bytes transferred, or 0 for ops without data.
///
/// # Safety
/// `slot` must point at at least `nr_sectors * 512` writable bytes (the tag's
/// slot, which the kernel sized to the device's largest request).
pub unsafe fn serve(op_flags: u32, nr_sectors: u32, slot: *mut u8) -> i32 {
    let bytes = nr_sectors as usize * 512;
    match op_flags & 0xff {
        sys::UBLK_IO_OP_READ => {
            // SAFETY: the caller guarantees `bytes` writable bytes at `slot`.
            unsafe { slot.write_bytes(0, bytes) };
            bytes as i32
        }
        sys::UBLK_IO_OP_WRITE => bytes as i32,
        sys::UBLK_IO_OP_FLUSH | sys::UBLK_IO_OP_DISCARD | sys::UBLK_IO_OP_WRITE_ZEROES => 0,
        _ => -libc::EOPNOTSUPP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zero_fill_and_writes_report_their_bytes() {
        let mut slot = vec![0xffu8; 8192];
        // SAFETY: 8192 bytes available, 4096 requested.
        assert_eq!(unsafe { serve(sys::UBLK_IO_OP_READ, 8, slot.as_mut_ptr()) }, 4096);
        assert!(slot[..4096].iter().all(|&b| b == 0));
        assert_eq!(slot[4096], 0xff, "nothing past the request is touched");
        // SAFETY: writes do not touch the slot.
        assert_eq!(unsafe { serve(sys::UBLK_IO_OP_WRITE, 16, slot.as_mut_ptr()) }, 8192);
        assert_eq!(unsafe { serve(sys::UBLK_IO_OP_FLUSH, 0, slot.as_mut_ptr()) }, 0);
        assert_eq!(unsafe { serve(99, 0, slot.as_mut_ptr()) }, -libc::EOPNOTSUPP);
    }
}
