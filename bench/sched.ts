// What the scheduler says about a fio case: the server's threads and fio's
// (CPU, time waiting for a CPU, times scheduled in), the whole machine's busy
// CPU and the interrupts between its CPUs.
// From these the report says where the time goes per request
// (bench/accounting.ts).
import { readdir, readFile } from 'node:fs/promises'
import type { ByThread, CpuInterrupts, RequestAccounting, TaskSched } from './types'

/** A server's threads as the scheduler counts them so far, summed by kind. */
export interface ThreadSched {
  /** Run time, ns. */
  cpuNs: ByThread
  /** Time runnable but waiting for a CPU, ns. */
  waitNs: ByThread
  /** Times scheduled in. */
  runs: ByThread
}

const none = (): ByThread => ({ queueThreads: 0, mainThread: 0, otherThreads: 0 })

/** The three fields of `/proc/<pid>/task/<tid>/schedstat`: run ns, wait ns, times run. */
export function parseSchedstat(text: string): [number, number, number] | undefined {
  const fields = text.trim().split(/\s+/).map(Number)
  if (fields.length < 3 || fields.slice(0, 3).some((n) => !Number.isFinite(n))) return undefined
  return [fields[0], fields[1], fields[2]]
}

/** Which kind of thread `comm` (tid `tid`) of process `pid` is. */
export function threadKind(pid: number, tid: string, comm: string): keyof ByThread {
  if (/^ublk\d+q\d+$/.test(comm.trim())) return 'queueThreads'
  return tid === String(pid) ? 'mainThread' : 'otherThreads'
}

/**
 * The scheduler's counts for each live thread of `pid` so far, summed by
 * kind: its own run time (`schedstat`, in ns), not the tick-sampled
 * utime/stime of `stat`, which at low rates charges whole 4 ms ticks to
 * whichever thread they land on. A thread that ended (a replaced worker) is
 * missing; a pid that does not exist reads as all zeros.
 */
export async function threadSched(pid: number): Promise<ThreadSched> {
  const sched: ThreadSched = { cpuNs: none(), waitNs: none(), runs: none() }
  for (const { kind, text } of await threadsOf(pid, 'schedstat')) {
    const fields = parseSchedstat(text)
    if (fields === undefined) continue
    sched.cpuNs[kind] += fields[0]
    sched.waitNs[kind] += fields[1]
    sched.runs[kind] += fields[2]
  }
  return sched
}

/** `pid` and its descendants, as they are now (fio's main process and one process per job). */
export async function processTree(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  const below = await Promise.all(children.trim().split(/\s+/).filter(Boolean).map((c) => processTree(Number(c))))
  return [pid, ...below.flat()]
}

/** The scheduler's counts so far of every live thread of `pids`, summed. */
export async function processesSched(pids: number[]): Promise<TaskSched> {
  const sum: TaskSched = { cpuNs: 0, waitNs: 0, runs: 0 }
  for (const s of await Promise.all(pids.map(threadSched))) {
    sum.cpuNs += totalOf(s.cpuNs)
    sum.waitNs += totalOf(s.waitNs)
    sum.runs += totalOf(s.runs)
  }
  return sum
}

/** Each live thread of `pid` (none if it does not exist): its kind and its `file` under `/proc/<pid>/task/<tid>/`. */
async function threadsOf(pid: number, file: string): Promise<Array<{ kind: keyof ByThread; text: string }>> {
  const threads = []
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const dir = `/proc/${pid}/task/${tid}`
    const [comm, text] = await Promise.all([readFile(`${dir}/comm`, 'utf8'), readFile(`${dir}/${file}`, 'utf8')]).catch(() => [])
    if (comm !== undefined && text !== undefined) threads.push({ kind: threadKind(pid, tid, comm), text })
  }
  return threads
}

/** The CPUs of a `Cpus_allowed_list` such as `0-2,5`. */
export function parseCpuList(list: string): number[] {
  const cpus: number[] = []
  for (const part of list.trim().split(',').filter(Boolean)) {
    const [lo, hi = lo] = part.split('-').map(Number)
    for (let cpu = lo; cpu <= hi; cpu++) cpus.push(cpu)
  }
  return cpus
}

/** The CPUs a `/proc/.../status` text allows (its `Cpus_allowed_list`). */
export const cpusAllowed = (status: string): number[] => parseCpuList(/^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? '')

/** The CPUs the queue threads of `pid` may run on (empty if it has none). */
export async function queueThreadCpus(pid: number): Promise<number[]> {
  const cpus = new Set<number>()
  for (const { kind, text } of await threadsOf(pid, 'status')) {
    if (kind === 'queueThreads') for (const cpu of cpusAllowed(text)) cpus.add(cpu)
  }
  return [...cpus]
}

/**
 * The CPU a single fio job runs on: the first of `online` that no queue
 * thread may use, so that every target's request crosses between CPUs the
 * same way (with fio on a queue thread's CPU the Rust null handler answers
 * QD1 in a sixth of the time, see bench/results/2026-12-04-qd1-placement.md).
 * Undefined where the queue threads may use every CPU: fio is left to the
 * scheduler.
 */
export function fioCpuAwayFrom(queueCpus: number[], online: number[]): number | undefined {
  if (queueCpus.length === 0) return undefined
  return online.find((cpu) => !queueCpus.includes(cpu))
}

/** The CPU time of each kind of thread of `pid` so far, ns. */
export async function threadCpuNs(pid: number): Promise<ByThread> {
  return (await threadSched(pid)).cpuNs
}

/** All of a split. */
export const totalOf = (s: ByThread) => s.queueThreads + s.mainThread + s.otherThreads

/** A record of counters (`ByThread`, `CpuInterrupts`); their arithmetic is field by field, here. */
type Counters<T> = { [K in keyof T]: number }

function fieldwise<T extends Counters<T>>(a: T, f: (value: number, key: keyof T) => number): T {
  return Object.fromEntries(Object.keys(a).map((k) => [k, f(a[k as keyof T], k as keyof T)])) as T
}

/** `after - before` for each counter, never below 0 (a thread that exited took its counts with it). */
export const difference = <T extends Counters<T>>(before: T, after: T): T => fieldwise(after, (v, k) => Math.max(0, v - before[k]))

/** Each counter divided by `n`. */
export const dividedBy = <T extends Counters<T>>(a: T, n: number): T => fieldwise(a, (v) => v / n)

/** `(after - before) / requests` for each counter. */
export const perRequest = <T extends Counters<T>>(before: T, after: T, requests: number): T => dividedBy(difference(before, after), requests)

/** The whole machine's CPU so far: the run time of every task on every CPU, ns, and its CPU count. */
export interface MachineCpu {
  runNs: number
  cpus: number
}

/**
 * Parses `/proc/schedstat`: each `cpuN` line's seventh field is the run
 * time of the tasks on that CPU (idle not counted), in ns, from the same
 * accounting as each thread's `schedstat`, so the two subtract exactly.
 */
export function parseProcSchedstat(text: string): MachineCpu {
  const cpus = text.split('\n').filter((l) => /^cpu\d+ /.test(l))
  if (!cpus.length) throw new Error('/proc/schedstat has no cpu line')
  return { runNs: cpus.reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[7] ?? 0), 0), cpus: cpus.length }
}

/** USER_HZ, the unit of `/proc/stat`: fixed at 100 by the kernel's ABI. */
const USER_HZ = 100

/**
 * Parses `/proc/stat`, for kernels without `/proc/schedstat`: busy is
 * everything but idle and iowait, in ticks (sampled at each timer tick, so
 * coarser than the scheduler's own figures).
 */
export function parseProcStat(text: string): MachineCpu {
  const lines = text.split('\n')
  const all = lines.find((l) => l.startsWith('cpu '))
  if (!all) throw new Error('/proc/stat has no cpu line')
  // user nice system idle iowait irq softirq steal (guest and guest_nice are within user and nice)
  const [user, nice, system, , , irq, softirq, steal] = all.trim().split(/\s+/).slice(1, 9).map((n) => Number(n) || 0)
  const busy = user + nice + system + irq + softirq + steal
  return { runNs: (busy * 1e9) / USER_HZ, cpus: lines.filter((l) => /^cpu\d+ /.test(l)).length }
}

async function machineCpu(): Promise<MachineCpu> {
  const schedstat = await readFile('/proc/schedstat', 'utf8').catch(() => undefined)
  return schedstat === undefined ? parseProcStat(await readFile('/proc/stat', 'utf8')) : parseProcSchedstat(schedstat)
}

/** Interrupts between CPUs so far, summed over the CPUs (`/proc/interrupts`). */
export function parseInterrupts(text: string): CpuInterrupts {
  const sum = (name: string) => {
    const line = text.split('\n').find((l) => l.trim().startsWith(`${name}:`))
    if (!line) return 0
    let total = 0
    for (const field of line.trim().split(/\s+/).slice(1)) {
      if (!/^\d+$/.test(field)) break
      total += Number(field)
    }
    return total
  }
  return { rescheduling: sum('RES'), functionCall: sum('CAL'), tlbShootdowns: sum('TLB') }
}

async function cpuInterrupts(): Promise<CpuInterrupts> {
  return parseInterrupts(await readFile('/proc/interrupts', 'utf8').catch(() => ''))
}

/** What one window of a case saw, before it is divided by the requests. */
export interface WindowSample {
  seconds: number
  /** The machine's CPU run time and its interrupts between CPUs in the window. */
  machine: MachineCpu
  interrupts: CpuInterrupts
  server?: { before: ThreadSched; after: ThreadSched }
  /** fio's processes (as the window opens), if known. */
  fio?: { before: TaskSched; after: TaskSched }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Samples the machine, the server `pid` and fio (`fioPid`, with its job
 * processes) over a window that opens `startMs` from now and lasts
 * `lengthMs`: the steady state of a fio run
 * started now (its ramp and start-up left out). `stillRunning` is asked at
 * the end: a window that outlived the run is worth nothing (undefined).
 */
export async function sampleWindow(
  pid: number | undefined,
  startMs: number,
  lengthMs: number,
  stillRunning: () => boolean,
  fioPid: () => number | undefined = () => undefined,
): Promise<WindowSample | undefined> {
  await sleep(startMs)
  const fio = fioPid()
  const fioPids = fio ? await processTree(fio) : []
  const sample = () => Promise.all([machineCpu(), cpuInterrupts(), pid ? threadSched(pid) : undefined, fioPids.length ? processesSched(fioPids) : undefined])
  const [m0, i0, s0, f0] = await sample()
  const t0 = process.hrtime.bigint()
  await sleep(lengthMs)
  const [m1, i1, s1, f1] = await sample()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  if (!stillRunning()) return undefined
  return {
    seconds,
    machine: { runNs: m1.runNs - m0.runNs, cpus: m1.cpus },
    interrupts: difference(i0, i1),
    ...(s0 && s1 && { server: { before: s0, after: s1 } }),
    ...(f0 && f1 && { fio: { before: f0, after: f1 } }),
  }
}

/** A window's figures per request, at `iops` (the rate fio measured over the whole case). */
export function accountingOf(w: WindowSample, iops: number): RequestAccounting | null {
  const requests = iops * w.seconds
  if (!(requests > 0)) return null
  const s = w.server
  return {
    windowSeconds: w.seconds,
    machineBusy: w.machine.runNs / (w.machine.cpus * w.seconds * 1e9),
    machineCpuNs: w.machine.runNs / requests,
    interrupts: dividedBy(w.interrupts, requests),
    serverCpuNs: s ? perRequest(s.before.cpuNs, s.after.cpuNs, requests) : null,
    serverWaitNs: s ? perRequest(s.before.waitNs, s.after.waitNs, requests) : null,
    serverRuns: s ? perRequest(s.before.runs, s.after.runs, requests) : null,
    ...(w.fio && { fio: perRequest(w.fio.before, w.fio.after, requests) }),
  }
}
