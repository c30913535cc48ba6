// The fault proxy of __test__/support/fault-proxy.ts, checked against the real
// radosgw with the AWS SDK: it forwards untouched without a rule, and each
// fault does what it says (once only with `times`). Serial: one shared rule.
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3'
import { cephStore, freshPrefix, stopCephStore, type S3Env } from '../support/ceph'
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy'

let env: S3Env
let proxy: FaultProxy
let client: S3Client
const prefix = freshPrefix('fault-proxy')

function s3(): S3Client {
  return new S3Client({
    endpoint: proxy.endpoint,
    forcePathStyle: true,
    maxAttempts: 1,
    region: env.AWS_REGION,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

test.before(async () => {
  env = await cephStore()
  proxy = await startFaultProxy(env.S3_ENDPOINT)
  client = s3()
})
test.after.always(async () => {
  client?.destroy()
  await proxy?.close()
  await stopCephStore()
})
test.afterEach.always(() => proxy.set(null))

async function put(key: string, body: Buffer, abortSignal?: AbortSignal): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: env.S3_BUCKET, Key: prefix + key, Body: body }), { abortSignal })
}

async function get(key: string, abortSignal?: AbortSignal, via = client): Promise<Buffer> {
  const r = await via.send(new GetObjectCommand({ Bucket: env.S3_BUCKET, Key: prefix + key }), { abortSignal })
  return Buffer.from(await r.Body!.transformToByteArray())
}

test.serial('without a rule, a PUT then a GET round-trip through the proxy', async (t) => {
  const data = randomBytes(100_000)
  const before = { ...proxy.counts }
  await put('plain', data)
  t.true((await get('plain')).equals(data))
  t.is(proxy.counts.requests - before.requests, 2)
  t.is(proxy.counts.faulted, before.faulted)
})

test.serial('a status rule answers an S3 error without forwarding', async (t) => {
  proxy.set({ kind: 'status', status: 503, match: { method: 'PUT' } })
  const err = await t.throwsAsync(put('refused', Buffer.from('x')))
  t.true(err instanceof S3ServiceException)
  t.is((err as S3ServiceException).name, 'SlowDown')
  t.is((err as S3ServiceException).$metadata.httpStatusCode, 503)
  proxy.set(null)
  const missing = await t.throwsAsync(client.send(new HeadObjectCommand({ Bucket: env.S3_BUCKET, Key: prefix + 'refused' })))
  t.is((missing as S3ServiceException).$metadata.httpStatusCode, 404, 'the PUT never reached radosgw')
})

test.serial('reset is a network error', async (t) => {
  await put('reset', Buffer.from('data'))
  proxy.set({ kind: 'reset' })
  const err = await t.throwsAsync(get('reset'))
  t.regex(String((err as NodeJS.ErrnoException).code ?? err?.message), /ECONNRESET|socket hang up/)
})

test.serial('truncate cuts the GET body short', async (t) => {
  const data = randomBytes(200_000)
  await put('truncate', data)
  proxy.set({ kind: 'truncate', match: { method: 'GET' } })
  const got = await get('truncate').then(
    (b) => b.length,
    () => -1,
  )
  t.true(got < data.length, `read ${got} of ${data.length} bytes`)
})

test.serial('corrupt returns the same length with different bytes', async (t) => {
  const data = randomBytes(50_000)
  await put('corrupt', data)
  proxy.set({ kind: 'corrupt', match: { method: 'GET', key: /corrupt$/ } })
  const got = await get('corrupt')
  t.is(got.length, data.length)
  t.false(got.equals(data))
  t.is([...got].filter((b, i) => b !== data[i]).length, 1, 'one byte differs')
})

test.serial('a stalled request fails with the caller’s abort signal, and set() does not release it', async (t) => {
  await put('stall', Buffer.from('data'))
  proxy.set({ kind: 'stall' })
  const seen = proxy.counts.requests
  const start = Date.now()
  const stalled = get('stall', AbortSignal.timeout(500))
  stalled.catch(() => {})
  while (proxy.counts.requests === seen) await new Promise((resolve) => setTimeout(resolve, 5))
  proxy.set(null)
  await t.throwsAsync(stalled)
  t.true(Date.now() - start < 2000, `rejected after ${Date.now() - start} ms`)
  t.is((await get('stall')).toString(), 'data', 'later requests are forwarded')
})

test.serial('a blackhole holds new connections unread', async (t) => {
  await put('blackhole', Buffer.from('data'))
  proxy.set({ kind: 'blackhole' })
  const fresh = s3()
  t.teardown(() => fresh.destroy())
  const before = proxy.counts.faulted
  await t.throwsAsync(get('blackhole', AbortSignal.timeout(500), fresh))
  t.true(proxy.counts.faulted > before)
})

test.serial('times: 1 faults only the first matching request; match.key selects by key', async (t) => {
  proxy.set({ kind: 'status', status: 500, times: 1, match: { key: /\/once$/ } })
  const before = proxy.counts.faulted
  await put('other', Buffer.from('x'))
  const err = await t.throwsAsync(put('once', Buffer.from('1')))
  t.is((err as S3ServiceException).name, 'InternalError')
  await put('once', Buffer.from('2'))
  t.is((await get('once')).toString(), '2')
  t.is(proxy.counts.faulted - before, 1)
})

test.serial('a delay forwards late', async (t) => {
  await put('delay', Buffer.from('late'))
  proxy.set({ kind: 'delay', ms: 300 })
  const start = Date.now()
  t.is((await get('delay')).toString(), 'late')
  t.true(Date.now() - start >= 300)
})

test.serial('an unreachable upstream answers 502', async (t) => {
  const dead = await startFaultProxy('http://127.0.0.1:1')
  t.teardown(() => dead.close())
  const r = await fetch(`${dead.endpoint}/bucket/key`)
  t.is(r.status, 502)
  t.regex(await r.text(), /<Code>BadGateway<\/Code>/)
})
