// generic_10: the examples in examples/ run as users would run them, each
// serving a real device: the encrypted file, the HTTP-backed read-only
// device, and the IO-counting wrapper.
import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { exec, requireUblkKernel, sh, spawnServer, tempImage, type Server } from './helpers'

const root = join(__dirname, '..', '..')

/** Runs an example the way its header says to, and waits for its device. */
function runExample(t: { teardown(fn: () => unknown): void }, name: string, args: string[]): Promise<Server> {
  requireUblkKernel()
  return spawnServer(['--import', 'tsx', join(root, 'examples', name), ...args], { cwd: root, t })
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

test('encrypted-file: the device reads back what was written, the file holds no plaintext', async (t) => {
  const image = await tempImage(t, 16 << 20, 'secret.img')
  const dir = dirname(image)
  const key = randomBytes(64).toString('hex')
  const plain = Buffer.alloc(1 << 20, 'PLAINTEXT-MARKER ')
  await writeFile(join(dir, 'plain'), plain)

  let dev = await runExample(t, 'encrypted-file.ts', [image, key])
  await sh('dd', [`if=${join(dir, 'plain')}`, `of=${dev.path}`, 'bs=64k', 'seek=16', 'oflag=direct', 'status=none'])
  await dev.stop()
  const file = await readFile(image)
  t.false(file.includes('PLAINTEXT-MARKER'), 'no plaintext in the backing file')
  t.false(file.subarray(1 << 20, 2 << 20).every((b) => b === 0), 'ciphertext was written')

  dev = await runExample(t, 'encrypted-file.ts', [image, key]) // a second run, same key
  const back = await sh('sh', ['-c', `dd if=${dev.path} bs=64k skip=16 count=16 iflag=direct status=none | sha256sum`])
  t.is(back.split(' ')[0], sha256(plain))
  await dev.stop()
})

test('http-readonly: a device served from an HTTP server with range requests', async (t) => {
  const image = randomBytes(4 << 20)
  let ranges = 0
  const server = createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
    if (!m) {
      res.writeHead(200, { 'Content-Length': image.length, 'Accept-Ranges': 'bytes' })
      return res.end(req.method === 'HEAD' ? undefined : image)
    }
    ranges++
    const [start, end] = [Number(m[1]), Number(m[2])]
    res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${image.length}`, 'Content-Length': end - start + 1 })
    res.end(image.subarray(start, end + 1))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.img`

  const dev = await runExample(t, 'http-readonly.ts', [url])
  const whole = await sh('sh', ['-c', `dd if=${dev.path} bs=1M iflag=direct status=none | sha256sum`])
  t.is(whole.split(' ')[0], sha256(image))
  t.true(ranges > 0, 'reads became range requests')
  const write = await exec('dd', ['if=/dev/zero', `of=${dev.path}`, 'bs=4k', 'count=1', 'oflag=direct'])
  t.not(write.code, 0, 'the device is read-only')
  await dev.stop()
})

test('logging: counts IO by op and size and prints a summary on close', async (t) => {
  const dev = await runExample(t, 'logging.ts', ['16M', '1'])
  await sh('dd', ['if=/dev/urandom', `of=${dev.path}`, 'bs=64k', 'count=16', 'oflag=direct', 'status=none'])
  await sh('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', 'count=8', 'skip=100', 'iflag=direct', 'status=none'])
  await dev.stop()
  const out = dev.output()
  t.regex(out, /-- IO in total/)
  // Only the final summary counts: the periodic ones may show partial totals.
  const total = out.slice(out.lastIndexOf('-- IO in total'))
  t.regex(total, /^write 65536 x 16$/m)
  const reads = /^read 4096 x (\d+)$/m.exec(total)
  t.true(reads !== null && Number(reads[1]) >= 8, out)
})
