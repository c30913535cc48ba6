// The lease on an image (`<prefix>lease`): the fence that keeps two servers
// from ever both acknowledging writes to one image.
//
// - Taken, renewed and released with conditional PUTs: `If-None-Match: *` to
//   create it, `If-Match: <etag>` to replace it, so of two servers racing for
//   it exactly one wins, and a renewal never overwrites a take-over. (Ceph 16's
//   radosgw honours both, atomically, but matches If-Match only against the
//   bare ETag, without the quotes S3 puts around it: both forms are tried. It
//   ignores conditions on DELETE, so a release writes a released record.)
// - Self-fencing: the holder counts its lease from the moment it sent the last
//   renewal that succeeded; from `leaseMs` after it (less a margin) it stops
//   acknowledging writes and sending data, until a renewal succeeds again.
// - A server taking over a lease another may still hold (fresh, or stale only
//   by the other host's clock) waits `leaseMs` after its take-over first: by
//   then the old holder has fenced itself, whatever the clocks say.
// - A store that ignores the conditions (found out at open) gets the old,
//   advisory scheme with a warning.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { UblkError } from '../../errors'
import { isAlive } from '../../pids'
import { ConditionFailed, type Store } from './store'

/** The lease object's contents. */
interface LeaseRecord {
  owner: string
  host: string
  bootId: string
  pid: number
  /** Counts this holder's writes of the record (to recognise our own write whose answer was lost). */
  seq: number
  /** When the holder last renewed it (ms since the epoch, the holder's clock; informational across hosts). */
  renewedAt: number
  /** How long it holds after a renewal. */
  ttlMs: number
  /** Set by a clean release: anyone may take it at once. */
  released?: boolean
}

/** How the holder's view of its own lease is kept short of the newcomer's wait (clock-rate drift, timers). */
function margin(ttlMs: number): number {
  return Math.min(1000, 50 + ttlMs / 100)
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}

function parseLease(body: Buffer): LeaseRecord | null {
  try {
    const r = JSON.parse(body.toString('utf8')) as LeaseRecord
    return typeof r.owner === 'string' && Number.isFinite(r.renewedAt) && Number.isFinite(r.ttlMs) ? r : null
  } catch {
    return null
  }
}

function describeHolder(r: LeaseRecord): string {
  return `pid ${r.pid} on ${r.host}`
}

/** The quoted and bare forms of an ETag, the one that worked first. */
function etagForms(etag: string, bareFirst: boolean): string[] {
  const bare = etag.replace(/^"|"$/g, '')
  const quoted = `"${bare}"`
  return bareFirst ? [bare, quoted] : [quoted, bare]
}

export interface LeaseOptions {
  ttlMs: number
  force: boolean
  /** Bounds each renewal attempt. */
  requestTimeoutMs: number
  /** Called with a warning (the store ignores conditional PUTs). */
  warn?: (message: string) => void
}

export class Lease {
  /** Set when someone else took the image over: every request fails. */
  lost: UblkError | null = null
  /** Whether the store enforces the conditions (else the lease is advisory). */
  fenced = true
  private etag = ''
  private bareEtags = false
  /** `performance.now()` until which the lease is surely ours. */
  private validUntil = 0
  private timer: NodeJS.Timeout | undefined
  private renewing: Promise<void> | null = null
  private released = false
  private readonly record: LeaseRecord

  private constructor(
    private readonly store: Store,
    private readonly key: string,
    private readonly options: LeaseOptions,
  ) {
    this.record = { owner: randomUUID(), host: hostname(), bootId: bootId(), pid: process.pid, seq: 0, renewedAt: 0, ttlMs: options.ttlMs }
  }

  /** Takes the lease on `key`, or refuses (EBUSY) while another holder's is fresh and `force` is not given. */
  static async acquire(store: Store, key: string, options: LeaseOptions): Promise<Lease> {
    const lease = new Lease(store, key, options)
    await lease.take()
    lease.schedule(options.ttlMs / 3)
    return lease
  }

  /** Whether this server may acknowledge a write now. */
  get held(): boolean {
    return this.lost === null && !this.released && performance.now() < this.validUntil
  }

  /** Until when (`performance.now()` ms) a data request may run: none may outlive the lease. */
  get deadline(): number {
    return this.validUntil
  }

  /**
   * Resolves when this server may acknowledge writes. A lease that ran out
   * while the store was unreachable is renewed first (renewals for at most
   * twice `requestTimeoutMs`), so service resumes as soon as the store answers.
   */
  async writable(): Promise<void> {
    const until = performance.now() + 2 * this.options.requestTimeoutMs
    while (!this.held && !this.lost && !this.released && performance.now() < until) {
      await this.renew()
      if (!this.held) await sleep(50)
    }
    this.checkWritable()
  }

  /** EIO once another server took the image over. */
  checkServing(): void {
    if (this.lost) throw this.lost
  }

  /** EIO unless this server may acknowledge writes. */
  checkWritable(): void {
    if (this.lost) throw this.lost
    if (!this.held) {
      throw new UblkError('EIO', `${this.store.url(this.key)}: the lease on the image could not be renewed in time; writes fail until it is (is the store reachable?)`)
    }
  }

  private async take(): Promise<void> {
    const url = this.store.url(this.key)
    const found = await this.store.getSmall(this.key)
    const held = found ? parseLease(found.body) : null
    let wait = false
    if (found && held && !held.released) {
      const why = this.heldBy(held)
      if (why && !this.options.force) throw new UblkError('EBUSY', `${url}: the image is in use: ${why}; pass force to take it over`)
      // The holder may still think it holds the lease (it is fresh, or stale
      // only by its host's clock): wait out its lease after taking it.
      wait = !this.isDeadHere(held)
    }
    const sentAt = performance.now()
    try {
      await this.write(found ? { ifMatch: found.etag } : { ifNoneMatch: '*' })
    } catch (err) {
      if (err instanceof ConditionFailed) {
        const now = await this.store.getSmall(this.key)
        const r = now ? parseLease(now.body) : null
        throw new UblkError('EBUSY', `${url}: another server took the image at the same time (${r ? describeHolder(r) : 'lease gone'})`)
      }
      throw err
    }
    this.fenced = await this.storeEnforcesConditions()
    if (!this.fenced) this.options.warn?.(`${url}: the store ignores conditional PUTs (If-Match): the lease is only advisory, and two servers started at once could both write the image`)
    if (wait && this.fenced) {
      await sleep(Math.max(0, sentAt + this.options.ttlMs + margin(this.options.ttlMs) - performance.now()))
      await this.renew()
      if (!this.held) throw this.lost ?? new UblkError('EIO', `${url}: the lease taken over could not be renewed after waiting for the previous holder to stop`)
    }
  }

  /** A process of this host (same boot) that is gone holds nothing. */
  private isDeadHere(held: LeaseRecord): boolean {
    const sameBoot = held.host === this.record.host && held.bootId !== '' && held.bootId === this.record.bootId
    return sameBoot && !isAlive(held.pid)
  }

  /** Why `held` still holds the image, or null when it is stale. */
  private heldBy(held: LeaseRecord): string | null {
    if (this.isDeadHere(held)) return null
    const age = Date.now() - held.renewedAt
    if (age >= held.ttlMs) return null
    return `${describeHolder(held)} renewed its lease ${(age / 1000).toFixed(1)} s ago (it holds for ${(held.ttlMs / 1000).toFixed(0)} s)`
  }

  /**
   * Writes our record: conditionally (If-Match, trying the ETag's quoted and
   * bare forms), or on the first take with `ifNoneMatch`. A 412 after a lost
   * answer to our own write is recognised by reading the record back.
   */
  private async write(condition: { ifMatch: string } | { ifNoneMatch: '*' }, extra: Partial<LeaseRecord> = {}): Promise<void> {
    const sentAt = performance.now()
    this.record.seq++
    this.record.renewedAt = Date.now()
    const body = Buffer.from(JSON.stringify({ ...this.record, ...extra }) + '\n')
    const limits = { deadline: sentAt + this.options.requestTimeoutMs * 2, retries: 1 }
    const forms = 'ifMatch' in condition ? etagForms(condition.ifMatch, this.bareEtags) : [null]
    let failed: unknown
    for (const form of forms) {
      try {
        this.etag = await this.store.put(this.key, body, form === null ? { ifNoneMatch: '*' } : { ifMatch: form }, limits)
        if (form !== null && form !== forms[0]) this.bareEtags = !this.bareEtags
        this.heldFrom(sentAt)
        return
      } catch (err) {
        if (!(err instanceof ConditionFailed)) throw err
        failed = err
      }
    }
    const now = await this.store.getSmall(this.key, { retries: 1 })
    const r = now ? parseLease(now.body) : null
    if (now && r && r.owner === this.record.owner && r.seq === this.record.seq) {
      this.etag = now.etag
      this.heldFrom(sentAt)
      return
    }
    throw failed
  }

  /** Counts the lease as ours from `sentAt`, when a write of the record that succeeded was sent. */
  private heldFrom(sentAt: number): void {
    this.validUntil = sentAt + this.options.ttlMs - margin(this.options.ttlMs)
  }

  /** Whether a PUT with an ETag that cannot match is refused (412), as a fence needs. */
  private async storeEnforcesConditions(): Promise<boolean> {
    const sentAt = performance.now()
    const body = Buffer.from(JSON.stringify(this.record) + '\n')
    try {
      this.etag = await this.store.put(this.key, body, { ifMatch: '"00000000000000000000000000000000"' })
    } catch (err) {
      if (err instanceof ConditionFailed) return true
      throw err
    }
    this.heldFrom(sentAt)
    return false
  }

  /** Renews now; a renewal refused because the record changed means the image was taken over. */
  private renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        if (this.lost || this.released) return
        if (!this.fenced) {
          // Advisory: read, compare, write (a take-over between the two is overwritten).
          const now = await this.store.getSmall(this.key, { retries: 1 })
          const r = now ? parseLease(now.body) : null
          if (r && r.owner !== this.record.owner) throw new ConditionFailed('taken over')
        }
        await this.write({ ifMatch: this.etag })
      } catch (err) {
        if (err instanceof ConditionFailed) {
          const now = await this.store.getSmall(this.key, { retries: 1 }).catch(() => null)
          const r = now ? parseLease(now.body) : null
          this.lost = new UblkError('EIO', `${this.store.url(this.key)}: ${r ? describeHolder(r) : 'another server'} took the image over; this server no longer serves it`)
        }
        // Otherwise the store is unreachable: writes fence themselves at `validUntil`; try again soon.
      } finally {
        this.renewing = null
      }
    })()
    return this.renewing
  }

  private schedule(ms: number): void {
    if (this.lost || this.released) return
    this.timer = setTimeout(() => {
      const before = this.validUntil
      void this.renew().then(() => this.schedule(this.validUntil > before ? this.options.ttlMs / 3 : Math.min(1000, this.options.ttlMs / 10)))
    }, ms)
    this.timer.unref()
  }

  /** Stops renewing and marks the record released (if it is still ours), so the next server takes it at once. */
  async release(): Promise<void> {
    clearTimeout(this.timer)
    await this.renewing
    if (this.lost || this.released) return
    this.released = true
    if (!this.fenced) {
      const now = await this.store.getSmall(this.key)
      if (now && parseLease(now.body)?.owner === this.record.owner) await this.store.delete(this.key)
      return
    }
    try {
      await this.write({ ifMatch: this.etag }, { released: true })
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err
    }
  }
}
