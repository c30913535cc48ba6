// baseline_02: the benchmark's own targets (bench/targets.ts) serve a real
// device, and what `npm run bench` reads from their servers besides fio's
// figures (requests per notification) is true of the run that produced it.
import test from 'ava'
import { fioArgs, runFio } from '../../bench/fio'
import { requestsPerNotification, TARGETS } from '../../bench/targets'
import { requireUblkKernel, ublkBlockDevices } from './helpers'

const target = (name: string) => TARGETS.find((t) => t.name === name)!

for (const name of ['NullBackend q1', 'NullBackend workers q1']) {
  test(`${name}: fio runs on it, and its server counts the requests each notification brought`, async (t) => {
    requireUblkKernel()
    const running = await target(name).start(64 << 20)
    t.teardown(() => running.stop())
    t.truthy(running.notifications, 'a JS target reports its notifications')
    const before = await running.notifications!()
    const f = await runFio(fioArgs(running.path, { name: 'qd8', rw: 'randread', bs: '4k', qd: 8 }, 2, 0))
    const after = await running.notifications!()
    t.true(f.iops > 0)
    // fio counted what it completed; the server saw at least that many.
    t.true(after.requests - before.requests >= Math.floor(f.iops * f.runtimeSeconds * 0.9), JSON.stringify({ before, after, f }))
    const perNotification = requestsPerNotification(before, after)
    // At QD 8 no notification can bring more than the 8 requests in flight.
    t.true(perNotification !== null && perNotification >= 1 && perNotification <= 8, `${perNotification} requests per notification`)
    await running.stop()
    t.deepEqual(ublkBlockDevices(), [])
  })
}

test('the Rust null target has no JS handlers to count', async (t) => {
  requireUblkKernel()
  const running = await target('Rust null q1').start(64 << 20)
  t.teardown(() => running.stop())
  t.is(running.notifications, undefined)
})
