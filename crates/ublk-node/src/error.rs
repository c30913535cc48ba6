//! The one place where core errors become JavaScript errors.
//!
//! napi-rs sets a thrown error's `code` from the status string, so JS sees
//! `err.code === 'ENOENT'`; the TypeScript layer adds `errno` and the
//! `UblkError` class on top.

use ublk_core::UblkError;

pub fn to_napi(err: UblkError) -> napi::Error<String> {
    napi::Error::new(err.code().to_string(), err.to_string())
}
