// generic_06: the fallback for runtimes that refuse external ArrayBuffers.
// UBLK_BUFFERS=js makes the addon hand the kernel ArrayBuffers that V8
// allocated; data must still arrive intact in both directions.
import test from 'ava'
import { MemoryBackend } from '../../js'
import { deviceFor, fioAsync } from './helpers'

const SIZE = 32 << 20

test('with JS-allocated buffers, fio randwrite verifies on 2 queues', async (t) => {
  process.env.UBLK_BUFFERS = 'js'
  t.teardown(() => delete process.env.UBLK_BUFFERS)
  const warnings: Error[] = []
  const onWarning = (w: Error) => warnings.push(w)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))

  const dev = await deviceFor(t, { size: SIZE, queues: 2, queueDepth: 32, maxIoSize: 128 << 10, handler: new MemoryBackend(SIZE) })
  t.is(dev.info.buffers, 'js')
  const common = [
    `--filename=${dev.path}`,
    '--ioengine=io_uring',
    '--direct=1',
    '--iodepth=32',
    '--bsrange=4k-128k',
    '--verify=crc32c',
    '--verify_backlog=0',
    '--randseed=606',
    // One job per CPU, each on its half of the device: blk-mq maps each CPU
    // to its own queue, so both queues serve IO whatever the scheduler does.
    '--numjobs=2',
    '--cpus_allowed=0-1',
    '--cpus_allowed_policy=split',
    '--group_reporting',
    `--size=${SIZE / 2}`,
    `--offset_increment=${SIZE / 2}`,
  ]
  const write = await fioAsync(['--name=jsbuf', '--rw=randwrite', '--do_verify=1', ...common])
  t.is(write.error, 0, write.stderr)
  t.is(write.exit, 0, write.stderr)
  const verify = await fioAsync(['--name=jsbuf', '--rw=randwrite', '--verify_only', ...common])
  t.is(verify.error, 0, verify.stderr)
  t.true(verify.read_io_kbytes > 0, 'the verify pass read data')
  t.true(dev.stats().every((q) => q.writes > 0 && q.reads > 0 && q.errors === 0), 'both queues served IO')
  // Forced by the environment, so no "runtime refuses" warning.
  t.deepEqual(warnings.filter((w) => (w as { code?: string }).code === 'UBLK_JS_BUFFERS'), [])
})

test('by default the buffers are external', async (t) => {
  delete process.env.UBLK_BUFFERS
  const dev = await deviceFor(t, { size: 1 << 20, handler: new MemoryBackend(1 << 20) })
  t.is(dev.info.buffers, 'external')
})
