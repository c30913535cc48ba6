import type { Op } from './ops'

/**
 * What a handler learns about the request besides its data. It is valid
 * until the request settles: each tag's context object is reused for that
 * tag's next request (no allocation per request), so copy what you keep
 * longer. (`'requestError'` listeners get a copy.)
 */
export interface RequestContext {
  /** The operation. */
  readonly op: Op
  /** The raw `UBLK_IO_F_*` flags of the request. */
  readonly flags: number
  /** Force unit access: the write must be durable when the handler returns. */
  readonly fua: boolean
  /** The hardware queue the request came in on. */
  readonly queue: number
  /** The request's tag within its queue. */
  readonly tag: number
}

type MaybePromise<T> = T | Promise<T>

/**
 * Serves a device's requests. Every method may be sync or async. Offsets and
 * lengths are in bytes. A method that throws or rejects fails its request with
 * EIO, or with the errno of a thrown `UblkError`. Ops without a method fail
 * with EOPNOTSUPP.
 */
export interface Handler {
  /** Fill `buf` (exactly the request's length) with the data at `offset`. */
  read(buf: Buffer, offset: number, ctx: RequestContext): MaybePromise<void>
  /** Store `buf` at `offset`. */
  write?(buf: Buffer, offset: number, ctx: RequestContext): MaybePromise<void>
  /** Make completed writes durable. */
  flush?(ctx: RequestContext): MaybePromise<void>
  /** The range's contents are no longer needed. */
  discard?(offset: number, length: number, ctx: RequestContext): MaybePromise<void>
  /** Make the range read back as zeros. */
  writeZeroes?(offset: number, length: number, ctx: RequestContext): MaybePromise<void>
}
