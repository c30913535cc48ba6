// Turns a benchmark run's JSON into a Markdown table and an SVG chart, and
// states the goals of the benchmark issue (bench/goals.ts) against the figures.
//   node --import tsx bench/report.ts bench/results/<run>.json
import { readFileSync, writeFileSync } from 'node:fs'
import { FLOOR, inWorker, SYNC_NULL } from './dispatch-names'
import { accountingLines } from './accounting'
import { goals } from './goals'
import type { BenchResult, BenchRun } from './types'

const fmtIops = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0))
const fmtUs = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))

function lookup(run: BenchRun): (target: string, c: string) => BenchResult | undefined {
  const byKey = new Map(run.results.map((r) => [`${r.target}\u0000${r.case}`, r]))
  return (target, c) => byKey.get(`${target}\u0000${c}`)
}

function casesOf(run: BenchRun): string[] {
  return [...new Set(run.results.map((r) => r.case))]
}

function table(run: BenchRun, cell: (r: BenchResult) => string): string[] {
  const get = lookup(run)
  const targets = run.targets.map((t) => t.name)
  const lines = [`| case | ${targets.join(' | ')} |`, `|---|${targets.map(() => '---:').join('|')}|`]
  for (const c of casesOf(run)) {
    lines.push(`| ${c} | ${targets.map((t) => (get(t, c) ? cell(get(t, c)!) : '–')).join(' | ')} |`)
  }
  return lines
}

/** The server CPU per request split by thread, when the run recorded it. */
function splitLines(run: BenchRun): string[] {
  if (!run.results.some((r) => r.cpuSplitNsPerRequest)) return []
  const us = (ns: number) => fmtUs(ns / 1000)
  return [
    '**The same, by thread, µs: queue threads / main thread / other threads** (workers, V8 and libuv helpers; live threads only)',
    '',
    ...table(run, (r) => {
      const s = r.cpuSplitNsPerRequest
      if (r.cpuNsPerRequest === null) return 'kernel'
      return s ? `${us(s.queueThreads)} / ${us(s.mainThread)} / ${us(s.otherThreads)}` : '–'
    }),
    '',
  ]
}

/** How many requests each notification of the JS handlers brought, when the run recorded it. */
function notificationLines(run: BenchRun): string[] {
  if (!run.results.some((r) => r.requestsPerNotification !== undefined)) return []
  return [
    '**Requests per notification** (JS targets: how much each wake-up of the thread serving a queue brought; `dev.stats()`, ramp included)',
    '',
    ...table(run, (r) => (typeof r.requestsPerNotification === 'number' ? r.requestsPerNotification.toFixed(1) : '–')),
    '',
  ]
}

/** What the JS hop costs without a kernel in this boot, against the two-Rust-thread floor. */
function hopLines(run: BenchRun): string[] {
  const d = run.dispatch
  if (!d) return []
  const fig = (handler: string, batch: number) => d.find((f) => f.handler === handler && f.batch === batch)?.nsPerRequest
  const us = (ns?: number) => (ns === undefined ? 'n/a' : `${fmtUs(ns / 1000)} µs`)
  const nsr = (ns?: number) => (ns === undefined ? 'n/a' : `${ns.toFixed(0)} ns`)
  const floor1 = fig(FLOOR, 1)
  const lines = [
    '**The JS hop in this boot** (`bench:dispatch`: synthetic requests, no kernel; the floor is the same round trip between two Rust threads, an eventfd wake each way): ' +
      `round trip at batch 1: floor ${us(floor1)}, NullBackend ${us(fig(SYNC_NULL, 1))} on the main thread, ${us(fig(inWorker(SYNC_NULL), 1))} in a worker; ` +
      `per request at batch 128: floor ${nsr(fig(FLOOR, 128))}, NullBackend ${nsr(fig(SYNC_NULL, 128))} on the main thread, ${nsr(fig(inWorker(SYNC_NULL), 128))} in a worker.`,
  ]
  const q = run.results.some((r) => r.target === 'Rust null q1' && r.case === '4k randread QD1') ? 'q1' : 'q2'
  const rustP50 = run.results.find((r) => r.target === `Rust null ${q}` && r.case === '4k randread QD1')?.p50us
  if (floor1 !== undefined && rustP50) {
    const bound = rustP50 + floor1 / 1000
    lines.push(
      '',
      `A server that wakes a second thread for each request, and is woken back, pays at least that floor on top of the Rust null handler's QD1 p50 (${fmtUs(rustP50)} µs): ` +
        `${fmtUs(bound)} µs, ${(bound / rustP50).toFixed(2)}x, before any JavaScript runs.`,
    )
  }
  return [...lines, '']
}

/** The S3 store's raw rates beside the backend's sustained sequential write. */
function s3Lines(run: BenchRun): string[] {
  const s = run.s3
  if (!s) return []
  const mib = (n: number) => `${n.toFixed(1)} MiB/s`
  return [
    '**S3 store** (the in-guest Ceph cluster; ' +
      `${s.objectSize >> 20} MiB objects, ${s.concurrency} requests at a time, through the backend's own client code): ` +
      `raw PUT ${mib(s.putMiBs)}, raw GET ${mib(s.getMiBs)}; ` +
      `S3Backend sequential 128k write QD32 of ${s.sequentialWriteBytes >> 20} MiB to a new image with a ${s.sequentialCacheBytes >> 20} MiB cache, counted until fsync returned: ${mib(s.sequentialWriteMiBs)}.`,
    '',
  ]
}

export function conditions(run: BenchRun): string {
  const where = run.guest
    ? `a QEMU guest under software emulation (TCG), ${run.machine.cpus} vCPUs, ${run.machine.memoryGiB} GiB, on ${run.machine.host}`
    : `${run.machine.host}, ${run.machine.memoryGiB} GiB`
  return (
    `Kernel ${run.kernel}, ${where}; ${run.fio}, Node ${run.node}. ` +
    `io_uring, direct I/O, ${run.sizeBytes >> 20} MiB devices, ${run.runtimeSeconds} s per case after ${run.rampSeconds} s of ramp; ` +
    'QD is the total depth (2 fio jobs of QD/2 from QD32 on). Data-keeping targets were filled first. ' +
    (run.results.some((r) => r.fioCpu !== undefined) ? "A single fio job runs on a CPU none of the server's queue threads may use. " : '') +
    (run.guest ? 'Under emulation the absolute figures mean little: compare the ratios between targets.' : '')
  )
}

/**
 * The run as Markdown. `chartFile`: the chart's path to link; `recordLink`:
 * for a copy elsewhere (the README), the path of the run's own `.md`, which
 * then stands in for the per-goal accounting tables.
 */
export function toMarkdown(run: BenchRun, chartFile?: string, recordLink?: string): string {
  const evaluated = goals(run)
  const lines = [
    `### ${run.mode === 'quick' ? 'Quick run' : 'Full run'}, ${run.date.slice(0, 10)}`,
    '',
    conditions(run),
    '',
    '**IOPS**',
    '',
    ...table(run, (r) => fmtIops(r.iops)),
    '',
    '**Completion latency p50 / p99, µs** (reads for randrw)',
    '',
    ...table(run, (r) => `${fmtUs(r.p50us)} / ${fmtUs(r.p99us)}`),
    '',
    '**Server CPU time per request, µs** (userspace servers only: the scheduler run time of their threads, ramp included)',
    '',
    ...table(run, (r) => (r.cpuNsPerRequest === null ? 'kernel' : fmtUs(r.cpuNsPerRequest / 1000))),
    '',
    ...splitLines(run),
    ...notificationLines(run),
    ...hopLines(run),
    ...s3Lines(run),
    '**Goals**' +
      (run.goalRounds?.length
        ? ` (each compared pair measured again in ${run.goalRounds.length} more round${run.goalRounds.length > 1 ? 's' : ''} of the same boot, in alternating order; the verdict is the median ratio)`
        : ''),
    '',
    ...evaluated.map((g) => `- ${g.met === undefined ? '–' : g.met ? 'met' : '**missed**'}: ${g.text}: ${g.value}`),
    ...accountingLines(evaluated, recordLink),
  ]
  const notes = run.targets.filter((t) => t.notes).map((t) => `${t.name}: ${t.notes}`)
  if (notes.length) lines.push('', `Notes: ${notes.join('; ')}.`)
  if (run.errors.length) lines.push('', 'Failed:', ...run.errors.map((e) => `- ${e.target}${e.case ? ` · ${e.case}` : ''}: ${e.message}`))
  if (chartFile) lines.push('', `![4k randread IOPS by target and queue depth](${chartFile})`)
  return `${lines.join('\n')}\n`
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** Horizontal grouped bars: 4k randread IOPS per target, one bar per queue depth. */
export function toSvg(run: BenchRun): string {
  const get = lookup(run)
  const depths = [1, 32, 128].filter((qd) => run.results.some((r) => r.case === `4k randread QD${qd}`))
  const colors = ['#9ecae1', '#4292c6', '#08519c']
  const targets = run.targets.map((t) => t.name)
  const max = Math.max(1, ...run.results.filter((r) => r.case.startsWith('4k randread')).map((r) => r.iops))
  const left = 170
  const width = 760
  const barH = 12
  const groupH = depths.length * (barH + 2) + 12
  const top = 44
  const height = top + targets.length * groupH + 24
  const plot = width - left - 80
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="13" font-weight="bold">4k randread IOPS by target and queue depth (${escapeXml(run.kernel)}${run.guest ? ', emulated guest: compare ratios' : ''})</text>`,
  ]
  depths.forEach((qd, i) => {
    parts.push(`<rect x="${left + i * 80}" y="26" width="10" height="10" fill="${colors[i]}"/>`)
    parts.push(`<text x="${left + i * 80 + 14}" y="35">QD${qd}</text>`)
  })
  targets.forEach((t, ti) => {
    const y0 = top + ti * groupH
    parts.push(`<text x="${left - 8}" y="${y0 + (depths.length * (barH + 2)) / 2 + 4}" text-anchor="end">${escapeXml(t)}</text>`)
    depths.forEach((qd, i) => {
      const r = get(t, `4k randread QD${qd}`)
      const y = y0 + i * (barH + 2)
      const w = r ? Math.max(1, (r.iops / max) * plot) : 0
      parts.push(`<rect class="bar" x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colors[i]}"/>`)
      parts.push(`<text x="${left + w + 4}" y="${y + barH - 2}">${r ? fmtIops(r.iops) : 'n/a'}</text>`)
    })
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

/** Writes <run>.md and <run>.svg next to the run's JSON; returns the Markdown. */
export function render(jsonPath: string): string {
  const run = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchRun
  const base = jsonPath.replace(/\.json$/, '')
  const svgName = `${base.split('/').pop()}.svg`
  writeFileSync(`${base}.svg`, toSvg(run))
  const md = toMarkdown(run, svgName)
  writeFileSync(`${base}.md`, md)
  return md
}

/** The README's copy of a rendered run; `runPath` is its JSON's path relative to the README. */
export function readmeSection(jsonPath: string, runPath: string): string {
  const run = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchRun
  const base = runPath.replace(/\.json$/, '')
  return toMarkdown(run, `${base}.svg`, `${base}.md`)
}

if (require.main === module) {
  const file = process.argv[2]
  if (!file) {
    console.error('usage: bench/report.ts bench/results/<run>.json')
    process.exit(2)
  }
  process.stdout.write(render(file))
}
