import { EventEmitter } from 'node:events'
import { UblkError } from '../../errors'
import type { Handler, RequestContext } from '../../handler'
import { ObjectCache, type CacheStats } from './cache'
import { ImageKeys, openGeometry } from './image'
import { Lease } from './lease'
import { checkCacheBytes, resolveS3Options, S3_DEFAULTS, type S3BackendOptions } from './options'
import { StoredObjects } from './stored'
import { ObjectStore, type StoreStats } from './store'

/** What `S3Backend.stats()` reports. */
export interface S3BackendStats extends CacheStats {
  /** Data objects the store holds (as this server knows: it alone writes the image). */
  storedObjects: number
  /** Whether the lease is held now (false while it cannot be renewed, or once taken over). */
  leaseHeld: boolean
  /** Whether the store enforces the lease (conditional PUTs); false: advisory only. */
  leaseFenced: boolean
  store: StoreStats
}

/** The events of an S3Backend. */
export interface S3BackendEvents {
  /** A background write-back failed after its retries; the object stays dirty and is tried again. */
  writebackError: [err: UblkError, key: string]
}

/**
 * A device whose bytes live in an S3 bucket (AWS, Ceph's radosgw, MinIO,
 * R2...): a header object plus one object per `objectSize` range, sparse (a
 * missing object reads as zeros).
 *
 * Writes land in a bounded write-back cache and complete at once; dirty
 * objects are uploaded when unchanged for `writebackDelayMs`, when written to
 * their end, or when the cache fills (writes then wait). FLUSH and FUA writes
 * complete only when everything written before them is in the store, so what
 * a file system has synced survives a crash of the server; unsynced writes may
 * be lost, as on a disk with a volatile cache. DISCARD and WRITE_ZEROES delete
 * whole objects. A lease (conditional PUTs) fences a second server off the
 * image: no two servers ever both acknowledge writes to it.
 *
 * ```ts
 * await using backend = await S3Backend.open({ endpoint: 'http://127.0.0.1:7480', bucket: 'disks', prefix: 'vm1/', size: 64 * 2 ** 30 })
 * await using dev = await createDevice({ size: backend.size, handler: backend })
 * ```
 */
export class S3Backend extends EventEmitter<S3BackendEvents> implements Handler {
  private closed = false
  private cache!: ObjectCache

  private constructor(
    private readonly store: ObjectStore,
    private readonly lease: Lease,
    private readonly stored: StoredObjects,
    /** Bytes in the image. */
    readonly size: number,
    /** Bytes per data object. */
    readonly objectSize: number,
    /** Whether `open` created the image. */
    readonly created: boolean,
    /** `s3://bucket/prefix`. */
    readonly url: string,
  ) {
    super()
  }

  /**
   * Opens the image at `bucket`/`prefix`, creating it when there is none and
   * `size` is given. Refused while another server holds its lease (EBUSY,
   * unless `force`), or when `size`/`objectSize` differ from the image's.
   * Loads `@aws-sdk/client-s3` (install it beside ublk).
   */
  static async open(options: S3BackendOptions): Promise<S3Backend> {
    const o = resolveS3Options(options)
    const store = await ObjectStore.open({
      bucket: o.bucket,
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      retries: o.retries,
      retryDelayMs: o.retryDelayMs,
      requestTimeoutMs: o.requestTimeoutMs,
      maxSockets: o.uploadConcurrency + 32,
      clientConfig: o.clientConfig,
    })
    const keys = new ImageKeys(o.prefix)
    try {
      const lease = await Lease.acquire(store, keys.lease, {
        ttlMs: o.leaseMs,
        force: o.force,
        requestTimeoutMs: o.requestTimeoutMs,
        warn: (message) => process.emitWarning(message, 'S3BackendWarning'),
      })
      try {
        const { geometry, created } = await openGeometry(store, keys, { size: o.size, objectSize: o.objectSize, defaultObjectSize: S3_DEFAULTS.objectSize })
        checkCacheBytes(o.cacheBytes, geometry.objectSize)
        const stored = new StoredObjects(Math.ceil(geometry.size / geometry.objectSize))
        for await (const key of store.list(keys.dataPrefix)) {
          const index = keys.indexOf(key)
          if (index !== undefined && index < stored.objects) stored.add(index)
        }
        const backend = new S3Backend(store, lease, stored, geometry.size, geometry.objectSize, created, store.url(keys.prefix))
        backend.cache = new ObjectCache(
          store,
          keys,
          stored,
          {
            objectSize: geometry.objectSize,
            size: geometry.size,
            cacheBytes: o.cacheBytes,
            uploadConcurrency: o.uploadConcurrency,
            writebackDelayMs: o.writebackDelayMs,
            flushBudgetMs: o.flushBudgetMs,
            onWritebackError: (err, key) => backend.emit('writebackError', err, key),
          },
          lease,
        )
        return backend
      } catch (err) {
        await lease.release().catch(() => undefined)
        throw err
      }
    } catch (err) {
      store.close()
      throw err
    }
  }

  read(buf: Buffer, offset: number): void | Promise<void> {
    return this.cache.read(buf, offset)
  }

  write(buf: Buffer, offset: number, ctx: RequestContext): Promise<void> {
    return this.cache.write(buf, offset, ctx.fua)
  }

  flush(): Promise<void> {
    return this.cache.flush()
  }

  discard(offset: number, length: number): Promise<void> {
    return this.cache.zero(offset, length)
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.cache.zero(offset, length)
  }

  stats(): S3BackendStats {
    return { ...this.cache.getStats(), storedObjects: this.stored.size, leaseHeld: this.lease.held, leaseFenced: this.lease.fenced, store: { ...this.store.stats } }
  }

  /**
   * Writes back every dirty object, releases the lease and closes the
   * connections. Close the device first. If the write-back fails, the error
   * says so and the backend stays open (call `close` again once the store
   * is back), so no written byte is dropped silently. Once another server
   * took the image over, nothing may be written: close then ends the backend
   * and says how many changed objects it could not store.
   */
  async close(): Promise<void> {
    if (this.closed) return
    if (this.lease.lost) {
      this.closed = true
      this.cache.close()
      this.store.close()
      const dirty = this.cache.dirtyObjects
      if (dirty) throw new UblkError('EIO', `${this.url}: ${dirty} changed objects were not stored: ${this.lease.lost.message}`)
      return
    }
    await this.cache.flush()
    this.closed = true
    this.cache.close()
    try {
      await this.lease.release()
    } finally {
      this.store.close()
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
