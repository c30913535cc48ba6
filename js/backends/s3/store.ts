// The S3 requests of the S3 backend: GET (whole or ranged) into our own
// buffers, PUT, DELETE and LIST, each retried with backoff while the error is
// transient. The client library (@aws-sdk/client-s3, an optional peer
// dependency) is loaded only when a store is opened.
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { UblkError } from '../../errors'

type Sdk = typeof import('@aws-sdk/client-s3')
type Client = import('@aws-sdk/client-s3').S3Client

/** Where the store is and how hard to try. */
export interface StoreOptions {
  bucket: string
  endpoint?: string
  region?: string
  /** Path-style URLs (`endpoint/bucket/key`). Default: true when `endpoint` is given. */
  forcePathStyle?: boolean
  /** Attempts after the first for a transient error. */
  retries: number
  /** Delay before the first retry; doubled for each next one (at most 5 s), with jitter. */
  retryDelayMs: number
  /** A request that has not answered by then fails (and is retried). */
  requestTimeoutMs: number
  /** Most connections kept open to the store. */
  maxSockets: number
  /** More S3Client settings, passed as they are. */
  clientConfig?: Record<string, unknown>
}

/** Counters of what the store was asked. */
export interface StoreStats {
  gets: number
  puts: number
  deletes: number
  lists: number
  /** Requests sent again after a transient error. */
  retries: number
  /** Requests that failed for good. */
  failures: number
  bytesRead: number
  bytesWritten: number
}

let sdk: Promise<Sdk> | undefined

/** The SDK, imported once; a clear error when it is not installed. */
function loadSdk(): Promise<Sdk> {
  sdk ??= import('@aws-sdk/client-s3').catch((err: NodeJS.ErrnoException) => {
    sdk = undefined
    if (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') {
      throw new Error('S3Backend needs the AWS SDK: npm install @aws-sdk/client-s3', { cause: err })
    }
    throw err
  })
  return sdk
}

/** HTTP status of an SDK error, if the store answered. */
function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode
}

function isNotFound(err: unknown): boolean {
  const name = (err as Error)?.name
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404
}

/**
 * Whether trying again may help: no answer at all (connection refused or
 * reset, timeout), a 5xx, 429, or S3's throttling and timeout codes. A 4xx
 * such as AccessDenied or NoSuchBucket is final.
 */
function isTransient(err: unknown): boolean {
  const status = statusOf(err)
  if (status === undefined) return true
  if (status >= 500 || status === 429 || status === 408) return true
  const name = (err as Error)?.name
  return name === 'SlowDown' || name === 'RequestTimeout' || name === 'RequestTimeTooSkewed'
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string }
  const status = statusOf(err)
  return `${e?.name ?? 'Error'}${e?.code && e.code !== e.name ? ` ${e.code}` : ''}${status ? ` (HTTP ${status})` : ''}: ${e?.message ?? String(err)}`
}

export class ObjectStore {
  readonly stats: StoreStats = { gets: 0, puts: 0, deletes: 0, lists: 0, retries: 0, failures: 0, bytesRead: 0, bytesWritten: 0 }

  private constructor(
    private readonly sdk: Sdk,
    private readonly client: Client,
    private readonly options: StoreOptions,
  ) {}

  static async open(options: StoreOptions): Promise<ObjectStore> {
    const sdk = await loadSdk()
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (options.endpoint ? 'us-east-1' : undefined)
    const client = new sdk.S3Client({
      ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
      ...(region !== undefined && { region }),
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      // We retry ourselves (counted, with our limits).
      maxAttempts: 1,
      // Checksums only where S3 requires them: other stores (radosgw, older
      // MinIO) do not all accept the SDK's default trailing checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { requestTimeout: options.requestTimeoutMs, connectionTimeout: Math.min(options.requestTimeoutMs, 5000), httpAgent: { maxSockets: options.maxSockets, keepAlive: true } },
      ...options.clientConfig,
    })
    return new ObjectStore(sdk, client, options)
  }

  /** `s3://bucket/key`, for messages. */
  url(key: string): string {
    return `s3://${this.options.bucket}/${key}`
  }

  /** Runs `send` until it succeeds, fails for good, or the retries run out (then EIO). */
  private async attempt<T>(what: string, key: string, send: () => Promise<T>, notFound?: () => T): Promise<T> {
    for (let retry = 0; ; retry++) {
      try {
        return await send()
      } catch (err) {
        if (notFound && isNotFound(err)) return notFound()
        if (!isTransient(err) || retry >= this.options.retries) {
          this.stats.failures++
          const tries = retry + 1
          throw new UblkError('EIO', `S3 ${what} ${this.url(key)} failed${tries > 1 ? ` after ${tries} attempts` : ''}: ${describe(err)}`, { cause: err })
        }
        this.stats.retries++
        const delay = Math.min(this.options.retryDelayMs * 2 ** retry, 5000)
        await sleep(delay / 2 + Math.random() * (delay / 2))
      }
    }
  }

  /**
   * Reads object `key` into `into` (from its byte `start`), which it must fill
   * exactly. Returns false when there is no such object (`into` untouched).
   */
  async getInto(key: string, into: Buffer, start = 0, whole = false): Promise<boolean> {
    const range = whole ? undefined : `bytes=${start}-${start + into.length - 1}`
    return this.attempt(
      'GET',
      key,
      async () => {
        this.stats.gets++
        const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.options.bucket, Key: key, Range: range }))
        let at = 0
        for await (const chunk of res.Body as Readable) {
          const bytes = chunk as Buffer
          if (at + bytes.length > into.length) throw new UblkError('EIO', `S3 GET ${this.url(key)}: more than the ${into.length} bytes expected`)
          bytes.copy(into, at)
          at += bytes.length
        }
        this.stats.bytesRead += at
        // An object shorter than expected (written by someone else): the rest reads as zeros.
        into.fill(0, at)
        return true
      },
      () => false,
    )
  }

  /** Reads a small whole object (a header), or null when there is none. */
  async getSmall(key: string): Promise<Buffer | null> {
    return this.attempt(
      'GET',
      key,
      async () => {
        this.stats.gets++
        const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.options.bucket, Key: key }))
        const body = Buffer.from(await (res.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray())
        this.stats.bytesRead += body.length
        return body as Buffer | null
      },
      () => null,
    )
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.attempt('PUT', key, async () => {
      this.stats.puts++
      await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: body, ContentLength: body.length }))
      this.stats.bytesWritten += body.length
    })
  }

  /** Deletes `key`; deleting what is not there succeeds (as S3 does). */
  async delete(key: string): Promise<void> {
    await this.attempt(
      'DELETE',
      key,
      async () => {
        this.stats.deletes++
        await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.options.bucket, Key: key }))
      },
      () => undefined,
    )
  }

  /** Every key under `prefix`, page by page. */
  async *list(prefix: string): AsyncGenerator<string> {
    let token: string | undefined
    do {
      const page = await this.attempt('LIST', prefix, async () => {
        this.stats.lists++
        return this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ContinuationToken: token }))
      })
      for (const object of page.Contents ?? []) if (object.Key !== undefined) yield object.Key
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  close(): void {
    this.client.destroy()
  }
}
