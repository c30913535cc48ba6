// The S3 backend's lease as a fence, against the real radosgw (conditional
// PUTs) and a fault-injecting proxy that cuts one server off: of servers
// racing for an image one wins, a server that cannot renew stops
// acknowledging writes, a forced take-over waits that out, and the image then
// holds only the new server's data. Also kill -9 in the middle of a FLUSH,
// and an image of more objects than one LIST page.
import test from 'ava'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { RequestContext, S3Backend } from '../../js'
import { freshPrefix, openS3 } from '../support/ceph'
import { cephBehindFaultProxy } from '../support/fault-proxy'

const KiB = 1024
const OBJECT = 64 * KiB
const write = { fua: false } as RequestContext
const fua = { fua: true } as RequestContext
/** A short lease, so the tests wait seconds: renewed every second, each renewal attempt bounded to 1 s. */
const SHORT_LEASE = { leaseMs: 3000, requestTimeoutMs: 1000, retries: 1, retryDelayMs: 50 }

const ceph = cephBehindFaultProxy(test)

async function readRange(b: S3Backend, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  await b.read(buf, offset)
  return buf
}

/** What the store holds, through a new server (once the image is free). */
async function storedBytes(prefix: string, offset: number, length: number): Promise<Buffer> {
  const reader = await openS3(ceph.env, { prefix })
  try {
    return await readRange(reader, offset, length)
  } finally {
    await reader.close()
  }
}

test.serial('of servers opening one image at the same instant, exactly one wins; the others are refused with EBUSY', async (t) => {
  const prefix = freshPrefix('race')
  const results = await Promise.allSettled(Array.from({ length: 4 }, () => openS3(ceph.env, { prefix, size: 4 * OBJECT, objectSize: OBJECT })))
  const won = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<S3Backend>[]
  t.is(won.length, 1)
  for (const r of results) if (r.status === 'rejected') t.is((r.reason as { code?: string }).code, 'EBUSY')
  t.true(won[0].value.stats().leaseFenced, 'radosgw enforces conditional PUTs')
  await won[0].value.close()
})

test.serial('a second server is refused while the lease is fresh, and takes it at once after a clean close', async (t) => {
  const prefix = freshPrefix('lease')
  const first = await openS3(ceph.env, { prefix, size: 4 * OBJECT, objectSize: OBJECT, ...SHORT_LEASE })
  const refused = await t.throwsAsync(openS3(ceph.env, { prefix }))
  t.is((refused as { code?: string }).code, 'EBUSY')
  t.regex(refused.message, new RegExp(`in use: pid ${process.pid} on .* renewed its lease .* pass force`))
  await first.write(Buffer.alloc(4096, 1), 0, write)
  await first.close()
  const started = performance.now()
  t.true((await storedBytes(prefix, 0, 4096)).equals(Buffer.alloc(4096, 1)))
  t.true(performance.now() - started < 3000, 'a released lease is taken without waiting it out')
})

test.serial('a server cut off from the store stops acknowledging writes when its lease runs out, and resumes once it can renew', async (t) => {
  const prefix = freshPrefix('fence')
  const b = await openS3(ceph.env, { prefix, size: 4 * OBJECT, objectSize: OBJECT, endpoint: ceph.proxy.endpoint, ...SHORT_LEASE })
  t.teardown(() => b.close())
  await b.write(Buffer.alloc(4096, 1), 0, fua)
  ceph.proxy.set({ kind: 'blackhole' })
  await new Promise((r) => setTimeout(r, 3500))
  t.false(b.stats().leaseHeld)
  const fenced = await t.throwsAsync(b.write(Buffer.alloc(4096, 2), 4096, write))
  t.is((fenced as { code?: string }).code, 'EIO')
  t.regex(fenced.message, /could not be renewed/)
  t.true((await readRange(b, 0, 4096)).equals(Buffer.alloc(4096, 1)), 'reads of cached data still work')
  ceph.proxy.set(null)
  await b.write(Buffer.alloc(4096, 3), 8192, fua)
  t.true(b.stats().leaseHeld, 'renewed on the next write')
})

test.serial('a forced take-over of a cut-off server: the first fails its later writes, and the image holds only the second one\'s data', async (t) => {
  const prefix = freshPrefix('takeover')
  const first = await openS3(ceph.env, { prefix, size: 4 * OBJECT, objectSize: OBJECT, endpoint: ceph.proxy.endpoint, writebackDelayMs: 3_600_000, ...SHORT_LEASE })
  await first.write(Buffer.alloc(OBJECT, 1), 0, fua)
  ceph.proxy.set({ kind: 'blackhole' })
  // Acknowledged while its lease holds, never stored: the cut-off server's last writes.
  await first.write(Buffer.alloc(OBJECT, 0xf1), OBJECT, write).catch(() => undefined)
  const started = performance.now()
  const second = await openS3(ceph.env, { prefix, force: true, ...SHORT_LEASE })
  t.true(performance.now() - started >= 3000, 'the take-over waited out the first lease')
  await second.write(Buffer.alloc(OBJECT, 2), 0, fua)
  await second.write(Buffer.alloc(OBJECT, 2), 2 * OBJECT, fua)
  const late = await t.throwsAsync(first.write(Buffer.alloc(OBJECT, 0xf2), 2 * OBJECT, fua))
  t.is((late as { code?: string }).code, 'EIO')
  ceph.proxy.set(null)
  // Reconnected, the first learns it lost the image: it still writes nothing.
  const after = await t.throwsAsync(first.write(Buffer.alloc(OBJECT, 0xf3), 3 * OBJECT, fua))
  t.regex(after.message, /took the image over/)
  const closing = await t.throwsAsync(first.close())
  t.regex(closing.message, /changed objects were not stored/)
  await second.close()
  const image = await storedBytes(prefix, 0, 4 * OBJECT)
  t.true(image.equals(Buffer.concat([Buffer.alloc(OBJECT, 2), Buffer.alloc(OBJECT), Buffer.alloc(OBJECT, 2), Buffer.alloc(OBJECT)])), "the store holds the second server's data only")
})

test.serial('a renewal never overwrites a take-over: the holder learns at its next renewal and stops', async (t) => {
  const prefix = freshPrefix('renewal')
  const first = await openS3(ceph.env, { prefix, size: 4 * OBJECT, objectSize: OBJECT, ...SHORT_LEASE })
  const second = openS3(ceph.env, { prefix, force: true, ...SHORT_LEASE })
  // While the second waits out the lease, the first keeps renewing: each renewal is refused (412).
  await new Promise((r) => setTimeout(r, 2500))
  const fenced = await t.throwsAsync(first.write(Buffer.alloc(4096, 1), 0, write))
  t.regex(fenced.message, /took the image over/)
  const b = await second
  await b.write(Buffer.alloc(4096, 2), 0, fua)
  await b.close()
  await first.close()
  t.true((await storedBytes(prefix, 0, 4096)).equals(Buffer.alloc(4096, 2)))
})

test.serial('kill -9 during a FLUSH: every write completed before the last FLUSH that returned reads back', async (t) => {
  const prefix = freshPrefix('kill')
  const blocks = 256
  // The child writes distinct 64 KiB blocks in a shuffled order, flushing every 16, and prints each step.
  const script = `const { S3Backend } = require(${JSON.stringify(join(__dirname, '..', '..'))});
const { createHash } = require('node:crypto');
const block = (i) => { const b = Buffer.alloc(${OBJECT}); for (let o = 0; o < b.length; o += 32) createHash('sha256').update(String(i) + ':' + o).digest().copy(b, o); return b };
(async () => {
  const b = await S3Backend.open({ endpoint: process.env.S3_ENDPOINT, bucket: process.env.S3_BUCKET, prefix: ${JSON.stringify(prefix)}, size: ${blocks * OBJECT}, objectSize: ${4 * OBJECT}, writebackDelayMs: 3600000 });
  const order = Array.from({ length: ${blocks} }, (_, i) => (i * 97) % ${blocks});
  for (let n = 0; n < order.length; n += 16) {
    await Promise.all(order.slice(n, n + 16).map((i) => b.write(block(i), i * ${OBJECT}, { fua: false })));
    console.log('flushing ' + (n + 16));
    await b.flush();
    console.log('flushed ' + (n + 16));
  }
  console.log('done');
})()`
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let flushed = 0
  const exited = new Promise((done) => child.once('exit', done))
  for await (const line of createInterface({ input: child.stdout })) {
    const [what, n] = line.split(' ')
    if (what === 'flushed') flushed = Number(n)
    // The worst moment: a FLUSH in progress, after several returned.
    if (what === 'flushing' && Number(n) >= 128) {
      child.kill('SIGKILL')
      break
    }
  }
  await exited
  t.true(flushed >= 112)
  const b = await openS3(ceph.env, { prefix })
  t.teardown(() => b.close())
  const { createHash } = await import('node:crypto')
  const block = (i: number) => {
    const buf = Buffer.alloc(OBJECT)
    for (let o = 0; o < buf.length; o += 32) createHash('sha256').update(`${i}:${o}`).digest().copy(buf, o)
    return buf
  }
  const order = Array.from({ length: blocks }, (_, i) => (i * 97) % blocks)
  for (const i of order.slice(0, flushed)) t.true((await readRange(b, i * OBJECT, OBJECT)).equals(block(i)), `block ${i}, flushed before the kill`)
})

test.serial('an image of more objects than one LIST page (1000) opens with all of them and reads each back', async (t) => {
  const prefix = freshPrefix('paging')
  const objects = 1100
  const b = await openS3(ceph.env, { prefix, size: objects * OBJECT, objectSize: OBJECT, cacheBytes: 64 * OBJECT, uploadConcurrency: 16 })
  const stamp = (i: number) => Buffer.alloc(512, `object ${i} `)
  for (let i = 0; i < objects; i += 50) await Promise.all(Array.from({ length: Math.min(50, objects - i) }, (_, k) => b.write(stamp(i + k), (i + k) * OBJECT, write)))
  await b.close()
  const again = await openS3(ceph.env, { prefix, cacheBytes: 64 * OBJECT })
  t.teardown(() => again.close())
  t.is(again.stats().storedObjects, objects)
  for (const i of [0, 999, 1000, 1001, 1099]) t.true((await readRange(again, i * OBJECT, 512)).equals(stamp(i)), `object ${i}`)
  t.is(again.stats().store.lists, 2)
})
