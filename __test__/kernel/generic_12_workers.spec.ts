// generic_12: worker mode, a JavaScript worker thread per queue. fio verifies
// on 2 queues; the main thread can block on its own device (execSync,
// spawnSync) without deadlock; a file system works; a module that fails to
// load leaves no device; a worker that dies mid-IO fails only what it held,
// is replaced, and the device goes on. Each worker runs on its queue
// thread's CPU unless told otherwise.
import test from 'ava'
import { execFileSync, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { createDevice } from '../../js'
import { deviceFor, exec, fioAsync, requireUblkKernel, sh, spawnServer, tempDir, tempImage, tempMountPoint, ublkBlockDevices } from './helpers'

const SIZE = 64 << 20
const MODULE = join(__dirname, 'fixtures', 'shared-memory-handler.js')

function workers(extra: Record<string, unknown> = {}) {
  return { module: MODULE, data: { memory: new SharedArrayBuffer(SIZE), ...extra } }
}

test('fio crc32c verify on 2 queues served by 2 worker threads', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, workers: workers() })
  const job = await fioAsync([
    '--name=verify',
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--rw=randwrite',
    '--bsrange=4k-256k',
    '--iodepth=32',
    '--numjobs=2',
    '--offset_increment=32M',
    '--size=32M',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_backlog=0',
  ])
  t.is(job.error, 0, job.stderr)
  t.is(job.exit, 0, job.stderr)
  const stats = dev.stats()
  t.true(stats.every((q) => q.writes > 0 && q.reads > 0), `both workers served IO: ${JSON.stringify(stats)}`)
  t.true(stats.every((q) => q.errors === 0 && q.inFlight === 0 && q.rejectedCompletions === 0))
})

/** A thread's Cpus_allowed_list, from its /proc status. */
function allowedCpus(statusPath: string): string {
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync(statusPath, 'utf8'))?.[1] ?? '?'
}

/** Where each queue's thread of device `id` (of this process) may run. */
function queueThreadCpus(id: number): Map<number, string> {
  const byQueue = new Map<number, string>()
  for (const tid of readdirSync('/proc/self/task')) {
    const m = new RegExp(`^ublk${id}q(\\d+)$`).exec(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim())
    if (m) byQueue.set(Number(m[1]), allowedCpus(`/proc/self/task/${tid}/status`))
  }
  return byQueue
}

/** Reads sector 0 from each CPU in turn (dd under taskset): where each answering worker ran. */
function workerPlaces(path: string): Array<{ queue: number; cpus: string }> {
  return cpus().map((_, cpu) => {
    const out = execFileSync('taskset', ['-c', String(cpu), 'dd', `if=${path}`, 'bs=4k', 'count=1', 'iflag=direct', 'status=none'], { timeout: 60_000 })
    return JSON.parse(out.toString('latin1').replace(/\0+$/, '')) as { queue: number; cpus: string }
  })
}

test('each worker runs on its queue thread\'s CPU; with pin: false where the scheduler puts it', async (t) => {
  const module = join(__dirname, 'fixtures', 'affinity-handler.js')
  const pinned = await deviceFor(t, { size: SIZE, queues: 2, workers: { module } })
  const threads = queueThreadCpus(pinned.id)
  t.is(threads.size, 2)
  const places = workerPlaces(pinned.path)
  for (const { queue, cpus: list } of places) {
    t.is(list, threads.get(queue) ?? 'no queue thread', `queue ${queue}'s worker runs where its queue thread does`)
    t.regex(list, /^\d+$/, 'one CPU')
  }
  if (cpus().length > 1) t.is(new Set(places.map((p) => p.queue)).size, 2, 'both queues answered')
  const free = await deviceFor(t, { size: SIZE, queues: 2, workers: { module, pin: false } })
  for (const { cpus: list } of workerPlaces(free.path)) t.is(list, allowedCpus('/proc/self/status'), 'an unpinned worker may run where the process may')
})

test('the main thread may block on the device: execSync dd and spawnSync fio complete', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, workers: workers() })
  execFileSync('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=1M', 'count=8', 'oflag=direct', 'status=none'], { timeout: 120_000 })
  const back = execFileSync('sh', ['-c', `dd if=${dev.path} bs=1M count=8 iflag=direct status=none | wc -c`], { timeout: 120_000 })
  t.is(back.toString().trim(), String(8 << 20))
  const fio = spawnSync(
    'fio',
    ['--name=sync', `--filename=${dev.path}`, '--rw=randrw', '--bs=4k', '--iodepth=16', '--ioengine=io_uring', '--direct=1', '--size=16M', '--verify=crc32c', '--do_verify=1'],
    { encoding: 'utf8', timeout: 300_000 },
  )
  t.is(fio.status, 0, fio.stderr)
})

test('mkfs.ext4, mount, files, umount and fsck in worker mode', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, workers: workers() })
  const mnt = tempMountPoint(t)
  await sh('modprobe', ['ext4'])
  execFileSync('mkfs.ext4', ['-q', '-F', dev.path], { timeout: 120_000 })
  await sh('mount', [dev.path, mnt])
  const sums = await sh('sh', ['-c', `cd ${mnt} && for i in $(seq 1 50); do head -c 20000 /dev/urandom > f$i; done && sha256sum f*`])
  await sh('umount', [mnt])
  const fsck = await exec('fsck.ext4', ['-fn', dev.path])
  t.is(fsck.code, 0, fsck.stdout + fsck.stderr)
  await sh('mount', [dev.path, mnt])
  t.is(await sh('sh', ['-c', `cd ${mnt} && sha256sum f*`]), sums, 'every file reads back intact')
})

// Serial (ava runs these before the concurrent ones): they check the
// device list, and a concurrent test's device could take a freed id.
test.serial('a worker module that throws at load rejects createDevice and leaves no device', async (t) => {
  requireUblkKernel()
  const before = ublkBlockDevices()
  await t.throwsAsync(
    createDevice({ size: SIZE, queues: 2, handleSignals: false, workers: { module: join(__dirname, 'fixtures', 'throws-at-load.js') } }),
    { message: /broken on purpose/ },
  )
  t.deepEqual(ublkBlockDevices(), before)
})

test('a worker that exits mid-IO fails what it held with EIO, is replaced, and the device goes on', async (t) => {
  const EXIT_AT = 8 << 20
  const flags = new SharedArrayBuffer(4)
  // One tag: the request the dead worker held and every later one share it,
  // so the successor must see the slot that tag was moved to.
  const dev = await deviceFor(t, { size: SIZE, queues: 1, queueDepth: 1, workers: workers({ exitAt: EXIT_AT, flags }) })
  const lost: Array<[Error, number]> = []
  dev.on('workerError', (err: Error, queue: number) => lost.push([err, queue]))
  await sh('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none'])
  const failed = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', `skip=${EXIT_AT / 4096}`, 'count=1', 'iflag=direct'])
  t.not(failed.code, 0, 'the request the worker held failed')
  t.regex(failed.stderr, /Input\/output error/)
  t.is(lost.length, 1)
  t.is(lost[0][1], 0)
  t.regex(lost[0][0].message, /exited with code 3/)
  // The replacement serves the queue: everything, that offset included.
  const again = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=1M', 'count=16', 'iflag=direct'])
  t.is(again.code, 0, again.stderr)
  const job = await fioAsync([
    '--name=after',
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=16',
    '--size=8M',
    '--verify=crc32c',
    '--do_verify=1',
  ])
  t.is(job.error, 0, job.stderr)
  t.is(dev.stats()[0].inFlight, 0)
})

test("a worker's handler error reaches the main thread as 'requestError', and the reader sees EIO", async (t) => {
  const FAIL_AT = 4 << 20
  const dev = await deviceFor(t, { size: SIZE, queues: 1, workers: workers({ failAt: FAIL_AT }) })
  const errors: Array<[Error, { op: string; queue: number }]> = []
  dev.on('requestError', (err: Error, ctx: { op: string; queue: number }) => errors.push([err, ctx]))
  const r = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', `skip=${FAIL_AT / 4096}`, 'count=1', 'iflag=direct'])
  t.not(r.code, 0)
  t.regex(r.stderr, /Input\/output error/)
  await new Promise((resolve) => setTimeout(resolve, 200)) // the message crosses threads
  t.is(errors.length, 1)
  t.true(errors[0][0] instanceof Error)
  t.regex(errors[0][0].message, /no data at 4194304 \(queue 0\)/)
  t.like(errors[0][1], { op: 'read', queue: 0 })
  t.is(dev.stats()[0].errors, 1)
})

for (const [how, env] of [
  ['SIGTERM', {}],
  ['process.exit()', { UBLK_TEST_EXIT_AFTER_START: '1' }],
] as const) {
  test.serial(`a worker-mode server's devices are deleted on ${how}`, async (t) => {
    requireUblkKernel()
    const server = await spawnServer([join(__dirname, 'fixtures', 'serve.js')], { env: { ...process.env, UBLK_TEST_WORKERS: '1', UBLK_TEST_QUEUES: '2', ...env }, t })
    if (how === 'SIGTERM') {
      const read = await exec('dd', [`if=${server.path}`, 'of=/dev/null', 'bs=64k', 'count=16', 'iflag=direct'])
      t.is(read.code, 0, read.stderr)
      await server.stop()
    } else {
      await server.exited()
    }
    t.false(ublkBlockDevices().includes(`ublkb${server.id}`))
  })
}

test("a dying worker's pending thread-pool read holds its exit; then its request fails and the queue goes on", async (t) => {
  // Node ends a worker only once its thread-pool requests are done, so no
  // native write into a request's buffer can land after 'exit'.
  const EXIT_AT = 8 << 20
  const fifo = join(tempDir(t), 'late')
  await sh('mkfifo', [fifo])
  const dev = await deviceFor(t, {
    size: SIZE,
    queues: 1,
    queueDepth: 1, // one tag: the dying worker's request and every later one share it
    workers: workers({ exitAt: EXIT_AT, flags: new SharedArrayBuffer(4), lateFifo: fifo }),
  })
  let lost = 0
  dev.on('workerError', () => lost++)
  const read = exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', `skip=${EXIT_AT / 4096}`, 'count=1', 'iflag=direct'])
  await new Promise((resolve) => setTimeout(resolve, 3000))
  t.is(lost, 0, 'the worker has not exited while its read is pending')
  writeFileSync(fifo, Buffer.alloc(4096, 0xee))
  const failed = await read
  t.not(failed.code, 0)
  t.regex(failed.stderr, /Input\/output error/)
  t.is(lost, 1)
  const image = await tempImage(t, 64 << 10, 'data')
  await sh('dd', ['if=/dev/urandom', `of=${image}`, 'bs=64k', 'count=1', 'status=none'])
  await sh('dd', [`if=${image}`, `of=${dev.path}`, 'bs=64k', 'seek=256', 'oflag=direct', 'status=none'])
  const back = await sh('sh', ['-c', `dd if=${dev.path} bs=64k skip=256 count=1 iflag=direct status=none | sha256sum`])
  t.is(back.split(' ')[0], (await sh('sha256sum', [image])).split(' ')[0], 'the successor serves the tag intact')
})
