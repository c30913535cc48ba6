//! The ublk control plane: commands sent to `/dev/ublk-control` as
//! `IORING_OP_URING_CMD` on a 128-byte-SQE io_uring.
//!
//! This module sends the commands that need no ring of their own (GET_FEATURES,
//! and GET_DEV_INFO, GET_PARAMS and DEL_DEV for `ublk list`/`ublk delete`)
//! itself, so their failures carry the exact errno; the commands that run a
//! device go through libublk's `UblkCtrl` (see `device.rs`).

use crate::error::{last_errno, UblkError};
use crate::kernel::KernelRelease;
use io_uring::{opcode, squeue, types, IoUring};
use libublk::sys;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

/// Which control command numbers the running kernel takes, decided once per
/// process: the ioctl-encoded `UBLK_U_CMD_*` (Linux 6.4+, `UBLK_F_CMD_IOCTL_ENCODE`)
/// or the legacy plain `UBLK_CMD_*` numbers, the only ones 6.1-6.3 know (and
/// which 6.4+ still take unless built without CONFIG_BLKDEV_UBLK_LEGACY_OPCODES).
/// libublk falls back the same way for the commands it sends.
static ENCODING: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const IOCTL_ENCODED: u8 = 1;
const LEGACY: u8 = 2;

/// The legacy number of an ioctl-encoded command, for the commands that have
/// one (GET_FEATURES, 0x13, and later ones exist only encoded).
fn legacy_number(cmd_op: u32) -> Option<u32> {
    let nr = cmd_op & 0xff;
    (nr <= sys::UBLK_CMD_GET_DEV_INFO2).then_some(nr)
}

/// Path of the ublk control device node.
pub const UBLK_CONTROL_PATH: &str = "/dev/ublk-control";

/// An open `/dev/ublk-control` with a private ring to send commands on.
pub struct ControlDevice {
    ring: IoUring<squeue::Entry128>,
    fd: OwnedFd,
}

impl ControlDevice {
    /// Opens `/dev/ublk-control`; a missing node or missing permission
    /// becomes `UblkError::ControlDevice` with advice.
    pub fn open() -> Result<ControlDevice, UblkError> {
        // SAFETY: the path is a NUL-terminated literal; open(2) has no other
        // preconditions and the returned fd is checked before use.
        let raw = unsafe { libc::open(c"/dev/ublk-control".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(UblkError::control_device(last_errno()));
        }
        // SAFETY: `raw` is a freshly opened fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ring = IoUring::<squeue::Entry128>::builder()
            .build(4)
            .map_err(|e| UblkError::Os { what: "io_uring_setup", errno: e.raw_os_error().unwrap_or(libc::EIO) })?;
        Ok(ControlDevice { ring, fd })
    }

    /// Sends one control command and waits for its completion.
    ///
    /// # Safety
    /// `cmd.addr`, when non-zero, must point to `cmd.len` bytes that stay
    /// valid (and writable, for commands the kernel answers through it)
    /// until this call returns, which is after the command's CQE is reaped.
    unsafe fn send(&mut self, name: &'static str, cmd_op: u32, cmd: &sys::ublksrv_ctrl_cmd) -> Result<i32, UblkError> {
        let legacy = legacy_number(cmd_op);
        match (ENCODING.load(Ordering::Relaxed), legacy) {
            // SAFETY: the caller's contract, passed on.
            (LEGACY, Some(nr)) => return unsafe { self.send_as(name, nr, cmd) },
            (IOCTL_ENCODED, _) | (_, None) => return unsafe { self.send_as(name, cmd_op, cmd) },
            _ => {}
        }
        // Undecided: kernels before 6.4 answer an encoded number they do not
        // know with EOPNOTSUPP (after looking the device up: ENODEV for a
        // missing one says nothing about the encoding).
        // SAFETY: the caller's contract, passed on (each call reaps its CQE).
        match unsafe { self.send_as(name, cmd_op, cmd) } {
            Err(UblkError::Command { errno: libc::EOPNOTSUPP, .. }) => {
                let nr = legacy.expect("the undecided path only runs for commands with a legacy number");
                // SAFETY: as above.
                let res = unsafe { self.send_as(name, nr, cmd) };
                if !matches!(res, Err(UblkError::Command { errno: libc::EOPNOTSUPP, .. })) {
                    ENCODING.store(LEGACY, Ordering::Relaxed);
                }
                res
            }
            res => {
                if res.is_ok() {
                    ENCODING.store(IOCTL_ENCODED, Ordering::Relaxed);
                }
                res
            }
        }
    }

    /// Sends one control command with exactly this command number.
    ///
    /// # Safety
    /// As for [`ControlDevice::send`].
    unsafe fn send_as(&mut self, name: &'static str, cmd_op: u32, cmd: &sys::ublksrv_ctrl_cmd) -> Result<i32, UblkError> {
        let mut payload = [0u8; 80];
        // SAFETY: ublksrv_ctrl_cmd is a 32-byte plain-old-data UAPI struct
        // (checked below), copied into the SQE's 80-byte command area.
        unsafe {
            std::ptr::copy_nonoverlapping(
                cmd as *const sys::ublksrv_ctrl_cmd as *const u8,
                payload.as_mut_ptr(),
                std::mem::size_of::<sys::ublksrv_ctrl_cmd>(),
            )
        };
        let sqe = opcode::UringCmd80::new(types::Fd(self.fd.as_raw_fd()), cmd_op).cmd(payload).build();
        // SAFETY: the SQE refers only to `self.fd` and, per this function's
        // contract, to memory valid until we reap the CQE below.
        unsafe { self.ring.submission().push(&sqe) }.map_err(|_| UblkError::Command { cmd: name, errno: libc::EBUSY })?;
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(UblkError::Command { cmd: name, errno: e.raw_os_error().unwrap_or(libc::EIO) }),
            }
        }
        let cqe = self.ring.completion().next().ok_or(UblkError::Command { cmd: name, errno: libc::EIO })?;
        match cqe.result() {
            res if res < 0 => Err(UblkError::Command { cmd: name, errno: -res }),
            res => Ok(res),
        }
    }

    /// Sends a command whose answer the kernel writes into a `T`, and
    /// returns that answer (`answer` is what the kernel reads first, if
    /// anything: GET_PARAMS reads its `len`). `T` must be a plain UAPI struct
    /// or integer, valid for any bytes the kernel writes.
    fn query<T: Copy>(&mut self, name: &'static str, cmd_op: u32, dev_id: u32, mut answer: T) -> Result<T, UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd {
            dev_id,
            queue_id: u16::MAX,
            len: std::mem::size_of::<T>() as u16,
            addr: &mut answer as *mut T as u64,
            ..Default::default()
        };
        // SAFETY: `addr` points at `answer`, size_of::<T>() writable bytes on
        // this frame, which outlives `send` (it reaps the CQE before returning).
        unsafe { self.send(name, cmd_op, &cmd)? };
        Ok(answer)
    }

    /// GET_FEATURES (Linux 6.5+): the `UBLK_F_*` mask this kernel supports.
    pub fn features(&mut self) -> Result<u64, UblkError> {
        self.query("GET_FEATURES", sys::UBLK_U_CMD_GET_FEATURES, u32::MAX, 0u64)
    }

    /// GET_DEV_INFO: what the kernel knows of device `id` (ENODEV: none).
    pub fn dev_info(&mut self, id: u32) -> Result<sys::ublksrv_ctrl_dev_info, UblkError> {
        self.query("GET_DEV_INFO", sys::UBLK_U_CMD_GET_DEV_INFO, id, sys::ublksrv_ctrl_dev_info::default())
    }

    /// GET_PARAMS: the parameters device `id` was set up with (the basic,
    /// discard, devt and zoned ones this crate knows).
    pub fn params(&mut self, id: u32) -> Result<sys::ublk_params, UblkError> {
        let asked = sys::ublk_params { len: std::mem::size_of::<sys::ublk_params>() as u32, ..Default::default() };
        self.query("GET_PARAMS", sys::UBLK_U_CMD_GET_PARAMS, id, asked)
    }

    /// END_USER_RECOVERY: device `id` is served again, by process `pid`
    /// (whose queues have all fetched). Sent here rather than through
    /// libublk's `start_dev`, which sends START_DEV unless the device is
    /// QUIESCED, and a FAIL_IO device (6.13+) stays FAIL_IO until this.
    pub fn end_user_recovery(&mut self, id: u32, pid: i32) -> Result<(), UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd { dev_id: id, queue_id: u16::MAX, data: [pid as u64], ..Default::default() };
        // SAFETY: no buffer travels with this command.
        unsafe { self.send("END_USER_RECOVERY", sys::UBLK_U_CMD_END_USER_RECOVERY, &cmd) }.map(|_| ())
    }

    /// UPDATE_SIZE (6.16+): device `id`'s capacity becomes `sectors`
    /// 512-byte sectors, and the block layer is told at once.
    pub fn update_size(&mut self, id: u32, sectors: u64) -> Result<(), UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd { dev_id: id, queue_id: u16::MAX, data: [sectors], ..Default::default() };
        // SAFETY: no buffer travels with this command.
        unsafe { self.send("UPDATE_SIZE", sys::UBLK_U_CMD_UPDATE_SIZE, &cmd) }.map(|_| ())
    }

    /// ADD_DEV: adds the device `info` describes (`dev_id` u32::MAX lets
    /// the kernel pick an id) and returns its id; the kernel writes back the
    /// flags it added. For the devices libublk's builder cannot add (see
    /// `device::add_device`).
    pub fn add(&mut self, info: &mut sys::ublksrv_ctrl_dev_info) -> Result<u32, UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd {
            dev_id: info.dev_id,
            queue_id: u16::MAX,
            addr: info as *mut sys::ublksrv_ctrl_dev_info as u64,
            len: std::mem::size_of::<sys::ublksrv_ctrl_dev_info>() as u16,
            ..Default::default()
        };
        // SAFETY: `addr` is `info`, a plain UAPI struct of `len` bytes that
        // the kernel reads and writes back; it outlives the call, which
        // reaps the command's CQE before returning.
        unsafe { self.send("ADD_DEV", sys::UBLK_U_CMD_ADD_DEV, &cmd) }?;
        Ok(info.dev_id)
    }

    /// TRY_STOP_DEV (7.0+): STOP_DEV unless `/dev/ublkbN` is open (EBUSY),
    /// decided under the disk's open mutex, after which it refuses opens.
    pub fn try_stop(&mut self, id: u32) -> Result<(), UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd { dev_id: id, queue_id: u16::MAX, ..Default::default() };
        // SAFETY: no buffer travels with this command.
        unsafe { self.send("TRY_STOP_DEV", sys::UBLK_U_CMD_TRY_STOP_DEV, &cmd) }.map(|_| ())
    }

    /// Deletes device `id`. DEL_DEV_ASYNC (Linux 6.9+) returns at once even
    /// while a process still holds `/dev/ublkcN` (the id is freed when it lets
    /// go); older kernels get DEL_DEV, which waits for that.
    pub fn delete(&mut self, id: u32) -> Result<(), UblkError> {
        let cmd = sys::ublksrv_ctrl_cmd { dev_id: id, queue_id: u16::MAX, ..Default::default() };
        // SAFETY: no buffer travels with these commands.
        match unsafe { self.send("DEL_DEV_ASYNC", sys::UBLK_U_CMD_DEL_DEV_ASYNC, &cmd) } {
            Err(UblkError::Command { errno: libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY, .. }) => {
                // SAFETY: as above.
                unsafe { self.send("DEL_DEV", sys::UBLK_U_CMD_DEL_DEV, &cmd) }.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

/// What `ublk list` shows of one device.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub id: u32,
    /// `UBLK_S_DEV_*`: 0 dead, 1 live, 2 quiesced, 3 fail-io.
    pub state: u16,
    pub nr_queues: u16,
    pub queue_depth: u16,
    pub size_bytes: u64,
    pub ublksrv_pid: i32,
    pub flags: u64,
    /// The geometry GET_PARAMS reports (what a recovering server must serve).
    pub logical_block_size: u32,
    pub physical_block_size: u32,
    pub max_io_buf_bytes: u32,
    /// `UBLK_ATTR_*` of the basic parameters.
    pub attrs: u32,
    /// Whether the device takes DISCARD / WRITE_ZEROES (discard parameters set).
    pub discard: bool,
}

/// What the kernel knows of device `id` (`UblkError::Command` with ENODEV
/// when there is none).
pub fn describe_device(id: u32) -> Result<DeviceSummary, UblkError> {
    summarize(&mut ControlDevice::open()?, id)
}

fn summarize(ctrl: &mut ControlDevice, id: u32) -> Result<DeviceSummary, UblkError> {
    let info = ctrl.dev_info(id)?;
    // A device that was added but never started has no parameters yet.
    let params = ctrl.params(id).unwrap_or_default();
    let shift = |s: u8| if s == 0 { 0 } else { 1u32 << s };
    Ok(DeviceSummary {
        id,
        state: info.state,
        nr_queues: info.nr_hw_queues,
        queue_depth: info.queue_depth,
        size_bytes: params.basic.dev_sectors << 9,
        ublksrv_pid: info.ublksrv_pid,
        flags: info.flags,
        logical_block_size: shift(params.basic.logical_bs_shift),
        physical_block_size: shift(params.basic.physical_bs_shift),
        max_io_buf_bytes: info.max_io_buf_bytes,
        attrs: params.basic.attrs,
        discard: params.types & sys::UBLK_PARAM_TYPE_DISCARD != 0,
    })
}

/// Every ublk device on the machine (by its `/dev/ublkcN` node), in id order.
pub fn list_devices() -> Result<Vec<DeviceSummary>, UblkError> {
    let mut ids: Vec<u32> = std::fs::read_dir("/dev")
        .map_err(|e| UblkError::Os { what: "reading /dev", errno: e.raw_os_error().unwrap_or(libc::EIO) })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ublkc")?.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut ctrl = ControlDevice::open()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match summarize(&mut ctrl, id) {
            Ok(summary) => out.push(summary),
            Err(UblkError::Command { errno: libc::ENODEV, .. }) => continue, // gone meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Changes live device `id`'s capacity to `bytes` (UPDATE_SIZE, Linux
/// 6.16+): a whole number of its logical blocks, more than zero. Refused
/// before any command is sent on kernels without it, and for a device that
/// is not live (6.16-6.19 dereference a missing disk).
pub fn resize_device(id: u32, bytes: u64) -> Result<(), UblkError> {
    require_features(sys::UBLK_F_UPDATE_SIZE as u64, "resize")?;
    let mut ctrl = ControlDevice::open()?;
    let device = summarize(&mut ctrl, id)?;
    if device.state != sys::UBLK_S_DEV_LIVE as u16 {
        return Err(UblkError::InvalidConfig(format!("resize: device {id} is not live (state {})", device.state)));
    }
    let block = u64::from(device.logical_block_size.max(512));
    if bytes == 0 || !bytes.is_multiple_of(block) {
        return Err(UblkError::InvalidConfig(format!(
            "resize: {bytes} bytes is not a positive whole number of device {id}'s {block}-byte logical blocks"
        )));
    }
    ctrl.update_size(id, bytes >> 9)
}

/// How [`stop_if_unused`] found the device unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusedBy {
    /// TRY_STOP_DEV (7.0+) found no opener and stopped the device itself.
    TryStopDev,
    /// No opener was seen (`openers`, before 7.0); the caller stops it. An
    /// open after the check is not refused.
    OpenCheck,
}

/// The first step of a stop that only happens while nothing uses device
/// `id`: TRY_STOP_DEV where the kernel has it (UBLK_F_SAFE_STOP_DEV, 7.0+),
/// which also stops it; elsewhere a check of who holds it open (see
/// `openers`). A device in use is `UblkError::InUse` (EBUSY) naming what
/// holds it, and is left as it was.
pub fn stop_if_unused(id: u32) -> Result<UnusedBy, UblkError> {
    let have = kernel_features()?;
    let in_use = |how: String| UblkError::InUse { id, how };
    if have.mask & sys::UBLK_F_SAFE_STOP_DEV as u64 != 0 {
        return match ControlDevice::open()?.try_stop(id) {
            Ok(()) => Ok(UnusedBy::TryStopDev),
            Err(UblkError::Command { errno: libc::EBUSY, .. }) => {
                let seen = crate::openers::openers(id).map(|o| crate::openers::describe(&o)).unwrap_or_default();
                let seen = if seen.is_empty() { String::new() } else { format!("; seen: {seen}") };
                Err(in_use(format!("TRY_STOP_DEV refused, the kernel counts openers{seen}")))
            }
            Err(e) => Err(e),
        };
    }
    let found = crate::openers::openers(id)?;
    if found.is_empty() {
        return Ok(UnusedBy::OpenCheck);
    }
    Err(in_use(format!(
        "{} (checked from /proc and sysfs: Linux {} has no TRY_STOP_DEV, which came in 7.0)",
        crate::openers::describe(&found),
        have.kernel.release
    )))
}

/// Deletes device `id` (see `ControlDevice::delete`).
pub fn delete_device(id: u32) -> Result<(), UblkError> {
    ControlDevice::open()?.delete(id)
}

/// Fails with `UblkError::Unsupported`, naming the first missing feature
/// and the kernel that has it, unless the running kernel has every
/// `UBLK_F_*` bit of `flags` (`what`: the option that needs them).
pub fn require_features(flags: u64, what: &str) -> Result<(), UblkError> {
    if flags == 0 {
        return Ok(());
    }
    let have = kernel_features()?;
    let missing = flags & !have.mask;
    if missing == 0 {
        return Ok(());
    }
    let (feature, since) = crate::features::UBLK_FEATURES
        .get(missing.trailing_zeros() as usize)
        .copied()
        .unwrap_or(("an unknown UBLK_F_* feature", (0, 0)));
    Err(UblkError::Unsupported { what: what.to_string(), feature, since, kernel: have.kernel.release })
}

/// Where a [`KernelFeatures`] mask comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSource {
    /// The kernel said, through GET_FEATURES (6.5+).
    GetFeatures,
    /// The kernel cannot say (before 6.5): the mask is what the mainline
    /// release of its version has (`features::features_of_release`).
    KernelVersion,
}

/// The running kernel's ublk features, and how they are known.
#[derive(Debug, Clone)]
pub struct KernelFeatures {
    pub mask: u64,
    pub source: FeatureSource,
    pub kernel: KernelRelease,
}

/// The running kernel's ublk features: GET_FEATURES where the kernel has it,
/// inferred from its version where it does not (6.1-6.4 answer the unknown
/// command with ENODEV, as they look the device id up first; older builds
/// with EINVAL or EOPNOTSUPP).
pub fn kernel_features() -> Result<KernelFeatures, UblkError> {
    let kernel = crate::kernel::running();
    match ControlDevice::open()?.features() {
        Ok(mask) => Ok(KernelFeatures { mask, source: FeatureSource::GetFeatures, kernel }),
        Err(UblkError::Command { errno: libc::ENODEV | libc::EINVAL | libc::EOPNOTSUPP, .. })
            if !kernel.at_least(crate::features::GET_FEATURES_SINCE) =>
        {
            let mask = crate::features::features_of_release((kernel.major, kernel.minor));
            Ok(KernelFeatures { mask, source: FeatureSource::KernelVersion, kernel })
        }
        Err(e) => Err(e),
    }
}

// The control command travels inside the SQE's 80-byte command area.
const _: () = assert!(std::mem::size_of::<sys::ublksrv_ctrl_cmd>() == 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_features_command_number_is_ioctl_encoded() {
        // _IOR('u', 0x13, struct ublksrv_ctrl_cmd): dir 2 (read), size 32, type 'u', nr 0x13
        assert_eq!(sys::UBLK_U_CMD_GET_FEATURES, (2 << 30) | (32 << 16) | ((b'u' as u32) << 8) | 0x13);
    }

    #[test]
    fn missing_control_device_is_a_clear_error() {
        if std::path::Path::new(UBLK_CONTROL_PATH).exists() {
            return; // this kernel has ublk; the error path cannot be provoked here
        }
        let err = kernel_features().unwrap_err();
        assert!(matches!(err, UblkError::ControlDevice { errno: libc::ENOENT, .. }), "{err:?}");
    }

    #[test]
    fn legacy_numbers_exist_up_to_get_dev_info2() {
        assert_eq!(legacy_number(sys::UBLK_U_CMD_GET_DEV_INFO), Some(sys::UBLK_CMD_GET_DEV_INFO));
        assert_eq!(legacy_number(sys::UBLK_U_CMD_DEL_DEV), Some(sys::UBLK_CMD_DEL_DEV));
        assert_eq!(legacy_number(sys::UBLK_U_CMD_GET_PARAMS), Some(sys::UBLK_CMD_GET_PARAMS));
        assert_eq!(legacy_number(sys::UBLK_U_CMD_GET_FEATURES), None);
        assert_eq!(legacy_number(sys::UBLK_U_CMD_DEL_DEV_ASYNC), None);
    }
}
