// generic_04: a handler's failure reaches the reader or writer as the
// errno it chose (EIO by default), and the device keeps serving.
import test from 'ava'
import { MemoryBackend, UblkError, type RequestContext } from '../../js'
import { deviceFor, exec } from './helpers'

const SIZE = 16 << 20
const BAD_SECTOR = 2048 // byte offset 1 MiB

test('reads a sector that a handler failed as EIO, and the rest reads fine', async (t) => {
  const mem = new MemoryBackend(SIZE)
  const handler = {
    read(buf: Buffer, offset: number, ctx: RequestContext) {
      if (offset <= BAD_SECTOR * 512 && BAD_SECTOR * 512 < offset + buf.length) throw new Error('bad sector')
      mem.read(buf, offset)
      void ctx
    },
    write: (buf: Buffer, offset: number) => mem.write(buf, offset),
  }
  const dev = await deviceFor(t, { size: SIZE, handler })
  const errors: unknown[] = []
  dev.on('requestError', (err) => errors.push(err))
  const bad = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=512', `skip=${BAD_SECTOR}`, 'count=1', 'iflag=direct'])
  t.not(bad.code, 0)
  t.regex(bad.stderr, /Input\/output error/)
  const before = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=512', `count=${BAD_SECTOR}`, 'iflag=direct'])
  t.is(before.code, 0, before.stderr)
  const after = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', 'skip=257', 'count=1000', 'iflag=direct'])
  t.is(after.code, 0, after.stderr)
  t.true(errors.length > 0 && errors.every((e) => e instanceof Error && e.message === 'bad sector'))
  t.true(dev.stats()[0].errors > 0)
})

test('a handler throwing UblkError("ENOSPC") on write is seen as "No space left on device"', async (t) => {
  const dev = await deviceFor(t, {
    size: SIZE,
    handler: {
      read: (buf: Buffer) => void buf.fill(0),
      write: async () => {
        throw new UblkError('ENOSPC')
      },
    },
  })
  const r = await exec('dd', ['if=/dev/zero', `of=${dev.path}`, 'bs=4k', 'count=1', 'oflag=direct'])
  t.not(r.code, 0)
  t.regex(r.stderr, /No space left on device/)
  // The process keeps serving: a read still works afterwards.
  const read = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', 'count=4', 'iflag=direct'])
  t.is(read.code, 0, read.stderr)
})

test('an op the handler does not implement fails with EOPNOTSUPP', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, discard: true, handler: { read: (buf: Buffer) => void buf.fill(0) } })
  const w = await exec('dd', ['if=/dev/zero', `of=${dev.path}`, 'bs=4k', 'count=1', 'oflag=direct'])
  t.not(w.code, 0)
  t.regex(w.stderr, /Operation not supported|Input\/output error/)
  // The kernel treats discard as advisory and hides EOPNOTSUPP from
  // blkdiscard, so check that the request reached us and was failed.
  await exec('blkdiscard', ['-o', '0', '-l', '1048576', dev.path])
  const s = dev.stats()[0]
  t.true(s.discards > 0, 'the discard reached the device')
  t.true(s.errors >= 2, 'both requests were failed')
})
