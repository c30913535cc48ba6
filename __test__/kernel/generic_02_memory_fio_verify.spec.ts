// generic_02: a MemoryBackend device keeps what fio writes: random writes of
// 4k-256k with crc32c verification, a separate read-verify pass, and
// sequential 1 MiB writes read back and verified.
import test from 'ava'
import { MemoryBackend } from '../../js'
import { requestsOf } from '../../js/stats'
import { deviceFor, fioAsync } from './helpers'

const SIZE = 64 << 20

test('fio randwrite with crc32c verify, then a separate verify pass, on 2 queues', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, handler: new MemoryBackend(SIZE) })
  const common = [
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--iodepth=32',
    '--bsrange=4k-256k',
    '--verify=crc32c',
    '--verify_backlog=0',
    '--randseed=4242',
    `--size=${SIZE}`,
  ]
  const write = await fioAsync(['--name=randwrite', '--rw=randwrite', '--do_verify=1', ...common])
  t.is(write.error, 0, write.stderr)
  t.is(write.exit, 0, write.stderr)
  t.true(write.write_io_kbytes >= SIZE / 1024, `wrote ${write.write_io_kbytes} KiB`)
  // A second fio job with the same seed reads everything back and checks it.
  const verify = await fioAsync(['--name=randwrite', '--rw=randwrite', '--verify_only', ...common])
  t.is(verify.error, 0, verify.stderr)
  t.is(verify.exit, 0, verify.stderr)
  t.true(verify.read_io_kbytes > 0, 'the verify pass read data')
  const stats = dev.stats()
  t.true(stats.every((q) => q.writes > 0 && q.reads > 0), 'both queues served IO')
  t.true(stats.every((q) => q.errors === 0 && q.inFlight === 0))
  // Every notification follows a turn that published requests: never more of them than requests.
  t.true(
    stats.every((q) => q.notifications > 0 && q.notifications <= requestsOf(q)),
    JSON.stringify(stats.map((q) => [q.notifications, q.reads + q.writes])),
  )
})

test('sequential 1 MiB writes read back and verified', async (t) => {
  const dev = await deviceFor(t, { size: SIZE, queues: 2, handler: new MemoryBackend(SIZE) })
  const job = await fioAsync([
    '--name=seq',
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--rw=write',
    '--bs=1M',
    '--iodepth=8',
    '--verify=crc32c',
    '--do_verify=1',
    `--size=${SIZE}`,
  ])
  t.is(job.error, 0, job.stderr)
  t.is(job.exit, 0, job.stderr)
  t.is(job.write_io_kbytes, SIZE / 1024)
  t.true(job.read_io_kbytes >= SIZE / 1024, 'verify read the whole device')
})
