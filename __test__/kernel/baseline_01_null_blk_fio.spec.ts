// baseline_01: fio drives the kernel's own null_blk in this kernel, proving
// the test environment can run fio against a block device at all.
import test from 'ava'
import { existsSync } from 'node:fs'
import { fio, requireUblkKernel, run } from './helpers'

test('fio does random reads on null_blk for a few seconds', (t) => {
  requireUblkKernel()
  run('modprobe', ['null_blk', 'irqmode=0', 'submit_queues=2', 'nr_devices=1'])
  t.teardown(() => {
    run('rmmod', ['null_blk'])
  })
  t.true(existsSync('/dev/nullb0'))
  const job = fio([
    '--name=nullb',
    '--filename=/dev/nullb0',
    '--rw=randread',
    '--bs=4k',
    '--iodepth=32',
    '--ioengine=io_uring',
    '--direct=1',
    '--runtime=3',
    '--time_based',
  ])
  t.log(`null_blk 4k randread QD32: ${Math.round(job.read_iops)} IOPS`)
  t.is(job.error, 0)
  t.true(job.read_io_kbytes > 0, 'fio read something')
  t.true(job.read_iops > 0)
})
