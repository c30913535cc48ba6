//! The running kernel: its release, and whether it was built with ublk.
//!
//! These are the facts behind the advice given when `/dev/ublk-control` is
//! missing (a module to load, or a kernel without ublk at all, as Debian 12's
//! own 6.1 is), and behind feature inference on kernels that cannot answer
//! GET_FEATURES (before 6.5).

use std::path::Path;

/// `uname -r` and the version numbers at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRelease {
    /// The full release, e.g. `6.1.0-50-amd64`.
    pub release: String,
    pub major: u32,
    pub minor: u32,
}

impl KernelRelease {
    /// Parses a release string; versions it cannot read become 0.0.
    pub fn parse(release: &str) -> KernelRelease {
        let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().unwrap_or(0));
        let major = numbers.next().unwrap_or(0);
        let minor = numbers.next().unwrap_or(0);
        KernelRelease { release: release.to_string(), major, minor }
    }

    /// Whether this is at least `major.minor`.
    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// The release of the running kernel (uname(2)).
pub fn running() -> KernelRelease {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated
    // arrays, read below only up to their NUL.
    let release = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut uts) != 0 {
            return KernelRelease::parse("");
        }
        std::ffi::CStr::from_ptr(uts.release.as_ptr()).to_string_lossy().into_owned()
    };
    KernelRelease::parse(&release)
}

/// How a kernel's configuration has `CONFIG_BLK_DEV_UBLK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UblkConfig {
    BuiltIn,
    Module,
    /// `# CONFIG_BLK_DEV_UBLK is not set`: the kernel was built without ublk.
    NotSet,
    /// No configuration was found (or it does not mention ublk: pre-6.0).
    Unknown,
}

/// Reads `CONFIG_BLK_DEV_UBLK` out of a kernel configuration's text.
pub fn parse_ublk_config(config: &str) -> UblkConfig {
    for line in config.lines() {
        match line.trim() {
            "CONFIG_BLK_DEV_UBLK=y" => return UblkConfig::BuiltIn,
            "CONFIG_BLK_DEV_UBLK=m" => return UblkConfig::Module,
            "# CONFIG_BLK_DEV_UBLK is not set" => return UblkConfig::NotSet,
            _ => {}
        }
    }
    UblkConfig::Unknown
}

/// What is known about ublk in the running kernel, for advice.
#[derive(Debug, Clone)]
pub struct UblkSupport {
    pub kernel: KernelRelease,
    pub config: UblkConfig,
    /// Where the configuration was read from, if anywhere.
    pub config_source: Option<String>,
    /// Whether `/lib/modules/<release>/modules.dep` lists a `ublk_drv` module
    /// (Debian's, or one built out of tree into `updates/` or `extra/`).
    pub module_installed: bool,
    /// `ID VERSION_ID` from `/etc/os-release`, e.g. `debian 12`.
    pub distribution: Option<String>,
}

impl UblkSupport {
    /// Looks at the running kernel's configuration (`/boot/config-<release>`,
    /// or `/proc/config.gz` decompressed with `gzip`), module list and the
    /// distribution. Only reads files; never fails.
    pub fn probe() -> UblkSupport {
        let kernel = running();
        let boot = format!("/boot/config-{}", kernel.release);
        let (config, config_source) = match std::fs::read_to_string(&boot) {
            Ok(text) => (parse_ublk_config(&text), Some(boot)),
            Err(_) => match read_proc_config() {
                Some(text) => (parse_ublk_config(&text), Some("/proc/config.gz".to_string())),
                None => (UblkConfig::Unknown, None),
            },
        };
        let deps = std::fs::read_to_string(format!("/lib/modules/{}/modules.dep", kernel.release)).unwrap_or_default();
        let module_installed = deps.lines().any(|l| l.split(':').next().is_some_and(|m| m.contains("/ublk_drv.ko")));
        UblkSupport { kernel, config, config_source, module_installed, distribution: distribution() }
    }

    /// What to do when `/dev/ublk-control` does not exist, in one sentence or two.
    pub fn advice(&self) -> String {
        let r = &self.kernel.release;
        let source = self.config_source.as_deref().unwrap_or("its config");
        match (self.config, self.module_installed) {
            (_, true) if self.config != UblkConfig::BuiltIn => {
                let how = if self.config == UblkConfig::NotSet {
                    format!(
                        " (the kernel itself was built without ublk, `# CONFIG_BLK_DEV_UBLK is not set` in {source}; \
                         the installed module was built out of tree)"
                    )
                } else {
                    String::new()
                };
                format!("the ublk_drv module is not loaded: run `modprobe ublk_drv` as root{how}")
            }
            (UblkConfig::Module, _) => format!(
                "this kernel ({r}) has ublk as a module (CONFIG_BLK_DEV_UBLK=m) but no ublk_drv is installed \
                 in /lib/modules/{r}: install the package with this kernel's modules"
            ),
            (UblkConfig::NotSet, _) => format!(
                "this kernel ({r}) was built without ublk (`# CONFIG_BLK_DEV_UBLK is not set` in {source}): {}",
                self.how_to_get_ublk()
            ),
            (UblkConfig::BuiltIn, _) => format!(
                "ublk is built into this kernel (CONFIG_BLK_DEV_UBLK=y in {source}) but the node is missing: \
                 is devtmpfs mounted on /dev?"
            ),
            (UblkConfig::Unknown, _) if !self.kernel.at_least((6, 0)) && self.kernel.major > 0 => format!(
                "this kernel ({r}) is older than Linux 6.0, the first with ublk (this package supports 6.1 and newer), \
                 unless its distribution backported it: {}",
                self.how_to_get_ublk()
            ),
            (UblkConfig::Unknown, _) => format!(
                "the ublk_drv module is not loaded, or this kernel ({r}) lacks CONFIG_BLK_DEV_UBLK (no config found in \
                 /boot/config-{r} or /proc/config.gz): try `modprobe ublk_drv` as root"
            ),
        }
    }

    fn how_to_get_ublk(&self) -> String {
        let backports = "on Debian 12, install the bookworm-backports kernel \
             (`apt install -t bookworm-backports linux-image-amd64`, 6.12, which has ublk_drv) and boot it";
        match self.distribution.as_deref() {
            Some("debian 12") if (self.kernel.major, self.kernel.minor) == (6, 1) => format!(
                "{backports}, or build ublk_drv for this kernel from linux-source-6.1 with linux-headers-{}",
                self.kernel.release
            ),
            Some("debian 12") => backports.to_string(),
            _ => "boot a kernel built with CONFIG_BLK_DEV_UBLK (Linux 6.1 or newer; most distributions' current \
                 kernels have it as the ublk_drv module), or build that module for this kernel from its source"
                .to_string(),
        }
    }
}

fn read_proc_config() -> Option<String> {
    if !Path::new("/proc/config.gz").exists() {
        return None;
    }
    let out = std::process::Command::new("gzip").args(["-dc", "/proc/config.gz"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn distribution() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    let field =
        |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(|v| v.trim_matches('"').to_string()));
    Some(format!("{} {}", field("ID")?, field("VERSION_ID").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_to_major_and_minor() {
        let k = KernelRelease::parse("6.1.0-50-amd64");
        assert_eq!((k.major, k.minor), (6, 1));
        assert!(k.at_least((6, 1)) && !k.at_least((6, 5)));
        assert!(KernelRelease::parse("7.3.4+deb13-amd64").at_least((6, 16)));
        assert_eq!(KernelRelease::parse("garbage").major, 0);
    }

    #[test]
    fn the_config_line_for_ublk_is_read() {
        assert_eq!(parse_ublk_config("CONFIG_A=y\n# CONFIG_BLK_DEV_UBLK is not set\n"), UblkConfig::NotSet);
        assert_eq!(parse_ublk_config("CONFIG_BLK_DEV_UBLK=m\n"), UblkConfig::Module);
        assert_eq!(parse_ublk_config("CONFIG_BLK_DEV_UBLK=y\n"), UblkConfig::BuiltIn);
        assert_eq!(parse_ublk_config("CONFIG_BLK_DEV_UBLK_LEGACY_OPCODES=y\n"), UblkConfig::Unknown);
    }

    fn support(config: UblkConfig, module_installed: bool, distribution: &str) -> UblkSupport {
        UblkSupport {
            kernel: KernelRelease::parse("6.1.0-50-amd64"),
            config,
            config_source: Some("/boot/config-6.1.0-50-amd64".into()),
            module_installed,
            distribution: Some(distribution.into()),
        }
    }

    #[test]
    fn advice_for_debian_12_without_ublk_names_backports_and_the_module_build() {
        let advice = support(UblkConfig::NotSet, false, "debian 12").advice();
        assert!(advice.contains("built without ublk") && advice.contains("bookworm-backports"), "{advice}");
        assert!(advice.contains("linux-source-6.1"), "{advice}");
        let elsewhere = support(UblkConfig::NotSet, false, "fedora 41").advice();
        assert!(!elsewhere.contains("bookworm") && elsewhere.contains("CONFIG_BLK_DEV_UBLK"), "{elsewhere}");
    }

    #[test]
    fn advice_with_a_module_installed_is_to_load_it() {
        let advice = support(UblkConfig::Module, true, "debian 13").advice();
        assert!(advice.starts_with("the ublk_drv module is not loaded: run `modprobe ublk_drv`"), "{advice}");
        let out_of_tree = support(UblkConfig::NotSet, true, "debian 12").advice();
        assert!(out_of_tree.contains("modprobe ublk_drv") && out_of_tree.contains("out of tree"), "{out_of_tree}");
        let missing = support(UblkConfig::Module, false, "ubuntu 24.04").advice();
        assert!(missing.contains("no ublk_drv is installed"), "{missing}");
    }
}
