// stress_01: creating and closing devices leaks nothing: 50 cycles leave no
// block device behind, no growth in open file descriptors, RSS stable.
import test from 'ava'
import { readdirSync, readlinkSync } from 'node:fs'
import { createDevice, NullBackend } from '../../js'
import { requireUblkKernel, ublkBlockDevices } from './helpers'

const openFds = (): Map<string, string> => {
  const fds = new Map<string, string>()
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      // closed while listing
    }
  }
  return fds
}

/** Creates a 2-queue device and closes it again, `n` times. */
async function cycle(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const dev = await createDevice({ size: 16 << 20, queues: 2, handleSignals: false, handler: new NullBackend() })
    await dev.close()
  }
}

test('50 create/close cycles leave no device, fd or memory behind', async (t) => {
  requireUblkKernel()
  // Warm-up cycles let lazily created process-wide resources (libuv's
  // threadpool, napi's deferred machinery) exist before counting.
  await cycle(5)
  const fdsBefore = openFds()
  const rssBefore = process.memoryUsage().rss
  await cycle(50)
  const fdsAfter = openFds()
  const rssAfter = process.memoryUsage().rss
  const added = [...fdsAfter].filter(([fd, target]) => fdsBefore.get(fd) !== target).map(([fd, target]) => `${fd}->${target}`)
  t.log(`fds ${fdsBefore.size} -> ${fdsAfter.size} (new: ${added.join(' ') || 'none'}), rss ${(rssBefore / 2 ** 20).toFixed(1)} -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB`)
  t.deepEqual(ublkBlockDevices(), [])
  // close() resolves only after the device's eventfds and /dev/ublkcN are
  // closed, so not even one fd may be left, garbage collection or not.
  t.true(fdsAfter.size <= fdsBefore.size, `fds grew from ${fdsBefore.size} to ${fdsAfter.size}: ${added.join(' ')}`)
  t.true(rssAfter - rssBefore < 64 * 2 ** 20, 'RSS grew by less than 64 MiB')
})
