// generic_08: FileBackend serves a device from a file: fio's crc32c verify,
// the file holds exactly what the device shows, discard punches holes, and a
// file system survives mkfs, files, fsck and a second mount.
import test from 'ava'
import { createHash } from 'node:crypto'
import { statSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FileBackend } from '../../js'
import { deviceFor, exec, fioAsync, sh, tempImage, tempMountPoint } from './helpers'

const SIZE = 64 << 20

function backingFile(t: { teardown(fn: () => unknown): void }): Promise<string> {
  return tempImage(t, SIZE)
}

async function sha256Of(cmd: string): Promise<string> {
  return (await sh('sh', ['-c', `${cmd} | sha256sum`])).split(' ')[0]
}

test('fio randwrite verifies on 2 queues, and the file holds what the device shows', async (t) => {
  const path = await backingFile(t)
  const backend = await FileBackend.open(path)
  t.teardown(() => backend.close())
  const dev = await deviceFor(t, { size: backend.size, queues: 2, handler: backend })
  const common = [`--filename=${dev.path}`, '--ioengine=io_uring', '--direct=1', '--iodepth=32', '--bsrange=4k-128k', '--verify=crc32c', '--verify_backlog=0', '--randseed=808', `--size=${SIZE}`]
  const write = await fioAsync(['--name=file', '--rw=randwrite', '--do_verify=1', ...common])
  t.is(write.error, 0, write.stderr)
  t.is(write.exit, 0, write.stderr)
  const verify = await fioAsync(['--name=file', '--rw=randwrite', '--verify_only', ...common])
  t.is(verify.error, 0, verify.stderr)
  t.true(verify.read_io_kbytes > 0)
  await sh('sync', [])
  t.is(await sha256Of(`dd if=${dev.path} bs=1M iflag=direct status=none`), await sha256Of(`cat ${path}`))
})

test('discard punches a hole in the file and write-zeroes zeroes the range', async (t) => {
  const path = await backingFile(t)
  const backend = await FileBackend.open(path)
  t.teardown(() => backend.close())
  const dev = await deviceFor(t, { size: backend.size, handler: backend })
  await sh('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=1M', 'count=8', 'oflag=direct', 'status=none'])
  const allocated = statSync(path).blocks
  await sh('blkdiscard', ['-o', String(1 << 20), '-l', String(4 << 20), dev.path])
  await sh('blkdiscard', ['-z', '-o', String(6 << 20), '-l', String(1 << 20), dev.path])
  t.true(statSync(path).blocks <= allocated - (4 << 20) / 512, `blocks ${allocated} -> ${statSync(path).blocks}`)
  t.is(statSync(path).size, SIZE)
  const file = await readFile(path)
  t.true(file.subarray(1 << 20, 5 << 20).every((b) => b === 0), 'the discarded range reads zeros')
  t.true(file.subarray(6 << 20, 7 << 20).every((b) => b === 0), 'the zeroed range reads zeros')
  t.false(file.subarray(5 << 20, 6 << 20).every((b) => b === 0), 'data between the ranges is kept')
})

test('mkfs.ext4, files, umount, fsck clean, remount and verify', async (t) => {
  const path = await backingFile(t)
  const backend = await FileBackend.open(path)
  t.teardown(() => backend.close())
  const dev = await deviceFor(t, { size: backend.size, queues: 2, handler: backend })
  const mnt = tempMountPoint(t)
  const content = (i: number) => Buffer.alloc(1000 + i * 37, createHash('sha256').update(`f${i}`).digest())
  await sh('modprobe', ['ext4'])
  await sh('mkfs.ext4', ['-q', '-F', dev.path])
  await sh('mount', [dev.path, mnt])
  for (let i = 0; i < 100; i++) await writeFile(join(mnt, `f${i}`), content(i))
  await sh('umount', [mnt])
  const fsck = await exec('fsck.ext4', ['-fn', dev.path])
  t.is(fsck.code, 0, `fsck: ${fsck.stdout}${fsck.stderr}`)
  await sh('mount', [dev.path, mnt])
  let same = 0
  for (let i = 0; i < 100; i++) if ((await readFile(join(mnt, `f${i}`))).equals(content(i))) same++
  t.is(same, 100)
  t.true(dev.stats().some((q) => q.flushes > 0), 'ext4 sent flushes to the file')
})
