// An S3 store in memory for fast host tests of the S3 backend: latencies,
// injected failures, counters. A GET answers with the object as it was when
// sent; a PUT takes its body at the end of its delay (as an upload reads it
// while sending) and counts bodies that changed meanwhile.
import { createHash } from 'node:crypto'
import { UblkError } from '../../js/errors'
import { ConditionFailed, type PutCondition, type RequestLimits, type Store } from '../../js/backends/s3/store'

export type StoreOp = 'get' | 'put' | 'delete'

export interface MemoryStoreOptions {
  /** Delay of each request (ms); 0 or less: none (still asynchronous). */
  latency?: (op: StoreOp, key: string) => number
  /** An error to fail the request with (after its delay), or null. */
  fail?: (op: StoreOp, key: string) => Error | null
  /** An error to fail the request with after it took effect (its reply was lost), or null. */
  lose?: (op: StoreOp, key: string) => Error | null
  /** Fail a PUT whose body changed while it was sent (EIO), as a store checking Content-MD5 does. */
  rejectChangedBodies?: boolean
}

interface Stored {
  body: Buffer
  etag: string
}

function etagOf(body: Buffer): string {
  return `"${createHash('md5').update(body).digest('hex')}"`
}

/** A seeded PRNG (mulberry32): floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class MemoryStore implements Store {
  readonly objects = new Map<string, Stored>()
  readonly stats = { gets: 0, puts: 0, deletes: 0, failures: 0, running: 0, maxConcurrent: 0, mutatedDuringPut: 0 }
  latency: (op: StoreOp, key: string) => number
  fail: (op: StoreOp, key: string) => Error | null
  lose: (op: StoreOp, key: string) => Error | null

  constructor(private readonly options: MemoryStoreOptions = {}) {
    this.latency = options.latency ?? (() => 0)
    this.fail = options.fail ?? (() => null)
    this.lose = options.lose ?? (() => null)
  }

  url(key: string): string {
    return `memory://${key}`
  }

  /** Runs `fn` after the op's delay, counted as running meanwhile; fails as `fail` says. */
  private async request<T>(op: StoreOp, key: string, limits: RequestLimits | undefined, fn: () => T): Promise<T> {
    const deadline = typeof limits?.deadline === 'function' ? limits.deadline() : limits?.deadline
    if (deadline !== undefined && deadline <= performance.now()) throw new UblkError('EIO', `${op} ${this.url(key)} not sent: its deadline passed`)
    this.stats[op === 'get' ? 'gets' : op === 'put' ? 'puts' : 'deletes']++
    this.stats.running++
    this.stats.maxConcurrent = Math.max(this.stats.maxConcurrent, this.stats.running)
    try {
      const ms = this.latency(op, key)
      await new Promise((go) => setTimeout(go, Math.max(0, ms)))
      const err = this.fail(op, key)
      if (err) {
        this.stats.failures++
        throw err
      }
      const result = fn()
      const lost = this.lose(op, key)
      if (lost) {
        this.stats.failures++
        throw lost
      }
      return result
    } finally {
      this.stats.running--
    }
  }

  async getObject(key: string, into: Buffer, limits?: RequestLimits): Promise<boolean> {
    const found = this.objects.get(key)
    return this.request('get', key, limits, () => {
      if (!found) return false
      if (found.body.length !== into.length) throw new UblkError('EIO', `GET ${this.url(key)}: the object holds ${found.body.length} bytes, not ${into.length}`)
      found.body.copy(into)
      return true
    })
  }

  async getSmall(key: string, limits?: RequestLimits): Promise<{ body: Buffer; etag: string } | null> {
    const found = this.objects.get(key)
    return this.request('get', key, limits, () => {
      return found ? { body: Buffer.from(found.body), etag: found.etag } : null
    })
  }

  async put(key: string, body: Buffer, condition: PutCondition = {}, limits?: RequestLimits): Promise<string> {
    const before = etagOf(body)
    return this.request('put', key, limits, () => {
      const copy = Buffer.from(body)
      const etag = etagOf(copy)
      if (etag !== before) {
        this.stats.mutatedDuringPut++
        if (this.options.rejectChangedBodies) throw new UblkError('EIO', `PUT ${this.url(key)}: BadDigest (the body changed while it was sent)`)
      }
      const current = this.objects.get(key)
      if (condition.ifNoneMatch === '*' && current) throw new ConditionFailed(`PUT ${this.url(key)}: the object exists`)
      if (condition.ifMatch !== undefined && current?.etag !== condition.ifMatch) throw new ConditionFailed(`PUT ${this.url(key)}: the object changed`)
      this.objects.set(key, { body: copy, etag })
      return etag
    })
  }

  async delete(key: string, limits?: RequestLimits): Promise<void> {
    return this.request('delete', key, limits, () => {
      this.objects.delete(key)
    })
  }

  /** Stores `body` (a copy) at once, without a request: a test's starting state. */
  set(key: string, body: Buffer): void {
    this.objects.set(key, { body: Buffer.from(body), etag: etagOf(body) })
  }

  /** What the store holds now: copies of each object's bytes. */
  snapshot(): Map<string, Buffer> {
    return new Map([...this.objects].map(([key, { body }]) => [key, Buffer.from(body)]))
  }
}
