// The S3 backend as a handler, against the real single-host Ceph cluster
// (scripts/ceph): data, sparseness, geometry, the lease, flush and FUA
// durability, discard, the cache bound, and radosgw going away mid-write.
// Serial: one test stops radosgw.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes, randomInt } from 'node:crypto'
import { join } from 'node:path'
import type { RequestContext, S3Backend } from '../../js'
import { cephStore, dataObjects, freshPrefix, openS3, startRgw, stopCephStore, stopRgw, type S3Env } from '../support/ceph'

const KiB = 1024
const MiB = 1024 * KiB
const write = { fua: false } as RequestContext
const fua = { fua: true } as RequestContext

let env: S3Env
test.before(async () => {
  env = await cephStore()
})
test.after.always(stopCephStore)

/** Reads [offset, offset + length) through the backend. */
async function readRange(b: S3Backend, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  await b.read(buf, offset)
  return buf
}

/** Writes random data at random sector-aligned places (some across object edges), mirrored in `model`. */
async function randomWrites(b: S3Backend, model: Buffer, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const length = 512 * randomInt(1, 257)
    const offset = 512 * randomInt(0, (model.length - length) / 512 + 1)
    const data = randomBytes(length)
    await b.write(data, offset, write)
    data.copy(model, offset)
  }
}

test.serial('data round-trips across object edges, and close writes it back for the next server', async (t) => {
  const prefix = freshPrefix('roundtrip')
  const size = 8 * MiB
  const b = await openS3(env, { prefix, size, objectSize: 256 * KiB, cacheBytes: 2 * MiB })
  t.true(b.created)
  t.is(b.size, size)
  const model = Buffer.alloc(size)
  await randomWrites(b, model, 300)
  t.true((await readRange(b, 0, size)).equals(model), 'reads see the writes')
  await b.close()

  const again = await openS3(env, { prefix, objectSize: 256 * KiB })
  t.teardown(() => again.close())
  t.false(again.created)
  t.is(again.size, size, 'an existing image keeps its size')
  t.true((await readRange(again, 0, size)).equals(model), 'a new server reads what the closed one wrote')
})

test.serial('a missing object reads as zeros, and only written objects are stored', async (t) => {
  const prefix = freshPrefix('sparse')
  const b = await openS3(env, { prefix, size: 1024 * MiB, objectSize: 1 * MiB })
  t.teardown(() => b.close())
  t.true((await readRange(b, 700 * MiB, 2 * MiB)).equals(Buffer.alloc(2 * MiB)))
  await b.write(Buffer.alloc(4096, 0xab), 513 * MiB + 4096, write)
  await b.flush()
  t.deepEqual(await dataObjects(env, prefix), [`${prefix}data/000000000201`])
  t.is(b.stats().store.gets, 1 + 1 /* lease, header */, 'unwritten objects are never fetched')
  t.is(b.stats().entries, 1, 'reads of unwritten objects leave no bookkeeping behind: only the written object is tracked')
})

test.serial('an image keeps its geometry: another size or object size is refused', async (t) => {
  const prefix = freshPrefix('geometry')
  const b = await openS3(env, { prefix, size: 4 * MiB, objectSize: 1 * MiB })
  await b.close()
  const size = await t.throwsAsync(openS3(env, { prefix, size: 8 * MiB, objectSize: 1 * MiB }))
  t.is((size as { code?: string }).code, 'EINVAL')
  t.regex(size.message, /holds a 4194304-byte image, not 8388608 bytes/)
  const objectSize = await t.throwsAsync(openS3(env, { prefix, objectSize: 2 * MiB }))
  t.regex(objectSize.message, /was made with objectSize 1048576, not 2097152/)
  const missing = await t.throwsAsync(openS3(env, { prefix: freshPrefix('missing') }))
  t.is((missing as { code?: string }).code, 'ENOENT')
  t.regex(missing.message, /no image at s3:\/\/.*give size to create one/)
})

test.serial('a lease left by a killed process of this host is stale at once', async (t) => {
  const prefix = freshPrefix('stale')
  const script = `const { S3Backend } = require(${JSON.stringify(join(__dirname, '..', '..'))});
S3Backend.open({ endpoint: process.env.S3_ENDPOINT, bucket: process.env.S3_BUCKET, prefix: ${JSON.stringify(prefix)}, size: 1 << 22 })
  .then(() => console.log('open'))`
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  const [line] = (await once(child.stdout, 'data')) as [Buffer]
  t.is(line.toString().trim(), 'open')
  child.kill('SIGKILL')
  await once(child, 'exit')
  const b = await openS3(env, { prefix })
  t.is(b.size, 1 << 22)
  await b.close()
})

test.serial('FLUSH resolves once the writes before it are in the store; a FUA write once it is', async (t) => {
  const prefix = freshPrefix('flush')
  // No write-back by time: only FLUSH, FUA and a full cache store anything.
  const b = await openS3(env, { prefix, size: 8 * MiB, objectSize: 1 * MiB, writebackDelayMs: 3_600_000 })
  const a = randomBytes(64 * KiB)
  await b.write(a, 100 * KiB, write)
  t.deepEqual(await dataObjects(env, prefix), [], 'a plain write waits in the cache')
  await b.flush()
  t.deepEqual(await dataObjects(env, prefix), [`${prefix}data/000000000000`])
  const c = randomBytes(8 * KiB)
  await b.write(c, 3 * MiB + 512, fua)
  t.deepEqual(await dataObjects(env, prefix), [`${prefix}data/000000000000`, `${prefix}data/000000000003`], 'a FUA write is stored when it completes')
  // What the store holds, through another server's cold cache (the lease released, nothing left to write back).
  t.is(b.stats().dirtyBytes, 0)
  await b.close()
  const reader = await openS3(env, { prefix })
  t.true((await readRange(reader, 100 * KiB, a.length)).equals(a))
  t.true((await readRange(reader, 3 * MiB + 512, c.length)).equals(c))
  t.is(reader.stats().misses, 2)
  await reader.close()
})

test.serial('DISCARD and WRITE_ZEROES delete whole objects and zero the partial ones', async (t) => {
  const prefix = freshPrefix('discard')
  const b = await openS3(env, { prefix, size: 4 * MiB, objectSize: 1 * MiB })
  t.teardown(() => b.close())
  const data = randomBytes(4 * MiB)
  await b.write(data, 0, write)
  await b.flush()
  t.is((await dataObjects(env, prefix)).length, 4)
  await b.discard(1 * MiB, 1.5 * MiB) // object 1 whole, the first half of object 2
  await b.flush()
  t.deepEqual(
    (await dataObjects(env, prefix)).map((k) => k.slice(-1)),
    ['0', '2', '3'],
    'the whole object is deleted',
  )
  t.true((await readRange(b, 1 * MiB, 1.5 * MiB)).equals(Buffer.alloc(1.5 * MiB)))
  t.true((await readRange(b, 2.5 * MiB, 1.5 * MiB)).equals(data.subarray(2.5 * MiB)))
  await b.writeZeroes(3 * MiB, 1 * MiB)
  await b.writeZeroes(2.5 * MiB, 0.5 * MiB) // the rest of object 2: all zeros now, so deleted too
  await b.flush()
  t.deepEqual((await dataObjects(env, prefix)).map((k) => k.slice(-1)), ['0'])
  t.is(b.stats().storedObjects, 1)
  t.true((await readRange(b, 0, 1 * MiB)).equals(data.subarray(0, 1 * MiB)))
})

test.serial('the cache never holds more than cacheBytes, however many writes are in flight', async (t) => {
  const prefix = freshPrefix('bound')
  const objectSize = 64 * KiB
  const cacheBytes = 4 * objectSize
  const size = 256 * objectSize
  const b = await openS3(env, { prefix, size, objectSize, cacheBytes, uploadConcurrency: 2 })
  const model = randomBytes(size)
  // 128 writes of 128 KiB at once, each spanning two objects.
  await Promise.all(Array.from({ length: 128 }, (_, i) => b.write(model.subarray(i * 2 * objectSize, (i + 1) * 2 * objectSize), i * 2 * objectSize, write)))
  const stats = b.stats()
  t.true(stats.peakCachedBytes <= cacheBytes, `peak ${stats.peakCachedBytes} <= ${cacheBytes}`)
  t.true(stats.uploads >= 256 - 4, 'writes waited for write-back')
  await b.close()
  const again = await openS3(env, { prefix, objectSize })
  t.teardown(() => again.close())
  t.true((await readRange(again, 0, size)).equals(model))
})

test.serial('radosgw gone mid-write: EIO after the retries, nothing lost, and it resumes when radosgw returns', async (t) => {
  const prefix = freshPrefix('outage')
  const objectSize = 64 * KiB
  const size = 64 * objectSize
  const b = await openS3(env, { prefix, size, objectSize, cacheBytes: 8 * objectSize, retries: 2, retryDelayMs: 50, requestTimeoutMs: 2000, writebackDelayMs: 3_600_000 })
  const model = Buffer.alloc(size)
  const flushed = randomBytes(4 * objectSize)
  await b.write(flushed, 0, write)
  await b.flush()
  flushed.copy(model, 0)

  await stopRgw()
  try {
    const pending = randomBytes(2 * objectSize)
    await b.write(pending, 8 * objectSize, write) // fits in the cache: completes
    pending.copy(model, 8 * objectSize)
    const flush = await t.throwsAsync(b.flush())
    t.is((flush as { code?: string }).code, 'EIO')
    t.regex(flush.message, /could not be stored .* after 3 attempts/)
    // More than the cache holds: the writes that find no room fail with EIO.
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => b.write(Buffer.alloc(objectSize, 7), (32 + i) * objectSize, write)))
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    t.true(failed.length > 0, 'a full cache of unstorable changes fails writes')
    t.true(failed.every((r) => (r.reason as { code?: string }).code === 'EIO'))
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') model.fill(7, (32 + i) * objectSize, (33 + i) * objectSize)
    })
    t.true((await readRange(b, 8 * objectSize, pending.length)).equals(pending), 'dirty data still reads from the cache')
  } finally {
    await startRgw()
  }
  await b.flush()
  await b.close()
  const again = await openS3(env, { prefix, objectSize })
  t.teardown(() => again.close())
  t.true((await readRange(again, 0, size)).equals(model), 'every write that completed is in the store')
})
