// One queue's side of the JS hop: takes the request batches the queue thread
// delivers, calls the handler for each request with a view of the tag's slot
// in the queue's buffer region (no copy), and sends the results back in one
// native call per turn of the event loop.
import { constants } from 'node:os'
import type { NativeDevice } from '../index.js'
import { UblkError } from './errors'
import type { Handler, RequestContext } from './handler'
import {
  opName,
  UBLK_IO_F_FUA,
  UBLK_IO_OP_DISCARD,
  UBLK_IO_OP_FLUSH,
  UBLK_IO_OP_READ,
  UBLK_IO_OP_WRITE,
  UBLK_IO_OP_WRITE_ZEROES,
} from './ops'
import { emptyStats, type QueueStats } from './stats'

/** Words per request in a batch (see crates/ublk-core/src/dispatch.rs). */
const REQUEST_WORDS = 5
const SECTOR = 512
const EIO = -constants.errno.EIO
const EOPNOTSUPP = -constants.errno.EOPNOTSUPP

/** Called when a handler fails a request with something other than a UblkError. */
export type RequestErrorListener = (err: unknown, ctx: RequestContext) => void

function errnoOf(err: unknown): number {
  return err instanceof UblkError ? err.errno : EIO
}

/**
 * What a dispatcher needs from its queue: the `NativeDevice`, or the
 * dispatch microbenchmark's `SyntheticQueue`, which stands in for one.
 */
export type QueuePort = Pick<NativeDevice, 'queueBuffer' | 'slotBytes' | 'complete'>

export class QueueDispatcher {
  readonly stats: QueueStats
  private readonly slots: Buffer[] = []
  private readonly slotBytes: number
  private pending: number[] = []
  private flushScheduled = false
  private readonly flushBound = () => this.flush()

  constructor(
    private readonly native: QueuePort,
    private readonly queue: number,
    private readonly handler: Handler,
    private readonly onRequestError: RequestErrorListener,
  ) {
    this.stats = emptyStats(queue)
    const region = native.queueBuffer(queue)
    this.slotBytes = native.slotBytes(queue)
    for (let offset = 0; offset + this.slotBytes <= region.byteLength; offset += this.slotBytes) {
      this.slots.push(Buffer.from(region, offset, this.slotBytes))
    }
  }

  /** Serves every request of one batch (see REQUEST_WORDS). Never throws. */
  onBatch(batch: Uint32Array): void {
    for (let i = 0; i + REQUEST_WORDS <= batch.length; i += REQUEST_WORDS) {
      const tag = batch[i]
      const opFlags = batch[i + 1]
      const startSector = batch[i + 3] * 0x1_0000_0000 + batch[i + 2]
      this.dispatch(tag, opFlags, startSector * SECTOR, batch[i + 4] * SECTOR)
    }
  }

  private dispatch(tag: number, opFlags: number, offset: number, length: number): void {
    const op = opFlags & 0xff
    const flags = opFlags & ~0xff
    const ctx: RequestContext = { op: opName(op), flags, fua: (flags & UBLK_IO_F_FUA) !== 0, queue: this.queue, tag }
    const h = this.handler
    const s = this.stats
    let done: number
    let ret: unknown
    s.inFlight++
    try {
      switch (op) {
        case UBLK_IO_OP_READ:
          s.reads++
          s.bytesRead += length
          done = length
          ret = h.read(this.view(tag, length), offset, ctx)
          break
        case UBLK_IO_OP_WRITE:
          s.writes++
          s.bytesWritten += length
          done = length
          ret = h.write ? h.write(this.view(tag, length), offset, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_FLUSH:
          s.flushes++
          done = 0
          ret = h.flush ? h.flush(ctx) : undefined
          break
        case UBLK_IO_OP_DISCARD:
          s.discards++
          done = 0
          ret = h.discard ? h.discard(offset, length, ctx) : this.unsupported()
          break
        case UBLK_IO_OP_WRITE_ZEROES:
          s.writeZeroes++
          done = 0
          ret = h.writeZeroes ? h.writeZeroes(offset, length, ctx) : this.unsupported()
          break
        default:
          s.other++
          this.complete(tag, EOPNOTSUPP)
          return
      }
    } catch (err) {
      this.fail(tag, err, ctx)
      return
    }
    if (ret !== null && typeof ret === 'object' && typeof (ret as PromiseLike<void>).then === 'function') {
      ;(ret as PromiseLike<void>).then(
        () => this.complete(tag, done),
        (err: unknown) => this.fail(tag, err, ctx),
      )
    } else {
      this.complete(tag, done)
    }
  }

  private unsupported(): never {
    throw new UblkError('EOPNOTSUPP')
  }

  /** A view of exactly the request's bytes in the tag's slot. */
  private view(tag: number, length: number): Buffer {
    const slot = this.slots[tag]
    return length === this.slotBytes ? slot : slot.subarray(0, length)
  }

  private fail(tag: number, err: unknown, ctx: RequestContext): void {
    if (!(err instanceof UblkError)) {
      try {
        this.onRequestError(err, ctx)
      } catch {
        // a listener's own failure must not stop the completion
      }
    }
    this.complete(tag, errnoOf(err))
  }

  private complete(tag: number, result: number): void {
    this.stats.inFlight--
    if (result < 0) this.stats.errors++
    this.pending.push(tag, result)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      // In the check phase of this loop iteration: after every batch the
      // poll phase delivered and their promise jobs, one native call for all.
      setImmediate(this.flushBound)
    }
  }

  private flush(): void {
    this.flushScheduled = false
    const pairs = Int32Array.from(this.pending)
    this.pending = []
    this.native.complete(this.queue, pairs)
  }
}
