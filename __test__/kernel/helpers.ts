// Shared by the real-kernel scenarios: they run only where /dev/ublk-control
// exists and we are root (directly, or inside the test guest).
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

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

export interface FioJob {
  read_iops: number
  read_io_kbytes: number
  write_iops: number
  write_io_kbytes: number
  error: number
}

/** Runs fio with JSON output and returns the first job's figures. */
export function fio(args: string[], timeoutMs = 300_000): FioJob {
  const out = run('fio', ['--output-format=json', ...args], timeoutMs)
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0]
  return {
    read_iops: job.read.iops,
    read_io_kbytes: job.read.io_kbytes,
    write_iops: job.write.iops,
    write_io_kbytes: job.write.io_kbytes,
    error: job.error,
  }
}
