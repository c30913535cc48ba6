// The JSON a benchmark run writes under bench/results/.
import type { S3Figures } from './s3'

export interface BenchResult {
  target: string
  case: string
  iops: number
  bandwidthMiBs: number
  p50us: number
  p99us: number
  runtimeSeconds: number
  /** Server process CPU time (user + system) per request; null for in-kernel targets. */
  cpuNsPerRequest: number | null
}

export interface BenchRun {
  version: 1
  date: string
  mode: 'full' | 'quick'
  kernel: string
  /** Whether it ran inside the QEMU test guest. */
  guest: boolean
  machine: { host: string; cpus: number; memoryGiB: number; emulated: string }
  fio: string
  node: string
  runtimeSeconds: number
  rampSeconds: number
  sizeBytes: number
  targets: Array<{ name: string; description: string; notes?: string }>
  results: BenchResult[]
  errors: Array<{ target: string; case?: string; message: string }>
  /** The store's raw rates and the backend's flushed sequential write (when the S3 target ran). */
  s3?: S3Figures
}
