// fio's JSON output, read once for the tests and the benchmark.
import { exec } from './process'

interface FioDirection {
  iops: number
  bw_bytes: number
  io_kbytes: number
  total_ios: number
  runtime: number
  clat_ns: { percentile?: Record<string, number> }
}

/** The first job of fio's JSON output (a group-reported job, or the only one). */
export interface FioJobJson {
  error: number
  read: FioDirection
  write: FioDirection
}

/** Parses fio's JSON output, skipping anything fio printed before it. */
export function parseFioJson(out: string): FioJobJson {
  const start = out.indexOf('{')
  if (start < 0) throw new Error(`fio printed no JSON: ${out.slice(0, 500)}`)
  return JSON.parse(out.slice(start)).jobs[0] as FioJobJson
}

/** What the tests check of a fio job. */
export interface FioJob {
  read_iops: number
  read_io_kbytes: number
  write_iops: number
  write_io_kbytes: number
  error: number
}

export function fioJob(out: string): FioJob {
  const job = parseFioJson(out)
  return {
    read_iops: job.read.iops,
    read_io_kbytes: job.read.io_kbytes,
    write_iops: job.write.iops,
    write_io_kbytes: job.write.io_kbytes,
    error: job.error,
  }
}

/** Runs fio with JSON output (without blocking the event loop) and returns its first job. */
export async function runFioJob(args: string[], timeoutMs = 600_000): Promise<FioJob & { exit: number | null; stderr: string }> {
  const r = await exec('fio', ['--output-format=json', ...args], timeoutMs)
  if (!r.stdout.includes('{')) throw new Error(`fio printed no JSON (exit ${r.code}): ${r.stderr}`)
  return { ...fioJob(r.stdout), exit: r.code, stderr: r.stderr }
}
