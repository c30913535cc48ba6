// generic_15: outliving the server, beyond a plain kill -9 (generic_14).
// A planned hand-off under fio (`detach()` then `ublk recover` in a new
// process); a mounted ext4 that survives its server's kill -9; live resize
// (what the recovery modes do to IO with no server is generic_16); and the
// refusals (detach without recovery, resize where the kernel lacks it).
import test from 'ava'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createDevice, kernelFeatures, MemoryBackend, UblkError } from '../../js'
import { CLI, cleanupServers, exec, fioVerify, readBlock, requireUblkKernel, SERVE, sh, spawnServer, tempImage, tempMountPoint, ublk, ublkBlockDevices, type Server } from './helpers'

const SIZE = 64 << 20
const UBLK_F_UPDATE_SIZE = 1 << 10
const UBLK_F_QUIESCE = 1 << 12

/** Resolves with `line`'s first occurrence in the server's output, or rejects after `ms`. */
async function printed(server: Server, pattern: RegExp, ms = 60_000): Promise<string> {
  const deadline = Date.now() + ms
  for (;;) {
    const m = pattern.exec(server.output())
    if (m) return m[0]
    if (Date.now() > deadline) throw new Error(`the server did not print ${pattern} (output: ${JSON.stringify(server.output())})`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test.serial('detach() under fio, then ublk recover in a new process: no IO fails and the data verifies', async (t) => {
  requireUblkKernel()
  const { mask } = await kernelFeatures()
  const image = await tempImage(t, SIZE)
  const servers: Server[] = []
  let id = -1
  cleanupServers(t, servers, () => id)
  const first = await spawnServer([SERVE], {
    t,
    stdin: true,
    env: { ...process.env, UBLK_TEST_FILE: image, UBLK_TEST_QUEUES: '2', UBLK_TEST_RECOVERY: 'reissue', UBLK_TEST_DETACH_ON_STDIN: '1' },
  })
  servers.push(first)
  id = first.id
  const writing = fioVerify(first.path, 'write', SIZE, 1515)
  await new Promise((r) => setTimeout(r, 1500))
  first.proc.stdin!.write('detach\n')
  // QUIESCE_DEV where the kernel has it (6.16+); elsewhere the kernel takes over at exit.
  const expected = mask & UBLK_F_QUIESCE ? 'quiesced' : 'at-exit'
  t.is(await printed(first, /detached \S+/), `detached ${expected}`)
  // Nothing keeps the detached process alive, and its exit does not delete the device.
  const exit = await Promise.race([first.exited(), new Promise((r) => setTimeout(() => r('still running'), 30_000))])
  t.deepEqual(exit, { code: 0, signal: null })
  t.true(ublkBlockDevices().includes(`ublkb${id}`), 'the detached device is still there')

  const second = await spawnServer([CLI, 'recover', String(id), '--backend', `file:${image}`], { t })
  servers.push(second)
  t.is(second.path, first.path)
  const written = await writing
  t.is(written.error, 0, written.stderr)
  t.is(written.exit, 0, written.stderr)
  t.true(written.write_io_kbytes >= SIZE / 1024, `wrote ${written.write_io_kbytes} KiB`)
  const verified = await fioVerify(second.path, 'verify', SIZE, 1515)
  t.is(verified.error, 0, verified.stderr)
  await second.stop()
  t.false(ublkBlockDevices().includes(`ublkb${id}`), 'SIGTERM of the successor deletes the device')
})

test.serial('a mounted ext4 survives kill -9 of its server and a recovery; fsck is clean', async (t) => {
  requireUblkKernel()
  await sh('modprobe', ['ext4'])
  const image = await tempImage(t, SIZE)
  const mnt = tempMountPoint(t)
  const servers: Server[] = []
  let id = -1
  let mounted = false
  t.teardown(async () => {
    if (mounted) await exec('umount', ['-l', mnt])
  })
  cleanupServers(t, servers, () => id)
  const first = await spawnServer([CLI, 'serve', '--backend', `file:${image}`, '--recovery', 'reissue'], { t })
  servers.push(first)
  id = first.id
  await sh('mkfs.ext4', ['-q', '-F', first.path])
  await sh('mount', [first.path, mnt])
  mounted = true
  const before = Buffer.alloc(1 << 20, 0)
  for (let i = 0; i < before.length; i += 4) before.writeUInt32LE((i * 2654435761) >>> 0, i)
  writeFileSync(join(mnt, 'before.bin'), before)
  await sh('sync', [])

  await first.stop('SIGKILL')
  const second = await spawnServer([CLI, 'recover', String(id), '--backend', `file:${image}`], { t })
  servers.push(second)
  await sh('sh', ['-c', `echo 3 > /proc/sys/vm/drop_caches`])
  const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex')
  t.is(digest(readFileSync(join(mnt, 'before.bin'))), digest(before), 'a file synced before the kill reads back intact')
  writeFileSync(join(mnt, 'after.txt'), 'written after the recovery\n')
  await sh('sync', [])
  await sh('umount', [mnt])
  mounted = false
  const fsck = await exec('fsck.ext4', ['-fn', second.path])
  t.is(fsck.code, 0, fsck.stdout + fsck.stderr)
  await sh('mount', [second.path, mnt])
  mounted = true
  t.is(readFileSync(join(mnt, 'after.txt'), 'utf8'), 'written after the recovery\n')
  await sh('umount', [mnt])
  mounted = false
  await second.stop()
})

test.serial('resize() grows and shrinks a live device where the kernel has UPDATE_SIZE, and is refused clearly elsewhere', async (t) => {
  requireUblkKernel()
  const { mask, kernel } = await kernelFeatures()
  const dev = await createDevice({ size: 32 << 20, handler: new MemoryBackend(64 << 20), handleSignals: false })
  t.teardown(() => dev.close())
  const sizeOf = async () => Number((await sh('blockdev', ['--getsize64', dev.path])).trim())
  await t.throwsAsync(dev.resize(1000), { instanceOf: RangeError, message: /multiple of the logical block size \(512\)/ })
  if (!(mask & UBLK_F_UPDATE_SIZE)) {
    const err = await t.throwsAsync(dev.resize(64 << 20), { instanceOf: UblkError })
    t.is(err?.code, 'EOPNOTSUPP')
    t.is(err?.message, `resize needs UBLK_F_UPDATE_SIZE (Linux 6.16 or newer); the running kernel is ${kernel}`)
    t.is(await sizeOf(), 32 << 20, 'the size is unchanged')
    return
  }
  await dev.resize(64 << 20)
  t.is(await sizeOf(), 64 << 20)
  t.is(dev.info.size, 64 << 20)
  // The new range is served: write and read back a block beyond the old end.
  await sh('sh', ['-c', `head -c 4096 /dev/zero | tr '\\0' '\\132' | dd of=${dev.path} bs=4096 seek=${(48 << 20) / 4096} oflag=direct status=none`])
  t.regex((await readBlock(dev.path, 48 << 20)).stdout, /^( 5a){16}/)
  await dev.resize(16 << 20)
  t.is(await sizeOf(), 16 << 20)
  t.is(dev.info.size, 16 << 20)
  const beyond = await readBlock(dev.path, 32 << 20)
  t.notRegex(beyond.stdout, /5a/, 'nothing is read beyond the new end')
})

test.serial('detach() is refused for a device created without recovery, which keeps serving', async (t) => {
  requireUblkKernel()
  const dev = await createDevice({ size: 16 << 20, handler: new MemoryBackend(16 << 20), handleSignals: false })
  t.teardown(() => dev.close())
  const err = await t.throwsAsync(dev.detach(), { instanceOf: UblkError })
  t.is(err?.code, 'EINVAL')
  t.regex(err?.message ?? '', /created without recovery/)
  t.is((await readBlock(dev.path, 0)).code, 0, 'still served')
  await dev.close()
  t.false(ublkBlockDevices().includes(`ublkb${dev.id}`))
})

test.serial('ublk detach hands a device served by `ublk serve --recovery` to `ublk recover`, and refuses one without recovery', async (t) => {
  requireUblkKernel()
  const servers: Server[] = []
  let id = -1
  cleanupServers(t, servers, () => id)
  const first = await spawnServer([CLI, 'serve', '--backend', 'memory', '--size', '16M', '--recovery', 'reissue'], { t })
  servers.push(first)
  id = first.id
  const detached = await ublk('detach', String(id))
  t.is(detached.code, 0, detached.stderr)
  t.regex(detached.stdout, new RegExp(`^detached ${id}: ublk recover ${id}`))
  t.like(await first.exited(), { code: 0 }, 'the server detached and exited by itself')
  t.true(ublkBlockDevices().includes(`ublkb${id}`), 'the device is kept')
  const second = await spawnServer([CLI, 'recover', String(id), '--backend', 'memory'], { t })
  servers.push(second)
  t.is(second.path, first.path)
  t.is((await readBlock(second.path, 0)).code, 0)
  await second.stop()

  const plain = await spawnServer([CLI, 'serve', '--backend', 'null', '--size', '16M'], { t })
  servers.push(plain)
  id = plain.id
  const refused = await ublk('detach', String(id))
  t.is(refused.code, 3)
  t.regex(refused.stderr, /served without --recovery/)
  await plain.stop()
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
})
