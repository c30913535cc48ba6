// The S3 part of `npm run bench`: the in-guest Ceph cluster (scripts/ceph),
// the S3Backend target served from it, and the two figures its throughput is
// judged against: the raw PUT and GET rates this process gets from the same
// radosgw through the same client code (the backend's ObjectStore), and the
// backend's sequential write rate counted until a FLUSH has put it all in
// the store.
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { S3_DEFAULTS } from '../js/backends/s3/options'
import { ObjectStore } from '../js/backends/s3/store'
import { cephStore, freshPrefix, stopCephStore } from '../__test__/support/ceph'
import { exec, spawnServer } from '../__test__/support/process'
import type { RunningTarget, Target } from './targets'

export const S3_TARGET = 'S3Backend q2'
const QUEUES = 2
const OBJECT_SIZE = S3_DEFAULTS.objectSize
const CONCURRENCY = S3_DEFAULTS.uploadConcurrency
/** Bytes of the flushed sequential write. */
const SEQUENTIAL_BYTES = 256 << 20

/** What `bench/serve.js s3` needs: where the store is, and a cache that holds the whole image (so reads after the fill are warm). */
async function serveS3(sizeBytes: number, cacheBytes: number): Promise<RunningTarget> {
  const env = await cephStore()
  const prefix = freshPrefix('bench')
  const server = await spawnServer([join(__dirname, 'serve.js'), 's3', String(QUEUES), String(sizeBytes)], {
    env: { ...process.env, UBLK_BENCH_S3_PREFIX: prefix, UBLK_BENCH_S3_CACHE: String(cacheBytes), S3_ENDPOINT: env.S3_ENDPOINT, S3_BUCKET: env.S3_BUCKET },
  })
  return { path: server.path, serverPid: server.proc.pid, notes: `${OBJECT_SIZE >> 20} MiB objects, ${cacheBytes >> 20} MiB cache`, stop: async () => void (await server.stop()) }
}

export const s3Target: Target = {
  name: S3_TARGET,
  description: `S3Backend on the single-host Ceph cluster (radosgw on loopback, memstore OSD), ${QUEUES} queues, warm cache`,
  keepsData: true,
  start: (sizeBytes) => serveS3(sizeBytes, sizeBytes + 64 * (1 << 20)),
}

/** The figures of `BenchRun.s3`. */
export interface S3Figures {
  objectSize: number
  concurrency: number
  /** PUTs of `objectSize` objects, `concurrency` at a time, through ObjectStore. */
  putMiBs: number
  /** GETs of those objects, whole, `concurrency` at a time. */
  getMiBs: number
  /** fio 128k sequential writes (QD32, one job) of SEQUENTIAL_BYTES to a new image, then fsync: bytes over the whole time. */
  sequentialWriteMiBs: number
  sequentialWriteBytes: number
  /** The device's cache for that run: a quarter of what is written, so the rate is the sustained one. */
  sequentialCacheBytes: number
}

/** `concurrency` loops doing `op(i)` until `seconds` have passed; the bytes per second they moved. */
async function rate(seconds: number, concurrency: number, op: (i: number) => Promise<void>): Promise<number> {
  const end = Date.now() + seconds * 1000
  const start = process.hrtime.bigint()
  let done = 0
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await op(next++)
        done++
      }
    }),
  )
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9
  return (done * OBJECT_SIZE) / elapsed / (1 << 20)
}

/** The raw PUT and GET rates of the store, then the backend's flushed sequential write rate. */
export async function measureS3(seconds: number): Promise<S3Figures> {
  const env = await cephStore()
  const store = await ObjectStore.open({
    bucket: env.S3_BUCKET,
    endpoint: env.S3_ENDPOINT,
    retries: S3_DEFAULTS.retries,
    retryDelayMs: S3_DEFAULTS.retryDelayMs,
    requestTimeoutMs: S3_DEFAULTS.requestTimeoutMs,
    maxSockets: CONCURRENCY + 32,
  })
  const prefix = freshPrefix('floor')
  const body = randomBytes(OBJECT_SIZE)
  let written = 0
  const putMiBs = await rate(seconds, CONCURRENCY, async (i) => {
    await store.put(`${prefix}${i}`, body)
    written = Math.max(written, i + 1)
  })
  const buffers = Array.from({ length: CONCURRENCY }, () => Buffer.allocUnsafe(OBJECT_SIZE))
  let slot = 0
  const getMiBs = await rate(seconds, CONCURRENCY, async (i) => {
    const into = buffers[slot++ % CONCURRENCY]
    if (!(await store.getObject(`${prefix}${i % written}`, into))) throw new Error(`floor object ${i % written} missing`)
  })
  for (let i = 0; i < written; i++) await store.delete(`${prefix}${i}`)
  store.close()

  const sequentialCacheBytes = SEQUENTIAL_BYTES / 4
  const running = await serveS3(SEQUENTIAL_BYTES, sequentialCacheBytes)
  try {
    const t0 = process.hrtime.bigint()
    const fio = await exec('fio', [
      '--name=seq',
      `--filename=${running.path}`,
      '--ioengine=io_uring',
      '--direct=1',
      '--rw=write',
      '--bs=128k',
      '--iodepth=32',
      `--size=${SEQUENTIAL_BYTES}`,
      '--end_fsync=1',
    ])
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9
    if (fio.code !== 0) throw new Error(`fio exited ${fio.code ?? fio.signal}: ${fio.stderr.trim()}`)
    return {
      objectSize: OBJECT_SIZE,
      concurrency: CONCURRENCY,
      putMiBs,
      getMiBs,
      sequentialWriteMiBs: SEQUENTIAL_BYTES / elapsed / (1 << 20),
      sequentialWriteBytes: SEQUENTIAL_BYTES,
      sequentialCacheBytes,
    }
  } finally {
    await running.stop()
  }
}

export { stopCephStore }
