// The JSON a benchmark run writes under bench/results/.
import type { DispatchFigure } from './dispatch'
import type { S3Figures } from './s3'

/** A figure of a server's threads, by kind of thread (bench/sched.ts). */
export interface ByThread {
  /** The queue threads (`ublk<dev>q<queue>`): the Rust IO loops. */
  queueThreads: number
  /** The main JavaScript thread (its tid is the pid). */
  mainThread: number
  /** Every other thread: queue workers, V8's and libuv's helpers, the control thread. */
  otherThreads: number
}

/** A JS target's `dev.stats()`, summed over its queues (bench/serve.js). */
export interface NotificationCount {
  /** Times the queue threads notified the handlers. */
  notifications: number
  /** Requests the handlers were given. */
  requests: number
}

/** One group of threads as the scheduler counts them (bench/sched.ts). */
export interface TaskSched {
  /** Run time, ns. */
  cpuNs: number
  /** Time runnable but waiting for a CPU, ns. */
  waitNs: number
  /** Times scheduled in. */
  runs: number
}

/** Interrupts between CPUs, by kind (`/proc/interrupts`). */
export interface CpuInterrupts {
  /** RES: a CPU told to reschedule, mostly to run a task woken from another CPU. */
  rescheduling: number
  /** CAL: a function run on another CPU (io_uring task work, remote completions...). */
  functionCall: number
  /** TLB: another CPU's TLB flushed for a changed mapping (munmap, mprotect). */
  tlbShootdowns: number
}

/**
 * Where the time goes per request, in the steady state of a case: a window
 * inside fio's run (ramp and start-up left out), each figure divided by the
 * requests fio's rate puts in it (bench/sched.ts).
 */
export interface RequestAccounting {
  windowSeconds: number
  /** The share of all the machine's CPUs that was busy (tasks' run time, `/proc/schedstat`). */
  machineBusy: number
  /** Busy CPU of the whole machine per request, ns: fio, the kernel and the server. */
  machineCpuNs: number
  /** Interrupts between CPUs per request. */
  interrupts: CpuInterrupts
  /** The server's threads (null for in-kernel targets): run time, ns. */
  serverCpuNs: ByThread | null
  /** Time its threads were runnable but waited for a CPU, ns. */
  serverWaitNs: ByThread | null
  /** Times its threads were scheduled in (each a wake-up or a preemption's return). */
  serverRuns: ByThread | null
  /** fio's threads, all its processes together (absent in runs before 2026-12-05). */
  fio?: TaskSched
}

export interface BenchResult {
  target: string
  case: string
  iops: number
  bandwidthMiBs: number
  p50us: number
  p99us: number
  runtimeSeconds: number
  /**
   * Server CPU time per request, the sum of its threads' scheduler run time
   * (runs before 2026-12-03: tick-sampled utime + stime); null for in-kernel targets.
   */
  cpuNsPerRequest: number | null
  /** The same, split by thread, summing to it (absent in runs before 2026-12-03; null for in-kernel targets). */
  cpuSplitNsPerRequest?: ByThread | null
  /**
   * Requests per notification of the handlers during the case, ramp included:
   * how much each wake-up of the JS thread brought (JS targets only; absent
   * in runs before 2026-12-04).
   */
  requestsPerNotification?: number | null
  /** Where the time went per request (absent in runs before 2026-12-04; null if the window outlived fio). */
  accounting?: RequestAccounting | null
  /**
   * The CPU fio's single job was pinned to, one no queue thread may use
   * (absent: left to the scheduler, as in every run before 2026-12-05 and
   * for cases of 2 jobs).
   */
  fioCpu?: number
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
  /**
   * The JS hop without a kernel, measured in the same boot: every figure of
   * bench/dispatch.ts (the Rust-thread floor, each handler on the main thread
   * and in a worker, each batch size); the report quotes batches 1 and 128.
   */
  dispatch?: DispatchFigure[]
  /**
   * The goal rounds: after the main pass (whose figures are `results`), the
   * targets and cases the goals compare, measured again, one list per round
   * (bench/goals.ts). Absent in runs before 2026-12-03.
   */
  goalRounds?: BenchResult[][]
}
