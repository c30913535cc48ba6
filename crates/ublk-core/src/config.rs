//! What a device is made of: the `DeviceConfig` a server asks for, turned
//! into the kernel's `ublk_params` once ADD_DEV has answered.
//!
//! The TypeScript layer validates options for the user (with option names in
//! its messages); `DeviceConfig::validate` repeats the checks the kernel
//! would otherwise fail obscurely, so the core is safe on its own.

use crate::error::UblkError;
use libublk::sys;

/// The kernel's largest queue depth (`UBLK_MAX_QUEUE_DEPTH`).
pub const UBLK_MAX_QUEUE_DEPTH: u32 = 4096;
/// The largest per-request buffer libublk accepts (32 MiB).
pub const MAX_IO_BUF_BYTES: u32 = 32 << 20;
/// The most hardware queues we serve a device with: one OS thread each (the
/// kernel caps a device at the number of CPUs anyway).
pub const MAX_QUEUES: u16 = 64;

/// A device as the server asks for it. Sizes are in bytes.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Device id, or -1 (the default) to let the kernel pick one.
    pub id: i32,
    /// Capacity in bytes; a multiple of `logical_block_size`.
    pub size: u64,
    /// Logical block size in bytes, a power of two from 512 to 4096. Default 512.
    pub logical_block_size: u32,
    /// Physical block size in bytes, a power of two >= logical. Default 4096.
    pub physical_block_size: u32,
    /// Hardware queues, one server thread each. Default 1.
    pub nr_queues: u16,
    /// Requests in flight per queue (tags), 1 to 4096. Default 128.
    pub queue_depth: u16,
    /// Largest request in bytes, a multiple of 4096. Default 512 KiB.
    pub max_io_bytes: u32,
    /// Writes fail in the block layer. Default false.
    pub read_only: bool,
    /// Reported as a rotational disk. Default false.
    pub rotational: bool,
    /// Accept DISCARD and WRITE_ZEROES. Default false.
    pub discard: bool,
    /// The device has a volatile write cache: FLUSH requests reach the server. Default true.
    pub write_cache: bool,
    /// FUA is passed through on writes. Default false.
    pub fua: bool,
    /// Whether the device outlives its server, and what happens to its IO
    /// meanwhile. Default: it does not.
    pub recovery: Recovery,
    /// Re-attach to the existing device `id` (START/END_USER_RECOVERY)
    /// instead of adding one; its geometry must be what the kernel kept.
    pub recover: bool,
}

/// What the kernel does with a device whose server died (the
/// `UBLK_F_USER_RECOVERY*` flags of ADD_DEV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// The device dies with its server.
    #[default]
    Off,
    /// IO the dead server had not completed is re-issued to the next one.
    Reissue,
    /// That IO fails with EIO; IO queued after the death waits for the next server.
    FailInflight,
    /// Every IO fails with EIO from the death until a server recovers the device.
    FailIo,
}

impl Recovery {
    /// By the option's name: `reissue`, `fail-inflight`, `fail-io`, or `off`.
    pub fn parse(name: &str) -> Option<Recovery> {
        match name {
            "off" => Some(Recovery::Off),
            "reissue" => Some(Recovery::Reissue),
            "fail-inflight" => Some(Recovery::FailInflight),
            "fail-io" => Some(Recovery::FailIo),
            _ => None,
        }
    }

    /// The option's name for a device's `UBLK_F_*` flags.
    pub fn of_flags(flags: u64) -> Recovery {
        let has = |f: u32| flags & f as u64 != 0;
        match () {
            _ if !has(sys::UBLK_F_USER_RECOVERY) => Recovery::Off,
            _ if has(sys::UBLK_F_USER_RECOVERY_FAIL_IO) => Recovery::FailIo,
            _ if has(sys::UBLK_F_USER_RECOVERY_REISSUE) => Recovery::Reissue,
            _ => Recovery::FailInflight,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Recovery::Off => "off",
            Recovery::Reissue => "reissue",
            Recovery::FailInflight => "fail-inflight",
            Recovery::FailIo => "fail-io",
        }
    }

    /// The ADD_DEV flags, each a `UBLK_F_*` the kernel must have.
    pub fn ctrl_flags(self) -> u64 {
        let flags = match self {
            Recovery::Off => 0,
            Recovery::Reissue => sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE,
            Recovery::FailInflight => sys::UBLK_F_USER_RECOVERY,
            Recovery::FailIo => sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_FAIL_IO,
        };
        flags as u64
    }
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            id: -1,
            size: 0,
            logical_block_size: 512,
            physical_block_size: 4096,
            nr_queues: 1,
            queue_depth: 128,
            max_io_bytes: 512 << 10,
            read_only: false,
            rotational: false,
            discard: false,
            write_cache: true,
            fua: false,
            recovery: Recovery::Off,
            recover: false,
        }
    }
}

fn invalid(what: String) -> UblkError {
    UblkError::InvalidConfig(what)
}

impl DeviceConfig {
    /// Checks what the kernel would reject, before any kernel call.
    pub fn validate(&self) -> Result<(), UblkError> {
        let lbs = self.logical_block_size;
        if !(512..=4096).contains(&lbs) || !lbs.is_power_of_two() {
            return Err(invalid(format!("logical block size {lbs} is not a power of two from 512 to 4096")));
        }
        let pbs = self.physical_block_size;
        if pbs < lbs || !pbs.is_power_of_two() || pbs > 65536 {
            return Err(invalid(format!("physical block size {pbs} must be a power of two from {lbs} to 65536")));
        }
        if self.size == 0 || !self.size.is_multiple_of(lbs as u64) {
            return Err(invalid(format!("size {} must be a positive multiple of {lbs}", self.size)));
        }
        if self.nr_queues == 0 || self.nr_queues > MAX_QUEUES {
            return Err(invalid(format!("{} queues is not within 1..={MAX_QUEUES}", self.nr_queues)));
        }
        if self.queue_depth == 0 || self.queue_depth as u32 > UBLK_MAX_QUEUE_DEPTH {
            return Err(invalid(format!("queue depth {} is not within 1..=4096", self.queue_depth)));
        }
        if self.max_io_bytes < 4096 || self.max_io_bytes > MAX_IO_BUF_BYTES || !self.max_io_bytes.is_multiple_of(4096) {
            return Err(invalid(format!("max IO size {} must be a multiple of 4096 up to 32 MiB", self.max_io_bytes)));
        }
        if self.id < -1 {
            return Err(invalid(format!("device id {} must be -1 or >= 0", self.id)));
        }
        if self.recover && self.id < 0 {
            return Err(invalid("recovering a device needs its id".to_string()));
        }
        Ok(())
    }

    /// The kernel's `ublk_params` for this device, given the per-request
    /// buffer size ADD_DEV settled on.
    pub fn ublk_params(&self, max_io_buf_bytes: u32) -> sys::ublk_params {
        let mut attrs = 0;
        if self.read_only {
            attrs |= sys::UBLK_ATTR_READ_ONLY;
        }
        if self.rotational {
            attrs |= sys::UBLK_ATTR_ROTATIONAL;
        }
        if self.write_cache {
            attrs |= sys::UBLK_ATTR_VOLATILE_CACHE;
        }
        if self.fua {
            attrs |= sys::UBLK_ATTR_FUA;
        }
        let max_sectors = max_io_buf_bytes.min(self.max_io_bytes) >> 9;
        let mut params = sys::ublk_params {
            types: sys::UBLK_PARAM_TYPE_BASIC,
            basic: sys::ublk_param_basic {
                attrs,
                logical_bs_shift: self.logical_block_size.trailing_zeros() as u8,
                physical_bs_shift: self.physical_block_size.trailing_zeros() as u8,
                io_opt_shift: self.physical_block_size.trailing_zeros() as u8,
                io_min_shift: self.logical_block_size.trailing_zeros() as u8,
                max_sectors,
                dev_sectors: self.size >> 9,
                ..Default::default()
            },
            ..Default::default()
        };
        if self.discard {
            params.types |= sys::UBLK_PARAM_TYPE_DISCARD;
            params.discard = sys::ublk_param_discard {
                discard_granularity: self.physical_block_size.max(4096),
                max_discard_sectors: u32::MAX >> 9,
                max_write_zeroes_sectors: u32::MAX >> 9,
                max_discard_segments: 1,
                ..Default::default()
            };
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeviceConfig {
        DeviceConfig { size: 1 << 30, ..Default::default() }
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn rejects_what_the_kernel_would() {
        for bad in [
            DeviceConfig { logical_block_size: 1024 + 512, ..cfg() },
            DeviceConfig { logical_block_size: 8192, ..cfg() },
            DeviceConfig { physical_block_size: 256, ..cfg() },
            DeviceConfig { size: 1000, ..cfg() },
            DeviceConfig { queue_depth: 0, ..cfg() },
            DeviceConfig { max_io_bytes: 5000, ..cfg() },
            DeviceConfig { nr_queues: 0, ..cfg() },
            DeviceConfig { nr_queues: MAX_QUEUES + 1, ..cfg() },
            DeviceConfig { id: -2, ..cfg() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn recovery_modes_map_to_their_flags_and_back() {
        for mode in [Recovery::Off, Recovery::Reissue, Recovery::FailInflight, Recovery::FailIo] {
            assert_eq!(Recovery::of_flags(mode.ctrl_flags()), mode);
            assert_eq!(Recovery::parse(mode.name()), Some(mode));
        }
        assert_eq!(Recovery::parse("sometimes"), None);
        assert!(DeviceConfig { recover: true, ..cfg() }.validate().is_err(), "recovery needs an id");
        DeviceConfig { recover: true, id: 3, ..cfg() }.validate().unwrap();
    }

    #[test]
    fn params_carry_shifts_sectors_and_attributes() {
        let c = DeviceConfig { logical_block_size: 4096, read_only: true, discard: true, ..cfg() };
        let p = c.ublk_params(512 << 10);
        assert_eq!(p.basic.logical_bs_shift, 12);
        assert_eq!(p.basic.dev_sectors, (1 << 30) >> 9);
        assert_eq!(p.basic.max_sectors, 1024);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_READ_ONLY, 0);
        assert_ne!(p.types & sys::UBLK_PARAM_TYPE_DISCARD, 0);
        assert_eq!(p.discard.max_discard_segments, 1);
    }
}
