// generic_16: the kernel's own lifecycle scenarios (ublksrv generic/004 and
// 006, the selftests' generic_16 and stress_*), as our tests. For each
// recovery mode, what IO sees while no server is there: a read the dead
// server held, and a read sent after the death, before and after a recovery.
// A device waiting for recovery deleted with IO waiting on it; a kill with no
// recovery and a delete that does not wait for the kernel, under fio; and
// close({ ifUnused }) refusing while the block device is open or mounted.
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createDevice, kernelFeatures, MemoryBackend, recoverDevice, UblkError, type Recovery } from '../../js'
import {
  cleanupServers,
  fioAsync,
  kernelTrouble,
  readBlock,
  requireUblkKernel,
  SERVE,
  sh,
  spawnServer,
  tempMountPoint,
  ublk,
  ublkBlockDevices,
} from './helpers'

const SIZE = 16 << 20
const STALL = 1 << 20
const UBLK_F_USER_RECOVERY_FAIL_IO = 1 << 9
const UBLK_F_SAFE_STOP_DEV = 1 << 17

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Whether `p` is still pending after `ms`. */
async function pendingAfter(p: Promise<unknown>, ms: number): Promise<boolean> {
  const still = Symbol('pending')
  return (await Promise.race([p, sleep(ms).then(() => still)])) === still
}

/** Polls `ublk list --json` until device `id`'s state is not LIVE; resolves with it. */
async function stateAfterDeath(id: number): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const r = await ublk('list', '--json')
    const d = (JSON.parse(r.stdout) as Array<{ id: number; state: string }>).find((x) => x.id === id)
    if (d && d.state !== 'LIVE') return d.state
    await sleep(50)
  }
  throw new Error(`device ${id} stayed LIVE after its server died`)
}

const PATTERN = / 5a( 5a){15}/

for (const mode of ['reissue', 'fail-inflight', 'fail-io'] as const satisfies Recovery[]) {
  test.serial(`recovery '${mode}' with no server: what held and new IO see, then a recovery restores service`, async (t) => {
    requireUblkKernel()
    const { mask, kernel } = await kernelFeatures()
    if (mode === 'fail-io' && !(mask & UBLK_F_USER_RECOVERY_FAIL_IO)) {
      const err = await t.throwsAsync(createDevice({ size: SIZE, handler: new MemoryBackend(SIZE), recovery: mode, handleSignals: false }), {
        instanceOf: UblkError,
      })
      t.is(err?.message, `recovery 'fail-io' needs UBLK_F_USER_RECOVERY_FAIL_IO (Linux 6.13 or newer); the running kernel is ${kernel}`)
      t.deepEqual(ublkBlockDevices(), [], 'nothing left behind')
      return
    }
    const server = await spawnServer([SERVE], {
      t,
      env: { ...process.env, UBLK_TEST_SIZE: String(SIZE), UBLK_TEST_RECOVERY: mode, UBLK_TEST_STALL_OFFSET: String(STALL) },
    })
    let id = server.id
    cleanupServers(t, [server], () => id)
    const held = readBlock(server.path, STALL)
    await sleep(1000) // the read reaches the handler, which never settles it
    await server.stop('SIGKILL')
    t.is(await stateAfterDeath(id), mode === 'fail-io' ? 'FAIL_IO' : 'QUIESCED')
    const later = readBlock(server.path, 0)
    if (mode === 'fail-io') {
      for (const [what, r] of [['the held read', await held], ['a read after the death', await later]] as const) {
        // EIO, or EREMOTEIO (seen on 7.3 for the read sent after the death).
        t.regex(r.stderr, /Input\/output error|Remote I\/O error/, `${what}: ${r.stderr}`)
      }
    } else {
      t.true(await pendingAfter(later, 2000), 'a read sent with no server waits for the next one')
      if (mode === 'reissue') t.true(await pendingAfter(held, 0), 'the held read waits to be re-issued')
      else t.regex((await held).stderr, /Input\/output error/, 'the held read failed at the death')
    }
    const memory = new MemoryBackend(SIZE)
    memory.write(Buffer.alloc(4096, 0x5a), 0)
    memory.write(Buffer.alloc(4096, 0x5a), STALL)
    const dev = await recoverDevice(id, { handler: memory, handleSignals: false })
    t.teardown(() => dev.close())
    if (mode !== 'fail-io') {
      const r = await later
      t.is(r.code, 0, r.stderr)
      t.regex(r.stdout, PATTERN, 'the read that waited is served by the new server')
    }
    if (mode === 'reissue') t.regex((await held).stdout, PATTERN, 'the held read is re-issued to the new server')
    t.regex((await readBlock(dev.path, STALL)).stdout, PATTERN, 'after recovery, reads are served')
    await dev.close()
    id = -1
    t.false(ublkBlockDevices().includes(`ublkb${server.id}`))
  })
}

test.serial('a device waiting for recovery, deleted while a read waits on it: the read ends without data and nothing hangs', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], { t, env: { ...process.env, UBLK_TEST_SIZE: String(SIZE), UBLK_TEST_RECOVERY: 'reissue' } })
  let id = server.id
  cleanupServers(t, [server], () => id)
  await server.stop('SIGKILL')
  await stateAfterDeath(id)
  const waiting = readBlock(server.path, 0)
  t.true(await pendingAfter(waiting, 1000))
  const kept = await ublk('delete', String(id))
  t.is(kept.code, 0, kept.stderr) // an explicit id is deleted; only --dead keeps waiting devices
  // It fails, or reads nothing: the disk may already have no capacity when it is retried.
  const r = await waiting
  t.true(/Input\/output error|No such device/.test(r.stderr) || r.stdout.trim() === '', `dd: ${r.stderr}, read: ${r.stdout}`)
  for (let i = 0; i < 100 && ublkBlockDevices().includes(`ublkb${id}`); i++) await sleep(100)
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
  id = -1
  t.deepEqual(kernelTrouble(), [])
})

test.serial('kill -9 with no recovery under fio, then a delete that does not wait for the kernel: fio ends, the device goes', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], { t, env: { ...process.env, UBLK_TEST_SIZE: String(SIZE) } })
  let id = server.id
  cleanupServers(t, [server], () => id)
  const running = fioAsync([
    '--name=killed',
    `--filename=${server.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--rw=randrw',
    '--bs=4k',
    '--iodepth=32',
    '--time_based',
    '--runtime=60',
  ])
  await sleep(1500)
  await server.stop('SIGKILL')
  const deleted = await ublk('delete', String(id))
  t.is(deleted.code, 0, deleted.stderr)
  const fio = await running
  t.true(fio.error !== 0 || fio.exit !== 0, `fio saw its device die (error ${fio.error}, exit ${fio.exit})`)
  for (let i = 0; i < 100 && ublkBlockDevices().includes(`ublkb${id}`); i++) await sleep(100)
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
  id = -1
  t.deepEqual(kernelTrouble(), [])
})

test.serial('close({ ifUnused: true }) refuses while the device is open or mounted, keeps serving, and stops it once unused', async (t) => {
  requireUblkKernel()
  const { mask } = await kernelFeatures()
  const how = mask & UBLK_F_SAFE_STOP_DEV ? /TRY_STOP_DEV refused/ : /checked from \/proc and sysfs: Linux .* has no TRY_STOP_DEV/
  const dev = await createDevice({ size: 64 << 20, handler: new MemoryBackend(64 << 20), handleSignals: false })
  t.teardown(() => dev.close())
  await t.throwsAsync(dev.close({ ifUnused: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /ifUnused/ })

  // A process holding the block device open.
  const holder = spawn('sh', ['-c', `exec 3<${dev.path}; echo open; exec sleep 60`], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => holder.kill('SIGKILL'))
  await once(holder.stdout!, 'data')
  const busy = await t.throwsAsync(dev.close({ ifUnused: true }), { instanceOf: UblkError })
  t.is(busy?.code, 'EBUSY')
  t.regex(busy?.message ?? '', how)
  t.regex(busy?.message ?? '', new RegExp(`open in pid ${holder.pid} \\((sh|sleep)\\)`)) // sh until its exec of sleep
  t.false(dev.closed)
  t.regex((await readBlock(dev.path, 0)).stdout, /^( 00){16}/, 'it keeps serving')
  holder.kill('SIGKILL')
  await once(holder, 'exit')

  // A mounted file system.
  await sh('modprobe', ['ext4'])
  await sh('mkfs.ext4', ['-q', '-F', dev.path])
  const mnt = tempMountPoint(t) // unmounted at the end, whatever happens
  await sh('mount', [dev.path, mnt])
  const claimed = await t.throwsAsync(dev.close({ ifUnused: true }), { instanceOf: UblkError })
  t.is(claimed?.code, 'EBUSY')
  t.regex(claimed?.message ?? '', mask & UBLK_F_SAFE_STOP_DEV ? how : /claimed \(mounted/)
  await sh('umount', [mnt])

  await dev.close({ ifUnused: true })
  t.true(dev.closed)
  t.false(ublkBlockDevices().includes(`ublkb${dev.id}`), 'stopped and deleted once unused')
})
