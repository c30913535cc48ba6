import test from 'ava'
import { S3Backend, type S3BackendOptions } from '../../js'
import { resolveS3Options, S3_DEFAULTS } from '../../js/backends/s3/options'
import { ImageKeys } from '../../js/backends/s3/image'

const base = { bucket: 'disks' }

const invalid: Array<[string, Record<string, unknown>, ErrorConstructor, RegExp]> = [
  ['bucket missing', { bucket: undefined }, TypeError, /bucket is required/],
  ['bucket with capitals', { bucket: 'Disks' }, TypeError, /valid S3 bucket name/],
  ['bucket too short', { bucket: 'd' }, TypeError, /valid S3 bucket name/],
  ['prefix with a leading slash', { prefix: '/vm1' }, TypeError, /prefix must not start with "\/"/],
  ['endpoint without a scheme', { endpoint: '127.0.0.1:7480' }, TypeError, /endpoint must be an http/],
  ['objectSize not a power of two', { objectSize: 3 << 20 }, RangeError, /objectSize must be a power of two/],
  ['objectSize too small', { objectSize: 4096 }, RangeError, /objectSize must be from 65536/],
  ['objectSize too large', { objectSize: 128 << 20 }, RangeError, /objectSize must be from/],
  ['size not a page multiple', { size: 10_000 }, RangeError, /size must be a multiple of 4096/],
  ['size not a number', { size: '1G' }, TypeError, /size must be an integer/],
  ['cacheBytes below four objects', { objectSize: 1 << 20, cacheBytes: 3 << 20 }, RangeError, /cacheBytes must be from 4194304/],
  ['uploadConcurrency zero', { uploadConcurrency: 0 }, RangeError, /uploadConcurrency/],
  ['retries negative', { retries: -1 }, RangeError, /retries/],
  ['leaseMs too short', { leaseMs: 100 }, RangeError, /leaseMs/],
  ['leaseMs shorter than three request timeouts', { leaseMs: 10_000, requestTimeoutMs: 5000 }, RangeError, /leaseMs must be at least 3 times requestTimeoutMs \(15000\)/],
  ['flushBudgetMs too short', { flushBudgetMs: 10 }, RangeError, /flushBudgetMs must be from 100/],
  ['force not a boolean', { force: 'yes' }, TypeError, /force must be a boolean/],
  ['clientConfig not an object', { clientConfig: 'x' }, TypeError, /clientConfig must be an object/],
]

for (const [name, options, type, message] of invalid) {
  test(`S3Backend options: ${name} is refused before any request`, async (t) => {
    t.throws(() => resolveS3Options({ ...base, ...options } as S3BackendOptions), { instanceOf: type, message })
    // The same through open(): nothing is sent (there is no store at this endpoint).
    await t.throwsAsync(S3Backend.open({ endpoint: 'http://127.0.0.1:9', ...base, ...options } as S3BackendOptions), { instanceOf: type, message })
  })
}

test('S3Backend options: defaults, and a prefix gets its slash', (t) => {
  const o = resolveS3Options({ ...base, prefix: 'vm1' })
  t.is(o.prefix, 'vm1/')
  t.is(o.objectSize, undefined, 'an existing image keeps its own; a new one gets the default')
  t.is(o.cacheBytes, S3_DEFAULTS.cacheBytes)
  t.is(o.uploadConcurrency, S3_DEFAULTS.uploadConcurrency)
  t.is(o.force, false)
  t.is(resolveS3Options(base).prefix, '')
})

test('image keys: header, lease and hex-numbered data objects under the prefix', (t) => {
  const keys = new ImageKeys('vm1/')
  t.is(keys.header, 'vm1/header')
  t.is(keys.lease, 'vm1/lease')
  t.is(keys.data(0x201), 'vm1/data/000000000201')
  t.is(keys.indexOf('vm1/data/000000000201'), 0x201)
  t.is(keys.indexOf('vm1/header'), undefined)
  t.is(keys.indexOf('vm1/data/zz'), undefined)
})
