import test from 'ava'
import { MemoryBackend, NullBackend } from '../../js'

test('MemoryBackend reads zeros where nothing was written', (t) => {
  const m = new MemoryBackend(1 << 20)
  const buf = Buffer.alloc(8192, 0xff)
  m.read(buf, 4096)
  t.true(buf.every((b) => b === 0))
  t.is(m.allocatedBytes, 0)
})

test('MemoryBackend returns what was written across chunk boundaries', (t) => {
  const m = new MemoryBackend(1 << 20)
  const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251))
  m.write(data, 60_000)
  const back = Buffer.alloc(data.length)
  m.read(back, 60_000)
  t.true(back.equals(data))
})

test('MemoryBackend is sparse: a 1 TiB device costs what was written, and discard frees it', (t) => {
  const m = new MemoryBackend(2 ** 40)
  m.write(Buffer.alloc(4096, 1), 2 ** 40 - 4096)
  t.is(m.allocatedBytes, 64 * 1024)
  m.discard(2 ** 40 - 65536, 65536)
  t.is(m.allocatedBytes, 0)
})

test('MemoryBackend writeZeroes zeroes partial chunks', (t) => {
  const m = new MemoryBackend(1 << 20)
  m.write(Buffer.alloc(8192, 9), 0)
  m.writeZeroes(1024, 1024)
  const back = Buffer.alloc(8192)
  m.read(back, 0)
  t.is(back[1023], 9)
  t.is(back[1024], 0)
  t.is(back[2047], 0)
  t.is(back[2048], 9)
})

test('MemoryBackend rejects requests beyond the end', (t) => {
  const m = new MemoryBackend(8192)
  t.throws(() => m.read(Buffer.alloc(4096), 8192), { message: /beyond the end/ })
})

test('NullBackend reads zeros', (t) => {
  const buf = Buffer.alloc(512, 1)
  new NullBackend().read(buf)
  t.true(buf.every((b) => b === 0))
})
