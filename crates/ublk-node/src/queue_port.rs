//! What a JS dispatcher calls on its queue, said once for the three handles
//! that offer it (`NativeDevice`, a worker's `QueueAttachment`, the
//! microbenchmark's `SyntheticQueue`), and the threadsafe function that
//! notifies a dispatcher of new requests in its queue's request ring.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use ublk_core::device::QueueShared;
use ublk_core::dispatch::{publish_and_notify, CompletionQueue, RequestSink, TagTable};
use ublk_core::ring::QueueRing;

/// Notifications to JS: `onRequests(queue)`, called when requests were
/// published in that queue's request ring and none was notified since JS
/// last looked.
pub(crate) type NotifyFn = ThreadsafeFunction<u32, (), u32, Status, false>;

/// A sink notifying a JS thread.
pub(crate) struct JsSink {
    pub(crate) tsfn: NotifyFn,
}

/// The threadsafe function that notifies `onRequests`.
pub(crate) fn notify_function(on_requests: Function<u32, ()>) -> Result<NotifyFn> {
    on_requests.build_threadsafe_function::<u32>().callee_handled::<false>().build_callback(|ctx| Ok(ctx.value))
}

impl RequestSink for JsSink {
    fn publish(&self, qid: u16, ring: &QueueRing, _ids: &[u32], tail: u32) -> bool {
        // Non-blocking into an unbounded queue: never waits on the JS thread.
        // It fails only once the function is closing (the env is going away).
        publish_and_notify(ring, tail, || self.tsfn.call(qid as u32, ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok)
    }
}

pub(crate) fn core_error(e: ublk_core::UblkError) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

/// `complete()`'s result: pairs the checks dropped, or -1 once the queue is gone.
pub(crate) fn complete(completions: &CompletionQueue, pairs: &[i32]) -> i32 {
    completions.push(pairs).map_or(-1, |rejected| rejected as i32)
}

/// The tag of `id`, if the handlers hold that request now.
pub(crate) fn held_tag(q: &QueueShared, queue: u32, id: u32) -> Result<u16> {
    if !q.completions.tags().is_held(id) {
        return Err(Error::new(Status::InvalidArg, format!("request {id} of queue {queue} is not with the handlers")));
    }
    Ok(TagTable::tag_of(id))
}

/// Retires request `id`'s slot (see `replaceSlot`) for a fresh mapped one.
pub(crate) fn replace_external_slot<'env>(env: &'env Env, q: &QueueShared, queue: u32, id: u32) -> Result<Unknown<'env>> {
    let tag = held_tag(q, queue, id)?;
    crate::buffers::external_region(env, q.buffers.replace(tag).map_err(core_error)?)
}

/// The queue's rings as one external ArrayBuffer.
pub(crate) fn external_ring<'env>(env: &'env Env, q: &QueueShared) -> Result<Unknown<'env>> {
    crate::buffers::external_region(env, q.completions.ring().region().clone())
}
