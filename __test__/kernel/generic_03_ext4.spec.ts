// generic_03: a file system on a MemoryBackend device survives mkfs, a few
// hundred files, umount, fsck and a second mount with its contents intact.
import test from 'ava'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MemoryBackend } from '../../js'
import { deviceFor, exec, sh, tempMountPoint } from './helpers'

const SIZE = 64 << 20

function content(i: number): Buffer {
  // Known, varied content: a file's bytes derive from its number.
  const seed = createHash('sha256').update(`file-${i}`).digest()
  const out = Buffer.alloc(1024 + ((i * 4099) % 30000))
  for (let o = 0; o < out.length; o += seed.length) seed.copy(out, o)
  return out
}

test('mkfs.ext4, mount, write files, umount, fsck clean, remount and verify', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, handler: new MemoryBackend(SIZE) })
  const mnt = tempMountPoint(t)
  await sh('modprobe', ['ext4'])
  await sh('mkfs.ext4', ['-q', '-F', dev.path])
  await sh('mount', [dev.path, mnt])
  const files = 300
  // Only async fs calls: this process serves the device, so a synchronous
  // call that needs its IO would block the very thread that must serve it.
  for (let i = 0; i < files; i++) await writeFile(join(mnt, `f${i}`), content(i))
  await sh('umount', [mnt])
  const fsck = await exec('fsck.ext4', ['-fn', dev.path])
  t.is(fsck.code, 0, `fsck: ${fsck.stdout}${fsck.stderr}`)
  await sh('mount', [dev.path, mnt])
  let same = 0
  for (let i = 0; i < files; i++) if ((await readFile(join(mnt, `f${i}`))).equals(content(i))) same++
  t.is(same, files)
  await sh('umount', [mnt])
})
