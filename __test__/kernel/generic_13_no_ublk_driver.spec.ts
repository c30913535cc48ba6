// generic_13: without a loaded ublk_drv, every entry point says what is wrong
// with this kernel and what to do: load the module, or (when no module is
// installed) get a kernel or a module that has ublk. Debian 12's own 6.1 is
// built without ublk; the guest's 6.1 has the module built out of tree.
import test from 'ava'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { release } from 'node:os'
import { join } from 'node:path'
import { createDevice, kernelFeatures, NullBackend, UblkError } from '../../js'
import { exec, kernelVersion, requireUblkKernel, run, tempDir, ublkBlockDevices } from './helpers'

const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js')

test.serial('with ublk_drv unloaded, and then not installed, errors name the kernel and the fix', async (t) => {
  requireUblkKernel()
  t.deepEqual(ublkBlockDevices(), [], 'no ublk device left by earlier tests (the module cannot be unloaded otherwise)')
  const depFile = `/lib/modules/${release()}/modules.dep`
  t.teardown(async () => {
    await exec('umount', [depFile]) // fails harmlessly when nothing is mounted there
    if (!existsSync('/dev/ublk-control')) run('modprobe', ['ublk_drv'])
  })
  run('rmmod', ['ublk_drv'])
  t.false(existsSync('/dev/ublk-control'))
  const config = readFileSync(`/boot/config-${release()}`, 'utf8')
  const [major, minor] = kernelVersion()
  if (major === 6 && minor === 1) t.true(config.includes('# CONFIG_BLK_DEV_UBLK is not set'), "Debian 12's 6.1 has no ublk")

  // Every way a user meets the missing control device, and the one message they all give.
  const failures = async () => {
    const features = await t.throwsAsync(kernelFeatures(), { instanceOf: UblkError })
    const created = await t.throwsAsync(createDevice({ size: 1 << 20, handler: new NullBackend(), handleSignals: false }), {
      instanceOf: UblkError,
    })
    const cli = await exec(process.execPath, [CLI, 'list'])
    t.is(features?.code, 'ENOENT')
    t.is(created?.code, 'ENOENT')
    t.not(cli.code, 0)
    t.is(created?.message, features?.message, 'one explanation, wherever it is met')
    t.true(cli.stderr.includes(features?.message ?? '?'), cli.stderr)
    return features?.message ?? ''
  }

  // The module exists but is not loaded: load it.
  const notLoaded = await failures()
  t.log(notLoaded)
  t.regex(notLoaded, /^cannot open \/dev\/ublk-control \(ENOENT\): the ublk_drv module is not loaded: run `modprobe ublk_drv` as root/)
  if (config.includes('# CONFIG_BLK_DEV_UBLK is not set')) t.regex(notLoaded, /built without ublk.*out of tree/)

  // No module installed either (this kernel's module list, without ublk_drv).
  const dir = tempDir(t)
  const withoutUblk = join(dir, 'modules.dep')
  writeFileSync(withoutUblk, readFileSync(depFile, 'utf8').split('\n').filter((l) => !l.includes('ublk_drv.ko')).join('\n'))
  run('mount', ['--bind', withoutUblk, depFile])
  const missing = await failures()
  t.log(missing)
  if (config.includes('# CONFIG_BLK_DEV_UBLK is not set')) {
    t.regex(missing, new RegExp(`this kernel \\(${release()}\\) was built without ublk`))
    const debian12 = /^VERSION_ID="12"$/m.test(readFileSync('/etc/os-release', 'utf8'))
    if (debian12) t.regex(missing, /bookworm-backports.*linux-source-6\.1/)
  } else {
    t.regex(missing, /CONFIG_BLK_DEV_UBLK=m\) but no ublk_drv is installed/)
  }
  run('umount', [depFile])

  run('modprobe', ['ublk_drv'])
  t.true(existsSync('/dev/ublk-control'), 'the driver is back for the tests after this one')
})
