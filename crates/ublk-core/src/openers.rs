//! Who holds a ublk block device open, as far as this process can see: the
//! check behind `close({ ifUnused })` on kernels without TRY_STOP_DEV
//! (before 7.0), and what an EBUSY from TRY_STOP_DEV names.
//!
//! The kernel keeps the real count (`disk_openers`) to itself. What user
//! space can read instead, and what this checks:
//! - a claim: an exclusive open (`O_EXCL`) fails with EBUSY while the disk
//!   or one of its partitions is mounted, used as swap, or held by another
//!   driver (device mapper, md, a loop device's backing...);
//! - stacked holders under `/sys/block/ublkbN[/ublkbNpM]/holders`;
//! - processes: every `/proc/<pid>/fd/*` that is the disk or one of its
//!   partitions (same `st_rdev`).
//!
//! Not seen: processes in another PID namespace, and a mapping of the device
//! whose fd was closed. The answer is a snapshot: an open that comes after
//! it is not refused (TRY_STOP_DEV on 7.0+ has no such window).

use crate::error::UblkError;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Something that has device `ublkbN` (or a partition of it) open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opener {
    /// An exclusive open failed with EBUSY: mounted, swap, or claimed by a driver.
    Claimed,
    /// A block device stacked on it (`holders` in sysfs), e.g. `dm-0`.
    Holder(String),
    /// A process with an open fd on it.
    Process { pid: u32, comm: String },
}

impl std::fmt::Display for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opener::Claimed => write!(f, "claimed (mounted, swap, or held by another driver)"),
            Opener::Holder(name) => write!(f, "held by {name}"),
            Opener::Process { pid, comm } => write!(f, "open in pid {pid} ({comm})"),
        }
    }
}

/// The sysfs directories of the disk `ublkb<id>` and of its partitions
/// (`/sys/block/ublkbN` and `/sys/block/ublkbN/ublkbNpM`).
fn sysfs_dirs(id: u32) -> Vec<PathBuf> {
    let disk = format!("ublkb{id}");
    let base = Path::new("/sys/block").join(&disk);
    let mut dirs = vec![base.clone()];
    if let Ok(entries) = std::fs::read_dir(&base) {
        dirs.extend(
            entries.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(&disk)).map(|e| e.path()),
        );
    }
    dirs
}

/// The `dev_t`s of the disk `ublkb<id>` and its partitions, from sysfs.
fn device_numbers(id: u32) -> Result<Vec<u64>, UblkError> {
    let mut numbers = Vec::new();
    for dir in sysfs_dirs(id) {
        let Ok(text) = std::fs::read_to_string(dir.join("dev")) else { continue };
        if let Some((major, minor)) = text.trim().split_once(':') {
            if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                numbers.push(libc::makedev(major, minor));
            }
        }
    }
    if numbers.is_empty() {
        return Err(UblkError::Os { what: "reading /sys/block/ublkbN/dev (is the device started?)", errno: libc::ENODEV });
    }
    Ok(numbers)
}

/// Stacked block devices holding the disk or its partitions.
fn holders(id: u32) -> Vec<Opener> {
    sysfs_dirs(id)
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join("holders")).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| Opener::Holder(e.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// Whether an exclusive open of `/dev/ublkb<id>` fails with EBUSY.
fn claimed(id: u32) -> bool {
    let opened =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_EXCL | libc::O_NONBLOCK).open(format!("/dev/ublkb{id}"));
    matches!(opened, Err(e) if e.raw_os_error() == Some(libc::EBUSY))
}

/// Processes with an fd whose target is one of `numbers`. Only fds that
/// point into `/dev` are stat'ed, so a hung network file system elsewhere
/// cannot stall the scan.
fn processes(numbers: &[u64]) -> Vec<Opener> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in procs.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds.filter_map(|e| e.ok()).any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                target.starts_with("/dev/")
                    && std::fs::metadata(&target).is_ok_and(|m| m.file_type().is_block_device() && numbers.contains(&m.rdev()))
            })
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
            found.push(Opener::Process { pid, comm });
        }
    }
    found
}

/// Everything seen holding `/dev/ublkb<id>` or its partitions open (empty:
/// unused, as far as this process can tell; see the module notes).
pub fn openers(id: u32) -> Result<Vec<Opener>, UblkError> {
    let numbers = device_numbers(id)?;
    let mut found = Vec::new();
    if claimed(id) {
        found.push(Opener::Claimed);
    }
    found.extend(holders(id));
    found.extend(processes(&numbers));
    Ok(found)
}

/// "open in pid 12 (dd), claimed (...)": for error messages.
pub fn describe(openers: &[Opener]) -> String {
    openers.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_an_error_not_unused() {
        // No ublk device has this id (ids are below 2^20).
        assert!(matches!(openers(u32::MAX), Err(UblkError::Os { errno: libc::ENODEV, .. })));
    }

    #[test]
    fn openers_read_as_a_list() {
        let list = [Opener::Process { pid: 7, comm: "dd".into() }, Opener::Claimed, Opener::Holder("dm-0".into())];
        assert_eq!(describe(&list), "open in pid 7 (dd), claimed (mounted, swap, or held by another driver), held by dm-0");
    }

    #[test]
    fn a_process_scan_finds_an_open_block_device_of_this_machine() {
        // A block device this (root) process can open stands in for a ublk disk.
        let held = ["/dev/loop0", "/dev/vda", "/dev/sda", "/dev/nvme0n1"]
            .iter()
            .find_map(|p| std::fs::File::open(p).ok())
            .expect("this test needs a block device to open (/dev/loop0, /dev/vda, ...)");
        let rdev = held.metadata().unwrap().rdev();
        let me = std::process::id();
        assert!(processes(&[rdev]).iter().any(|o| matches!(o, Opener::Process { pid, .. } if *pid == me)));
        drop(held);
    }
}
