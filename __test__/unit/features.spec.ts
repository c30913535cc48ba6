import test from 'ava'
import { existsSync } from 'node:fs'
import { featureNames, kernelFeatures, UblkError } from '../../js'

test('featureNames decodes the 6.12 mask by UAPI name', (t) => {
  const names = featureNames(0x1fe)
  t.deepEqual(names, [
    'UBLK_F_URING_CMD_COMP_IN_TASK',
    'UBLK_F_NEED_GET_DATA',
    'UBLK_F_USER_RECOVERY',
    'UBLK_F_USER_RECOVERY_REISSUE',
    'UBLK_F_UNPRIVILEGED_DEV',
    'UBLK_F_CMD_IOCTL_ENCODE',
    'UBLK_F_USER_COPY',
    'UBLK_F_ZONED',
  ])
})

test('featureNames names bits it does not know by number', (t) => {
  t.deepEqual(featureNames(2 ** 30), ['bit 30'])
})

const noControl = !existsSync('/dev/ublk-control')
;(noControl ? test : test.skip)('kernelFeatures without /dev/ublk-control rejects with a clear ENOENT', async (t) => {
  const err = await t.throwsAsync(kernelFeatures(), { instanceOf: UblkError })
  t.is(err?.code, 'ENOENT')
  t.is(err?.errno, -2)
  // The message explains this kernel: a module to load, or a kernel built without ublk.
  t.regex(err?.message ?? '', /^cannot open \/dev\/ublk-control \(ENOENT\): .*(modprobe ublk_drv|built without ublk|CONFIG_BLK_DEV_UBLK)/)
})
