// The JavaScript end of a queue's shared rings (crates/ublk-core/src/ring.rs):
// one ArrayBuffer, set up once per queue, that the queue thread writes
// requests into and this thread writes completions into. Nothing is
// allocated per request: requests are read in place, completions written in
// place, and one native call is made per batch only when the queue thread
// sleeps and must be woken. What the handlers complete while a notification
// is served (synchronous handlers) goes out as that notification ends; what
// they complete later (promises) goes out together in the check phase of the
// event loop.
import native from './native'

const {
  REQUEST_WORDS,
  REQUEST_IO_ID,
  REQUEST_OP_FLAGS,
  REQUEST_START_SECTOR_LO,
  REQUEST_START_SECTOR_HI,
  REQUEST_NR_SECTORS,
  COMPLETION_WORDS,
  RING_REQUEST_TAIL,
  RING_NOTIFY,
  RING_COMPLETION_TAIL,
  RING_COMPLETION_HEAD,
  RING_WAITING,
  RING_CAPACITY,
  RING_REQUESTS_AT,
  RING_COMPLETIONS_AT,
} = native

/** What a ring needs from its queue's handle (`NativeDevice`, a worker's attachment, `SyntheticQueue`). */
export interface RingPort {
  queueRing(queue: number): ArrayBuffer
  /** Checked completions by a native call: for what does not fit the ring. */
  complete(queue: number, pairs: Int32Array): number
  wake(queue: number): void
  /** Where a worker starts reading (requests before it were someone else's); 0 if absent. */
  ringStart?(queue: number): number
}

/** Serves one request: its io id, `op_flags`, start sector and length in sectors. */
export type RequestVisitor = (id: number, opFlags: number, startSector: number, nrSectors: number) => void

export class QueueRing {
  /** Entries in each ring (a power of two at least the queue depth). */
  readonly capacity: number
  private readonly words: Uint32Array
  private readonly results: Int32Array
  private readonly mask: number
  private readonly requestsAt: number
  private readonly completionsAt: number
  /** The next request to read. */
  private cursor: number
  /** The next completion to write, and the head as last read. */
  private completionTail = 0
  private completionHead = 0
  /** Completions that found the ring full, sent by `complete` instead. */
  private overflow: number[] = []
  private flushScheduled = false
  /** The completion tail as last published. */
  private publishedTail = 0
  /** While `drain` serves requests: their completions go out when it ends. */
  private draining = false
  private rejectedReported = false
  private readonly flushBound = () => this.flush()

  constructor(
    private readonly port: RingPort,
    private readonly queue: number,
    /** Called once, with the count, if the addon ever drops completions sent by `complete`. */
    private readonly onRejected?: (count: number) => void,
  ) {
    const buffer = port.queueRing(queue)
    this.words = new Uint32Array(buffer)
    this.results = new Int32Array(buffer)
    // The rings describe their own layout (written once by the addon).
    this.capacity = Atomics.load(this.words, RING_CAPACITY)
    this.mask = this.capacity - 1
    this.requestsAt = this.words[RING_REQUESTS_AT]
    this.completionsAt = this.words[RING_COMPLETIONS_AT]
    if (this.completionsAt + this.capacity * COMPLETION_WORDS > this.words.length || this.capacity === 0) {
      throw new RangeError(`queue ${queue}'s ring does not hold the layout it states`)
    }
    this.cursor = port.ringStart?.(queue) ?? 0
    // A predecessor (a worker that died) may have left completions the
    // queue thread has not taken yet: start after them, with the true head.
    this.completionTail = Atomics.load(this.words, RING_COMPLETION_TAIL)
    this.completionHead = Atomics.load(this.words, RING_COMPLETION_HEAD)
    this.publishedTail = this.completionTail
  }

  /**
   * Calls `visit` for every request published since the last call, in
   * order. Call it when notified; it re-arms the notification first, so a
   * request published meanwhile is notified again, never lost. The
   * completions made while it runs are published (and the queue thread
   * woken) before it returns.
   */
  drain(visit: RequestVisitor): void {
    const w = this.words
    Atomics.store(w, RING_NOTIFY, 0)
    const tail = Atomics.load(w, RING_REQUEST_TAIL)
    let pos = this.cursor
    // More than `capacity` unread cannot happen (each holds a tag); if it
    // ever did, the oldest entries are overwritten: read the newest.
    if (((tail - pos) >>> 0) > this.capacity) pos = (tail - this.capacity) >>> 0
    this.draining = true
    try {
      for (; pos !== tail; pos = (pos + 1) >>> 0) {
        const at = this.requestsAt + (pos & this.mask) * REQUEST_WORDS
        visit(
          w[at + REQUEST_IO_ID],
          w[at + REQUEST_OP_FLAGS],
          w[at + REQUEST_START_SECTOR_HI] * 0x1_0000_0000 + w[at + REQUEST_START_SECTOR_LO],
          w[at + REQUEST_NR_SECTORS],
        )
      }
      this.cursor = tail
    } finally {
      // Even if a visitor threw: what it completed was never scheduled.
      this.draining = false
      this.publish()
    }
  }

  /**
   * Queues the completion of request `id`: out when the drain serving it
   * ends, or else with every other one of this loop turn in its check phase.
   */
  complete(id: number, result: number): void {
    let tail = this.completionTail
    if (((tail - this.completionHead) >>> 0) >= this.capacity) {
      this.completionHead = Atomics.load(this.words, RING_COMPLETION_HEAD)
    }
    if (((tail - this.completionHead) >>> 0) < this.capacity) {
      const at = this.completionsAt + (tail & this.mask) * COMPLETION_WORDS
      this.results[at] = id
      this.results[at + 1] = result
      this.completionTail = (tail + 1) >>> 0
    } else {
      this.overflow.push(id, result)
    }
    if (!this.flushScheduled && !this.draining) {
      this.flushScheduled = true
      // In the check phase of this loop iteration: after every notification
      // the poll phase delivered and their promise jobs.
      setImmediate(this.flushBound)
    }
  }

  /** The check-phase publication `complete` schedules. */
  private flush(): void {
    this.flushScheduled = false
    this.publish()
  }

  /** Publishes the queued completions, and wakes the queue thread if it waits. */
  private publish(): void {
    // Nothing new since the last publication (a drain that ended published
    // it): no store, and no wake-up for nothing.
    if (this.completionTail === this.publishedTail && this.overflow.length === 0) return
    this.publishedTail = this.completionTail
    Atomics.store(this.words, RING_COMPLETION_TAIL, this.completionTail)
    if (this.overflow.length > 0) {
      const pairs = Int32Array.from(this.overflow)
      this.overflow = []
      const rejected = this.port.complete(this.queue, pairs)
      if (rejected > 0 && !this.rejectedReported) {
        this.rejectedReported = true
        this.onRejected?.(rejected)
      }
    }
    if (Atomics.compareExchange(this.words, RING_WAITING, 1, 0) === 1) this.port.wake(this.queue)
  }
}
