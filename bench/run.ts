// The measuring half of `npm run bench`: runs on a kernel with ublk (the
// test guest, or this machine), serves each target, runs each fio case on
// it, and writes every figure to one JSON file.
//   node --import tsx bench/run.ts --out=FILE [--quick]
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname } from 'node:path'
import { CASES, jobsFor, QUICK_CASES, type FioCase } from './cases'
import { fioArgs, runFio } from './fio'
import { sh } from '../__test__/support/process'
import { runDispatchBenchmark, type DispatchBudget } from './dispatch'
import { roundCases } from './goals'
import { QUICK_TARGETS, requestsPerNotification, TARGETS, type Target } from './targets'
import { accountingOf, cpusAllowed, fioCpuAwayFrom, perRequest, queueThreadCpus, sampleWindow, threadCpuNs, totalOf } from './sched'
import { goalRounds, onlyTargets } from './env'
import { measureS3, S3_TARGET, stopCephStore } from './s3'
import type { BenchRun, BenchResult } from './types'

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const quick = process.argv.includes('--quick')
const out = arg('out')
const SIZE = 512 << 20
const RUNTIME = quick ? 3 : 5
const RAMP = 1
/** How long each figure of the in-boot dispatch measurement runs (bench/dispatch.ts). */
const DISPATCH_BUDGET: DispatchBudget = { chunk: 1000, warmupMs: 1000, measureMs: quick ? 1500 : 3000 }
/** Goal rounds after the main pass (UBLK_BENCH_GOAL_ROUNDS; 0: none). */
const GOAL_ROUNDS = goalRounds(process.env.UBLK_BENCH_GOAL_ROUNDS)

/**
 * The steady-state window of a case (bench/sched.ts): from 1 s after the
 * ramp (fio's start-up under emulation takes up to about that) to 0.5 s
 * before fio's run would end.
 */
const WINDOW_START_MS = (RAMP + 1) * 1000
const WINDOW_MS = (RUNTIME - 1.5) * 1000
/** The CPUs fio may be pinned to: this process's own. */
const ONLINE_CPUS = cpusAllowed(readFileSync('/proc/self/status', 'utf8'))

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0]
  } catch {
    return 'unknown'
  }
}

/** Where a pass over a target puts what it measured, and how it names its steps. */
interface Pass {
  into: BenchResult[]
  /** The log line's prefix for case `i` of this target. */
  label(i: number, c: FioCase): string
  /** Said before each error message ('' in the main pass). */
  errorPrefix: string
}

/**
 * Starts `target`, fills it if it keeps data, runs `cases` on it and stops
 * it; each figure goes to `pass.into`, each failure to the run's errors.
 */
async function measureTarget(target: Target, cases: FioCase[], run: BenchRun, pass: Pass): Promise<void> {
  const error = (message: string, c?: FioCase) =>
    run.errors.push({ target: target.name, ...(c && { case: c.name }), message: `${pass.errorPrefix}${message}` })
  let running
  try {
    running = await target.start(SIZE)
  } catch (e) {
    error((e as Error).message)
    console.log(`        ${pass.errorPrefix}${target.name}: could not start: ${(e as Error).message}`)
    return
  }
  if (!run.targets.some((t) => t.name === target.name)) {
    run.targets.push({ name: target.name, description: target.description, ...(running.notes && { notes: running.notes }) })
  }
  // Queue threads are pinned before the device starts: one look per target.
  const awayCpu = running.serverPid ? fioCpuAwayFrom(await queueThreadCpus(running.serverPid), ONLINE_CPUS) : undefined
  try {
    if (target.keepsData) {
      // Flushed at the end, so a write-back cache (S3Backend) has stored it all before the measuring starts.
      console.log(`        ${target.name}: filling ${SIZE >> 20} MiB`)
      await sh('fio', ['--name=fill', `--filename=${running.path}`, '--ioengine=io_uring', '--direct=1', '--rw=write', '--bs=1M', '--iodepth=8', `--size=${SIZE}`, '--end_fsync=1'])
    }
    for (const [i, c] of cases.entries()) {
      const prefix = pass.label(i, c)
      try {
        const pid = running.serverPid
        const before = pid ? await threadCpuNs(pid) : undefined
        const notifiedBefore = await running.notifications?.()
        let fioRunning = true
        const fioCpu = jobsFor(c.qd).numjobs === 1 ? awayCpu : undefined
        let fioPid: number | undefined
        const fio = runFio(fioArgs(running.path, c, RUNTIME, RAMP, fioCpu), (p) => (fioPid = p)).finally(() => (fioRunning = false))
        const window = sampleWindow(pid, WINDOW_START_MS, WINDOW_MS, () => fioRunning, () => fioPid)
        const [f, sample] = await Promise.all([fio, window])
        const notifiedAfter = await running.notifications?.()
        const after = pid ? await threadCpuNs(pid) : undefined
        // CPU time spans ramp + runtime; so does this request estimate.
        const requests = f.iops * (f.runtimeSeconds + RAMP)
        const split = before && after ? perRequest(before, after, requests) : null
        pass.into.push({
          target: target.name,
          case: c.name,
          ...f,
          cpuNsPerRequest: split ? totalOf(split) : null,
          cpuSplitNsPerRequest: split,
          ...(notifiedBefore && notifiedAfter && { requestsPerNotification: requestsPerNotification(notifiedBefore, notifiedAfter) }),
          accounting: sample ? accountingOf(sample, f.iops) : null,
          ...(fioCpu !== undefined && { fioCpu }),
        })
        console.log(`${prefix}: ${Math.round(f.iops).toLocaleString('en-US')} IOPS, p50 ${f.p50us.toFixed(0)} µs, p99 ${f.p99us.toFixed(0)} µs`)
      } catch (e) {
        error((e as Error).message, c)
        console.log(`${prefix}: failed: ${(e as Error).message}`)
      }
    }
  } finally {
    await running.stop()
  }
}

async function main(): Promise<void> {
  if (!out) throw new Error('usage: bench/run.ts --out=FILE [--quick]')
  for (const mod of ['ublk_drv', 'loop']) await sh('modprobe', [mod]).catch(() => undefined)
  // UBLK_BENCH_ONLY="name,name": just those targets (an A/B of a hot-path change).
  const only = onlyTargets(
    process.env.UBLK_BENCH_ONLY,
    TARGETS.map((t) => t.name),
  )
  const targets = TARGETS.filter((t) => (only ? only.includes(t.name) : !quick || QUICK_TARGETS.includes(t.name)))
  const cases = quick ? QUICK_CASES : CASES
  const run: BenchRun = {
    version: 1,
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    kernel: os.release(),
    guest: process.env.UBLK_VM_GUEST === '1',
    machine: {
      host: process.env.UBLK_BENCH_HOST ?? `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} CPUs`,
      cpus: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      emulated: process.env.UBLK_VM_GUEST === '1' ? 'QEMU TCG (software emulation)' : 'no',
    },
    fio: version('fio', ['--version']),
    node: process.version,
    runtimeSeconds: RUNTIME,
    rampSeconds: RAMP,
    sizeBytes: SIZE,
    targets: [],
    results: [],
    errors: [],
  }
  const total = targets.length * cases.length
  const mainPass = async (target: Target) => {
    const t = targets.indexOf(target)
    const label = (i: number, c: FioCase) => `[${t * cases.length + i + 1}/${total}] ${target.name} · ${c.name}`
    await measureTarget(target, cases, run, { into: run.results, label, errorPrefix: '' })
  }
  // The S3 target comes after the goal rounds: its Ceph cluster stays out of them.
  for (const target of targets.filter((t) => t.name !== S3_TARGET)) await mainPass(target)
  // The goal rounds: what the goals compare, again, in alternating order
  // (odd rounds backwards), so that each goal's ratio is had several
  // times in this boot and its verdict is their median (bench/goals.ts).
  const again = roundCases()
  const roundTargets = targets.filter((t) => again.has(t.name))
  run.goalRounds = []
  for (let round = 1; round <= GOAL_ROUNDS && roundTargets.length; round++) {
    const results: BenchResult[] = []
    run.goalRounds.push(results)
    const order = round % 2 ? [...roundTargets].reverse() : roundTargets
    for (const target of order) {
      const wanted = cases.filter((c) => again.get(target.name)!.includes(c.name))
      const label = (_: number, c: FioCase) => `[goal round ${round}/${GOAL_ROUNDS}] ${target.name} · ${c.name}`
      await measureTarget(target, wanted, run, { into: results, label, errorPrefix: `goal round ${round}: ` })
    }
  }
  for (const target of targets.filter((t) => t.name === S3_TARGET)) await mainPass(target)
  if (targets.some((t) => t.name === S3_TARGET)) {
    try {
      console.log('        S3: raw PUT/GET rates, then a flushed sequential write')
      run.s3 = await measureS3(RUNTIME)
      const s = run.s3
      console.log(`        S3: PUT ${s.putMiBs.toFixed(1)} MiB/s, GET ${s.getMiBs.toFixed(1)} MiB/s, sequential write until flushed ${s.sequentialWriteMiBs.toFixed(1)} MiB/s`)
    } catch (e) {
      run.errors.push({ target: S3_TARGET, case: 'raw store rates', message: (e as Error).message })
      console.log(`        S3: failed: ${(e as Error).message}`)
    }
    await stopCephStore()
  }
  try {
    const b = DISPATCH_BUDGET
    console.log(`        the JS hop without a kernel (bench:dispatch, ${b.warmupMs} ms of warm-up and ${b.measureMs} ms measured per figure)`)
    run.dispatch = await runDispatchBenchmark(b)
  } catch (e) {
    run.errors.push({ target: 'bench:dispatch', message: (e as Error).message })
    console.log(`        bench:dispatch failed: ${(e as Error).message}`)
  }
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, `${JSON.stringify(run, null, 2)}\n`)
  console.log(`wrote ${out}`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
