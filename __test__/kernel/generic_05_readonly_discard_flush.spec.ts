// generic_05: attributes reach the kernel and requests reach the right
// handler methods: read-only devices refuse writes in the kernel, blkdiscard
// and blkdiscard -z reach discard/writeZeroes with the right byte ranges,
// and sync reaches flush.
import test from 'ava'
import { MemoryBackend } from '../../js'
import { deviceFor, exec, sh } from './helpers'

const SIZE = 32 << 20

test('a readOnly device fails writes in the kernel', async (t) => {
  let writes = 0
  const dev = await deviceFor(t, {
    size: SIZE,
    readOnly: true,
    handler: { read: (buf: Buffer) => void buf.fill(7), write: () => void writes++ },
  })
  t.is((await sh('blockdev', ['--getro', dev.path])).trim(), '1')
  const r = await exec('dd', ['if=/dev/zero', `of=${dev.path}`, 'bs=4k', 'count=1', 'oflag=direct'])
  t.not(r.code, 0)
  t.regex(r.stderr, /Read-only file system|Operation not permitted|Permission denied/)
  t.is(writes, 0, 'no write reached the handler')
  const read = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
  t.is(read.code, 0)
})

test('blkdiscard and blkdiscard -z reach discard and writeZeroes with byte offsets', async (t) => {
  const mem = new MemoryBackend(SIZE)
  const seen: string[] = []
  const dev = await deviceFor(t, {
    size: SIZE,
    handler: {
      read: (b: Buffer, o: number) => mem.read(b, o),
      write: (b: Buffer, o: number) => mem.write(b, o),
      discard: (o: number, l: number) => {
        seen.push(`discard ${o} ${l}`)
        mem.discard(o, l)
      },
      writeZeroes: (o: number, l: number) => {
        seen.push(`zeroes ${o} ${l}`)
        mem.writeZeroes(o, l)
      },
    },
  })
  await sh('blkdiscard', ['-o', String(1 << 20), '-l', String(2 << 20), dev.path])
  t.deepEqual(seen.splice(0), [`discard ${1 << 20} ${2 << 20}`])
  await sh('blkdiscard', ['-z', '-o', String(8 << 20), '-l', String(1 << 20), dev.path])
  t.deepEqual(seen.splice(0), [`zeroes ${8 << 20} ${1 << 20}`])
})

test('sync after a buffered write reaches flush', async (t) => {
  let flushes = 0
  const mem = new MemoryBackend(SIZE)
  const dev = await deviceFor(t, {
    size: SIZE,
    handler: {
      read: (b: Buffer, o: number) => mem.read(b, o),
      write: (b: Buffer, o: number) => mem.write(b, o),
      flush: () => void flushes++,
    },
  })
  await sh('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=64k', 'count=4', 'conv=fsync'])
  t.true(flushes > 0, 'fsync on the block device sent a FLUSH')
  t.true(dev.stats()[0].flushes > 0)
})
