// An image in the store: its header object (the geometry), the name of each
// data object, and the advisory lease that keeps a second server off it.
//
//   <prefix>header        JSON: { format, version, size, objectSize }
//   <prefix>lease         JSON: who serves the image, renewed while it does
//   <prefix>data/<index>  bytes [index * objectSize, (index + 1) * objectSize), hex index
//
// A data object that does not exist reads as zeros.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { UblkError } from '../../errors'
import type { ObjectStore } from './store'

const FORMAT = 'ublk-s3-image'
const VERSION = 1
const INDEX_DIGITS = 12

/** What the header object holds. */
export interface Geometry {
  /** Bytes in the image. */
  size: number
  /** Bytes per data object (the last one holds the remainder, padded with zeros). */
  objectSize: number
}

/** The keys of one image's objects. */
export class ImageKeys {
  readonly header: string
  readonly lease: string
  readonly dataPrefix: string

  constructor(readonly prefix: string) {
    this.header = `${prefix}header`
    this.lease = `${prefix}lease`
    this.dataPrefix = `${prefix}data/`
  }

  data(index: number): string {
    return this.dataPrefix + index.toString(16).padStart(INDEX_DIGITS, '0')
  }

  /** The index of a data object's key, or undefined for another key. */
  indexOf(key: string): number | undefined {
    if (!key.startsWith(this.dataPrefix)) return undefined
    const hex = key.slice(this.dataPrefix.length)
    return /^[0-9a-f]+$/.test(hex) ? parseInt(hex, 16) : undefined
  }
}

/**
 * Reads the image's header, or creates the image when there is none and
 * `wanted.size` is given. A geometry that differs from the one asked for is
 * refused (EINVAL): the image keeps its own.
 */
export async function openGeometry(store: ObjectStore, keys: ImageKeys, wanted: Partial<Geometry> & { defaultObjectSize: number }): Promise<{ geometry: Geometry; created: boolean }> {
  const where = store.url(keys.prefix)
  const body = await store.getSmall(keys.header)
  if (body === null) {
    if (wanted.size === undefined) throw new UblkError('ENOENT', `no image at ${where} (no ${keys.header}); give size to create one`)
    const geometry = { size: wanted.size, objectSize: wanted.objectSize ?? wanted.defaultObjectSize }
    await store.put(keys.header, Buffer.from(JSON.stringify({ format: FORMAT, version: VERSION, ...geometry, created: new Date().toISOString() }) + '\n'))
    return { geometry, created: true }
  }
  let header: { format?: unknown; version?: unknown; size?: unknown; objectSize?: unknown }
  try {
    header = JSON.parse(body.toString('utf8'))
  } catch {
    throw new UblkError('EINVAL', `${store.url(keys.header)} is not a ublk image header (not JSON)`)
  }
  if (header.format !== FORMAT) throw new UblkError('EINVAL', `${store.url(keys.header)} is not a ublk image header (format ${JSON.stringify(header.format)})`)
  if (header.version !== VERSION) throw new UblkError('EINVAL', `${where} has image format version ${String(header.version)}; this ublk reads version ${VERSION}`)
  const { size, objectSize } = header
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(objectSize)) throw new UblkError('EINVAL', `${store.url(keys.header)}: size and objectSize must be integers`)
  const geometry = { size: size as number, objectSize: objectSize as number }
  if (wanted.size !== undefined && wanted.size !== geometry.size) {
    throw new UblkError('EINVAL', `${where} holds a ${geometry.size}-byte image, not ${wanted.size} bytes (an existing image keeps its size: leave size out)`)
  }
  if (wanted.objectSize !== undefined && wanted.objectSize !== geometry.objectSize) {
    throw new UblkError('EINVAL', `${where} was made with objectSize ${geometry.objectSize}, not ${wanted.objectSize} (an existing image keeps its object size)`)
  }
  return { geometry, created: false }
}

/** The lease object's contents. */
interface LeaseRecord {
  owner: string
  host: string
  bootId: string
  pid: number
  /** When the holder last renewed it (ms since the epoch, the holder's clock). */
  renewedAt: number
  /** How long it holds after `renewedAt` without a renewal. */
  ttlMs: number
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function parseLease(body: Buffer | null): LeaseRecord | null {
  if (body === null) return null
  try {
    const r = JSON.parse(body.toString('utf8')) as LeaseRecord
    return typeof r.owner === 'string' && Number.isFinite(r.renewedAt) && Number.isFinite(r.ttlMs) ? r : null
  } catch {
    return null
  }
}

/**
 * The advisory lease on an image: a record of who serves it, renewed every
 * third of its time to live. Another server refuses the image while the
 * record is fresh, unless it forces a take-over; the holder that notices a
 * take-over stops writing (`lost`). Advisory: S3 has no compare-and-swap, so
 * two servers starting at the same instant can both believe they won; and
 * freshness compares the clocks of the two hosts. A record left by a process
 * of this host (same boot) that is gone is stale at once.
 */
export class Lease {
  /** Set when someone else took the image over; writes then fail. */
  lost: UblkError | null = null
  private timer: NodeJS.Timeout | undefined
  private readonly record: LeaseRecord

  private constructor(
    private readonly store: ObjectStore,
    private readonly key: string,
    ttlMs: number,
  ) {
    this.record = { owner: randomUUID(), host: hostname(), bootId: bootId(), pid: process.pid, renewedAt: 0, ttlMs }
  }

  /** Takes the lease on `key`, or refuses (EBUSY) while another holder's is fresh. */
  static async acquire(store: ObjectStore, key: string, ttlMs: number, force: boolean): Promise<Lease> {
    const lease = new Lease(store, key, ttlMs)
    const held = parseLease(await store.getSmall(key))
    if (held && !force) {
      const why = lease.heldBy(held)
      if (why) throw new UblkError('EBUSY', `${store.url(key)}: the image is in use: ${why}; pass force to take it over`)
    }
    await lease.write()
    // Read it back: of two servers that wrote at once, the later write wins.
    const now = parseLease(await store.getSmall(key))
    if (now?.owner !== lease.record.owner) throw new UblkError('EBUSY', `${store.url(key)}: another server took the image at the same time (${now ? describeHolder(now) : 'lease gone'})`)
    lease.timer = setInterval(() => void lease.renew(), Math.max(1000, ttlMs / 3))
    lease.timer.unref()
    return lease
  }

  /** Why `held` still holds the image, or null when it is stale. */
  private heldBy(held: LeaseRecord): string | null {
    const sameBoot = held.host === this.record.host && held.bootId !== '' && held.bootId === this.record.bootId
    if (sameBoot && !processAlive(held.pid)) return null
    const age = Date.now() - held.renewedAt
    if (age >= held.ttlMs) return null
    return `${describeHolder(held)} renewed its lease ${(age / 1000).toFixed(1)} s ago (it holds for ${(held.ttlMs / 1000).toFixed(0)} s)`
  }

  private async write(): Promise<void> {
    this.record.renewedAt = Date.now()
    await this.store.put(this.key, Buffer.from(JSON.stringify(this.record) + '\n'))
  }

  /** Renews the record unless someone else's replaced it (then `lost`). A failed renewal is tried again next time. */
  private async renew(): Promise<void> {
    if (this.lost) return
    try {
      const now = parseLease(await this.store.getSmall(this.key))
      if (now && now.owner !== this.record.owner) {
        this.lost = new UblkError('EIO', `${this.store.url(this.key)}: ${describeHolder(now)} took the image over; this server no longer writes it`)
        clearInterval(this.timer)
        return
      }
      await this.write()
    } catch {
      // The store is unreachable: writes fail on their own; try again next time.
    }
  }

  /** Stops renewing and removes the record (if it is still ours). */
  async release(): Promise<void> {
    clearInterval(this.timer)
    if (this.lost) return
    const now = parseLease(await this.store.getSmall(this.key))
    if (now?.owner === this.record.owner) await this.store.delete(this.key)
  }
}

function describeHolder(r: LeaseRecord): string {
  return `pid ${r.pid} on ${r.host}`
}
