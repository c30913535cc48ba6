// Shared by the real-kernel scenarios: they run only where /dev/ublk-control
// exists and we are root (directly, or inside the test guest).
import type { ExecutionContext } from 'ava'
import { createDevice, type Device, type DeviceOptions } from '../../js'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'

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

export interface Exec {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/**
 * Runs a command without blocking the event loop: the device under test is
 * served by this very process, so a synchronous spawn would deadlock.
 */
export function exec(cmd: string, args: string[], timeoutMs = 300_000): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** Like `exec`, but rejects when the command fails. */
export async function sh(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await exec(cmd, args, timeoutMs)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`)
  return r.stdout
}

/** Runs fio (async) with JSON output and returns its first job's figures. */
export async function fioAsync(args: string[], timeoutMs = 600_000): Promise<FioJob & { exit: number | null; stderr: string }> {
  const r = await exec('fio', ['--output-format=json', ...args], timeoutMs)
  if (!r.stdout.includes('{')) throw new Error(`fio printed no JSON (exit ${r.code}): ${r.stderr}`)
  return { ...parseFioJob(r.stdout), exit: r.code, stderr: r.stderr }
}

/** ublk block devices currently in /sys/block. */
export function ublkBlockDevices(): string[] {
  return readdirSync('/sys/block').filter((d) => d.startsWith('ublkb'))
}

/** Kernel log lines that mean the kernel itself went wrong. */
export function kernelTrouble(): string[] {
  const log = spawnSync('dmesg', [], { encoding: 'utf8' }).stdout ?? ''
  return log.split('\n').filter((l) => /Oops|BUG:|WARNING:|Call Trace|hung_task|blocked for more than/.test(l))
}

export interface FioJob {
  read_iops: number
  read_io_kbytes: number
  write_iops: number
  write_io_kbytes: number
  error: number
}

/** Runs fio with JSON output and returns the first job's figures. */
export function fio(args: string[], timeoutMs = 300_000): FioJob {
  return parseFioJob(run('fio', ['--output-format=json', ...args], timeoutMs))
}

/** The first job's figures from fio's JSON output. */
function parseFioJob(out: string): FioJob {
  const start = out.indexOf('{')
  if (start < 0) throw new Error(`fio printed no JSON: ${out.slice(0, 500)}`)
  const job = JSON.parse(out.slice(start)).jobs[0]
  return {
    read_iops: job.read.iops,
    read_io_kbytes: job.read.io_kbytes,
    write_iops: job.write.iops,
    write_io_kbytes: job.write.io_kbytes,
    error: job.error,
  }
}

/** Creates a device and makes sure the test deletes it, pass or fail. */
export async function deviceFor(t: ExecutionContext, options: DeviceOptions): Promise<Device> {
  requireUblkKernel()
  const dev = await createDevice({ handleSignals: false, ...options })
  t.teardown(() => dev.close())
  return dev
}
