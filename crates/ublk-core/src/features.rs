//! Names of the `UBLK_F_*` feature bits reported by GET_FEATURES, in bit order.

/// `UBLK_F_*` names as in `include/uapi/linux/ublk_cmd.h`, indexed by bit.
pub const UBLK_FEATURE_NAMES: &[&str] = &[
    "UBLK_F_SUPPORT_ZERO_COPY",
    "UBLK_F_URING_CMD_COMP_IN_TASK",
    "UBLK_F_NEED_GET_DATA",
    "UBLK_F_USER_RECOVERY",
    "UBLK_F_USER_RECOVERY_REISSUE",
    "UBLK_F_UNPRIVILEGED_DEV",
    "UBLK_F_CMD_IOCTL_ENCODE",
    "UBLK_F_USER_COPY",
    "UBLK_F_ZONED",
    "UBLK_F_USER_RECOVERY_FAIL_IO",
    "UBLK_F_UPDATE_SIZE",
    "UBLK_F_AUTO_BUF_REG",
    "UBLK_F_QUIESCE",
    "UBLK_F_PER_IO_DAEMON",
    "UBLK_F_BUF_REG_OFF_DAEMON",
    "UBLK_F_BATCH_IO",
    "UBLK_F_INTEGRITY",
    "UBLK_F_SAFE_STOP_DEV",
    "UBLK_F_NO_AUTO_PART_SCAN",
    "UBLK_F_SHMEM_ZC",
];

/// The names of the bits set in `mask`; bits this table does not know are
/// named `bit N`, so a newer kernel's features are still shown.
pub fn feature_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match UBLK_FEATURE_NAMES.get(bit as usize) {
            Some(name) => (*name).to_string(),
            None => format!("bit {}", bit),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use libublk::sys;

    #[test]
    fn names_match_the_uapi_bits() {
        let pairs = [
            (sys::UBLK_F_SUPPORT_ZERO_COPY as u64, "UBLK_F_SUPPORT_ZERO_COPY"),
            (sys::UBLK_F_USER_COPY as u64, "UBLK_F_USER_COPY"),
            (sys::UBLK_F_AUTO_BUF_REG as u64, "UBLK_F_AUTO_BUF_REG"),
            (sys::UBLK_F_BATCH_IO as u64, "UBLK_F_BATCH_IO"),
            (sys::UBLK_F_SHMEM_ZC as u64, "UBLK_F_SHMEM_ZC"),
        ];
        for (mask, name) in pairs {
            assert_eq!(feature_names(mask), vec![name.to_string()]);
        }
    }

    #[test]
    fn unknown_bits_are_named_by_number() {
        assert_eq!(feature_names(1 << 40), vec!["bit 40".to_string()]);
    }
}
