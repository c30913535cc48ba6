// One queue's side of the JS hop: reads the requests the queue thread
// publishes in the queue's request ring, calls the handler for each with a
// view of the tag's slot in the queue's buffer region (no copy), and writes
// the results into the completion ring (see ring.ts). Per request, nothing is
// allocated here: contexts, views and promise callbacks are made once per tag.
//
// Every request is answered exactly once: by its handler, with EIO when
// anything on the way fails, or with ETIMEDOUT when the handler does not
// settle within `requestTimeout` (its late result is then ignored). A timed-out
// request's slot is retired first: the late handler may still write it, so
// the tag's next requests use a fresh slot.
import { constants } from 'node:os'
import type { NativeDevice } from '../index.js'
import { UblkError } from './errors'
import type { Handler, RequestContext } from './handler'
import native from './native'
import {
  opName,
  UBLK_IO_F_FUA,
  UBLK_IO_OP_DISCARD,
  UBLK_IO_OP_FLUSH,
  UBLK_IO_OP_READ,
  UBLK_IO_OP_WRITE,
  UBLK_IO_OP_WRITE_ZEROES,
} from './ops'
import { QueueRing, type RingPort } from './ring'
import { C, newCounters, statsFrom, type QueueStats } from './stats'

const { IO_ID_TAG_MASK } = native
const SECTOR = 512
const EIO = -constants.errno.EIO
const EOPNOTSUPP = -constants.errno.EOPNOTSUPP
const ETIMEDOUT = -constants.errno.ETIMEDOUT
/** No request is held on this tag. */
const NOT_HELD = -1
/**
 * The timeout sweep runs every `requestTimeout / TIMEOUT_TICKS` ms, so a
 * request times out between `requestTimeout` and `requestTimeout * 9/8` after
 * it arrived, at no cost per request.
 */
const TIMEOUT_TICKS = 8

/** Called when a handler fails a request with something other than a UblkError. */
export type RequestErrorListener = (err: unknown, ctx: RequestContext) => void

function errnoOf(err: unknown): number {
  return err instanceof UblkError ? err.errno : EIO
}

/**
 * What a dispatcher needs from its queue: the `NativeDevice`, a worker's
 * `QueueAttachment`, or the dispatch microbenchmark's `SyntheticQueue`.
 */
export type QueuePort = RingPort &
  Pick<NativeDevice, 'queueBuffer' | 'slotBytes' | 'replaceSlot'> & {
    /** Slots replaced before this dispatcher existed (a worker's predecessor's timeouts). */
    replacedSlots?(queue: number): Array<[number, ArrayBuffer]>
  }

export interface DispatcherOptions {
  onRequestError: RequestErrorListener
  /** Milliseconds a handler has to settle a request; 0: no limit. */
  requestTimeout: number
  /** Called once if the addon ever refuses a completion this dispatcher sent. */
  onRejected?: (count: number) => void
  /** Where to count (see `stats.ts`); default: a fresh local array. */
  counters?: Float64Array
}

/** A request context the dispatcher fills in for each request on its tag. */
interface TagContext {
  op: RequestContext['op']
  flags: number
  fua: boolean
  readonly queue: number
  readonly tag: number
}

/**
 * One tag's request as the dispatcher tracks it, made once per tag (and anew
 * after a timeout, so a late settle of the old request finds the old object,
 * whose id is no longer held): its context and the callbacks its handler's
 * promise settles through.
 */
class TagRequest {
  id = NOT_HELD
  /** The result a successful settle reports (the request's bytes, or 0). */
  done = 0
  readonly ctx: TagContext
  readonly fulfilled: () => void
  readonly rejected: (err: unknown) => void

  constructor(d: QueueDispatcher, queue: number, tag: number) {
    this.ctx = { op: 'read', flags: 0, fua: false, queue, tag }
    this.fulfilled = () => d.settle(this.id, this.done)
    this.rejected = (err: unknown) => d.fail(this.id, err, this.ctx)
  }
}

export class QueueDispatcher {
  /** The counters behind `stats` (indexed by `C`). */
  readonly counters: Float64Array
  private readonly ring: QueueRing
  private readonly slots: Buffer[] = []
  private readonly slotBytes: number = 0
  /** Per tag: the last view made shorter than the slot, and its length (views are reused). */
  private readonly views: Array<Buffer | undefined> = []
  private viewLengths = new Int32Array(0)
  /** Per tag: the io id the handler holds, or NOT_HELD. */
  private held = new Int32Array(0)
  /** Per tag: the sweep epoch its request arrived in. */
  private arrived = new Uint32Array(0)
  /** Per tag: its request's context and callbacks. */
  private readonly requests: TagRequest[] = []
  private epoch = 0
  private sweeper: NodeJS.Timeout | undefined
  private readonly visitBound = (id: number, opFlags: number, startSector: number, nrSectors: number) =>
    this.serve(id, opFlags, startSector, nrSectors)

  /**
   * Takes over queue `queue`'s ring and buffers from `port`. Throws only if
   * the ring cannot be had; if the buffers cannot, every request fails with
   * EIO (loudly, never fatally).
   */
  constructor(
    private readonly port: QueuePort,
    private readonly queue: number,
    private readonly handler: Handler,
    private readonly options: DispatcherOptions,
  ) {
    this.counters = options.counters ?? newCounters()
    this.ring = new QueueRing(port, queue, options.onRejected)
    try {
      const region = port.queueBuffer(queue)
      this.slotBytes = port.slotBytes(queue)
      for (let offset = 0; offset + this.slotBytes <= region.byteLength; offset += this.slotBytes) {
        this.slots.push(Buffer.from(region, offset, this.slotBytes))
      }
      for (const [tag, slot] of port.replacedSlots?.(queue) ?? []) this.slots[tag] = Buffer.from(slot)
    } catch (err) {
      this.slots.length = 0
      process.emitWarning(`ublk: cannot serve queue ${queue}: ${String(err)}`)
    }
    const depth = this.slots.length
    this.viewLengths = new Int32Array(depth)
    this.held = new Int32Array(depth).fill(NOT_HELD)
    this.arrived = new Uint32Array(depth)
    for (let tag = 0; tag < depth; tag++) this.requests.push(new TagRequest(this, queue, tag))
    if (options.requestTimeout > 0) {
      const tick = Math.max(1, Math.floor(options.requestTimeout / TIMEOUT_TICKS))
      this.sweeper = setInterval(() => this.sweep(), tick).unref()
    }
  }

  /** The counters so far. */
  get stats(): QueueStats {
    return statsFrom(this.queue, this.counters)
  }

  /** Stops the timeout sweep; requests still held are left to the teardown. */
  dispose(): void {
    clearInterval(this.sweeper)
    this.sweeper = undefined
  }

  /** Serves every request published in the ring since the last call. Never throws. */
  onNotify(): void {
    this.counters[C.notifications]++
    this.ring.drain(this.visitBound)
  }

  private serve(id: number, opFlags: number, startSector: number, nrSectors: number): void {
    try {
      this.dispatch(id, opFlags, startSector * SECTOR, nrSectors * SECTOR)
    } catch {
      // Only a broken request gets here (a tag without a slot); answer it.
      this.ring.complete(id, EIO)
    }
  }

  private dispatch(id: number, opFlags: number, offset: number, length: number): void {
    const tag = id & IO_ID_TAG_MASK
    if (tag >= this.slots.length || this.held[tag] !== NOT_HELD) {
      throw new RangeError(`request ${id} is not a free tag of queue ${this.queue}`)
    }
    const op = opFlags & 0xff
    const flags = opFlags & ~0xff
    const r = this.requests[tag]
    const ctx = r.ctx
    ctx.op = opName(op)
    ctx.flags = flags
    ctx.fua = (flags & UBLK_IO_F_FUA) !== 0
    const h = this.handler
    const s = this.counters
    r.id = id
    this.held[tag] = id
    this.arrived[tag] = this.epoch
    s[C.inFlight]++
    let ret: unknown
    try {
      switch (op) {
        case UBLK_IO_OP_READ:
          s[C.reads]++
          s[C.bytesRead] += length
          r.done = length
          ret = h.read(this.view(tag, length), offset, ctx)
          break
        case UBLK_IO_OP_WRITE:
          s[C.writes]++
          s[C.bytesWritten] += length
          r.done = length
          ret = h.write ? h.write(this.view(tag, length), offset, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_FLUSH:
          s[C.flushes]++
          r.done = 0
          ret = h.flush ? h.flush(ctx) : undefined
          break
        case UBLK_IO_OP_DISCARD:
          s[C.discards]++
          r.done = 0
          ret = h.discard ? h.discard(offset, length, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_WRITE_ZEROES:
          s[C.writeZeroes]++
          r.done = 0
          ret = h.writeZeroes ? h.writeZeroes(offset, length, ctx) : this.unsupported()
          break
        default:
          s[C.other]++
          this.settle(id, EOPNOTSUPP)
          return
      }
    } catch (err) {
      this.fail(id, err, ctx)
      return
    }
    if (ret !== null && typeof ret === 'object' && typeof (ret as PromiseLike<void>).then === 'function') {
      ;(ret as PromiseLike<void>).then(r.fulfilled, r.rejected)
    } else {
      this.settle(id, r.done)
    }
  }

  private unsupported(): never {
    throw new UblkError('EOPNOTSUPP')
  }

  /**
   * A view of exactly the request's bytes in the tag's slot. The last short
   * view of each tag is kept and handed out again for a request of the same
   * length (the same memory either way): no allocation per request when the
   * request sizes repeat.
   */
  private view(tag: number, length: number): Buffer {
    if (length > this.slotBytes) throw new UblkError('EIO', `a ${length}-byte request does not fit a ${this.slotBytes}-byte slot`)
    const slot = this.slots[tag]
    if (length === this.slotBytes) return slot
    const cached = this.views[tag]
    if (cached !== undefined && this.viewLengths[tag] === length) return cached
    const view = slot.subarray(0, length)
    this.views[tag] = view
    this.viewLengths[tag] = length
    return view
  }

  /** Fails request `id` with `err`'s errno (reported unless a UblkError), unless it was answered already. */
  fail(id: number, err: unknown, ctx: RequestContext): void {
    // A late failure of a request already answered is not reported again.
    if (id === NOT_HELD || this.held[id & IO_ID_TAG_MASK] !== id) return
    if (!(err instanceof UblkError)) this.report(err, ctx)
    this.settle(id, errnoOf(err))
  }

  private report(err: unknown, ctx: RequestContext): void {
    try {
      // A copy: the tag's context is reused for its next request.
      this.options.onRequestError(err, { ...ctx })
    } catch {
      // a listener's own failure must not stop the completion
    }
  }

  /** Answers request `id`, unless it was answered already (a late result). */
  settle(id: number, result: number): void {
    const tag = id & IO_ID_TAG_MASK
    if (id === NOT_HELD || this.held[tag] !== id) return
    this.held[tag] = NOT_HELD
    this.counters[C.inFlight]--
    if (result < 0) this.counters[C.errors]++
    this.ring.complete(id, result)
  }

  /** Fails with ETIMEDOUT every request held for `requestTimeout` or longer. */
  private sweep(): void {
    this.epoch = (this.epoch + 1) >>> 0
    if (this.counters[C.inFlight] === 0) return
    for (let tag = 0; tag < this.held.length; tag++) {
      const id = this.held[tag]
      if (id === NOT_HELD || ((this.epoch - this.arrived[tag]) >>> 0) <= TIMEOUT_TICKS) continue
      const ctx = this.requests[tag].ctx
      let fresh: Buffer
      try {
        fresh = Buffer.from(this.port.replaceSlot(this.queue, id))
      } catch (err) {
        // Without a fresh slot, answering would let the late handler write
        // into the tag's next request: keep waiting, try again next timeout.
        this.arrived[tag] = this.epoch
        this.report(err, ctx)
        continue
      }
      this.slots[tag] = fresh
      this.views[tag] = undefined
      this.counters[C.timedOut]++
      const ms = this.options.requestTimeout
      this.report(new UblkError('ETIMEDOUT', `the ${ctx.op} handler did not settle within ${ms} ms (queue ${ctx.queue}, tag ${tag})`), ctx)
      // The late handler settles through the old callbacks, whose id is stale.
      this.requests[tag] = new TagRequest(this, this.queue, tag)
      this.settle(id, ETIMEDOUT)
    }
  }
}
