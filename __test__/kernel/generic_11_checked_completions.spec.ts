// generic_11: the native completion path is the boundary to the kernel. Bogus,
// repeated, stale and out-of-range completions never reach it, and a handler
// that never settles fails only its own request, with ETIMEDOUT.
import test from 'ava'
import { MemoryBackend, UblkError, type RequestContext } from '../../js'
import { nativeHandle } from '../../js/device'
import { deviceFor, exec, fioAsync, sh, tempImage } from './helpers'

const SIZE = 32 << 20

test('bogus, repeated and out-of-range completions during fio verify never reach the kernel', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, queueDepth: 32, handler: new MemoryBackend(SIZE) })
  const nativeDevice = dev[nativeHandle]
  // Record what the dispatchers really send, to replay it later with the
  // results turned into errors: if one got through, fio would see it.
  const recent: Array<[number, Int32Array]> = []
  const complete = nativeDevice.complete.bind(nativeDevice)
  nativeDevice.complete = (queue: number, pairs: Int32Array) => {
    recent.push([queue, pairs.slice()])
    if (recent.length > 64) recent.shift()
    return complete(queue, pairs)
  }
  let sent = 0
  let refused = 0
  const hammer = setInterval(() => {
    for (const [queue, pairs] of recent.splice(0, 8)) {
      // The same completions again (repeats), and with the generation before
      // (stale: an earlier request on the tag), all turned into EIO.
      const poisoned = pairs.slice()
      const stale = pairs.slice()
      for (let i = 0; i < poisoned.length; i += 2) {
        poisoned[i + 1] = stale[i + 1] = -5
        stale[i] = (stale[i] & 0xffff) | ((((stale[i] >>> 16) + 0x7fff) & 0x7fff) << 16)
      }
      refused += complete(queue, poisoned) + complete(queue, stale)
      sent += poisoned.length
    }
    for (const queue of [0, 1]) {
      const bogus = Int32Array.from([
        5000, 0, // tag beyond the depth
        -1, 0, // not an io id
        0x7fff_ffff, 4096, // tag 0xffff
      ])
      refused += complete(queue, bogus)
      sent += 3
    }
    t.throws(() => complete(7, Int32Array.from([0, 0])), undefined, 'a queue the device does not have is an error')
  }, 2)
  t.teardown(() => clearInterval(hammer))

  const job = await fioAsync([
    '--name=verify',
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--rw=randwrite',
    '--bsrange=4k-64k',
    '--iodepth=16',
    '--numjobs=1',
    '--verify=crc32c',
    '--do_verify=1',
    '--verify_backlog=0',
    `--size=${SIZE}`,
  ])
  clearInterval(hammer)
  t.is(job.error, 0, job.stderr)
  t.is(job.exit, 0, job.stderr)
  t.true(job.read_io_kbytes >= SIZE / 1024, 'fio verified everything it wrote')
  t.true(sent > 1000, `${sent} bogus completions sent`)
  const rejected = dev.stats().reduce((n, q) => n + q.rejectedCompletions, 0)
  t.is(refused, sent, 'every one was refused')
  t.is(rejected, refused, 'dev.stats() counts every refusal')
  t.true(dev.stats().every((q) => q.errors === 0 && q.inFlight === 0))
})

for (const buffers of ['external', 'js'] as const) {
  test(`a handler that does not settle in time fails with ETIMEDOUT, and writing its buffer late corrupts nothing (${buffers} buffers)`, async (t) => {
    const mem = new MemoryBackend(SIZE)
    const STUCK = 1 << 20
    let late: { buf: Buffer; settle: () => void } | undefined
    const handler = {
      read(buf: Buffer, offset: number) {
        if (offset === STUCK && !late) return new Promise<void>((settle) => (late = { buf, settle }))
        mem.read(buf, offset)
      },
      async write(buf: Buffer, offset: number) {
        // The late READ handler wakes up while this write's data sits in the
        // tag's buffer (one tag: the same tag): it must not land in there.
        if (late) {
          late.buf.fill(0xee)
          late.settle()
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        mem.write(buf, offset)
      },
    }
    const saved = process.env.UBLK_BUFFERS
    process.env.UBLK_BUFFERS = buffers
    const dev = await deviceFor(t, { size: SIZE, queueDepth: 1, handler, requestTimeout: 1000 }).finally(() => {
      if (saved === undefined) delete process.env.UBLK_BUFFERS
      else process.env.UBLK_BUFFERS = saved
    })
    t.is(dev.info.buffers, buffers)
    const errors: Array<[unknown, RequestContext]> = []
    dev.on('requestError', (err, ctx) => errors.push([err, ctx]))
    const started = Date.now()
    const stuck = await exec('dd', [`if=${dev.path}`, 'of=/dev/null', 'bs=4k', `skip=${STUCK / 4096}`, 'count=1', 'iflag=direct'])
    const waited = Date.now() - started
    t.not(stuck.code, 0)
    t.regex(stuck.stderr, /timed out/i)
    t.true(waited >= 1000, `failed after ${waited} ms`)
    t.is(errors.length, 1)
    t.true(errors[0][0] instanceof UblkError && (errors[0][0] as UblkError).code === 'ETIMEDOUT')
    t.is(errors[0][1].op, 'read')

    const image = await tempImage(t, 64 << 10, 'data')
    await sh('dd', ['if=/dev/urandom', `of=${image}`, 'bs=64k', 'count=1', 'status=none'])
    await sh('dd', [`if=${image}`, `of=${dev.path}`, 'bs=64k', 'seek=64', 'oflag=direct', 'status=none'])
    t.truthy(late, 'the late handler ran during the write')
    const back = await sh('sh', ['-c', `dd if=${dev.path} bs=64k skip=64 count=1 iflag=direct status=none | sha256sum`])
    const want = await sh('sha256sum', [image])
    t.is(back.split(' ')[0], want.split(' ')[0], 'the write landed intact')
    const s = dev.stats()[0]
    t.is(s.timedOut, 1)
    t.is(s.inFlight, 0)
    t.is(s.rejectedCompletions, 0)
  })
}
