// generic_01: the addon reports the kernel's ublk features: through
// GET_FEATURES on 6.5+, inferred from the kernel version (and said so) before.
import test from 'ava'
import { release } from 'node:os'
import { kernelFeatures } from '../../js'
import { kernelVersion, requireUblkKernel } from './helpers'

const UBLK_F_USER_RECOVERY = 1 << 3
const UBLK_F_CMD_IOCTL_ENCODE = 1 << 6
const UBLK_F_USER_COPY = 1 << 7
const UBLK_F_AUTO_BUF_REG = 1 << 11

test('reports the features the running kernel has, and how it knows them', async (t) => {
  requireUblkKernel()
  const f = await kernelFeatures()
  const [major, minor] = kernelVersion()
  t.log(`kernel ${f.kernel}: mask 0x${f.mask.toString(16)} from ${f.source}: ${f.names.join(' ')}`)
  t.is(f.kernel, release())
  // Every kernel we support has user recovery (6.1).
  t.truthy(f.mask & UBLK_F_USER_RECOVERY)
  if (major === 6 && minor < 5) {
    // No GET_FEATURES: the mainline 6.1 set, marked as inferred.
    t.is(f.source, 'kernel version')
    t.falsy(f.mask & UBLK_F_CMD_IOCTL_ENCODE, '6.1-6.3 know only the legacy command numbers')
    t.falsy(f.mask & UBLK_F_USER_COPY)
    return
  }
  t.is(f.source, 'GET_FEATURES')
  t.truthy(f.mask & UBLK_F_USER_COPY, 'USER_COPY is present since 6.5')
  t.true(f.names.includes('UBLK_F_CMD_IOCTL_ENCODE'))
  if (major === 6 && minor === 12) {
    t.falsy(f.mask & UBLK_F_AUTO_BUF_REG, '6.12 lacks AUTO_BUF_REG')
  } else if (major >= 7) {
    t.truthy(f.mask & UBLK_F_AUTO_BUF_REG, '7.x has AUTO_BUF_REG')
  }
})
