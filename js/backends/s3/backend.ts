import type { Handler, RequestContext } from '../../handler'
import { ObjectCache, type CacheStats } from './cache'
import { ImageKeys, Lease, openGeometry } from './image'
import { checkCacheBytes, resolveS3Options, S3_DEFAULTS, type S3BackendOptions } from './options'
import { ObjectStore, type StoreStats } from './store'

/** What `S3Backend.stats()` reports. */
export interface S3BackendStats extends CacheStats {
  /** Data objects the store holds (as this server knows: it alone writes the image). */
  storedObjects: number
  store: StoreStats
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
 * whole objects. An advisory lease keeps a second server off the image.
 *
 * ```ts
 * await using backend = await S3Backend.open({ endpoint: 'http://127.0.0.1:7480', bucket: 'disks', prefix: 'vm1/', size: 64 << 30 })
 * await using dev = await createDevice({ size: backend.size, handler: backend })
 * ```
 */
export class S3Backend implements Handler {
  private closed = false

  private constructor(
    private readonly store: ObjectStore,
    private readonly cache: ObjectCache,
    private readonly lease: Lease,
    private readonly stored: Set<number>,
    /** Bytes in the image. */
    readonly size: number,
    /** Bytes per data object. */
    readonly objectSize: number,
    /** Whether `open` created the image. */
    readonly created: boolean,
    /** `s3://bucket/prefix`. */
    readonly url: string,
  ) {}

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
      const lease = await Lease.acquire(store, keys.lease, o.leaseMs, o.force)
      try {
        const { geometry, created } = await openGeometry(store, keys, { size: o.size, objectSize: o.objectSize, defaultObjectSize: S3_DEFAULTS.objectSize })
        checkCacheBytes(o.cacheBytes, geometry.objectSize)
        const stored = new Set<number>()
        for await (const key of store.list(keys.dataPrefix)) {
          const index = keys.indexOf(key)
          if (index !== undefined) stored.add(index)
        }
        const cache = new ObjectCache(
          store,
          keys,
          stored,
          { objectSize: geometry.objectSize, size: geometry.size, cacheBytes: o.cacheBytes, uploadConcurrency: o.uploadConcurrency, writebackDelayMs: o.writebackDelayMs },
          () => {
            if (lease.lost) throw lease.lost
          },
        )
        return new S3Backend(store, cache, lease, stored, geometry.size, geometry.objectSize, created, store.url(keys.prefix))
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
    return { ...this.cache.getStats(), storedObjects: this.stored.size, store: { ...this.store.stats } }
  }

  /**
   * Writes back every dirty object, releases the lease and closes the
   * connections. Close the device first. If the write-back fails, the error
   * says so and the backend stays open (call `close` again once the store
   * is back), so no written byte is dropped silently.
   */
  async close(): Promise<void> {
    if (this.closed) return
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
