// The S3 backend's object cache: whole data objects in memory, clean or
// dirty, never more than `cacheBytes` of them, and never more dirty ones than
// the store takes within `flushBudgetMs` at the rate it is measured to drain.
// Dirty objects are written back with bounded concurrency.
//
// Each object's `version` counts its changes and `storedVersion` is the one
// the store holds, so a FLUSH waits exactly for the versions that existed
// when it came. A fetch started before a change is thrown away when it
// returns (the change is newer), so concurrent requests on one object never
// bring back older bytes. No wait is on a condition that cannot come true:
// every waiter re-checks what it waits for each time it wakes, and fails with
// EIO when the write-back it waits on keeps failing.
import { UblkError } from '../../errors'
import { DrainRate } from './drain'
import type { ImageKeys } from './image'
import type { StoredObjects } from './stored'
import type { Store } from './store'

interface Entry {
  readonly index: number
  /** The object's bytes, once `known`; null: all zeros. */
  data: Buffer | null
  /** Whether its bytes are in memory (`data`, or zeros it knows of). */
  known: boolean
  /** Set while the bytes are being read from the store. */
  loading: Promise<void> | null
  version: number
  storedVersion: number
  /** The write-back (PUT or DELETE) in progress; resolves with its error, if any. */
  storing: Promise<UblkError | null> | null
  /** The buffer that write-back is sending: a change then copies first. */
  storingData: Buffer | null
  /** When it was last changed (ms), for the write-back delay. */
  changedAt: number
  /** A write ended at the object's last byte: sequential writing moved on. */
  filledToEnd: boolean
  /** Requests using it now (it is not evicted meanwhile). */
  users: number
}

/** What the cache asks of the lease before it acknowledges a change or sends one. */
export interface Fence {
  /** Resolves when this server may acknowledge writes (renewing an expired lease first); EIO when it may not. */
  writable(): Promise<void>
  /** Throws (EIO) unless this server may acknowledge writes now. */
  checkWritable(): void
  /** Throws (EIO) once the image was taken over by another server. */
  checkServing(): void
  /** No store request may run past this (`performance.now()` ms). */
  readonly deadline: number
}

export interface CacheOptions {
  objectSize: number
  size: number
  cacheBytes: number
  uploadConcurrency: number
  writebackDelayMs: number
  /** How long a FLUSH may take at the measured drain rate. */
  flushBudgetMs: number
  /** Told of every write-back that failed (the object stays dirty and is tried again). */
  onWritebackError?: (err: UblkError, key: string) => void
}

export interface CacheStats {
  /** Bytes of object buffers held (clean, dirty and being sent). */
  cachedBytes: number
  /** Bytes of objects changed and not yet stored. */
  dirtyBytes: number
  /** The most `dirtyBytes` may be now: what the store takes in `flushBudgetMs` at `drainBytesPerSecond`. */
  dirtyLimit: number
  /** How fast the store takes dirty objects, as measured (bytes/s). */
  drainBytesPerSecond: number
  /** The most `cachedBytes` ever was. */
  peakCachedBytes: number
  /** Objects the cache keeps track of (in memory, or in use by a request). */
  entries: number
  hits: number
  misses: number
  /** Objects uploaded (PUT) and deleted by write-back. */
  uploads: number
  deletes: number
  /** Write-backs that failed (the data stays dirty and is tried again). */
  writebackFailures: number
  /** The last write-back failure's message, or null. */
  lastWritebackError: string | null
}

export class ObjectCache {
  private readonly entries = new Map<number, Entry>()
  private readonly dirty = new Set<Entry>()
  private readonly zeros: Buffer
  /** Object buffers no entry uses, for the next one. */
  private readonly spare: Buffer[] = []
  private bytes = 0
  /** Objects that requests in flight were given dirty room for. */
  private dirtyReserved = 0
  private storesRunning = 0
  private readonly slotWaiters: (() => void)[] = []
  /** Requests waiting for memory, for dirty room or for a fetch. */
  private readonly waiters: (() => void)[] = []
  private lastFailure: UblkError | null = null
  /** When the write-back that failed last had started. */
  private lastFailureStartedAt = -Infinity
  private readonly drain: DrainRate
  private readonly timer: NodeJS.Timeout
  readonly stats = { peakCachedBytes: 0, hits: 0, misses: 0, uploads: 0, deletes: 0, writebackFailures: 0 }

  constructor(
    private readonly store: Store,
    private readonly keys: ImageKeys,
    /** The data objects the store holds. */
    private readonly stored: StoredObjects,
    private readonly options: CacheOptions,
    private readonly fence: Fence,
  ) {
    this.zeros = Buffer.alloc(options.objectSize)
    // Until measured: each upload slot moving an object every 2 s.
    this.drain = new DrainRate((options.uploadConcurrency * options.objectSize) / 2)
    this.timer = setInterval(() => this.writeBack(false), Math.max(10, options.writebackDelayMs / 2))
    this.timer.unref()
  }

  getStats(): CacheStats {
    return {
      ...this.stats,
      cachedBytes: this.bytes,
      dirtyBytes: this.dirty.size * this.options.objectSize,
      dirtyLimit: this.dirtyLimit(),
      drainBytesPerSecond: Math.round(this.drain.bytesPerSecond),
      entries: this.entries.size,
      lastWritebackError: this.lastFailure?.message ?? null,
    }
  }

  /** The pieces of [offset, offset + length) within one object each. */
  private pieces(offset: number, length: number): { index: number; within: number; done: number; n: number }[] {
    if (offset + length > this.options.size) throw new UblkError('EIO', `request beyond the end of a ${this.options.size}-byte image`)
    const size = this.options.objectSize
    const out = []
    for (let done = 0; done < length; ) {
      const pos = offset + done
      const index = Math.floor(pos / size)
      const within = pos - index * size
      const n = Math.min(size - within, length - done)
      out.push({ index, within, done, n })
      done += n
    }
    return out
  }

  /**
   * Copies [offset, offset + buf.length) into `buf`. Synchronous (returns
   * undefined) when it is all in memory or never stored, the common case.
   */
  read(buf: Buffer, offset: number): void | Promise<void> {
    this.fence.checkServing()
    const size = this.options.objectSize
    const index = Math.floor(offset / size)
    const within = offset - index * size
    if (within + buf.length <= size && offset + buf.length <= this.options.size) {
      const e = this.entries.get(index)
      if (e?.known) {
        this.stats.hits++
        this.touch(e)
        if (e.data) e.data.copy(buf, 0, within, within + buf.length)
        else buf.fill(0)
        return
      }
      if (!e && !this.stored.has(index)) {
        buf.fill(0)
        return
      }
    }
    return this.readSlow(buf, offset)
  }

  private async readSlow(buf: Buffer, offset: number): Promise<void> {
    for (const { index, within, done, n } of this.pieces(offset, buf.length)) {
      if (!this.entries.has(index) && !this.stored.has(index)) {
        buf.fill(0, done, done + n)
        continue
      }
      const e = await this.use(index, true)
      if (e.data) e.data.copy(buf, done, within, within + n)
      else buf.fill(0, done, done + n)
      this.unuse(e)
    }
  }

  /** Stores `buf` at `offset` in the cache; with `durable`, waits until the store has it. */
  async write(buf: Buffer, offset: number, durable: boolean): Promise<void> {
    await this.fence.writable()
    const touched: [Entry, number][] = []
    for (const { index, within, done, n } of this.pieces(offset, buf.length)) {
      const reserved = await this.dirtyRoom(index)
      try {
        const e = await this.use(index, n !== this.options.objectSize)
        try {
          // Checked again right before the copy, in the same tick: a write-back may start during any await.
          while (this.needsOwnBuffer(e)) await this.ownBuffer(e)
          buf.copy(e.data as Buffer, within, done, done + n)
          this.changed(e, within + n === this.options.objectSize)
          touched.push([e, e.version])
        } finally {
          this.unuse(e)
        }
      } finally {
        if (reserved) this.dirtyReserved--
      }
    }
    if (durable) await Promise.all(touched.map(([e, v]) => this.storedAt(e, v)))
    // Acknowledged only while the lease holds (a change made meanwhile stays dirty).
    await this.fence.writable()
  }

  /** Makes [offset, offset + length) read as zeros: whole objects are deleted, the edges zeroed. */
  async zero(offset: number, length: number): Promise<void> {
    await this.fence.writable()
    for (const { index, within, n } of this.pieces(offset, length)) {
      if (!this.entries.has(index) && !this.stored.has(index)) continue // zeros already
      const reserved = await this.dirtyRoom(index)
      const whole = n === this.options.objectSize
      try {
        const e = await this.use(index, !whole)
        try {
          if (whole) {
            this.dropBuffer(e)
            e.data = null
          } else if (e.data) {
            while (this.needsOwnBuffer(e)) await this.ownBuffer(e)
            ;(e.data as Buffer).fill(0, within, within + n)
          } else {
            continue // already zeros
          }
          e.known = true
          this.changed(e, false)
        } finally {
          this.unuse(e)
        }
      } finally {
        if (reserved) this.dirtyReserved--
      }
    }
    await this.fence.writable()
  }

  /** Resolves when everything changed before the call is in the store; EIO if some of it cannot be stored. */
  async flush(): Promise<void> {
    const wanted = [...this.dirty].map((e) => [e, e.version] as const)
    for (const [e] of wanted) if (!e.storing) this.startStore(e)
    const results = await Promise.allSettled(wanted.map(([e, v]) => this.storedAt(e, v)))
    const failed = results.filter((r) => r.status === 'rejected')
    if (failed.length) {
      const first = (failed[0] as PromiseRejectedResult).reason as Error
      throw new UblkError('EIO', `flush: ${failed.length} of ${wanted.length} objects could not be stored (they stay in memory and are tried again): ${first.message}`, { cause: first })
    }
  }

  /** How many objects are dirty (not yet in the store). */
  get dirtyObjects(): number {
    return this.dirty.size
  }

  /** Stops the write-back timer. */
  close(): void {
    clearInterval(this.timer)
  }

  // --- entries -----------------------------------------------------------------------

  /** Moves `e` to the most recently used end. */
  private touch(e: Entry): void {
    this.entries.delete(e.index)
    this.entries.set(e.index, e)
  }

  /**
   * The entry of object `index`, counted as in use (pair with `unuse`). With
   * `needData`, its bytes are in memory (read from the store if need be);
   * without, the caller overwrites all of it.
   */
  private async use(index: number, needData: boolean): Promise<Entry> {
    let e = this.entries.get(index)
    if (e) {
      this.stats.hits++
      this.touch(e)
    } else {
      this.stats.misses++
      e = { index, data: null, known: !this.stored.has(index), loading: null, version: 0, storedVersion: 0, storing: null, storingData: null, changedAt: 0, filledToEnd: false, users: 0 }
      this.entries.set(index, e)
    }
    e.users++
    try {
      while (needData && !e.known) {
        e.loading ??= this.load(e)
        await e.loading
      }
    } catch (err) {
      this.unuse(e)
      throw err
    }
    return e
  }

  /** Done with `e`: an entry that holds nothing (unknown, or clean zeros) goes. */
  private unuse(e: Entry): void {
    e.users--
    if (e.users > 0) return
    this.forgetIfEmpty(e)
    this.wake()
  }

  private forgetIfEmpty(e: Entry): void {
    const empty = e.data === null && e.version === e.storedVersion && !e.loading && !e.storing
    if (e.users === 0 && empty && this.entries.get(e.index) === e) this.entries.delete(e.index)
  }

  /** Reads `e`'s bytes from the store, unless a change made them known meanwhile (then the fetch is dropped). */
  private async load(e: Entry): Promise<void> {
    const version = e.version
    try {
      const buf = await this.reserve(() => !e.known)
      if (!buf) return
      let found: boolean
      try {
        found = await this.store.getObject(this.keys.data(e.index), buf)
      } catch (err) {
        this.recycle(buf)
        throw err
      }
      if (e.known || e.version !== version) {
        this.recycle(buf) // older than what was written meanwhile
      } else if (!found) {
        this.recycle(buf)
        throw new UblkError('EIO', `${this.store.url(this.keys.data(e.index))} is missing, though the image's listing had it (did something else delete it?)`)
      } else {
        e.data = buf
        e.known = true
      }
    } finally {
      e.loading = null
      this.wake()
    }
  }

  /** Whether `e` needs a buffer of its own before a change: it has none, or its buffer is being sent. */
  private needsOwnBuffer(e: Entry): boolean {
    return e.data === null || e.data === e.storingData
  }

  /**
   * Gives `e` a buffer of its own to change: allocated (zeros) or copied from
   * the one being sent. Callers check `needsOwnBuffer` again after it, with
   * no await before their change.
   */
  private async ownBuffer(e: Entry): Promise<void> {
    const needed = () => this.needsOwnBuffer(e)
    while (needed()) {
      const buf = await this.reserve(needed)
      if (!buf) continue
      // A write-back may have ended while reserve resolved: then `e` keeps its own buffer.
      if (!needed()) {
        this.recycle(buf)
        continue
      }
      if (e.data === null) {
        e.data = buf.fill(0)
      } else {
        buf.set(e.data)
        e.data = buf
      }
    }
    e.known = true
  }

  /** Forgets `e`'s buffer (freed now, or when the write-back sending it ends). */
  private dropBuffer(e: Entry): void {
    if (e.data && e.data !== e.storingData) this.recycle(e.data)
  }

  private changed(e: Entry, filledToEnd: boolean): void {
    e.version++
    e.changedAt = Date.now()
    e.filledToEnd = filledToEnd
    this.dirty.add(e)
    if (filledToEnd) this.writeBack(false)
  }

  // --- memory and dirty room -----------------------------------------------------------

  /**
   * For a request waiting on write-back since `since` (`performance.now()`):
   * the EIO to fail it with once a write-back that started after it began
   * waiting has failed (one that started before may fail of an outage
   * already over).
   */
  private waitFailure(since: number, what: string): UblkError | null {
    if (!this.lastFailure || this.lastFailureStartedAt < since) return null
    return new UblkError('EIO', `${what}: ${this.lastFailure.message}`, { cause: this.lastFailure })
  }

  private sleep(): Promise<void> {
    return new Promise<void>((wake) => this.waiters.push(wake))
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake()
  }

  /**
   * A buffer for one object (contents undefined), once one more fits in
   * `cacheBytes`, evicting clean objects; null once `stillNeeded` turns
   * false; EIO when write-back keeps failing. Buffers are recycled, never left
   * to the garbage collector: the process holds at most `cacheBytes` of them.
   */
  private async reserve(stillNeeded: () => boolean): Promise<Buffer | null> {
    const size = this.options.objectSize
    const since = performance.now()
    while (this.bytes + size > this.options.cacheBytes) {
      if (!stillNeeded()) return null
      if (this.evictOne()) continue
      this.writeBack(true)
      const failed = this.waitFailure(since, 'the cache is full of changes that cannot be stored')
      if (failed) throw failed
      await this.sleep()
    }
    if (!stillNeeded()) return null
    this.bytes += size
    if (this.bytes > this.stats.peakCachedBytes) this.stats.peakCachedBytes = this.bytes
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(size)
  }

  /** What dirty data may reach: the flush budget at the drain rate, within the cache (less room for two clean objects). */
  private dirtyLimit(): number {
    const size = this.options.objectSize
    const byTime = (this.drain.bytesPerSecond * this.options.flushBudgetMs) / 1000
    return Math.max(2 * size, Math.min(byTime, this.options.cacheBytes - 2 * size))
  }

  /**
   * Waits until object `index` may become dirty: it is already, or one more
   * fits the dirty limit, counting the objects that requests in flight were
   * given room for. True when it took room (give it back with `dirtyReserved--`).
   */
  private async dirtyRoom(index: number): Promise<boolean> {
    const since = performance.now()
    for (;;) {
      const e = this.entries.get(index)
      if (e && this.dirty.has(e)) return false
      if ((this.dirty.size + this.dirtyReserved + 1) * this.options.objectSize <= this.dirtyLimit()) {
        this.dirtyReserved++
        return true
      }
      this.writeBack(true)
      const failed = this.waitFailure(since, 'too many changes wait for a store that cannot take them')
      if (failed) throw failed
      await this.sleep()
    }
  }

  /** Takes back a buffer no entry or write-back uses any more. */
  private recycle(buf: Buffer): void {
    this.bytes -= this.options.objectSize
    this.spare.push(buf)
    this.wake()
  }

  /** Evicts the least recently used clean entry not in use; false when none frees memory. */
  private evictOne(): boolean {
    for (const e of this.entries.values()) {
      if (e.users === 0 && !e.loading && !e.storing && e.version === e.storedVersion) {
        this.entries.delete(e.index)
        if (e.data) {
          this.recycle(e.data)
          return true
        }
      }
    }
    return false
  }

  // --- write-back ----------------------------------------------------------------------

  /**
   * Starts write-back of dirty objects, oldest first, up to the concurrency
   * bound: those not changed for `writebackDelayMs`, those written to their
   * end, or (under `pressure`: memory or dirty room is short) any.
   */
  private writeBack(pressure: boolean): void {
    if (this.dirty.size === 0) return
    const now = Date.now()
    pressure ||= this.dirty.size * this.options.objectSize * 2 >= this.dirtyLimit()
    for (const e of this.dirty) {
      if (this.storesRunning + this.slotWaiters.length >= this.options.uploadConcurrency) return
      if (e.storing) continue
      if (pressure || e.filledToEnd || now - e.changedAt >= this.options.writebackDelayMs) this.startStore(e)
    }
  }

  /** Resolves once the store holds version `v` of `e` (or a later one); EIO when the write-back fails. */
  private async storedAt(e: Entry, v: number): Promise<void> {
    while (e.storedVersion < v) {
      const storing = e.storing ?? this.startStore(e)
      const failed = await storing
      if (failed && e.storedVersion < v) throw failed
    }
  }

  /** Sends `e`'s current version to the store (PUT, or DELETE for zeros); resolves with the error if it failed. */
  private startStore(e: Entry): Promise<UblkError | null> {
    const run = async (): Promise<UblkError | null> => {
      await this.slot()
      this.drain.begin()
      const startedAt = performance.now()
      const v = e.version
      const data = e.data
      const key = this.keys.data(e.index)
      e.storingData = data
      let drained = 0
      try {
        this.fence.checkWritable()
        const limits = { deadline: () => this.fence.deadline }
        if (data === null || data.equals(this.zeros)) {
          if (this.stored.has(e.index)) {
            await this.store.delete(key, limits)
            this.stats.deletes++
          }
          this.stored.delete(e.index)
        } else {
          // Marked first: a PUT that fails may still have been applied (its
          // answer lost), and a later zero must then DELETE it. A mark made in
          // vain costs one DELETE of nothing.
          this.stored.add(e.index)
          await this.store.put(key, data, {}, limits)
          this.stats.uploads++
        }
        drained = this.options.objectSize
        if (v > e.storedVersion) e.storedVersion = v
        if (e.version === e.storedVersion) this.dirty.delete(e)
        return null
      } catch (err) {
        this.stats.writebackFailures++
        this.lastFailureStartedAt = startedAt
        this.lastFailure = err instanceof UblkError ? err : new UblkError('EIO', String(err), { cause: err })
        this.options.onWritebackError?.(this.lastFailure, key)
        return this.lastFailure
      } finally {
        this.drain.end(drained)
        e.storingData = null
        if (data && data !== e.data) this.recycle(data) // a change copied it meanwhile: the old copy goes
        e.storing = null
        this.freeSlot()
        this.forgetIfEmpty(e)
        this.wake()
      }
    }
    const storing = run()
    e.storing = storing
    return storing
  }

  private async slot(): Promise<void> {
    while (this.storesRunning >= this.options.uploadConcurrency) await new Promise<void>((go) => this.slotWaiters.push(go))
    this.storesRunning++
  }

  private freeSlot(): void {
    this.storesRunning--
    this.slotWaiters.shift()?.()
  }
}
