// Where the time goes per request, for each goal a run missed: the two
// sides of the goal in the round its verdict comes from, side by side, from
// the steady-state window of each case (bench/sched.ts). This is what the
// benchmark issue asks of a missed goal, said by every run itself.
import type { Goal } from './goals'
import { totalOf } from './sched'
import type { BenchResult, ByThread } from './types'

const us = (ns: number) => {
  const v = ns / 1000
  return v >= 100 ? v.toFixed(0) : v.toFixed(1)
}
const fmtIops = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0))
const count = (n: number) => (n >= 10 ? n.toFixed(0) : n.toFixed(2))
const byThread = (s: ByThread | null | undefined, f: (n: number) => string) =>
  s ? `${f(s.queueThreads)} / ${f(s.mainThread)} / ${f(s.otherThreads)}` : 'kernel'

/** One row of a goal's table: a label and its cell for a side, and when it is shown (default: always). */
type Row = [string, (r: BenchResult) => string, ((r: BenchResult) => boolean)?]

/** What fio's threads took of a side, if its run counted them. */
const fioOf = (r: BenchResult) => r.accounting?.fio
const counted = (r: BenchResult) => fioOf(r) !== undefined
const serverNs = (r: BenchResult) => (r.accounting?.serverCpuNs ? totalOf(r.accounting.serverCpuNs) : 0)

const ROWS: Row[] = [
  ['IOPS', (r) => fmtIops(r.iops)],
  ['completion latency p50, µs', (r) => r.p50us.toFixed(0)],
  ['busy CPU of the whole guest per request, µs (share of its CPUs busy)', (r) => (r.accounting ? `${us(r.accounting.machineCpuNs)} (${(r.accounting.machineBusy * 100).toFixed(0)}%)` : '–')],
  ['of it the server, µs: queue threads / main thread / other threads', (r) => byThread(r.accounting?.serverCpuNs, us)],
  [
    'of it everything else (fio, and the kernel outside the server\'s threads), µs',
    (r) => (r.accounting ? us(Math.max(0, r.accounting.machineCpuNs - serverNs(r))) : '–'),
  ],
  ['of that, fio\'s threads, µs (times scheduled in per request)', (r) => (fioOf(r) ? `${us(fioOf(r)!.cpuNs)} (${count(fioOf(r)!.runs)})` : '–'), counted],
  [
    'of that, the rest: the kernel outside both (interrupts, softirqs, kernel threads), µs',
    (r) => (r.accounting && fioOf(r) ? us(Math.max(0, r.accounting.machineCpuNs - serverNs(r) - fioOf(r)!.cpuNs)) : '–'),
    counted,
  ],
  [
    'IOPS with every CPU busy at this CPU per request (IOPS ÷ busy share: what more parallelism could reach here)',
    (r) => (r.accounting && r.accounting.machineBusy > 0 ? fmtIops(r.iops / r.accounting.machineBusy) : '–'),
  ],
  ['times the server\'s threads were scheduled in, per request', (r) => byThread(r.accounting?.serverRuns, count)],
  ['time they waited for a CPU, µs per request', (r) => byThread(r.accounting?.serverWaitNs, us)],
  [
    'interrupts between the guest\'s CPUs per request: rescheduling / function call / TLB shootdown',
    (r) => {
      const i = r.accounting?.interrupts
      return i ? `${count(i.rescheduling)} / ${count(i.functionCall)} / ${count(i.tlbShootdowns)}` : '–'
    },
  ],
  ['requests per notification of the JS handlers', (r) => (typeof r.requestsPerNotification === 'number' ? r.requestsPerNotification.toFixed(1) : '–')],
]

/** The round a figure comes from, in words. */
const roundName = (round: number) => (round === 0 ? 'the main pass' : `goal round ${round}`)

/**
 * The section (after a blank line) for the missed goals of a run whose cases
 * recorded their accounting; none otherwise. With `recordLink` (the README's
 * copy of a run) only a line that points to the run's own record, where the
 * tables are.
 */
export function accountingLines(evaluated: Goal[], recordLink?: string): string[] {
  const missed = evaluated.filter((g) => g.met === false && g.sides && (g.sides.best.accounting || g.sides.against.accounting))
  if (!missed.length) return []
  if (recordLink) {
    return ['', `**Where the time goes per request, for each missed goal:** in [the run's record](${recordLink}).`]
  }
  const lines = [
    '',
    '**Where the time goes per request, for each missed goal** (its two sides in the round its verdict comes from; ' +
      'a window of each case\'s steady state, ramp and start-up left out, divided by the requests fio completed in it; ' +
      'the server\'s threads from the scheduler\'s `schedstat`, the whole guest from `/proc/schedstat` and `/proc/interrupts`)',
  ]
  for (const g of missed) {
    const { round, best, against } = g.sides!
    lines.push(
      '',
      `*${g.text}* (${roundName(round)})`,
      '',
      `| per request | ${best.target} | ${against.target} |`,
      '|---|---:|---:|',
      ...ROWS.filter(([, , shown]) => !shown || shown(best) || shown(against)).map(([label, cell]) => `| ${label} | ${cell(best)} | ${cell(against)} |`),
    )
  }
  return lines
}
