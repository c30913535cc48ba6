//! The one place where core errors become JavaScript values.
//!
//! Synchronous calls throw a napi error whose `code` is the errno name
//! (napi-rs sets `code` from the status string). Promises resolve with an
//! `Outcome` instead, `{ value }` or `{ error: { code, message } }`, which the
//! TypeScript layer turns into a `UblkError`: a deferred can only reject with
//! napi's fixed status codes.

use napi_derive::napi;
use ublk_core::UblkError;

pub fn to_napi(err: UblkError) -> napi::Error<String> {
    napi::Error::new(err.code().to_string(), err.to_string())
}

#[napi(object)]
#[derive(Clone)]
pub struct OutcomeError {
    pub code: String,
    pub message: String,
}

impl OutcomeError {
    pub fn from_core(e: &UblkError) -> Self {
        OutcomeError { code: e.code().to_string(), message: e.to_string() }
    }
}

/// How an operation done on the thread pool ended (a backing-file range
/// operation, or a device deletion).
#[napi(object)]
pub struct TaskOutcome {
    /// Why it failed; absent when it worked.
    pub error: Option<OutcomeError>,
}
