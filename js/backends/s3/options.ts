// The S3 backend's options: their one schema, defaults and checks. Every
// option is checked here, before any request reaches the store.

/** Options of `S3Backend.open`. Credentials come the standard AWS way (environment, `~/.aws`). */
export interface S3BackendOptions {
  /** The bucket holding the image (it must exist). */
  bucket: string
  /** Key prefix of the image's objects; a `/` is added when missing. Default: none (the bucket's root). */
  prefix?: string
  /** The store's URL, e.g. `http://127.0.0.1:7480`. Default: AWS S3 of the region. */
  endpoint?: string
  /** Default: `AWS_REGION`, else `us-east-1` with an `endpoint`, else the SDK's configuration. */
  region?: string
  /** Path-style URLs (`endpoint/bucket/key`). Default: true with an `endpoint`, else false. */
  forcePathStyle?: boolean
  /** Bytes in a new image; an existing image keeps its own (giving another size is refused). */
  size?: number
  /** Bytes per data object of a new image: a power of two from 64 KiB to 64 MiB. Default 4 MiB. An existing image keeps its own (giving another is refused). */
  objectSize?: number
  /** Most bytes of objects held in memory, clean and dirty: at least 4 of the image's objects. Default 256 MiB. */
  cacheBytes?: number
  /** Most objects written back at once. Default 8. */
  uploadConcurrency?: number
  /** A dirty object unchanged for this long (ms) is written back. Default 500. */
  writebackDelayMs?: number
  /** Most time (ms) a FLUSH should take: dirty data is held to what the store is measured to take in this time. Default 10000 (a third of the device's default request timeout). */
  flushBudgetMs?: number
  /** Attempts after the first for a transient store error (backoff from `retryDelayMs`, doubling). Default 4. */
  retries?: number
  /** Default 200 (so the retries wait about 3 s in all). */
  retryDelayMs?: number
  /** Each attempt at a store request not answered in full in this time (ms) is aborted, and retried. Default 10000 (a store that stops answering fails a request in about 53 s; the device's own request timeout, 30 s by default, may fail it first). */
  requestTimeoutMs?: number
  /** How long the lease holds without renewal (ms), at least 3 times `requestTimeoutMs`; renewed every third of it. Default 30000. */
  leaseMs?: number
  /** Take the image over although another server's lease is fresh (after waiting `leaseMs`, so that server has stopped). Default false. */
  force?: boolean
  /** More `S3Client` settings (see `@aws-sdk/client-s3`), passed as they are. */
  clientConfig?: Record<string, unknown>
}

export const S3_DEFAULTS = {
  objectSize: 4 << 20,
  cacheBytes: 256 << 20,
  uploadConcurrency: 8,
  writebackDelayMs: 500,
  flushBudgetMs: 10_000,
  retries: 4,
  retryDelayMs: 200,
  requestTimeoutMs: 10_000,
  leaseMs: 30_000,
} as const

type Optional = 'size' | 'objectSize' | 'endpoint' | 'region' | 'forcePathStyle' | 'clientConfig'
export type ResolvedS3Options = Required<Omit<S3BackendOptions, Optional>> & Pick<S3BackendOptions, Optional>

const MIN_OBJECT = 64 << 10
const MAX_OBJECT = 64 << 20
/** The cache must hold at least this many objects (a request spans at most two). */
export const MIN_CACHED_OBJECTS = 4

function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`S3Backend: ${name} must be an integer. Received ${String(value)}`)
  if (value < min || value > max) throw new RangeError(`S3Backend: ${name} must be from ${min} to ${max}. Received ${value}`)
  return value
}

function optionalString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') throw new TypeError(`S3Backend: ${name} must be a non-empty string. Received ${String(value)}`)
  return value
}

/** The options with their defaults, or a TypeError/RangeError naming the first bad one. */
export function resolveS3Options(options: S3BackendOptions): ResolvedS3Options {
  if (typeof options !== 'object' || options === null) throw new TypeError('S3Backend.open: options must be an object')
  const bucket = optionalString('bucket', options.bucket)
  if (bucket === undefined) throw new TypeError('S3Backend: bucket is required')
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new TypeError(`S3Backend: bucket must be a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens). Received "${bucket}"`)
  let prefix = options.prefix ?? ''
  if (typeof prefix !== 'string') throw new TypeError(`S3Backend: prefix must be a string. Received ${String(prefix)}`)
  if (prefix.startsWith('/')) throw new TypeError(`S3Backend: prefix must not start with "/". Received "${prefix}"`)
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/'
  const endpoint = optionalString('endpoint', options.endpoint)
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) throw new TypeError(`S3Backend: endpoint must be an http:// or https:// URL. Received "${endpoint}"`)
  const objectSize = options.objectSize === undefined ? undefined : integer('objectSize', options.objectSize, MIN_OBJECT, MAX_OBJECT)
  if (objectSize !== undefined && (objectSize & (objectSize - 1)) !== 0) throw new RangeError(`S3Backend: objectSize must be a power of two. Received ${objectSize}`)
  const size = options.size === undefined ? undefined : integer('size', options.size, 4096)
  if (size !== undefined && size % 4096 !== 0) throw new RangeError(`S3Backend: size must be a multiple of 4096. Received ${size}`)
  const cacheBytes = integer('cacheBytes', options.cacheBytes ?? S3_DEFAULTS.cacheBytes, MIN_CACHED_OBJECTS * (objectSize ?? MIN_OBJECT))
  const uploadConcurrency = integer('uploadConcurrency', options.uploadConcurrency ?? S3_DEFAULTS.uploadConcurrency, 1, 256)
  if (options.force !== undefined && typeof options.force !== 'boolean') throw new TypeError(`S3Backend: force must be a boolean. Received ${String(options.force)}`)
  if (options.forcePathStyle !== undefined && typeof options.forcePathStyle !== 'boolean') throw new TypeError(`S3Backend: forcePathStyle must be a boolean. Received ${String(options.forcePathStyle)}`)
  if (options.clientConfig !== undefined && (typeof options.clientConfig !== 'object' || options.clientConfig === null)) throw new TypeError('S3Backend: clientConfig must be an object')
  const requestTimeoutMs = integer('requestTimeoutMs', options.requestTimeoutMs ?? S3_DEFAULTS.requestTimeoutMs, 100, 600_000)
  const leaseMs = integer('leaseMs', options.leaseMs ?? S3_DEFAULTS.leaseMs, 1000, 86_400_000)
  if (leaseMs < 3 * requestTimeoutMs) throw new RangeError(`S3Backend: leaseMs must be at least 3 times requestTimeoutMs (${3 * requestTimeoutMs}), so a renewal fits in the lease. Received ${leaseMs}`)
  return {
    bucket,
    prefix,
    endpoint,
    region: optionalString('region', options.region),
    forcePathStyle: options.forcePathStyle,
    size,
    objectSize,
    cacheBytes,
    uploadConcurrency,
    writebackDelayMs: integer('writebackDelayMs', options.writebackDelayMs ?? S3_DEFAULTS.writebackDelayMs, 0, 3_600_000),
    flushBudgetMs: integer('flushBudgetMs', options.flushBudgetMs ?? S3_DEFAULTS.flushBudgetMs, 100, 3_600_000),
    retries: integer('retries', options.retries ?? S3_DEFAULTS.retries, 0, 100),
    retryDelayMs: integer('retryDelayMs', options.retryDelayMs ?? S3_DEFAULTS.retryDelayMs, 1, 60_000),
    requestTimeoutMs,
    leaseMs,
    force: options.force ?? false,
    clientConfig: options.clientConfig,
  }
}

/** Checks `cacheBytes` against the object size of the image as opened. */
export function checkCacheBytes(cacheBytes: number, objectSize: number): void {
  if (cacheBytes < MIN_CACHED_OBJECTS * objectSize) {
    throw new RangeError(`S3Backend: cacheBytes must hold at least ${MIN_CACHED_OBJECTS} objects of the image (${MIN_CACHED_OBJECTS * objectSize} bytes). Received ${cacheBytes}`)
  }
}
