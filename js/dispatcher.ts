// One queue's side of the JS hop: takes the request batches the queue thread
// delivers, calls the handler for each request with a view of the tag's slot
// in the queue's buffer region (no copy), and sends the results back in one
// native call per turn of the event loop.
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
import { C, newCounters, statsFrom, type QueueStats } from './stats'

// The batch layout, as the addon defines it (crates/ublk-core/src/dispatch.rs).
const {
  REQUEST_WORDS,
  REQUEST_IO_ID,
  REQUEST_OP_FLAGS,
  REQUEST_START_SECTOR_LO,
  REQUEST_START_SECTOR_HI,
  REQUEST_NR_SECTORS,
  IO_ID_TAG_MASK,
} = native
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
 * What a dispatcher needs from its queue: the `NativeDevice`, or the
 * dispatch microbenchmark's `SyntheticQueue`, which stands in for one.
 */
export type QueuePort = Pick<NativeDevice, 'queueBuffer' | 'slotBytes' | 'complete' | 'replaceSlot'> & {
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

/** Fails every request of `batch` with EIO, for a batch nothing can serve. */
export function failBatch(port: Pick<QueuePort, 'complete'>, queue: number, batch: Uint32Array): void {
  const pairs = new Int32Array((batch.length / REQUEST_WORDS) * 2)
  for (let i = 0, j = 0; i + REQUEST_WORDS <= batch.length; i += REQUEST_WORDS, j += 2) {
    pairs[j] = batch[i + REQUEST_IO_ID]
    pairs[j + 1] = EIO
  }
  port.complete(queue, pairs)
}

export class QueueDispatcher {
  /** The counters behind `stats` (indexed by `C`). */
  readonly counters: Float64Array
  private readonly slots: Buffer[] = []
  private readonly slotBytes: number
  /** Per tag: the last view made shorter than the slot, and its length (views are reused). */
  private readonly views: Array<Buffer | undefined> = []
  private readonly viewLengths: Int32Array
  /** Per tag: the io id the handler holds, or NOT_HELD. */
  private readonly held: Int32Array
  /** Per tag: the sweep epoch its request arrived in. */
  private readonly arrived: Uint32Array
  /** Per tag: the held request's context (for the timeout's 'requestError'). */
  private readonly contexts: Array<RequestContext | undefined>
  private epoch = 0
  private sweeper: NodeJS.Timeout | undefined
  private pending: number[] = []
  private flushScheduled = false
  private rejectedReported = false
  private readonly flushBound = () => this.flush()

  constructor(
    private readonly port: QueuePort,
    private readonly queue: number,
    private readonly handler: Handler,
    private readonly options: DispatcherOptions,
  ) {
    this.counters = options.counters ?? newCounters()
    const region = port.queueBuffer(queue)
    this.slotBytes = port.slotBytes(queue)
    for (let offset = 0; offset + this.slotBytes <= region.byteLength; offset += this.slotBytes) {
      this.slots.push(Buffer.from(region, offset, this.slotBytes))
    }
    for (const [tag, slot] of port.replacedSlots?.(queue) ?? []) this.slots[tag] = Buffer.from(slot)
    this.viewLengths = new Int32Array(this.slots.length)
    this.held = new Int32Array(this.slots.length).fill(NOT_HELD)
    this.arrived = new Uint32Array(this.slots.length)
    this.contexts = new Array(this.slots.length)
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

  /** Serves every request of one batch (see REQUEST_WORDS). Never throws. */
  onBatch(batch: Uint32Array): void {
    for (let i = 0; i + REQUEST_WORDS <= batch.length; i += REQUEST_WORDS) {
      const id = batch[i + REQUEST_IO_ID]
      try {
        const startSector = batch[i + REQUEST_START_SECTOR_HI] * 0x1_0000_0000 + batch[i + REQUEST_START_SECTOR_LO]
        this.dispatch(id, batch[i + REQUEST_OP_FLAGS], startSector * SECTOR, batch[i + REQUEST_NR_SECTORS] * SECTOR)
      } catch {
        // Only a broken request gets here (a tag without a slot); answer it.
        this.sendCompletion(id, EIO)
      }
    }
  }

  private dispatch(id: number, opFlags: number, offset: number, length: number): void {
    const tag = id & IO_ID_TAG_MASK
    if (tag >= this.slots.length || this.held[tag] !== NOT_HELD) {
      throw new RangeError(`request ${id} is not a free tag of queue ${this.queue}`)
    }
    const op = opFlags & 0xff
    const flags = opFlags & ~0xff
    const ctx: RequestContext = { op: opName(op), flags, fua: (flags & UBLK_IO_F_FUA) !== 0, queue: this.queue, tag }
    const h = this.handler
    const s = this.counters
    this.held[tag] = id
    this.arrived[tag] = this.epoch
    this.contexts[tag] = ctx
    s[C.inFlight]++
    let done: number
    let ret: unknown
    try {
      switch (op) {
        case UBLK_IO_OP_READ:
          s[C.reads]++
          s[C.bytesRead] += length
          done = length
          ret = h.read(this.view(tag, length), offset, ctx)
          break
        case UBLK_IO_OP_WRITE:
          s[C.writes]++
          s[C.bytesWritten] += length
          done = length
          ret = h.write ? h.write(this.view(tag, length), offset, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_FLUSH:
          s[C.flushes]++
          done = 0
          ret = h.flush ? h.flush(ctx) : undefined
          break
        case UBLK_IO_OP_DISCARD:
          s[C.discards]++
          done = 0
          ret = h.discard ? h.discard(offset, length, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_WRITE_ZEROES:
          s[C.writeZeroes]++
          done = 0
          ret = h.writeZeroes ? h.writeZeroes(offset, length, ctx) : this.unsupported()
          break
        default:
          s[C.other]++
          this.complete(id, EOPNOTSUPP)
          return
      }
    } catch (err) {
      this.fail(id, err, ctx)
      return
    }
    if (ret !== null && typeof ret === 'object' && typeof (ret as PromiseLike<void>).then === 'function') {
      ;(ret as PromiseLike<void>).then(
        () => this.complete(id, done),
        (err: unknown) => this.fail(id, err, ctx),
      )
    } else {
      this.complete(id, done)
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

  private fail(id: number, err: unknown, ctx: RequestContext): void {
    // A late failure of a request already answered is not reported again.
    if (this.held[id & IO_ID_TAG_MASK] !== id) return
    if (!(err instanceof UblkError)) this.report(err, ctx)
    this.complete(id, errnoOf(err))
  }

  private report(err: unknown, ctx: RequestContext): void {
    try {
      this.options.onRequestError(err, ctx)
    } catch {
      // a listener's own failure must not stop the completion
    }
  }

  /** Answers request `id`, unless it was answered already (a late result). */
  private complete(id: number, result: number): void {
    const tag = id & IO_ID_TAG_MASK
    if (this.held[tag] !== id) return
    this.held[tag] = NOT_HELD
    this.contexts[tag] = undefined
    this.counters[C.inFlight]--
    if (result < 0) this.counters[C.errors]++
    this.sendCompletion(id, result)
  }

  private sendCompletion(id: number, result: number): void {
    this.pending.push(id, result)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      // In the check phase of this loop iteration: after every batch the
      // poll phase delivered and their promise jobs, one native call for all.
      setImmediate(this.flushBound)
    }
  }

  /** Fails with ETIMEDOUT every request held for `requestTimeout` or longer. */
  private sweep(): void {
    this.epoch = (this.epoch + 1) >>> 0
    if (this.counters[C.inFlight] === 0) return
    for (let tag = 0; tag < this.held.length; tag++) {
      const id = this.held[tag]
      if (id === NOT_HELD || ((this.epoch - this.arrived[tag]) >>> 0) <= TIMEOUT_TICKS) continue
      const ctx = this.contexts[tag]
      let fresh: Buffer
      try {
        fresh = Buffer.from(this.port.replaceSlot(this.queue, id))
      } catch (err) {
        // Without a fresh slot, answering would let the late handler write
        // into the tag's next request: keep waiting, try again next timeout.
        this.arrived[tag] = this.epoch
        if (ctx) this.report(err, ctx)
        continue
      }
      this.slots[tag] = fresh
      this.views[tag] = undefined
      this.counters[C.timedOut]++
      if (ctx) {
        const ms = this.options.requestTimeout
        this.report(new UblkError('ETIMEDOUT', `the ${ctx.op} handler did not settle within ${ms} ms (queue ${ctx.queue}, tag ${tag})`), ctx)
      }
      this.complete(id, ETIMEDOUT)
    }
  }

  private flush(): void {
    this.flushScheduled = false
    const pairs = Int32Array.from(this.pending)
    this.pending = []
    const rejected = this.port.complete(this.queue, pairs)
    if (rejected > 0 && !this.rejectedReported) {
      this.rejectedReported = true
      this.options.onRejected?.(rejected)
    }
  }
}
