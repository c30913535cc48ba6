//! One error type for everything the ublk core reports.
//!
//! Every variant knows the positive errno it stands for (`errno()`), so the
//! binding can hand JavaScript an error with `errno` and `code` set, and a
//! message that says which ublk command failed and what to check.

use std::fmt;

/// What went wrong, with enough context for a user to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum UblkError {
    /// `/dev/ublk-control` could not be opened; `advice` says why and what
    /// to do (see [`UblkError::control_device`]).
    ControlDevice { errno: i32, advice: String },
    /// A ublk control command (ADD_DEV, START_DEV, GET_FEATURES, ...) failed.
    Command { cmd: &'static str, errno: i32 },
    /// A system call outside the ublk commands failed.
    Os { what: &'static str, errno: i32 },
    /// The device configuration cannot work; nothing was sent to the kernel.
    InvalidConfig(String),
    /// A queue thread failed while setting up or serving its queue.
    Queue { qid: u16, what: &'static str, errno: i32 },
    /// The running kernel lacks a feature `what` needs; nothing was sent.
    Unsupported { what: String, feature: &'static str, since: (u32, u32), kernel: String },
    /// Device `id` cannot be re-attached to (missing, live, not recoverable).
    NotRecoverable { id: u32, errno: i32, why: String },
    /// Device `id` is open, so a stop that waits for it to be unused was
    /// refused (EBUSY); `how` says what held it and how that was known.
    InUse { id: u32, how: String },
}

impl UblkError {
    /// The positive errno this error stands for.
    pub fn errno(&self) -> i32 {
        match *self {
            UblkError::ControlDevice { errno, .. }
            | UblkError::Command { errno, .. }
            | UblkError::Os { errno, .. }
            | UblkError::Queue { errno, .. } => errno,
            UblkError::InvalidConfig(_) => libc::EINVAL,
            UblkError::Unsupported { .. } => libc::EOPNOTSUPP,
            UblkError::NotRecoverable { errno, .. } => errno,
            UblkError::InUse { .. } => libc::EBUSY,
        }
    }

    /// The error for a failed open of `/dev/ublk-control`: a missing node
    /// is explained from the running kernel (module not loaded, or a kernel
    /// built without ublk, and what to do on this distribution).
    pub fn control_device(errno: i32) -> UblkError {
        let advice = match errno {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => crate::kernel::UblkSupport::probe().advice(),
            libc::EACCES | libc::EPERM => "permission denied: ublk devices need root".to_string(),
            _ => "see dmesg".to_string(),
        };
        UblkError::ControlDevice { errno, advice }
    }

    /// The errno's symbolic name (`ENOENT`), as Node reports `err.code`.
    pub fn code(&self) -> &'static str {
        errno_name(self.errno())
    }
}

pub(crate) fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Advice for a failed control command, by errno.
fn command_hint(cmd: &str, errno: i32) -> &'static str {
    match errno {
        libc::EPERM | libc::EACCES => {
            "ublk control commands need root (CAP_SYS_ADMIN); if you are root, the number of \
             ublk devices may have reached the ublk_drv parameter ublks_max \
             (see /sys/module/ublk_drv/parameters/ublks_max and `ublk list`)"
        }
        libc::EOPNOTSUPP => "the running kernel's ublk_drv does not support this command",
        libc::EINVAL if cmd == "GET_FEATURES" => "GET_FEATURES needs Linux 6.5 or newer",
        libc::EINVAL => "the kernel rejected the device parameters",
        libc::EEXIST => "a ublk device with this id already exists",
        libc::ENODEV => "no such ublk device",
        libc::EBUSY => "the device is busy (still open or mounted?)",
        _ => "see dmesg for the kernel's view",
    }
}

impl fmt::Display for UblkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UblkError::ControlDevice { errno, advice } => {
                write!(f, "cannot open /dev/ublk-control ({}): {}", errno_name(*errno), advice)
            }
            UblkError::Command { cmd, errno } => write!(
                f,
                "ublk command {} failed with {} ({}): {}",
                cmd,
                errno_name(*errno),
                std::io::Error::from_raw_os_error(*errno),
                command_hint(cmd, *errno)
            ),
            UblkError::InvalidConfig(why) => write!(f, "invalid device configuration: {why}"),
            UblkError::Queue { qid, what, errno } => write!(
                f,
                "queue {qid}: {what} failed with {} ({})",
                errno_name(*errno),
                std::io::Error::from_raw_os_error(*errno)
            ),
            UblkError::Unsupported { what, feature, since: (major, minor), kernel } => {
                write!(f, "{what} needs {feature} (Linux {major}.{minor} or newer); the running kernel is {kernel}")
            }
            UblkError::NotRecoverable { id, why, .. } => write!(f, "cannot recover ublk device {id}: {why}"),
            UblkError::InUse { id, how } => write!(f, "/dev/ublkb{id} is in use, so it was not stopped: {how}"),
            UblkError::Os { what, errno } => {
                write!(f, "{} failed with {} ({})", what, errno_name(*errno), std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for UblkError {}

/// The symbolic name of the errno values a block device server meets.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECANCELED => "ECANCELED",
        libc::EMFILE => "EMFILE",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ENOTCONN => "ENOTCONN",
        _ => "UNKNOWN",
    }
}

/// The errno inside one of libublk's errors.
pub fn libublk_errno(err: &libublk::UblkError) -> i32 {
    match err {
        libublk::UblkError::UringIOError(e) | libublk::UblkError::OtherError(e) => e.abs(),
        libublk::UblkError::IOError(e) => e.raw_os_error().unwrap_or(libc::EIO),
        libublk::UblkError::InvalidVal => libc::EINVAL,
        libublk::UblkError::UringTimeout => libc::ETIMEDOUT,
        libublk::UblkError::QueueIsDown => libc::ENODEV,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_device_missing_explains_the_running_kernel() {
        let e = UblkError::control_device(libc::ENOENT);
        assert_eq!(e.code(), "ENOENT");
        assert_eq!(e.errno(), libc::ENOENT);
        let release = crate::kernel::running().release;
        assert!(e.to_string().starts_with("cannot open /dev/ublk-control (ENOENT): "), "{e}");
        assert!(e.to_string().contains("ublk_drv") || e.to_string().contains(&release), "{e}");
        let denied = UblkError::control_device(libc::EACCES);
        assert!(denied.to_string().contains("need root"), "{denied}");
    }

    #[test]
    fn command_error_names_the_command_and_the_checks() {
        let e = UblkError::Command { cmd: "ADD_DEV", errno: libc::EACCES };
        let msg = e.to_string();
        assert!(msg.contains("ADD_DEV") && msg.contains("root") && msg.contains("ublks_max"), "{}", msg);
    }
}
