// generic_17: a device on the S3 backend, against a real Ceph cluster started
// where the device is (scripts/ceph, on the guest's loopback): fio verify
// through the device and again from a new server, ext4, kill -9 after sync
// (a new server, and recovery keeping the device up), DISCARD deleting
// objects, a second server refused, radosgw stopped mid-write, and the cache
// bound under a write flood (the server's RSS).
import test from 'ava'
import { readFileSync } from 'node:fs'
import { S3Backend } from '../../js'
import { cephStore, dataObjects, freshPrefix, startRgw, stopCephStore, stopRgw, type S3Env } from '../support/ceph'
import { CLI, cleanupServers, deviceFor, exec, fioAsync, fioVerify, requireUblkKernel, sh, spawnServer, tempMountPoint, ublk, type Server } from './helpers'

const MiB = 1 << 20
const SIZE = 64 * MiB
/**
 * Sequential 256k writes: used where the image is larger than the cache. Random
 * 4k writes there make every write a miss that fetches a whole object and
 * evicts another (measured: about 8 requests/s in the emulated guest).
 */
const SEQUENTIAL = { rw: 'write', bs: '256k' } as const

let env: S3Env
test.before(async () => {
  requireUblkKernel()
  env = await cephStore()
})
test.after.always(stopCephStore)

/** `ublk serve --backend s3://bucket/prefix ...` in its own process. */
function serveS3(t: Parameters<typeof cleanupServers>[0], prefix: string, ...args: string[]): Promise<Server> {
  return spawnServer([CLI, 'serve', '--backend', `s3://${env.S3_BUCKET}/${prefix}`, '--endpoint', env.S3_ENDPOINT, ...args], { t })
}

test.serial('fio crc32c verify through the device, and again from a new server on the same image', async (t) => {
  const prefix = freshPrefix('fio')
  // A cache of a quarter of the image: write-back, eviction and reads from the store all happen.
  const backend = await S3Backend.open({ endpoint: env.S3_ENDPOINT, bucket: env.S3_BUCKET, prefix, size: SIZE, objectSize: 1 * MiB, cacheBytes: 16 * MiB })
  const dev = await deviceFor(t, { size: backend.size, handler: backend, queues: 2 })
  const written = await fioVerify(dev.path, 'write', SIZE, 17, SEQUENTIAL)
  t.is(written.error, 0, 'write + verify')
  await dev.close()
  await backend.close()
  t.true((await dataObjects(env, prefix)).length > 0)

  const again = await S3Backend.open({ endpoint: env.S3_ENDPOINT, bucket: env.S3_BUCKET, prefix, cacheBytes: 16 * MiB })
  t.teardown(() => again.close())
  const dev2 = await deviceFor(t, { size: again.size, handler: again, queues: 2 })
  t.is((await fioVerify(dev2.path, 'verify', SIZE, 17, SEQUENTIAL)).error, 0, 'a new server reads back what fio wrote')
})

test.serial('ext4: mkfs, files, umount, fsck clean, and the files again from a new server', async (t) => {
  await sh('modprobe', ['ext4'])
  const prefix = freshPrefix('ext4')
  const mnt = await tempMountPoint(t)
  let server = await serveS3(t, prefix, '--size', '128M', '--object-size', '1M', '--cache', '32M')
  const servers = [server]
  cleanupServers(t, servers, () => -1)
  await sh('mkfs.ext4', ['-q', '-F', server.path])
  await sh('mount', [server.path, mnt])
  await sh('sh', ['-c', `dd if=/dev/urandom of=${mnt}/a bs=1M count=20 status=none && cp ${mnt}/a ${mnt}/b && mkdir ${mnt}/d && seq 1 20000 > ${mnt}/d/seq && sha256sum ${mnt}/a > ${mnt}/sum`])
  await sh('umount', [mnt])
  t.is((await exec('fsck.ext4', ['-n', '-f', server.path])).code, 0, 'fsck clean')
  await server.stop()

  server = await serveS3(t, prefix)
  servers.push(server)
  await sh('mount', [server.path, mnt])
  t.teardown(() => exec('umount', [mnt]))
  t.is((await exec('sh', ['-c', `cd ${mnt} && sha256sum -c sum && cmp a b && test "$(tail -1 d/seq)" = 20000`])).code, 0, 'files intact')
  await sh('umount', [mnt])
  await server.stop()
})

test.serial('kill -9 after sync: a new server finds every synced byte; with recovery the device stays up', async (t) => {
  const prefix = freshPrefix('kill')
  const servers: Server[] = []
  let id = -1
  cleanupServers(t, servers, () => id)
  const first = await serveS3(t, prefix, '--size', String(SIZE), '--object-size', '1M', '--recovery', 'reissue')
  servers.push(first)
  id = first.id
  // fio's writes then an fsync (FLUSH): all of it must survive the kill.
  t.is((await fioVerify(first.path, 'write', SIZE, 21)).error, 0)
  await sh('sync', [first.path])
  first.proc.kill('SIGKILL')
  await first.exited()
  // The device waits for a server; `ublk recover` serves it from the same image
  // (the dead server's lease is stale at once: same host, its pid is gone).
  const recovered = await spawnServer([CLI, 'recover', String(id), '--backend', `s3://${env.S3_BUCKET}/${prefix}`, '--endpoint', env.S3_ENDPOINT], { t })
  servers.push(recovered)
  t.is(recovered.path, first.path)
  t.is((await fioVerify(recovered.path, 'verify', SIZE, 21)).error, 0, 'the recovered device reads every synced byte')
  await recovered.stop()

  // And without recovery: kill -9, the device goes, a new `ublk serve` on the image.
  const plain = await serveS3(t, prefix)
  servers.push(plain)
  t.is((await fioVerify(plain.path, 'write', 16 * MiB, 22)).error, 0)
  await sh('sync', [plain.path])
  plain.proc.kill('SIGKILL')
  await plain.exited()
  await ublk('delete', '--dead')
  const fresh = await serveS3(t, prefix)
  servers.push(fresh)
  t.is((await fioVerify(fresh.path, 'verify', 16 * MiB, 22)).error, 0, 'a new server reads every synced byte')
  await fresh.stop()
})

test.serial('DISCARD deletes whole objects (counted in the bucket); a second server on the image is refused', async (t) => {
  const prefix = freshPrefix('discard')
  const server = await serveS3(t, prefix, '--size', '16M', '--object-size', '1M')
  cleanupServers(t, [server], () => -1)
  await sh('dd', [`of=${server.path}`, 'if=/dev/urandom', 'bs=1M', 'count=16', 'oflag=direct', 'conv=fsync', 'status=none'])
  t.is((await dataObjects(env, prefix)).length, 16)
  await sh('blkdiscard', ['-o', String(4 * MiB), '-l', String(8 * MiB), server.path])
  await sh('sync', [server.path])
  t.is((await dataObjects(env, prefix)).length, 8, 'the 8 discarded objects are gone')
  const head = await exec('sh', ['-c', `dd if=${server.path} bs=1M skip=4 count=8 iflag=direct status=none | tr -d '\\0' | wc -c`])
  t.is(head.stdout.trim(), '0', 'the discarded range reads as zeros')

  const second = await exec(process.execPath, [CLI, 'serve', '--backend', `s3://${env.S3_BUCKET}/${prefix}`, '--endpoint', env.S3_ENDPOINT])
  t.is(second.code, 1)
  t.regex(second.stderr, /the image is in use: pid \d+ .* pass force/)
  await server.stop()
})

test.serial('radosgw stopped mid-write: IO fails with EIO after the retries, and works again when it returns', async (t) => {
  const prefix = freshPrefix('outage')
  const server = await serveS3(t, prefix, '--size', '32M', '--object-size', '1M', '--cache', '4M')
  cleanupServers(t, [server], () => -1)
  t.is((await fioVerify(server.path, 'write', 8 * MiB, 31, SEQUENTIAL)).error, 0)
  await sh('sync', [server.path])
  await stopRgw()
  try {
    const dd = await exec('dd', [`of=${server.path}`, 'if=/dev/urandom', 'bs=1M', 'count=16', 'seek=16', 'oflag=direct', 'conv=fsync', 'status=none'])
    t.not(dd.code, 0, 'writes past the cache fail')
    t.regex(dd.stderr, /Input\/output error/)
  } finally {
    await startRgw()
  }
  t.is((await fioVerify(server.path, 'verify', 8 * MiB, 31, SEQUENTIAL)).error, 0, 'what was synced before is intact')
  t.is((await fioVerify(server.path, 'write', 32 * MiB, 32, SEQUENTIAL)).error, 0, 'the device works again')
  await server.stop()
})

/** VmRSS of `pid` in bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : 0
}

test.serial('a write flood (4x the cache) never grows the server past its cache bound (RSS sampled)', async (t) => {
  const prefix = freshPrefix('flood')
  const cache = 32 * MiB
  const server = await serveS3(t, prefix, '--size', '192M', '--object-size', '1M', '--cache', '32M', '--depth', '32')
  cleanupServers(t, [server], () => -1)
  const pid = server.proc.pid as number
  // Warm up the IO buffers and the client, then take the baseline.
  await fioAsync(['--name=warm', `--filename=${server.path}`, '--ioengine=io_uring', '--direct=1', '--rw=write', '--bs=128k', '--iodepth=32', '--size=8M'])
  await sh('sync', [server.path])
  const baseline = rss(pid)
  let peak = baseline
  const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 50)
  try {
    const job = await fioAsync(['--name=flood', `--filename=${server.path}`, '--ioengine=io_uring', '--direct=1', '--rw=write', '--bs=128k', '--iodepth=32', '--size=128M', '--offset=64M'])
    t.is(job.error, 0)
  } finally {
    clearInterval(sampler)
  }
  const grown = peak - baseline
  t.log(`RSS baseline ${(baseline / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB during 128 MiB of writes with a ${cache / MiB} MiB cache`)
  // The cache, plus 4 MiB of requests in flight (32 x 128 KiB), plus 32 MiB for the JS heap and HTTP buffers.
  t.true(grown <= cache + 36 * MiB, `RSS grew by ${(grown / MiB).toFixed(0)} MiB`)
  await server.stop()
})
