// stress_01: creating and closing devices leaks nothing: 50 cycles leave no
// block device behind, no growth in open file descriptors, RSS stable.
import test from 'ava'
import { readdirSync } from 'node:fs'
import { createDevice, NullBackend } from '../../js'
import { requireUblkKernel, ublkBlockDevices } from './helpers'

const openFds = () => readdirSync('/proc/self/fd').length

test('50 create/close cycles leave no device, fd or memory behind', async (t) => {
  requireUblkKernel()
  const warmup = await createDevice({ size: 16 << 20, queues: 2, handleSignals: false, handler: new NullBackend() })
  await warmup.close()
  global.gc?.()
  const fdsBefore = openFds()
  const rssBefore = process.memoryUsage().rss
  for (let i = 0; i < 50; i++) {
    const dev = await createDevice({ size: 16 << 20, queues: 2, handleSignals: false, handler: new NullBackend() })
    await dev.close()
  }
  global.gc?.()
  const fdsAfter = openFds()
  const rssAfter = process.memoryUsage().rss
  t.log(`fds ${fdsBefore} -> ${fdsAfter}, rss ${(rssBefore / 2 ** 20).toFixed(1)} -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB`)
  t.deepEqual(ublkBlockDevices(), [])
  t.true(fdsAfter <= fdsBefore + 2, `fds grew from ${fdsBefore} to ${fdsAfter}`)
  t.true(rssAfter - rssBefore < 64 * 2 ** 20, 'RSS grew by less than 64 MiB')
})
