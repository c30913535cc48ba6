// Runs one fio case against a block device and extracts the figures.
import { exec } from '../__test__/support/process'
import { parseFioJson } from '../__test__/support/fio'
import { jobsFor, type FioCase } from './cases'

export interface FioFigures {
  iops: number
  bandwidthMiBs: number
  /** Completion latency percentiles in microseconds (reads for randrw). */
  p50us: number
  p99us: number
  /** Seconds of measured IO (ramp excluded). */
  runtimeSeconds: number
}

/** fio's arguments for a case; `cpu`: the CPU its job runs on (`--cpus_allowed`), else the scheduler decides. */
export function fioArgs(device: string, c: FioCase, runtimeSeconds: number, rampSeconds: number, cpu?: number): string[] {
  const { numjobs, iodepth } = jobsFor(c.qd)
  return [
    ...(cpu !== undefined ? [`--cpus_allowed=${cpu}`] : []),
    `--name=${c.rw}`,
    `--filename=${device}`,
    '--ioengine=io_uring',
    '--direct=1',
    `--rw=${c.rw}`,
    `--bs=${c.bs}`,
    `--iodepth=${iodepth}`,
    `--numjobs=${numjobs}`,
    ...(c.readPercent !== undefined ? [`--rwmixread=${c.readPercent}`] : []),
    '--time_based',
    `--runtime=${runtimeSeconds}`,
    `--ramp_time=${rampSeconds}`,
    '--norandommap',
    '--randrepeat=0',
    '--group_reporting',
    '--output-format=json',
  ]
}

/** Figures of fio's JSON output (one group-reported job). */
export function parseFio(json: string): FioFigures {
  const job = parseFioJson(json)
  if (job.error) throw new Error(`fio reported error ${job.error}`)
  const dirs = [job.read, job.write].filter((d) => d.total_ios > 0)
  if (dirs.length === 0) throw new Error('fio did no IO')
  const main = dirs[0] // reads when there are any
  const pct = (p: string) => (main.clat_ns.percentile?.[p] ?? 0) / 1000
  return {
    iops: dirs.reduce((sum, d) => sum + d.iops, 0),
    bandwidthMiBs: dirs.reduce((sum, d) => sum + d.bw_bytes, 0) / (1 << 20),
    p50us: pct('50.000000'),
    p99us: pct('99.000000'),
    runtimeSeconds: Math.max(...dirs.map((d) => d.runtime)) / 1000,
  }
}

/** Runs fio without blocking the event loop (a server may be this process). */
export async function runFio(args: string[], onSpawn?: (pid: number) => void): Promise<FioFigures> {
  const r = await exec('fio', args, 3_600_000, onSpawn)
  if (r.code !== 0) throw new Error(`fio exited ${r.code ?? r.signal}: ${r.stderr.trim()}`)
  try {
    return parseFio(r.stdout)
  } catch (e) {
    throw new Error(`${(e as Error).message}; stderr: ${r.stderr.trim()}`)
  }
}
