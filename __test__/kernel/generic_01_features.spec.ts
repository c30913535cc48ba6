// generic_01: the addon reads the kernel's ublk feature mask through GET_FEATURES.
import test from 'ava'
import { kernelFeatures } from '../../js'
import { kernelVersion, requireUblkKernel } from './helpers'

const UBLK_F_AUTO_BUF_REG = 1 << 11
const UBLK_F_USER_COPY = 1 << 7

test('reports the feature mask the running kernel has', async (t) => {
  requireUblkKernel()
  const { mask, names } = await kernelFeatures()
  const [major, minor] = kernelVersion()
  t.log(`kernel ${major}.${minor}: mask 0x${mask.toString(16)} ${names.join(' ')}`)
  // Every kernel we support has USER_COPY (6.5) and CMD_IOCTL_ENCODE (6.4).
  t.truthy(mask & UBLK_F_USER_COPY, 'USER_COPY is present since 6.5')
  t.true(names.includes('UBLK_F_CMD_IOCTL_ENCODE'))
  if (major === 6 && minor === 12) {
    t.falsy(mask & UBLK_F_AUTO_BUF_REG, '6.12 lacks AUTO_BUF_REG')
  } else if (major >= 7) {
    t.truthy(mask & UBLK_F_AUTO_BUF_REG, '7.x has AUTO_BUF_REG')
    t.true(names.includes('UBLK_F_AUTO_BUF_REG'))
  } else {
    t.log('no expectation recorded for this kernel beyond the common bits')
  }
})
