//! The `UBLK_F_*` feature bits GET_FEATURES reports: their names, and the
//! first mainline kernel that has each.

/// `UBLK_F_*` names as in `include/uapi/linux/ublk_cmd.h`, indexed by bit,
/// with the mainline release that introduced each (from the UAPI header's
/// history). Distribution kernels may have backported more.
pub const UBLK_FEATURES: &[(&str, (u32, u32))] = &[
    ("UBLK_F_SUPPORT_ZERO_COPY", (6, 0)), // defined since 6.0, working since 6.15
    ("UBLK_F_URING_CMD_COMP_IN_TASK", (6, 0)),
    ("UBLK_F_NEED_GET_DATA", (6, 0)),
    ("UBLK_F_USER_RECOVERY", (6, 1)),
    ("UBLK_F_USER_RECOVERY_REISSUE", (6, 1)),
    ("UBLK_F_UNPRIVILEGED_DEV", (6, 2)),
    ("UBLK_F_CMD_IOCTL_ENCODE", (6, 4)),
    ("UBLK_F_USER_COPY", (6, 5)),
    ("UBLK_F_ZONED", (6, 6)),
    ("UBLK_F_USER_RECOVERY_FAIL_IO", (6, 13)),
    ("UBLK_F_UPDATE_SIZE", (6, 16)),
    ("UBLK_F_AUTO_BUF_REG", (6, 16)),
    ("UBLK_F_QUIESCE", (6, 16)),
    ("UBLK_F_PER_IO_DAEMON", (6, 16)),
    ("UBLK_F_BUF_REG_OFF_DAEMON", (6, 17)),
    ("UBLK_F_BATCH_IO", (7, 0)),
    ("UBLK_F_INTEGRITY", (7, 0)),
    ("UBLK_F_SAFE_STOP_DEV", (7, 0)),
    ("UBLK_F_NO_AUTO_PART_SCAN", (7, 0)),
    ("UBLK_F_SHMEM_ZC", (7, 1)),
];

/// GET_FEATURES itself (control command 0x13) exists since Linux 6.5.
pub const GET_FEATURES_SINCE: (u32, u32) = (6, 5);

/// The features a mainline kernel of this version has, for kernels that
/// cannot answer GET_FEATURES (before 6.5).
pub fn features_of_release(version: (u32, u32)) -> u64 {
    UBLK_FEATURES.iter().enumerate().filter(|(_, (_, since))| *since <= version).fold(0, |mask, (bit, _)| mask | 1 << bit)
}

/// The first mainline release with the named feature (`UBLK_F_QUIESCE`), to
/// say which kernel an option needs.
pub fn feature_since(name: &str) -> Option<(u32, u32)> {
    UBLK_FEATURES.iter().find(|(n, _)| *n == name).map(|(_, since)| *since)
}

/// The names of the bits set in `mask`; bits this table does not know are
/// named `bit N`, so a newer kernel's features are still shown.
pub fn feature_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match UBLK_FEATURES.get(bit as usize) {
            Some((name, _)) => (*name).to_string(),
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
    fn releases_before_get_features_have_their_mainline_features() {
        let six_one = features_of_release((6, 1));
        assert_eq!(
            feature_names(six_one),
            [
                "UBLK_F_SUPPORT_ZERO_COPY",
                "UBLK_F_URING_CMD_COMP_IN_TASK",
                "UBLK_F_NEED_GET_DATA",
                "UBLK_F_USER_RECOVERY",
                "UBLK_F_USER_RECOVERY_REISSUE"
            ]
        );
        assert_ne!(features_of_release((6, 4)) & sys::UBLK_F_CMD_IOCTL_ENCODE as u64, 0);
        assert_eq!(features_of_release((6, 4)) & sys::UBLK_F_USER_COPY as u64, 0);
        assert_eq!(feature_since("UBLK_F_QUIESCE"), Some((6, 16)));
        // Every bit the UAPI header defines is in the table, in bit order.
        assert_eq!(1u64 << (UBLK_FEATURES.len() - 1), sys::UBLK_F_SHMEM_ZC as u64);
    }

    #[test]
    fn unknown_bits_are_named_by_number() {
        assert_eq!(feature_names(1 << 40), vec!["bit 40".to_string()]);
    }
}
