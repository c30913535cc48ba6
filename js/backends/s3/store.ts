// The S3 requests of the S3 backend: GET into our own buffers, PUT (with
// Content-MD5, optionally conditional), DELETE and LIST. Every attempt has a
// real deadline (an AbortSignal that also ends a body being read), replies are
// checked (length, and the MD5 an ETag carries), and only what may pass on
// its own (no answer, 5xx, throttling, a damaged reply) is retried. The client
// library (@aws-sdk/client-s3, an optional peer dependency) is loaded only
// when a store is opened.
import { createHash } from 'node:crypto'
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
  /** Each attempt that has not answered (headers and body) by then is aborted, and retried. */
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
  /** Attempts aborted at their deadline. */
  timeouts: number
  /** Replies refused: short, long, or not matching their checksum. */
  badReplies: number
  /** Requests that failed for good. */
  failures: number
  bytesRead: number
  bytesWritten: number
}

/** Only write if the object is absent (`'*'`) or still has this ETag. */
export interface PutCondition {
  ifNoneMatch?: '*'
  ifMatch?: string
}

/** Per request: the retries, and an absolute deadline (`performance.now()` ms, or a function read at each attempt) no attempt may pass. */
export interface RequestLimits {
  deadline?: number | (() => number)
  retries?: number
}

/** What the cache and the lease need of a store (the tests give them one in memory). */
export interface Store {
  url(key: string): string
  /** Reads the whole object `key` into `into`, which it must fill exactly (else EIO); false when there is none. */
  getObject(key: string, into: Buffer, limits?: RequestLimits): Promise<boolean>
  /** A small whole object and its ETag, or null when there is none. */
  getSmall(key: string, limits?: RequestLimits): Promise<{ body: Buffer; etag: string } | null>
  /** Writes `key`; resolves with the new ETag. A condition not met throws `ConditionFailed`. */
  put(key: string, body: Buffer, condition?: PutCondition, limits?: RequestLimits): Promise<string>
  /** Deletes `key`; deleting what is not there succeeds (as S3 does). */
  delete(key: string, limits?: RequestLimits): Promise<void>
}

/** A conditional PUT whose condition did not hold (HTTP 412). Never retried. */
export class ConditionFailed extends Error {
  override readonly name = 'ConditionFailed'
}

/** A reply that arrived damaged (short, long, or not matching its checksum): retried. */
class BadReply extends Error {
  override readonly name = 'BadReply'
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

/** Error codes worth a retry whatever their status (4xx ones; every 5xx is retried anyway). */
const THROTTLING = new Set(['SlowDown', 'RequestTimeout', 'RequestTimeTooSkewed', 'BadDigest'])

/**
 * Whether trying again may help: no answer at all (a system error such as a
 * reset or refused connection, our deadline, the SDK's own time-out), a 5xx,
 * 429, 408, S3's throttling and time-out codes, a damaged reply, or a body
 * the store says arrived damaged (BadDigest). A 4xx such as AccessDenied is
 * final, and so is anything that is not a store error (a bug of ours).
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof BadReply) return true
  if (err instanceof ConditionFailed || err instanceof UblkError || err instanceof TypeError || err instanceof RangeError) return false
  const e = err as { name?: string; code?: string; $metadata?: unknown }
  const status = statusOf(err)
  if (status !== undefined) return status >= 500 || status === 429 || status === 408 || THROTTLING.has(e.name ?? '')
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return true
  if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return true
  return e.$metadata !== undefined
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string }
  const status = statusOf(err)
  return `${e?.name ?? 'Error'}${e?.code && e.code !== e.name ? ` ${e.code}` : ''}${status ? ` (HTTP ${status})` : ''}: ${e?.message ?? String(err)}`
}

/** The MD5 an ETag carries (a plain PUT's), in hex, or undefined (multipart, or another store's scheme). */
function md5OfEtag(etag: string | undefined): string | undefined {
  const m = etag === undefined ? null : /^"?([0-9a-f]{32})"?$/.exec(etag)
  return m ? m[1] : undefined
}

function md5(body: Buffer): Buffer {
  return createHash('md5').update(body).digest()
}

/** Reads `body` into `into` exactly, and checks it against the MD5 its ETag carries (else BadReply). */
async function readVerified(body: Readable, into: Buffer, etag: string | undefined, what: string): Promise<void> {
  await readExactly(body, into, what)
  const expected = md5OfEtag(etag)
  if (expected !== undefined && md5(into).toString('hex') !== expected) throw new BadReply(`${what}: the bytes do not match the object's MD5 (ETag ${etag})`)
}

/** Reads `body` into `into` exactly (else BadReply). */
async function readExactly(body: Readable, into: Buffer, what: string): Promise<void> {
  let at = 0
  for await (const chunk of body) {
    const bytes = chunk as Buffer
    if (at + bytes.length > into.length) {
      body.destroy()
      throw new BadReply(`${what}: more than the ${into.length} bytes expected`)
    }
    bytes.copy(into, at)
    at += bytes.length
  }
  if (at !== into.length) throw new BadReply(`${what}: ${at} bytes, not ${into.length}`)
}

export class ObjectStore implements Store {
  readonly stats: StoreStats = { gets: 0, puts: 0, deletes: 0, lists: 0, retries: 0, timeouts: 0, badReplies: 0, failures: 0, bytesRead: 0, bytesWritten: 0 }

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
      // We send Content-MD5 ourselves: radosgw (16) checks it; not every
      // store accepts the SDK's default trailing checksums.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: Math.min(options.requestTimeoutMs, 5000), httpAgent: { maxSockets: options.maxSockets, keepAlive: true } },
      ...options.clientConfig,
    })
    return new ObjectStore(sdk, client, options)
  }

  /** `s3://bucket/key`, for messages. */
  url(key: string): string {
    return `s3://${this.options.bucket}/${key}`
  }

  /**
   * Runs `send` until it succeeds, fails for good, or the retries run out
   * (then EIO). Each attempt gets a signal that aborts it at
   * `requestTimeoutMs`, or at `limits.deadline` if that comes first.
   */
  private async attempt<T>(what: string, key: string, send: (signal: AbortSignal) => Promise<T>, limits: RequestLimits = {}, notFound?: () => T): Promise<T> {
    const retries = limits.retries ?? this.options.retries
    for (let retry = 0; ; retry++) {
      const deadline = typeof limits.deadline === 'function' ? limits.deadline() : limits.deadline
      const left = deadline === undefined ? Infinity : deadline - performance.now()
      if (left <= 0) {
        this.stats.failures++
        throw new UblkError('EIO', `S3 ${what} ${this.url(key)} not sent: its deadline passed (the lease is not held)`)
      }
      const abort = new AbortController()
      const ms = Math.min(this.options.requestTimeoutMs, left)
      const timer = setTimeout(() => {
        this.stats.timeouts++
        const err = new Error(`no answer within ${Math.round(ms)} ms`)
        err.name = 'TimeoutError'
        abort.abort(err)
      }, ms)
      try {
        return await send(abort.signal)
      } catch (caught) {
        // An aborted SDK call rejects with its own AbortError: report our reason.
        const err = abort.signal.aborted ? abort.signal.reason : caught
        if (notFound && isNotFound(err)) return notFound()
        if (err instanceof BadReply) this.stats.badReplies++
        if (!isTransient(err) || retry >= retries) {
          if (err instanceof ConditionFailed) throw err
          this.stats.failures++
          const tries = retry + 1
          throw new UblkError('EIO', `S3 ${what} ${this.url(key)} failed${tries > 1 ? ` after ${tries} attempts` : ''}: ${describe(err)}`, { cause: err })
        }
        this.stats.retries++
        const delay = Math.min(this.options.retryDelayMs * 2 ** retry, 5000)
        await sleep(delay / 2 + Math.random() * (delay / 2))
      } finally {
        clearTimeout(timer)
      }
    }
  }

  /** A GET's body, destroyed when `signal` aborts (the SDK's abort may not reach a body being read). */
  private async getBody(key: string, signal: AbortSignal): Promise<{ body: Readable; length?: number; etag?: string }> {
    this.stats.gets++
    const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.options.bucket, Key: key }), { abortSignal: signal })
    const body = res.Body as Readable
    const destroy = () => body.destroy(signal.reason as Error)
    if (signal.aborted) destroy()
    else signal.addEventListener('abort', destroy, { once: true })
    return { body, length: res.ContentLength, etag: res.ETag }
  }

  async getObject(key: string, into: Buffer, limits?: RequestLimits): Promise<boolean> {
    return this.attempt(
      'GET',
      key,
      async (signal) => {
        const { body, length, etag } = await this.getBody(key, signal)
        if (length !== undefined && length !== into.length) {
          body.destroy()
          // Not a damaged reply: the object itself has the wrong size.
          throw new UblkError('EIO', `S3 GET ${this.url(key)}: the object holds ${length} bytes, not ${into.length} (not written by this image's servers?)`)
        }
        await readVerified(body, into, etag, `S3 GET ${this.url(key)}`)
        this.stats.bytesRead += into.length
        return true
      },
      limits,
      () => false,
    )
  }

  async getSmall(key: string, limits?: RequestLimits): Promise<{ body: Buffer; etag: string } | null> {
    return this.attempt(
      'GET',
      key,
      async (signal) => {
        const { body, length, etag } = await this.getBody(key, signal)
        if (length === undefined || length > 1 << 20) throw new UblkError('EIO', `S3 GET ${this.url(key)}: expected a small object, got ${length ?? 'no'} Content-Length`)
        const into = Buffer.alloc(length)
        await readVerified(body, into, etag, `S3 GET ${this.url(key)}`)
        this.stats.bytesRead += length
        return { body: into, etag: etag ?? '' }
      },
      limits,
      () => null,
    )
  }

  async put(key: string, body: Buffer, condition: PutCondition = {}, limits?: RequestLimits): Promise<string> {
    const digest = md5(body)
    return this.attempt(
      'PUT',
      key,
      async (signal) => {
        this.stats.puts++
        try {
          const res = await this.client.send(
            new this.sdk.PutObjectCommand({
              Bucket: this.options.bucket,
              Key: key,
              Body: body,
              ContentLength: body.length,
              ContentMD5: digest.toString('base64'),
              ...(condition.ifNoneMatch && { IfNoneMatch: condition.ifNoneMatch }),
              ...(condition.ifMatch && { IfMatch: condition.ifMatch }),
            }),
            { abortSignal: signal },
          )
          const stored = md5OfEtag(res.ETag)
          if (stored !== undefined && stored !== digest.toString('hex')) throw new BadReply(`S3 PUT ${this.url(key)}: the store's ETag ${res.ETag} is not the MD5 of what was sent`)
          this.stats.bytesWritten += body.length
          return res.ETag ?? ''
        } catch (err) {
          if (statusOf(err) === 412) throw new ConditionFailed(`S3 PUT ${this.url(key)}: ${condition.ifNoneMatch ? 'the object exists' : 'the object changed'} (HTTP 412)`)
          throw err
        }
      },
      limits,
    )
  }

  async delete(key: string, limits?: RequestLimits): Promise<void> {
    await this.attempt(
      'DELETE',
      key,
      async (signal) => {
        this.stats.deletes++
        await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.options.bucket, Key: key }), { abortSignal: signal })
      },
      limits,
      () => undefined,
    )
  }

  /** Every key under `prefix`, page by page. */
  async *list(prefix: string): AsyncGenerator<string> {
    let token: string | undefined
    do {
      const page = await this.attempt('LIST', prefix, (signal) => {
        this.stats.lists++
        return this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: signal })
      })
      for (const object of page.Contents ?? []) if (object.Key !== undefined) yield object.Key
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  }

  close(): void {
    this.client.destroy()
  }
}
