// The names bench/dispatch.ts gives its figures, said once here so that the
// report can quote them without loading the addon.

/** The same round trip with a Rust thread as the handler. */
export const FLOOR = 'Rust thread (floor)'
/** NullBackend, which settles every request synchronously. */
export const SYNC_NULL = 'NullBackend (sync)'
/** An async handler doing what NullBackend does: the promise hop. */
export const ASYNC_NULL = 'async null'
/** A worker-mode figure's name. */
export const inWorker = (handler: string) => `${handler} in a worker`
