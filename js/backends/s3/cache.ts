// The S3 backend's object cache: whole data objects in memory, clean or
// dirty, never more than `cacheBytes` of them; dirty ones are written back
// with bounded concurrency. Each object's version counts its changes, and
// `storedVersion` is the one the store holds, so a FLUSH waits exactly for the
// versions that existed when it came.
import { UblkError } from '../../errors'
import type { ImageKeys } from './image'
import type { ObjectStore } from './store'

interface Entry {
  readonly index: number
  /** The object's bytes; null: all zeros (nothing stored, or deleted). */
  data: Buffer | null
  /** Set while the bytes are being read from the store. */
  loading: Promise<void> | null
  version: number
  storedVersion: number
  /** The write-back (PUT or DELETE) in progress; resolves with its error, if any. */
  storing: Promise<UblkError | null> | null
  /** The buffer that write-back is sending: a write then copies first. */
  storingData: Buffer | null
  /** When it was last changed (ms), for the write-back delay. */
  changedAt: number
  /** A write ended at the object's last byte: sequential writing moved on. */
  filledToEnd: boolean
  /** Requests using it now (it is not evicted meanwhile). */
  users: number
}

export interface CacheOptions {
  objectSize: number
  size: number
  cacheBytes: number
  uploadConcurrency: number
  writebackDelayMs: number
}

export interface CacheStats {
  /** Bytes of object buffers held (clean, dirty and being sent). */
  cachedBytes: number
  /** Bytes of objects changed and not yet stored. */
  dirtyBytes: number
  /** The most `cachedBytes` ever was. */
  peakCachedBytes: number
  hits: number
  misses: number
  /** Objects uploaded (PUT) and deleted by write-back. */
  uploads: number
  deletes: number
  /** Write-backs that failed (the data stays dirty and is tried again). */
  writebackFailures: number
}

export class ObjectCache {
  private readonly entries = new Map<number, Entry>()
  private readonly dirty = new Set<Entry>()
  private readonly zeros: Buffer
  /** Object buffers no entry uses, for the next one. */
  private readonly spare: Buffer[] = []
  private bytes = 0
  private storesRunning = 0
  private readonly slotWaiters: (() => void)[] = []
  private readonly roomWaiters: (() => void)[] = []
  private lastFailure: UblkError | null = null
  private failureCount = 0
  private readonly timer: NodeJS.Timeout
  readonly stats: CacheStats = { cachedBytes: 0, dirtyBytes: 0, peakCachedBytes: 0, hits: 0, misses: 0, uploads: 0, deletes: 0, writebackFailures: 0 }

  constructor(
    private readonly store: ObjectStore,
    private readonly keys: ImageKeys,
    /** Indexes of the data objects the store holds. */
    private readonly stored: Set<number>,
    private readonly options: CacheOptions,
    /** Throws when writing must stop (the lease was lost). */
    private readonly checkWritable: () => void,
  ) {
    this.zeros = Buffer.alloc(options.objectSize)
    this.timer = setInterval(() => this.writeBack(false), Math.max(10, options.writebackDelayMs / 2))
    this.timer.unref()
  }

  getStats(): CacheStats {
    return { ...this.stats, cachedBytes: this.bytes, dirtyBytes: this.dirty.size * this.options.objectSize }
  }

  /** Calls `fn` for each piece of [offset, offset + length) within one object. */
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
   * undefined) when it is all in memory, the common case of a warm cache.
   */
  read(buf: Buffer, offset: number): void | Promise<void> {
    const size = this.options.objectSize
    const index = Math.floor(offset / size)
    const within = offset - index * size
    const e = this.entries.get(index)
    if (e && !e.loading && this.known(e) && within + buf.length <= size && offset + buf.length <= this.options.size) {
      this.stats.hits++
      this.touch(e)
      if (e.data) e.data.copy(buf, 0, within, within + buf.length)
      else buf.fill(0)
      return
    }
    return this.readSlow(buf, offset)
  }

  private async readSlow(buf: Buffer, offset: number): Promise<void> {
    for (const { index, within, done, n } of this.pieces(offset, buf.length)) {
      const e = await this.use(index, true)
      try {
        if (e.data) e.data.copy(buf, done, within, within + n)
        else buf.fill(0, done, done + n)
      } finally {
        this.unuse(e)
      }
    }
  }

  /** Stores `buf` at `offset` in the cache; with `durable`, waits until the store has it. */
  async write(buf: Buffer, offset: number, durable: boolean): Promise<void> {
    this.checkWritable()
    const touched: [Entry, number][] = []
    for (const { index, within, done, n } of this.pieces(offset, buf.length)) {
      const whole = n === this.options.objectSize
      const e = await this.use(index, !whole)
      try {
        await this.ownBuffer(e)
        buf.copy(e.data as Buffer, within, done, done + n)
        this.changed(e, within + n === this.options.objectSize)
        touched.push([e, e.version])
      } finally {
        this.unuse(e)
      }
    }
    if (durable) await Promise.all(touched.map(([e, v]) => this.storedAt(e, v)))
  }

  /** Makes [offset, offset + length) read as zeros: whole objects are deleted, the edges zeroed. */
  async zero(offset: number, length: number): Promise<void> {
    this.checkWritable()
    for (const { index, within, n } of this.pieces(offset, length)) {
      if (!this.entries.has(index) && !this.stored.has(index)) continue // zeros already
      const whole = n === this.options.objectSize
      const e = await this.use(index, !whole)
      try {
        if (whole) {
          this.dropBuffer(e)
          e.data = null
        } else if (e.data) {
          await this.ownBuffer(e)
          ;(e.data as Buffer).fill(0, within, within + n)
        } else {
          continue // already zeros
        }
        this.changed(e, false)
      } finally {
        this.unuse(e)
      }
    }
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

  /** Stops the write-back timer. Call after a successful flush. */
  close(): void {
    clearInterval(this.timer)
  }

  // --- entries -----------------------------------------------------------------------

  /**
   * Whether `e`'s bytes are in memory: a buffer, or zeros it knows of (a
   * change made it so, or the store has no such object). An entry made for a
   * whole-object write that has not happened yet is not.
   */
  private known(e: Entry): boolean {
    return e.data !== null || e.version > 0 || !this.stored.has(e.index)
  }

  /** Done with `e`: an entry left unknown (its whole-object write failed) goes. */
  private unuse(e: Entry): void {
    e.users--
    if (e.users === 0 && !this.known(e) && !e.loading && this.entries.get(e.index) === e) this.entries.delete(e.index)
  }

  /** Moves `e` to the most recently used end. */
  private touch(e: Entry): void {
    this.entries.delete(e.index)
    this.entries.set(e.index, e)
  }

  /**
   * The entry of object `index`, counted as in use (the caller decrements
   * `users`). With `needData`, its bytes are in memory (read from the store
   * if need be); without, the caller overwrites all of it.
   */
  private async use(index: number, needData: boolean): Promise<Entry> {
    let e = this.entries.get(index)
    if (e) {
      this.stats.hits++
      e.users++
      this.touch(e)
      if (needData && !e.loading && !this.known(e)) e.loading = this.load(e)
      if (e.loading) {
        try {
          await e.loading
        } catch (err) {
          e.users--
          throw err
        }
      }
      return e
    }
    this.stats.misses++
    e = { index, data: null, loading: null, version: 0, storedVersion: 0, storing: null, storingData: null, changedAt: 0, filledToEnd: false, users: 1 }
    this.entries.set(index, e)
    if (needData && this.stored.has(index)) {
      const entry = e
      entry.loading = this.load(entry)
      try {
        await entry.loading
      } catch (err) {
        entry.users--
        throw err
      }
    }
    return e
  }

  private async load(e: Entry): Promise<void> {
    try {
      const buf = await this.reserve()
      try {
        await this.store.getInto(this.keys.data(e.index), buf, 0, true)
      } catch (err) {
        this.recycle(buf)
        throw err
      }
      e.data = buf
    } catch (err) {
      if (this.entries.get(e.index) === e) this.entries.delete(e.index)
      throw err
    } finally {
      e.loading = null
      this.wake()
    }
  }

  /** Gives `e` a buffer of its own to change: allocated (zeros) or copied from the one being sent. */
  private async ownBuffer(e: Entry): Promise<void> {
    while (e.data === null || e.data === e.storingData) {
      const buf = await this.reserve()
      if (e.data === null) {
        e.data = buf.fill(0)
      } else if (e.data === e.storingData) {
        e.data = buf
        e.storingData.copy(buf)
      } else {
        this.recycle(buf) // someone else gave it one meanwhile
      }
    }
  }

  /** Forgets `e`'s buffer (its bytes are freed now, or when the write-back sending it ends). */
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

  // --- memory --------------------------------------------------------------------------

  /**
   * A buffer for one object (contents undefined), once one more fits in
   * `cacheBytes`, evicting clean objects; EIO when write-back keeps failing.
   * Buffers are recycled, never left to the garbage collector: the process
   * holds at most `cacheBytes` of them.
   */
  private async reserve(): Promise<Buffer> {
    const size = this.options.objectSize
    const failuresBefore = this.failureCount
    while (this.bytes + size > this.options.cacheBytes) {
      if (this.evictOne()) continue
      this.writeBack(true)
      if (this.failureCount > failuresBefore && this.lastFailure) {
        throw new UblkError('EIO', `the cache is full of changes that cannot be stored: ${this.lastFailure.message}`, { cause: this.lastFailure })
      }
      await new Promise<void>((wake) => this.roomWaiters.push(wake))
    }
    this.bytes += size
    if (this.bytes > this.stats.peakCachedBytes) this.stats.peakCachedBytes = this.bytes
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(size)
  }

  /** Takes back a buffer no entry or write-back uses any more. */
  private recycle(buf: Buffer): void {
    this.bytes -= this.options.objectSize
    this.spare.push(buf)
    this.wake()
  }

  private wake(): void {
    for (const wake of this.roomWaiters.splice(0)) wake()
  }

  /** Evicts the least recently used clean entry not in use; false when there is none. */
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
   * end, or (under `pressure`, when the cache is full) any.
   */
  private writeBack(pressure: boolean): void {
    if (this.dirty.size === 0) return
    const now = Date.now()
    pressure ||= this.dirty.size * this.options.objectSize * 2 >= this.options.cacheBytes
    for (const e of this.dirty) {
      if (this.storesRunning + this.slotWaiters.length >= this.options.uploadConcurrency) return
      if (e.storing || e.loading) continue
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
      const v = e.version
      const data = e.data
      e.storingData = data
      try {
        this.checkWritable()
        const key = this.keys.data(e.index)
        if (data === null || data.equals(this.zeros)) {
          if (this.stored.has(e.index)) {
            await this.store.delete(key)
            this.stats.deletes++
          }
          this.stored.delete(e.index)
        } else {
          await this.store.put(key, data)
          this.stored.add(e.index)
          this.stats.uploads++
        }
        if (v > e.storedVersion) e.storedVersion = v
        if (e.version === e.storedVersion) this.dirty.delete(e)
        return null
      } catch (err) {
        this.stats.writebackFailures++
        this.failureCount++
        this.lastFailure = err instanceof UblkError ? err : new UblkError('EIO', String(err), { cause: err })
        return this.lastFailure
      } finally {
        e.storingData = null
        if (data && data !== e.data) this.recycle(data) // a write copied it meanwhile: the old copy goes
        e.storing = null
        this.freeSlot()
        this.wake()
        // A clean object of zeros needs no entry.
        if (e.data === null && e.users === 0 && e.version === e.storedVersion && this.entries.get(e.index) === e) this.entries.delete(e.index)
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
