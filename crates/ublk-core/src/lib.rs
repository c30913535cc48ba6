//! The kernel-facing half of the `ublk` npm package: the ublk control plane
//! (`/dev/ublk-control` commands), the data plane (one io_uring loop per
//! hardware queue) and the error type both report through.
//!
//! Nothing in this crate knows about Node-API; `ublk-node` is the thin
//! binding on top, so everything here can be exercised with `cargo test`.

pub mod backing;
pub mod buffer;
pub mod config;
pub mod ctrl;
pub mod device;
pub mod dispatch;
pub mod error;
pub mod features;
pub mod kernel;
pub mod null_target;
pub mod openers;
pub mod protection_keys;
pub mod queue;
pub mod ring;
pub mod router;
pub mod synthetic;

pub use config::DeviceConfig;
pub use error::UblkError;
/// The kernel's UAPI structs and constants (bindgen of `ublk_cmd.h`, via libublk).
pub use libublk::sys;
