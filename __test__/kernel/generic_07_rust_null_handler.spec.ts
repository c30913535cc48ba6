// generic_07: the diagnostic `rustNullHandler` serves a device inside the
// addon's queue threads (zeros on read, writes accepted) without calling JS.
import test from 'ava'
import { existsSync } from 'node:fs'
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
