// The benchmark's pure parts: the case matrix, fio's JSON, the report and
// the goals. (Running it needs the kernel: `npm run bench`.)
import test from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CASES, jobsFor, QUICK_CASES } from '../../bench/cases'
import { fioArgs, runFio } from '../../bench/fio'
import { FLOOR, inWorker, SYNC_NULL } from '../../bench/dispatch-names'
import { goalRounds, onlyTargets } from '../../bench/env'
import { updateReadme } from '../../bench/main'
import { goals, GOALS, median, roundCases } from '../../bench/goals'
import { toMarkdown, toSvg } from '../../bench/report'
import { accountingOf, cpusAllowed, fioCpuAwayFrom, parseCpuList, queueThreadCpus, sampleWindow, parseInterrupts, parseProcSchedstat, parseProcStat, parseSchedstat, processesSched, processTree, threadCpuNs, threadSched } from '../../bench/sched'
import { requestsPerNotification, TARGETS } from '../../bench/targets'
import type { BenchResult, BenchRun } from '../../bench/types'

test('the case matrix is the one the issue asks for', (t) => {
  t.deepEqual(
    CASES.map((c) => c.name),
    [
      '4k randread QD1', '4k randread QD32', '4k randread QD128',
      '4k randwrite QD1', '4k randwrite QD32', '4k randwrite QD128',
      '4k randrw 70/30 QD1', '4k randrw 70/30 QD32', '4k randrw 70/30 QD128',
      '128k read QD32', '128k write QD32',
    ],
  )
  t.true(QUICK_CASES.every((c) => CASES.includes(c)))
  t.deepEqual(jobsFor(1), { numjobs: 1, iodepth: 1 })
  t.deepEqual(jobsFor(128), { numjobs: 2, iodepth: 64 })
})

test('fio figures come from a real fio run', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ublk-bench-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'data')
  const mixed = CASES.find((c) => c.name === '4k randrw 70/30 QD1')!
  const args = fioArgs(file, mixed, 1, 0).map((a) => (a === '--direct=1' ? '--direct=0' : a === '--ioengine=io_uring' ? '--ioengine=psync' : a))
  const f = await runFio([...args, '--size=4M'])
  t.true(f.iops > 0, `iops ${f.iops}`)
  t.true(f.bandwidthMiBs > 0)
  t.true(f.p99us >= f.p50us && f.p50us > 0, `p50 ${f.p50us} p99 ${f.p99us}`)
  t.true(f.runtimeSeconds > 0.5)
})

function result(target: string, c: string, iops: number, p50us = 100): BenchResult {
  return { target, case: c, iops, bandwidthMiBs: iops / 256, p50us, p99us: p50us * 2, runtimeSeconds: 5, cpuNsPerRequest: target === 'null_blk' ? null : 5000 }
}

const run: BenchRun = {
  version: 1,
  date: '2026-11-22T00:00:00.000Z',
  mode: 'quick',
  kernel: '7.3.4+deb13-amd64',
  guest: true,
  machine: { host: 'Test CPU, 2 cores', cpus: 2, memoryGiB: 3, emulated: 'QEMU TCG (software emulation)' },
  fio: 'fio-3.33',
  node: 'v20.20.2',
  runtimeSeconds: 3,
  rampSeconds: 1,
  sizeBytes: 512 << 20,
  targets: ['NullBackend q2', 'MemoryBackend q2', 'Rust null q2', 'null_blk', 'NBD (nbdkit memory)'].map((name) => ({ name, description: name })),
  results: [
    result('NullBackend q2', '4k randread QD128', 60_000),
    result('Rust null q2', '4k randread QD128', 100_000),
    result('MemoryBackend q2', '4k randread QD32', 30_000),
    result('NBD (nbdkit memory)', '4k randread QD32', 10_000),
    result('MemoryBackend q2', '4k randwrite QD32', 20_000),
    result('NBD (nbdkit memory)', '4k randwrite QD32', 15_000),
    result('NullBackend q1', '4k randread QD1', 5_000, 120),
    result('Rust null q1', '4k randread QD1', 8_000, 100),
    result('null_blk', '4k randread QD1', 50_000, 10),
    result('NullBackend workers q2', '4k randread QD128', 90_000),
    result('XTS main q2', '4k randread QD32', 1_000),
    result('XTS workers q2', '4k randread QD32', 1_800),
    result('S3Backend q2', '4k randread QD32', 24_000),
  ],
  errors: [{ target: 'NBD (nbdkit memory)', case: '4k randread QD1', message: 'fio exited 1' }],
  dispatch: [
    [FLOOR, 1, 150_000],
    [SYNC_NULL, 1, 250_000],
    [inWorker(SYNC_NULL), 1, 240_000],
    [FLOOR, 128, 1_400],
    [SYNC_NULL, 128, 8_500],
    [inWorker(SYNC_NULL), 128, 11_500],
  ].map(([handler, batch, ns]) => ({ handler: handler as string, batch: batch as number, requests: 1000, requestsPerSecond: 1e9 / (ns as number), nsPerRequest: ns as number })),
  s3: { objectSize: 4 << 20, concurrency: 8, putMiBs: 100, getMiBs: 150, sequentialWriteMiBs: 60, sequentialWriteBytes: 256 << 20, sequentialCacheBytes: 64 << 20 },
}

test('goals are computed from the figures, met or missed', (t) => {
  const g = goals(run)
  t.deepEqual(
    g.map((x) => [x.value, x.met]),
    [
      ['not measured', undefined],
      ['90%', true],
      ['1.20x', true],
      ['1.80x', true],
      ['not measured', undefined],
      ['not measured', undefined],
      ['3.00x', true],
      ['1.33x', false],
      ['60%', false],
      ['80%', true],
    ],
  )
})

test('goals are decided on the median of their per-round ratios, each round on its own', (t) => {
  const withFio = (r: BenchResult): BenchResult => ({ ...r, accounting: { ...r.accounting!, fio: { cpuNs: 70_000, waitNs: 5000, runs: 0.25 } } })
  const rounds: BenchRun = {
    ...run,
    goalRounds: [
      // Round 1: both sides slower (the boot drifted), the ratio the same as the main pass's.
      [result('NullBackend q2', '4k randread QD128', 30_000), result('Rust null q2', '4k randread QD128', 50_000)],
      // Round 2: workers win this round; the best mode of each round counts.
      [result('NullBackend q2', '4k randread QD128', 50_000), result('NullBackend workers q2', '4k randread QD128', 95_000), result('Rust null q2', '4k randread QD128', 100_000)],
      // Round 3: the XTS pair only; NullBackend is not measured in it and that round is no sample of its goal.
      [result('XTS main q2', '4k randread QD32', 1_000), result('XTS workers q2', '4k randread QD32', 1_500)],
    ],
  }
  const g = goals(rounds)
  t.deepEqual(g[1].rounds, [0.9, 0.6, 0.95])
  t.is(g[1].value, '90% (median of 3 rounds: 90%, 60%, 95%)')
  t.true(g[1].met)
  t.deepEqual(g[3].rounds, [1.8, 1.5])
  t.is(g[3].value, '1.65x (median of 2 rounds: 1.80x, 1.50x)')
  t.true(g[3].met, 'an even count takes the mean of the middle two')
  t.is(g[0].met, undefined)
  t.regex(toMarkdown(rounds), /\*\*Goals\*\* \(each compared pair measured again in 3 more rounds of the same boot/)
  t.is(median([3, 1, 2]), 2)
})

test('the goal rounds repeat exactly what the goals compare, and not the S3 target', (t) => {
  const again = roundCases()
  t.deepEqual(again.get('Rust null q1'), ['4k randread QD128', '4k randread QD1'])
  t.deepEqual(again.get('XTS main q2'), ['4k randread QD32', '4k randread QD128', '4k randwrite QD32'])
  t.deepEqual(again.get('MemoryBackend q2'), ['4k randread QD32', '4k randwrite QD32'])
  t.false(again.has('S3Backend q2'))
  t.false(again.has('null_blk'))
  for (const [, cases] of again) for (const c of cases) t.true(QUICK_CASES.some((q) => q.name === c), `${c} is a quick case`)
  t.is(GOALS.length, goals(run).length)
})

test('the Markdown table lists every target and case, the conditions and the failures', (t) => {
  const md = toMarkdown(run, 'chart.svg')
  t.regex(md, /\| case \| NullBackend q2 \| MemoryBackend q2 \| Rust null q2 \| null_blk \| NBD \(nbdkit memory\) \|/)
  t.regex(md, /\| 4k randread QD128 \| 60k \| – \| 100k \| – \| – \|/)
  t.regex(md, /software emulation/)
  t.regex(md, /\*\*missed\*\*: MemoryBackend \(2 queues\) vs nbdkit/)
  t.regex(md, /NBD \(nbdkit memory\) · 4k randread QD1: fio exited 1/)
  t.regex(md, /\| kernel \|/, 'in-kernel targets have no server CPU figure')
  t.regex(md, /!\[.*\]\(chart\.svg\)/)
  t.regex(md, /raw PUT 100\.0 MiB\/s, raw GET 150\.0 MiB\/s; S3Backend sequential 128k write QD32 of 256 MiB .* 64 MiB cache, counted until fsync returned: 60\.0 MiB\/s/)
  t.regex(md, /\*\*missed\*\*: S3Backend sequential 128k write until flushed vs the raw PUT rate .*: 60%/)
})

test('the report splits server CPU by thread and sets the JS hop against its floor', (t) => {
  const withSplit: BenchRun = {
    ...run,
    results: run.results.map((r) =>
      r.target === 'NullBackend q2' && r.case === '4k randread QD128' ? { ...r, cpuSplitNsPerRequest: { queueThreads: 2000, mainThread: 2500, otherThreads: 500 } } : r,
    ),
  }
  const md = toMarkdown(withSplit)
  t.regex(md, /by thread, µs: queue threads \/ main thread \/ other threads/)
  t.regex(md, /\| 4k randread QD128 \| 2\.0 \/ 2\.5 \/ 0\.5 \| – \| – \| – \| – \|/)
  t.regex(md, /round trip at batch 1: floor 150 µs, NullBackend 250 µs on the main thread, 240 µs in a worker; per request at batch 128: floor 1400 ns, NullBackend 8500 ns on the main thread, 11500 ns in a worker/)
  t.regex(md, /Rust null handler's QD1 p50 \(100 µs\): 250 µs, 2\.50x, before any JavaScript runs/)
  // A run recorded before either existed renders without them.
  const older = toMarkdown({ ...run, dispatch: undefined })
  t.notRegex(older, /by thread|JS hop in this boot/)
})

test('the report shows requests per notification where the run recorded them', (t) => {
  const withCounts: BenchRun = {
    ...run,
    results: run.results.map((r) =>
      r.target === 'NullBackend q2' ? { ...r, requestsPerNotification: 11.25 } : r.target === 'Rust null q2' ? { ...r, requestsPerNotification: null } : r,
    ),
  }
  const md = toMarkdown(withCounts)
  t.regex(md, /\*\*Requests per notification\*\*/)
  t.regex(md, /\| 4k randread QD128 \| 11\.3 \| – \| – \| – \| – \|/)
  t.notRegex(toMarkdown(run), /Requests per notification/, 'a run recorded before the counts existed renders without them')
})

test('requests per notification: the requests served between two counts over the notifications between them', (t) => {
  t.is(requestsPerNotification({ notifications: 10, requests: 100 }, { notifications: 30, requests: 340 }), 12)
  t.is(requestsPerNotification({ notifications: 5, requests: 9 }, { notifications: 5, requests: 9 }), null, 'no notification: no figure')
})

test('server CPU is read per thread from the scheduler: a busy main thread shows as such', async (t) => {
  // Spins its main thread until the process has used 400 ms of CPU (not of
  // wall time: the machine may be busy), then idles until killed.
  const spin = 'const used = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }; while (used() < 400); console.log("spun"); setInterval(() => {}, 1000)'
  const child = spawn(process.execPath, ['-e', spin])
  t.teardown(() => child.kill('SIGKILL'))
  await once(child.stdout, 'data')
  const split = await threadCpuNs(child.pid!)
  // At most the start-up's share of the 400 ms ran on other threads.
  t.true(split.mainThread >= 300e6, `main thread ${split.mainThread} ns`)
  t.is(split.queueThreads, 0)
  t.deepEqual(await threadCpuNs(2 ** 22 + 12345), { queueThreads: 0, mainThread: 0, otherThreads: 0 }, 'a pid that does not exist')
  const sched = await threadSched(child.pid!)
  t.true(sched.runs.mainThread >= 1, `the main thread was scheduled in ${sched.runs.mainThread} times`)
  t.true(sched.cpuNs.mainThread >= split.mainThread, 'run time only grows')
})

test('a single fio job runs on a CPU no queue thread may use, where there is one', async (t) => {
  t.deepEqual(parseCpuList('0-2,5\n'), [0, 1, 2, 5])
  t.deepEqual(parseCpuList(''), [])
  t.is(fioCpuAwayFrom([0], [0, 1]), 1)
  t.is(fioCpuAwayFrom([1, 3], [0, 1, 2, 3]), 0)
  t.is(fioCpuAwayFrom([0, 1], [0, 1]), undefined, 'queue threads on every CPU: the scheduler decides')
  t.is(fioCpuAwayFrom([], [0, 1]), undefined, 'no queue threads (an in-kernel target): the scheduler decides')
  t.deepEqual(fioArgs('/dev/x', CASES[0], 3, 1, 1).slice(0, 2), ['--cpus_allowed=1', '--name=randread'])
  t.false(fioArgs('/dev/x', CASES[0], 3, 1).some((a) => a.startsWith('--cpus_allowed')))
  // A live process whose only thread is named like a queue thread and pinned to the last CPU.
  t.deepEqual(cpusAllowed('Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n'), [0, 1])
  const last = cpusAllowed(await readFile('/proc/self/status', 'utf8')).pop()!
  const child = spawn('taskset', ['-c', String(last), process.execPath, '-e', 'process.title = "ublk0q0"; console.log("named"); setInterval(() => {}, 1000)'])
  t.teardown(() => child.kill('SIGKILL'))
  await once(child.stdout, 'data')
  t.deepEqual(await queueThreadCpus(child.pid!), [last])
  t.deepEqual(await queueThreadCpus(process.pid), [], 'this process has no queue thread')
})

test('schedstat, /proc/schedstat, /proc/stat and /proc/interrupts are read field by field', (t) => {
  t.deepEqual(parseSchedstat('946882 12 7\n'), [946882, 12, 7])
  t.is(parseSchedstat('946882\n'), undefined, 'a truncated line is no figure')
  // As a 7.3 guest prints it (version 17); domain lines are not CPUs.
  const schedstat = ['version 17', 'timestamp 4294893216', 'cpu0 0 0 0 0 0 0 1977946896 965670149 1547', 'domain0 MC 3 0 0', 'cpu1 0 0 0 0 0 0 22053104 1 2'].join('\n')
  t.deepEqual(parseProcSchedstat(schedstat), { runNs: 2_000_000_000, cpus: 2 })
  t.throws(() => parseProcSchedstat('version 17'), { message: /no cpu line/ })
  const stat = [
    'cpu  100 5 50 800 40 3 2 0 0 0',
    'cpu0 50 5 25 400 20 3 1 0 0 0',
    'cpu1 50 0 25 400 20 0 1 0 0 0',
    'intr 12345',
  ].join('\n')
  t.deepEqual(parseProcStat(stat), { runNs: 1.6e9, cpus: 2 }, 'busy is all but idle and iowait, in ticks of 10 ms')
  t.throws(() => parseProcStat('intr 1'), { message: /no cpu line/ })
  const interrupts = [
    '            CPU0       CPU1',
    '   0:         45          0   IO-APIC   2-edge      timer',
    ' RES:         33         53   Rescheduling interrupts',
    ' CAL:       2337        470   Function call interrupts',
    ' TLB:          4          0   TLB shootdowns',
  ].join('\n')
  t.deepEqual(parseInterrupts(interrupts), { rescheduling: 86, functionCall: 2807, tlbShootdowns: 4 })
  t.deepEqual(parseInterrupts(''), { rescheduling: 0, functionCall: 0, tlbShootdowns: 0 }, 'none listed: none counted')
})

test('a window samples this machine and a live process, and is dropped if the run ended first', async (t) => {
  // This process spins for the window: its own threads and the machine show it.
  let spinning = true
  const spin = async () => {
    while (spinning) {
      const until = Date.now() + 5
      while (Date.now() < until);
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  const spun = spin()
  const w = await sampleWindow(process.pid, 0, 300, () => true)
  spinning = false
  await spun
  t.truthy(w)
  t.true(w!.seconds >= 0.29, `${w!.seconds} s`)
  t.is(w!.machine.cpus, (await import('node:os')).cpus().length)
  t.true(w!.machine.runNs > 0, 'the machine was busy')
  t.true(w!.server!.after.cpuNs.mainThread - w!.server!.before.cpuNs.mainThread >= 100e6, 'and this main thread ran')
  t.is(await sampleWindow(undefined, 0, 10, () => false), undefined)
})

test('a window counts fio with its job processes', async (t) => {
  // A stand-in for fio: a shell whose child (a "job") spins.
  const fio = spawn('bash', ['-c', 'yes > /dev/null & wait'], { stdio: 'ignore' })
  let tree: number[] = []
  t.teardown(() => {
    for (const pid of tree.reverse()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }
  })
  await once(fio, 'spawn')
  for (let i = 0; i < 100 && tree.length < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    tree = await processTree(fio.pid!)
  }
  t.is(tree.length, 2, 'the shell and its job')
  t.is(tree[0], fio.pid!)
  const w = await sampleWindow(undefined, 0, 300, () => true, () => fio.pid!)
  t.truthy(w?.fio)
  t.true(w!.fio!.after.cpuNs - w!.fio!.before.cpuNs >= 50e6, `fio's job ran ${(w!.fio!.after.cpuNs - w!.fio!.before.cpuNs) / 1e6} ms`)
  t.true(w!.fio!.after.runs >= w!.fio!.before.runs)
  t.is((await sampleWindow(undefined, 0, 10, () => true))?.fio, undefined, 'no fio, no figure')
  t.deepEqual(await processesSched([]), { cpuNs: 0, waitNs: 0, runs: 0 })
})

test('a window of a case becomes figures per request', (t) => {
  const zero = { queueThreads: 0, mainThread: 0, otherThreads: 0 }
  const window = {
    seconds: 2,
    // Half of 2 CPUs for 2 s.
    machine: { runNs: 2e9, cpus: 2 },
    interrupts: { rescheduling: 10_000, functionCall: 2_000, tlbShootdowns: 0 },
    server: {
      before: { cpuNs: zero, waitNs: zero, runs: zero },
      after: {
        cpuNs: { queueThreads: 200e6, mainThread: 100e6, otherThreads: 0 },
        waitNs: { queueThreads: 20e6, mainThread: 0, otherThreads: 0 },
        runs: { queueThreads: 2000, mainThread: 1000, otherThreads: 0 },
      },
    },
  }
  // 10k IOPS over 2 s: 20k requests; half of 2 CPUs for 2 s is 2 s of CPU.
  const a = accountingOf(window, 10_000)!
  t.is(a.machineCpuNs, 100_000)
  t.is(a.machineBusy, 0.5)
  t.deepEqual(a.interrupts, { rescheduling: 0.5, functionCall: 0.1, tlbShootdowns: 0 })
  t.deepEqual(a.serverCpuNs, { queueThreads: 10_000, mainThread: 5_000, otherThreads: 0 })
  t.deepEqual(a.serverWaitNs, { queueThreads: 1_000, mainThread: 0, otherThreads: 0 })
  t.deepEqual(a.serverRuns, { queueThreads: 0.1, mainThread: 0.05, otherThreads: 0 })
  t.is(a.fio, undefined, 'no fio counted, no fio figure')
  const withFio = { ...window, fio: { before: { cpuNs: 1e9, waitNs: 0, runs: 100 }, after: { cpuNs: 1.4e9, waitNs: 2e6, runs: 20_100 } } }
  t.deepEqual(accountingOf(withFio, 10_000)!.fio, { cpuNs: 20_000, waitNs: 100, runs: 1 })
  t.is(accountingOf({ ...window, server: undefined }, 10_000)!.serverCpuNs, null, 'an in-kernel target has no server')
  t.is(accountingOf(window, 0), null, 'no request, no figure')
})

test('a missed goal says where the time goes per request, from the round its verdict comes from', (t) => {
  const accounted = (r: BenchResult, serverUs: number, machineUs: number): BenchResult => ({
    ...r,
    accounting: {
      windowSeconds: 2,
      machineBusy: 0.97,
      machineCpuNs: machineUs * 1000,
      interrupts: { rescheduling: 1.5, functionCall: 0.25, tlbShootdowns: 0 },
      serverCpuNs: { queueThreads: serverUs * 500, mainThread: serverUs * 500, otherThreads: 0 },
      serverWaitNs: { queueThreads: 3000, mainThread: 4000, otherThreads: 0 },
      serverRuns: { queueThreads: 0.1, mainThread: 0.12, otherThreads: 0 },
    },
  })
  const withFio = (r: BenchResult): BenchResult => ({ ...r, accounting: { ...r.accounting!, fio: { cpuNs: 70_000, waitNs: 5000, runs: 0.25 } } })
  const rounds: BenchRun = {
    ...run,
    goalRounds: [
      [accounted(result('NullBackend q2', '4k randread QD128', 50_000), 60, 200), accounted(result('Rust null q2', '4k randread QD128', 100_000), 20, 100)],
      [
        withFio(accounted({ ...result('NullBackend workers q2', '4k randread QD128', 70_000), requestsPerNotification: 41 }, 40, 150)),
        accounted(result('Rust null q2', '4k randread QD128', 100_000), 20, 100),
      ],
    ],
  }
  const g = goals(rounds)[1]
  t.deepEqual(g.rounds, [0.9, 0.5, 0.7])
  t.false(g.met)
  t.is(g.sides!.round, 2, 'the round whose ratio is the median')
  t.is(g.sides!.best.target, 'NullBackend workers q2', 'and its best mode')
  t.notRegex(toMarkdown(run), /Where the time goes/, 'a run without accounting has nothing to say')
  const forReadme = toMarkdown(rounds, 'runs/x.svg', 'runs/x.md')
  t.regex(forReadme, /\*\*Where the time goes per request, for each missed goal:\*\* in \[the run's record\]\(runs\/x\.md\)\./, "the README's copy points to the record")
  t.notRegex(forReadme, /\| per request \|/, "and leaves the tables to it")
  const section = toMarkdown(rounds).split('**Where the time goes')[1] ?? ''
  t.regex(section, /\*NullBackend \(best of main thread and workers\) vs the Rust null handler, 4k randread QD128, 2 queues: at least 85%\* \(goal round 2\)/)
  t.regex(section, /\| per request \| NullBackend workers q2 \| Rust null q2 \|/)
  t.regex(section, /\| IOPS \| 70\.0k \| 100\.0k \|/)
  t.regex(section, /\| IOPS with every CPU busy at this CPU per request .* \| 72\.2k \| 103\.1k \|/)
  t.regex(section, /\| busy CPU of the whole guest per request, µs \(share of its CPUs busy\) \| 150 \(97%\) \| 100 \(97%\) \|/)
  t.regex(section, /\| of it the server, µs: queue threads \/ main thread \/ other threads \| 20\.0 \/ 20\.0 \/ 0\.0 \| 10\.0 \/ 10\.0 \/ 0\.0 \|/)
  t.regex(section, /\| of it everything else .* \| 110 \| 80\.0 \|/)
  t.regex(section, /\| of that, fio's threads, µs \(times scheduled in per request\) \| 70\.0 \(0\.25\) \| – \|/)
  t.regex(section, /\| of that, the rest: the kernel outside both .* \| 40\.0 \| – \|/)
  const noFio = { ...rounds, goalRounds: rounds.goalRounds!.map((pair) => pair.map((r) => ({ ...r, accounting: { ...r.accounting!, fio: undefined } }))) }
  t.notRegex(toMarkdown(noFio), /of that, fio|the rest: the kernel/, 'without fio counted (records before 2026-12-05), no fio rows')
  t.regex(section, /\| times the server's threads were scheduled in, per request \| 0\.10 \/ 0\.12 \/ 0\.00 \|/)
  t.regex(section, /\| time they waited for a CPU, µs per request \| 3\.0 \/ 4\.0 \/ 0\.0 \|/)
  t.regex(section, /\| requests per notification of the JS handlers \| 41\.0 \| – \|/)
  t.regex(section, /\| interrupts between the guest's CPUs per request: rescheduling \/ function call \/ TLB shootdown \| 1\.50 \/ 0\.25 \/ 0\.00 \|/)
  t.notRegex(section, /XTS|MemoryBackend \(2 queues\)/, 'goals met, or without accounting, have no table')
})

test('the SVG chart is well-formed and has a bar per target and depth', (t) => {
  const svg = toSvg(run)
  t.true(svg.startsWith('<svg') && svg.trim().endsWith('</svg>'))
  t.is((svg.match(/<rect class="bar"/g) ?? []).length, run.targets.length * 3, 'QD1, QD32 and QD128 bars for each target')
  t.regex(svg, /NBD \(nbdkit memory\)/)
})

test('the README section between the markers is replaced, and only that', (t) => {
  const readme = 'intro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\noutro\n'
  t.is(updateReadme(readme, 'new\n'), 'intro\n<!-- bench:begin -->\nnew\n<!-- bench:end -->\noutro\n')
  t.is(updateReadme('no markers', 'new'), 'no markers')
})

test('UBLK_BENCH_GOAL_ROUNDS: a count from 0 to 20, anything else is refused', (t) => {
  t.is(goalRounds(undefined), 2)
  t.is(goalRounds(''), 2)
  t.is(goalRounds('0'), 0)
  t.is(goalRounds('3'), 3)
  for (const bad of ['two', '1.5', '-1', '21', 'NaN']) {
    t.throws(() => goalRounds(bad), { message: new RegExp(`UBLK_BENCH_GOAL_ROUNDS .* got '${bad}'`) })
  }
})

test('UBLK_BENCH_ONLY: names the targets to run and refuses unknown ones', (t) => {
  const names = TARGETS.map((x) => x.name)
  t.is(onlyTargets(undefined, names), undefined)
  t.deepEqual(onlyTargets(` ${names[0]} , ${names[1]}`, names), [names[0], names[1]])
  const err = t.throws(() => onlyTargets(`${names[0]},nul_blk`, names))
  t.regex(err.message, /unknown targets: 'nul_blk'; the targets are .*'null_blk'/)
})
