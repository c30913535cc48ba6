// generic_07: the diagnostic `rustNullHandler` serves a device inside the
// addon's queue threads (zeros on read, writes accepted) without calling JS.
import test from 'ava'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createDevice } from '../../js'
import { exec, requireUblkKernel, sh, spawnServer, ublkBlockDevices } from './helpers'

test('rustNullHandler reads zeros, accepts writes, and never calls JavaScript', async (t) => {
  requireUblkKernel()
  const dev = await createDevice({ size: 16 << 20, queues: 2, rustNullHandler: true, handleSignals: false })
  t.teardown(() => dev.close())
  t.is(dev.info.queues, 2)
  const written = await exec('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=64k', 'count=16', 'oflag=direct'])
  t.is(written.code, 0, written.stderr)
  // Reading what was "written" gives zeros: 1 MiB of them.
  const zeros = await sh('sh', ['-c', `dd if=${dev.path} bs=64k count=16 iflag=direct status=none | tr -d '\\000' | wc -c`])
  t.is(zeros.trim(), '0')
  const read = await sh('sh', ['-c', `dd if=${dev.path} bs=64k count=16 iflag=direct status=none | wc -c`])
  t.is(read.trim(), String(1 << 20))
  t.true(dev.stats().every((q) => q.reads === 0 && q.writes === 0), 'no request reached a JS dispatcher')
  await dev.close()
  t.false((await exec('test', ['-e', dev.path])).code === 0, 'the device is gone')
})

test('a rustNullHandler device keeps its process alive until SIGTERM', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([join(__dirname, 'fixtures', 'serve.js')], {
    env: { ...process.env, UBLK_TEST_RUST_NULL: '1' },
    t,
  })
  await sleep(2000) // nothing in JS would keep an idle process alive
  t.is(server.proc.exitCode, null, 'still serving')
  t.true(existsSync(server.path))
  await server.stop()
  t.deepEqual(ublkBlockDevices(), [])
})

test('each queue thread is pinned to one CPU of its hardware queue', async (t) => {
  requireUblkKernel()
  // One queue: the kernel maps every CPU to it, and the thread takes one of them.
  const dev = await createDevice({ size: 16 << 20, queues: 1, rustNullHandler: true, handleSignals: false })
  t.teardown(() => dev.close())
  const allowed = (status: string) => /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1]
  const tasks = readdirSync('/proc/self/task').map((tid) => ({
    comm: readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim(),
    cpus: allowed(readFileSync(`/proc/self/task/${tid}/status`, 'utf8')),
  }))
  const queueThread = tasks.find((task) => task.comm === `ublk${dev.info.id}q0`)
  t.truthy(queueThread, `no thread ublk${dev.info.id}q0 among ${tasks.map((task) => task.comm).join(', ')}`)
  t.regex(queueThread?.cpus ?? '', /^\d+$/, `the queue thread may run on ${queueThread?.cpus}`)
  // ... one of those the process may use ("0-3,6" form).
  const processCpus = (allowed(readFileSync('/proc/self/status', 'utf8')) ?? '').split(',').flatMap((range) => {
    const [from, to = from] = range.split('-').map(Number)
    return Array.from({ length: to - from + 1 }, (_, i) => from + i)
  })
  t.true(processCpus.includes(Number(queueThread?.cpus)), `CPU ${queueThread?.cpus} is not in ${processCpus}`)
})
