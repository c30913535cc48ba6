// generic_14: a device created with `recovery` outlives its server. A
// FileBackend server is killed with SIGKILL under fio; `ublk recover` in a new
// process re-attaches; fio finishes without an IO error and a separate verify
// pass is clean. Then the refusals: no such device, a live server, a device
// created without recovery, and recovery modes this kernel lacks.
import test from 'ava'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { createDevice, kernelFeatures, MemoryBackend, NullBackend, recoverDevice, UblkError } from '../../js'
import { CLI, cleanupServers, exec, fioVerify, requireUblkKernel, SERVE, spawnServer, tempImage, ublk, ublkBlockDevices, type Server } from './helpers'

const SIZE = 64 << 20
const UBLK_F_USER_RECOVERY_FAIL_IO = 1 << 9

/** A device listed by `ublk list --json`. */
async function listed(id: number): Promise<Record<string, unknown> | undefined> {
  const r = await ublk('list', '--json')
  return (JSON.parse(r.stdout) as Array<Record<string, unknown>>).find((d) => d.id === id)
}

test.serial('kill -9 under fio with recovery "reissue", twice: ublk recover re-attaches and no IO fails', async (t) => {
  requireUblkKernel()
  const image = await tempImage(t, SIZE)
  const servers: Server[] = []
  let id = -1
  cleanupServers(t, servers, () => id)
  const first = await spawnServer([CLI, 'serve', '--backend', `file:${image}`, '--queues', '2', '--recovery', 'reissue'], { t })
  servers.push(first)
  id = first.id
  t.like(await listed(id), { state: 'LIVE', recovery: 'reissue', alive: true })

  const writing = fioVerify(first.path, 'write', SIZE, 1414)
  let server = first
  for (const round of [1, 2]) {
    await new Promise((r) => setTimeout(r, 1500))
    await server.stop('SIGKILL')
    const waiting = await listed(id)
    t.like(waiting, { recovery: 'reissue', alive: false, recoverable: true }, `round ${round}: ${JSON.stringify(waiting)}`)
    const kept = await ublk('delete', '--dead')
    t.regex(kept.stdout, new RegExp(`kept ${id}: it waits for recovery`), 'delete --dead keeps a device waiting for recovery')
    t.true(ublkBlockDevices().includes(`ublkb${id}`))
    server = await spawnServer([CLI, 'recover', String(id), '--backend', `file:${image}`], { t })
    servers.push(server)
    t.is(server.path, first.path, 'the same device comes back')
    t.like(await listed(id), { state: 'LIVE', alive: true, pid: server.proc.pid })
  }
  const written = await writing
  t.is(written.error, 0, written.stderr)
  t.is(written.exit, 0, written.stderr)
  t.true(written.write_io_kbytes >= SIZE / 1024, `wrote ${written.write_io_kbytes} KiB`)
  const verified = await fioVerify(server.path, 'verify', SIZE, 1414)
  t.is(verified.error, 0, verified.stderr)
  t.true(verified.read_io_kbytes >= SIZE / 1024, `verified ${verified.read_io_kbytes} KiB`)
  await server.stop()
  t.false(ublkBlockDevices().includes(`ublkb${id}`), 'SIGTERM of the recovering server deletes the device')
})

test.serial('recoverDevice refuses a missing device, a live one, and one created without recovery', async (t) => {
  requireUblkKernel()
  const missing = await t.throwsAsync(recoverDevice(4000, { handler: new NullBackend() }), { instanceOf: UblkError })
  t.is(missing?.code, 'ENODEV')
  t.regex(missing?.message ?? '', /cannot recover ublk device 4000: no such device/)

  const live = await createDevice({ size: 16 << 20, handler: new MemoryBackend(16 << 20), recovery: 'reissue', handleSignals: false })
  t.teardown(() => live.close())
  const busy = await t.throwsAsync(recoverDevice(live.id, { handler: new NullBackend() }), { instanceOf: UblkError })
  t.is(busy?.code, 'EBUSY')
  t.regex(busy?.message ?? '', new RegExp(`served by pid ${process.pid}`))
  await live.close()

  const plain = await spawnServer([SERVE], { t })
  await plain.stop('SIGKILL')
  t.teardown(() => ublk('delete', '--force', String(plain.id)))
  const refused = await t.throwsAsync(recoverDevice(plain.id, { handler: new NullBackend() }), { instanceOf: UblkError })
  t.regex(refused?.message ?? '', /created without recovery/)
  t.true(existsSync(`/dev/ublkc${plain.id}`), 'a refused recovery deletes nothing')
})

test.serial('recoverDevice with workers takes over a device whose worker-mode server was killed', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], {
    t,
    env: { ...process.env, UBLK_TEST_WORKERS: '1', UBLK_TEST_QUEUES: '2', UBLK_TEST_RECOVERY: 'fail-inflight', UBLK_TEST_SIZE: String(16 << 20) },
  })
  await server.stop('SIGKILL')
  t.teardown(() => ublk('delete', '--force', String(server.id)))
  t.like(await listed(server.id), { recovery: 'fail-inflight', alive: false, recoverable: true })
  const memory = new SharedArrayBuffer(16 << 20)
  new Uint8Array(memory).fill(0x5a, 0, 4096)
  const dev = await recoverDevice(server.id, { workers: { module: join(__dirname, 'fixtures', 'shared-memory-handler.js'), data: { memory } } })
  t.is(dev.info.queues, 2)
  t.is(dev.path, server.path)
  // Served by this process's workers now: the first block is what their memory holds.
  const first = await exec('sh', ['-c', `dd if=${dev.path} bs=4096 count=1 iflag=direct status=none | od -An -tx1 | head -1`])
  t.regex(first.stdout, /^( 5a){16}/)
  await dev.close()
  t.false(ublkBlockDevices().includes(`ublkb${server.id}`))
})

test.serial('recovery modes are gated by the kernel features they need', async (t) => {
  requireUblkKernel()
  const { mask, kernel } = await kernelFeatures()
  const attempt = createDevice({ size: 16 << 20, handler: new NullBackend(), recovery: 'fail-io', handleSignals: false })
  if (mask & UBLK_F_USER_RECOVERY_FAIL_IO) {
    // ADD_DEV sent by us (libublk 0.4.8's builder refuses the flag).
    const dev = await attempt
    t.is(dev.info.recovery, 'fail-io')
    t.like(await listed(dev.id), { state: 'LIVE', recovery: 'fail-io' })
    await dev.close()
  } else {
    const err = await t.throwsAsync(attempt, { instanceOf: UblkError })
    t.is(err?.code, 'EOPNOTSUPP')
    t.is(err?.message, `recovery 'fail-io' needs UBLK_F_USER_RECOVERY_FAIL_IO (Linux 6.13 or newer); the running kernel is ${kernel}`)
  }
  t.deepEqual(ublkBlockDevices(), [], 'nothing left behind')
})
