// FileBackend's handler methods on a real temporary file (no kernel):
// positional IO, FUA and flush, hole punching and zeroing keep the size.
import test from 'ava'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileBackend, UblkError, type RequestContext } from '../../js'

const ctx = (fua = false): RequestContext => ({ op: 'write', flags: 0, fua, queue: 0, tag: 0 })

function tempFile(t: { teardown(fn: () => void): void }, bytes: number, fill = 0xab): string {
  const dir = mkdtempSync(join(tmpdir(), 'ublk-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'disk.img')
  writeFileSync(path, Buffer.alloc(bytes, fill))
  return path
}

test('reads and writes at byte offsets, with FUA', async (t) => {
  const path = tempFile(t, 1 << 20)
  const backend = await FileBackend.open(path)
  t.teardown(() => backend.close())
  t.is(backend.size, 1 << 20)
  await backend.write(Buffer.alloc(4096, 7), 8192, ctx(true))
  const buf = Buffer.alloc(12288)
  await backend.read(buf, 4096)
  t.deepEqual([buf[0], buf[4095], buf[4096], buf[8191], buf[8192]], [0xab, 0xab, 7, 7, 0xab])
  await backend.flush()
  t.is((await readFile(path))[8192], 7, 'the write reached the file')
})

test('writeZeroes and discard read back as zeros and keep the file size', async (t) => {
  const path = tempFile(t, 1 << 20)
  const backend = await FileBackend.open(path)
  t.teardown(() => backend.close())
  await backend.writeZeroes(65536, 65536)
  const buf = Buffer.alloc(65536, 1)
  await backend.read(buf, 65536)
  t.true(buf.every((b) => b === 0))
  const blocksBefore = statSync(path).blocks
  try {
    await backend.discard(262144, 262144)
  } catch (err) {
    // Only a file system that cannot punch holes may refuse, with its errno.
    t.true(err instanceof UblkError && (err as UblkError).code === 'EOPNOTSUPP', String(err))
    return
  }
  await backend.read(buf, 262144)
  t.true(buf.every((b) => b === 0))
  t.true(statSync(path).blocks < blocksBefore, 'the hole freed blocks')
  t.is(statSync(path).size, 1 << 20)
})

test('a read-only backend refuses writes with EBADF', async (t) => {
  const path = tempFile(t, 65536)
  const backend = await FileBackend.open(path, { readOnly: true })
  t.teardown(() => backend.close())
  t.true(backend.readOnly)
  const err = await t.throwsAsync(backend.write(Buffer.alloc(512), 0, ctx()))
  t.is((err as NodeJS.ErrnoException).code, 'EBADF')
})

test('opening a missing file fails with ENOENT', async (t) => {
  const err = await t.throwsAsync(FileBackend.open('/nonexistent/disk.img'))
  t.is((err as NodeJS.ErrnoException).code, 'ENOENT')
})
