//! Range operations on a backing file or block device, for the file backend:
//! what Node's `fs` cannot do (fallocate, and the block-device ioctls).
//!
//! On a regular file, discard punches a hole and write-zeroes zeroes the
//! range in place (both keep the file size). On a block device they become
//! BLKDISCARD and BLKZEROOUT. Errors keep their errno (EOPNOTSUPP when the
//! file system cannot punch holes), so the request fails with it.

use crate::error::{last_errno, UblkError};
use std::os::fd::RawFd;

// From <linux/fs.h>: _IO(0x12, 119), _IO(0x12, 127), _IOR(0x12, 114, size_t).
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

fn is_block_device(fd: RawFd) -> Result<bool, UblkError> {
    // SAFETY: fstat fills a zeroed stat owned by this frame; the result is checked.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(UblkError::Os { what: "fstat of the backing file", errno: last_errno() });
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFBLK)
}

fn range_ioctl(fd: RawFd, request: libc::c_ulong, offset: u64, len: u64, what: &'static str) -> Result<(), UblkError> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: both ioctls read a `u64[2]` {start, length} that lives on this frame.
    if unsafe { libc::ioctl(fd, request, range.as_ptr()) } < 0 {
        return Err(UblkError::Os { what, errno: last_errno() });
    }
    Ok(())
}

fn fallocate(fd: RawFd, mode: libc::c_int, offset: u64, len: u64, what: &'static str) -> Result<(), UblkError> {
    // SAFETY: fallocate on a caller-owned fd with plain integer arguments.
    if unsafe { libc::fallocate(fd, mode | libc::FALLOC_FL_KEEP_SIZE, offset as libc::off_t, len as libc::off_t) } < 0 {
        return Err(UblkError::Os { what, errno: last_errno() });
    }
    Ok(())
}

/// Releases the range: a punched hole, or BLKDISCARD.
pub fn discard(fd: RawFd, offset: u64, len: u64) -> Result<(), UblkError> {
    if is_block_device(fd)? {
        range_ioctl(fd, BLKDISCARD, offset, len, "BLKDISCARD on the backing device")
    } else {
        fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE, offset, len, "punching a hole in the backing file")
    }
}

/// Makes the range read back as zeros: FALLOC_FL_ZERO_RANGE (or a punched
/// hole where the file system lacks it), or BLKZEROOUT.
pub fn write_zeroes(fd: RawFd, offset: u64, len: u64) -> Result<(), UblkError> {
    if is_block_device(fd)? {
        return range_ioctl(fd, BLKZEROOUT, offset, len, "BLKZEROOUT on the backing device");
    }
    match fallocate(fd, libc::FALLOC_FL_ZERO_RANGE, offset, len, "zeroing a range of the backing file") {
        Err(UblkError::Os { errno: libc::EOPNOTSUPP, .. }) => {
            fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE, offset, len, "punching a hole in the backing file")
        }
        other => other,
    }
}

/// Bytes in the backing file or block device.
pub fn size(fd: RawFd) -> Result<u64, UblkError> {
    if is_block_device(fd)? {
        let mut bytes: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 to the pointer given.
        if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut bytes) } < 0 {
            return Err(UblkError::Os { what: "BLKGETSIZE64 on the backing device", errno: last_errno() });
        }
        return Ok(bytes);
    }
    // SAFETY: as in `is_block_device`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(UblkError::Os { what: "fstat of the backing file", errno: last_errno() });
    }
    Ok(st.st_size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    fn temp_file(bytes: usize) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("ublk-backing-{}-{bytes}", std::process::id()));
        let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(&vec![0xab; bytes]).unwrap();
        f
    }

    fn read_at(f: &mut std::fs::File, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn zeroed_and_discarded_ranges_read_as_zeros_and_keep_the_size() {
        let mut f = temp_file(1 << 20);
        assert_eq!(size(f.as_raw_fd()).unwrap(), 1 << 20);
        write_zeroes(f.as_raw_fd(), 4096, 8192).unwrap();
        assert!(read_at(&mut f, 4096, 8192).iter().all(|&b| b == 0));
        assert_eq!(read_at(&mut f, 0, 4096), vec![0xab; 4096], "outside the range is untouched");
        match discard(f.as_raw_fd(), 65536, 65536) {
            Ok(()) => assert!(read_at(&mut f, 65536, 65536).iter().all(|&b| b == 0)),
            Err(e) => assert_eq!(e.errno(), libc::EOPNOTSUPP, "only a file system without holes may refuse"),
        }
        assert_eq!(size(f.as_raw_fd()).unwrap(), 1 << 20);
    }

    #[test]
    fn a_bad_fd_names_the_operation() {
        let err = discard(-1, 0, 4096).unwrap_err();
        assert_eq!(err.errno(), libc::EBADF);
        assert!(err.to_string().contains("fstat"), "{err}");
    }
}
