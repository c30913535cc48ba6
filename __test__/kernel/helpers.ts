// Shared by the real-kernel scenarios: they run only where /dev/ublk-control
// exists and we are root (directly, or inside the test guest).
import type { ExecutionContext } from 'ava'
import { createDevice, type Device, type DeviceOptions } from '../../js'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fioJob, runFioJob, type FioJob } from '../support/fio'
import { exec, type Exec, type Server } from '../support/process'

/** Fails loudly when the kernel the test needs is not there. */
export function requireUblkKernel(): void {
  if (!existsSync('/dev/ublk-control')) {
    throw new Error('/dev/ublk-control is missing: the real-kernel tests need ublk_drv (run them with `npm test`)')
  }
  if (process.getuid?.() !== 0) throw new Error('the real-kernel tests need root')
}

/** The running kernel's major and minor version. */
export function kernelVersion(): [number, number] {
  const [major, minor] = execFileSync('uname', ['-r'], { encoding: 'utf8' }).split('.').map((n) => parseInt(n, 10))
  return [major, minor]
}

/** Runs a command, throwing with its stderr when it fails. */
export function run(cmd: string, args: string[], timeoutMs = 120_000): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs })
  if (res.error) throw res.error
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${res.status}: ${res.stderr}`)
  return res.stdout
}

export { exec, sh, spawnServer, type Exec, type Server } from '../support/process'
export { runFioJob as fioAsync, type FioJob } from '../support/fio'
export { tempDir, tempImage, tempMountPoint } from '../support/images'

/** ublk block devices currently in /sys/block. */
export function ublkBlockDevices(): string[] {
  return readdirSync('/sys/block').filter((d) => d.startsWith('ublkb'))
}

/** Kernel log lines that mean the kernel itself went wrong. */
export function kernelTrouble(): string[] {
  const log = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout ?? ''
  return log.split('\n').filter((l) => /Oops|BUG:|WARNING:|Call Trace|hung_task|blocked for more than/.test(l))
}

/** Runs fio synchronously (for devices this process does not serve) and returns its first job. */
export function fio(args: string[], timeoutMs = 300_000): FioJob {
  return fioJob(run('fio', ['--output-format=json', ...args], timeoutMs))
}

/** Creates a device and makes sure the test deletes it, pass or fail. */
export async function deviceFor(t: ExecutionContext, options: DeviceOptions): Promise<Device> {
  requireUblkKernel()
  const dev = await createDevice({ handleSignals: false, ...options })
  t.teardown(() => dev.close())
  return dev
}

/** The `ublk` command as built (`dist/cli/main.js`). */
export const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js')
/** The test server process (see its header for what it takes). */
export const SERVE = join(__dirname, 'fixtures', 'serve.js')

/** Runs the `ublk` command in a process of its own. */
export function ublk(...args: string[]): Promise<Exec> {
  return exec(process.execPath, [CLI, ...args])
}

/**
 * fio over the first `size` bytes of `path`: writes (random 4k unless
 * `pattern` says otherwise) that each carry a crc32c, checked at the end
 * (`write`), or only the check of what a `write` run with the same seed and
 * pattern left (`verify`).
 */
export function fioVerify(
  path: string,
  mode: 'write' | 'verify',
  size: number,
  seed: number,
  pattern: { rw?: 'randwrite' | 'write'; bs?: string } = {},
): ReturnType<typeof runFioJob> {
  const common = [
    '--name=verify',
    `--filename=${path}`,
    '--ioengine=io_uring',
    '--direct=1',
    `--rw=${pattern.rw ?? 'randwrite'}`,
    `--bs=${pattern.bs ?? '4k'}`,
    '--iodepth=16',
    `--size=${size}`,
    '--verify=crc32c',
    `--randseed=${seed}`,
  ]
  return runFioJob(mode === 'write' ? [...common, '--do_verify=1'] : [...common, '--verify_only'])
}

/**
 * At the test's end, kills every server in `servers` and deletes device
 * `id()` if it is still there: a device waiting for recovery would wait forever.
 */
export function cleanupServers(t: { teardown(fn: () => unknown): void }, servers: Server[], id: () => number): void {
  t.teardown(async () => {
    for (const s of servers) s.proc.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.exited()))
    const n = id()
    if (n >= 0 && ublkBlockDevices().includes(`ublkb${n}`)) await ublk('delete', '--force', String(n))
  })
}

/** dd of one 4 KiB block at `offset`, direct; its stdout is the block's first 16 bytes in hex (od). */
export function readBlock(path: string, offset: number): Promise<Exec> {
  return exec('sh', ['-c', `dd if=${path} bs=4096 skip=${offset / 4096} count=1 iflag=direct status=none | od -An -tx1 | head -1`])
}
