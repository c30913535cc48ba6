// The S3 backend against the real radosgw behind a fault-injecting proxy:
// throttling and 5xx answers, reset connections, a store that stops
// answering, truncated and corrupted replies. In each, acknowledged data
// survives, requests fail with EIO in bounded time (never hang, never read
// zeros for damaged data), and service resumes when the store does.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import type { RequestContext, S3Backend } from '../../js'
import { freshPrefix, openS3 } from '../support/ceph'
import { cephBehindFaultProxy } from '../support/fault-proxy'

const KiB = 1024
const write = { fua: false } as RequestContext
const OBJECT = 64 * KiB
/** Short limits, so a dead store shows within seconds: 2 attempts of 1 s each. */
const FAST_FAIL = { retries: 1, retryDelayMs: 50, requestTimeoutMs: 1000, leaseMs: 3000, writebackDelayMs: 3_600_000 }
/** The most a request may take to fail with these limits: the attempts, the backoff, and slack for a loaded machine. */
const FAIL_BOUND_MS = 2 * 1000 + 100 + 3000

const ceph = cephBehindFaultProxy(test)

/** An image behind the proxy. */
function openProxied(prefix: string, options: Record<string, unknown> = {}): Promise<S3Backend> {
  return openS3(ceph.env, { prefix, endpoint: ceph.proxy.endpoint, objectSize: OBJECT, ...FAST_FAIL, ...options })
}

async function readRange(b: S3Backend, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  await b.read(buf, offset)
  return buf
}

/** What the store holds, through a new server reading it directly (not through the proxy). */
async function storedBytes(prefix: string, length: number): Promise<Buffer> {
  const reader = await openS3(ceph.env, { prefix, force: false })
  try {
    return await readRange(reader, 0, length)
  } finally {
    await reader.close()
  }
}

/** Resolves with how long `p` took to settle, and its error if it rejected. */
async function timed(p: Promise<unknown>): Promise<{ ms: number; err?: Error & { code?: string } }> {
  const started = performance.now()
  try {
    await p
    return { ms: performance.now() - started }
  } catch (err) {
    return { ms: performance.now() - started, err: err as Error & { code?: string } }
  }
}

test.serial('throttling (503 SlowDown, 429) and 500s are retried: writes and FLUSH succeed, and the store has the data', async (t) => {
  const prefix = freshPrefix('throttle')
  const b = await openProxied(prefix, { size: 8 * OBJECT, retries: 6, retryDelayMs: 20 })
  const data = randomBytes(8 * OBJECT)
  await b.write(data, 0, write)
  ceph.proxy.set({ kind: 'status', status: 503, match: { method: 'PUT' }, probability: 0.5, seed: 7 })
  await b.flush()
  ceph.proxy.set({ kind: 'status', status: 429, match: { method: 'PUT' }, times: 2 })
  await b.write(data.subarray(0, OBJECT), 0, { fua: true } as RequestContext)
  ceph.proxy.set({ kind: 'status', status: 500, match: { method: 'PUT' }, times: 2 })
  await b.write(data.subarray(OBJECT, 2 * OBJECT), OBJECT, { fua: true } as RequestContext)
  t.true(b.stats().store.retries >= 4, `retried ${b.stats().store.retries} times`)
  await b.close()
  t.true((await storedBytes(prefix, data.length)).equals(data))
})

for (const fault of [
  { name: 'a 500 on every PUT', rule: { kind: 'status', status: 500, match: { method: 'PUT' } } },
  { name: 'every connection reset', rule: { kind: 'reset' } },
  { name: 'a store that stops answering', rule: { kind: 'blackhole' } },
] as const) {
  test.serial(`${fault.name}: FLUSH fails with EIO in bounded time, dirty data stays readable, and all of it is stored once the store is back`, async (t) => {
    const prefix = freshPrefix('fault')
    const b = await openProxied(prefix, { size: 16 * OBJECT, cacheBytes: 8 * OBJECT })
    const model = randomBytes(16 * OBJECT)
    await b.write(model.subarray(0, 4 * OBJECT), 0, write)
    await b.flush()
    ceph.proxy.set(fault.rule)
    await b.write(model.subarray(4 * OBJECT, 6 * OBJECT), 4 * OBJECT, write) // fits in the cache: acknowledged
    const flush = await timed(b.flush())
    t.is(flush.err?.code, 'EIO', `flush: ${flush.err?.message}`)
    t.true(flush.ms < FAIL_BOUND_MS, `flush failed after ${Math.round(flush.ms)} ms`)
    // More changes than the cache holds: those that find no room fail, in bounded time too.
    const flood = await timed(Promise.allSettled(Array.from({ length: 8 }, (_, i) => b.write(model.subarray((8 + i) * OBJECT, (9 + i) * OBJECT), (8 + i) * OBJECT, write))))
    t.true(flood.ms < 2 * FAIL_BOUND_MS, `the flood settled after ${Math.round(flood.ms)} ms`)
    t.true((await readRange(b, 4 * OBJECT, 2 * OBJECT)).equals(model.subarray(4 * OBJECT, 6 * OBJECT)), 'dirty data reads from the cache')
    ceph.proxy.set(null)
    // The flood's writes that failed left their ranges undefined: write them again now.
    await b.write(model.subarray(8 * OBJECT), 8 * OBJECT, write)
    await b.write(model.subarray(6 * OBJECT, 8 * OBJECT), 6 * OBJECT, write)
    await b.close()
    t.true((await storedBytes(prefix, model.length)).equals(model), 'every acknowledged write is in the store')
  })
}

test.serial('a truncated or corrupted GET is retried, and one that stays damaged fails the read with EIO instead of reading zeros', async (t) => {
  const prefix = freshPrefix('damaged')
  const data = randomBytes(4 * OBJECT)
  const writer = await openS3(ceph.env, { prefix, size: data.length, objectSize: OBJECT })
  await writer.write(data, 0, write)
  await writer.close()

  const b = await openProxied(prefix)
  t.teardown(() => b.close())
  const get = { method: 'GET', key: /data\// }
  ceph.proxy.set({ kind: 'truncate', match: get, times: 1 })
  t.true((await readRange(b, 0, OBJECT)).equals(data.subarray(0, OBJECT)), 'a truncated reply is fetched again')
  ceph.proxy.set({ kind: 'corrupt', match: get, times: 1 })
  t.true((await readRange(b, OBJECT, OBJECT)).equals(data.subarray(OBJECT, 2 * OBJECT)), 'a corrupted reply (MD5 against ETag) is fetched again')
  t.true(b.stats().store.badReplies >= 1, 'the MD5 mismatch is counted')
  t.true(b.stats().store.retries >= 2)

  for (const kind of ['truncate', 'corrupt'] as const) {
    ceph.proxy.set({ kind, match: get })
    const buf = Buffer.alloc(4096, 0xee)
    const read = await timed(Promise.resolve(b.read(buf, (kind === 'truncate' ? 2 : 3) * OBJECT)))
    t.is(read.err?.code, 'EIO', `${kind}: ${read.err?.message}`)
    t.regex(read.err?.message ?? '', kind === 'truncate' ? /failed after 2 attempts/ : /MD5/)
    t.is(buf.readUInt8(0), 0xee, 'nothing was read into the buffer')
    t.true(read.ms < FAIL_BOUND_MS)
  }
  ceph.proxy.set(null)
  t.true((await readRange(b, 2 * OBJECT, 2 * OBJECT)).equals(data.subarray(2 * OBJECT)), 'reads work again once replies are whole')
})

test.serial('a FLUSH of a full dirty limit ends within its budget at the rate the store is measured to take objects', async (t) => {
  const prefix = freshPrefix('budget')
  const objects = 64
  // Each PUT held 150 ms, 2 at a time: about 13 objects a second.
  const b = await openProxied(prefix, { size: objects * OBJECT, cacheBytes: objects * OBJECT, uploadConcurrency: 2, flushBudgetMs: 1000, requestTimeoutMs: 5000, leaseMs: 15000 })
  t.teardown(() => b.close())
  ceph.proxy.set({ kind: 'delay', ms: 150, match: { method: 'PUT', key: /data\// } })
  const data = randomBytes(objects * OBJECT)
  // Warm the rate up, then flood: the dirty limit makes writes wait for write-back.
  await b.write(data.subarray(0, 16 * OBJECT), 0, write)
  await b.flush()
  await Promise.all(Array.from({ length: objects }, (_, i) => b.write(data.subarray(i * OBJECT, (i + 1) * OBJECT), i * OBJECT, write)))
  const stats = b.stats()
  t.true(stats.dirtyLimit < 32 * OBJECT, `dirty limit ${stats.dirtyLimit} follows the measured ${stats.drainBytesPerSecond} B/s`)
  const flush = await timed(b.flush())
  t.is(flush.err, undefined)
  // The budget, plus one round of uploads in flight and slack for a loaded machine.
  t.true(flush.ms < 1000 + 3000, `flush took ${Math.round(flush.ms)} ms`)
  ceph.proxy.set(null)
  t.true((await readRange(b, 0, data.length)).equals(data))
})
