// Runs one fio case against a block device and extracts the figures.
import { spawn } from 'node:child_process'
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

interface FioDirection {
  iops: number
  bw_bytes: number
  total_ios: number
  runtime: number
  clat_ns: { percentile?: Record<string, number> }
}

export function fioArgs(device: string, c: FioCase, runtimeSeconds: number, rampSeconds: number): string[] {
  const { numjobs, iodepth } = jobsFor(c.qd)
  return [
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
  const job = JSON.parse(json.slice(json.indexOf('{'))).jobs[0] as { read: FioDirection; write: FioDirection; error: number }
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
export function runFio(args: string[]): Promise<FioFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fio exited ${code}: ${err.trim()}`))
      try {
        resolve(parseFio(out))
      } catch (e) {
        reject(new Error(`${(e as Error).message}; stderr: ${err.trim()}`))
      }
    })
  })
}
