// The goals `npm run bench` is held to, said once: the report evaluates them
// and the run repeats what they compare (the goal rounds, bench/run.ts).
//
// A goal that compares two targets is decided on the ratio within each
// round, both sides measured minutes apart in the same boot, and its verdict
// is the median of those ratios: one round under emulation moves by more
// than the margins the goals are set at.
import type { BenchResult, BenchRun } from './types'

/** A ratio of two figures of one fio case, each round on its own. */
export interface RatioGoal {
  text: string
  case: string
  /** The numerator: the best of these targets in the round (highest IOPS, lowest latency). */
  best: string[]
  /** The denominator. */
  against: string
  metric: 'iops' | 'p50us'
  /** The ratio must be at least this (IOPS) or at most this (latency). */
  bound: number
  show: 'percent' | 'times'
  /** Measured in the main pass only (the S3 target needs its Ceph cluster). */
  once?: boolean
}

/** A figure of the whole run, measured once. */
interface RunGoal {
  text: string
  value(run: BenchRun): number | undefined
  atLeast: number
  show: 'percent' | 'times'
}

export type GoalSpec = RatioGoal | RunGoal

const isRatio = (g: GoalSpec): g is RatioGoal => 'case' in g
const queues = (q: string) => (q === 'q1' ? '1 queue' : '2 queues')

export const GOALS: GoalSpec[] = [
  ...['q1', 'q2'].map(
    (q): RatioGoal => ({
      text: `NullBackend (best of main thread and workers) vs the Rust null handler, 4k randread QD128, ${queues(q)}: at least 85%`,
      case: '4k randread QD128',
      best: [`NullBackend ${q}`, `NullBackend workers ${q}`],
      against: `Rust null ${q}`,
      metric: 'iops',
      bound: 0.85,
      show: 'percent',
    }),
  ),
  {
    text: 'QD1 4k randread p50 latency, NullBackend (best mode) vs the Rust null handler (1 queue): at most 2x',
    case: '4k randread QD1',
    best: ['NullBackend q1', 'NullBackend workers q1'],
    against: 'Rust null q1',
    metric: 'p50us',
    bound: 2,
    show: 'times',
  },
  ...['4k randread QD32', '4k randread QD128', '4k randwrite QD32'].map(
    (c): RatioGoal => ({
      text: `CPU-bound handler (AES-XTS over RAM, 2 queues), workers vs the main thread, ${c}: at least 1.6x`,
      case: c,
      best: ['XTS workers q2'],
      against: 'XTS main q2',
      metric: 'iops',
      bound: 1.6,
      show: 'times',
    }),
  ),
  ...['4k randread QD32', '4k randwrite QD32'].map(
    (c): RatioGoal => ({
      text: `MemoryBackend (2 queues) vs nbdkit memory over NBD (2 connections), ${c}: at least 1.5x`,
      case: c,
      best: ['MemoryBackend q2'],
      against: 'NBD (nbdkit memory)',
      metric: 'iops',
      bound: 1.5,
      show: 'times',
    }),
  ),
  {
    text: 'S3Backend sequential 128k write until flushed vs the raw PUT rate of the same store and client: at least 70%',
    value: (run) => (run.s3 ? run.s3.sequentialWriteMiBs / run.s3.putMiBs : undefined),
    atLeast: 0.7,
    show: 'percent',
  },
  {
    text: 'S3Backend (2 queues, warm cache) vs MemoryBackend (2 queues), 4k randread QD32: at least 70%',
    case: '4k randread QD32',
    best: ['S3Backend q2'],
    against: 'MemoryBackend q2',
    metric: 'iops',
    bound: 0.7,
    show: 'percent',
    once: true,
  },
]

/** What the goal rounds measure again: per target, the cases its goals compare. */
export function roundCases(goals: GoalSpec[] = GOALS): Map<string, string[]> {
  const byTarget = new Map<string, string[]>()
  for (const g of goals) {
    if (!isRatio(g) || g.once) continue
    for (const target of [...g.best, g.against]) {
      const cases = byTarget.get(target) ?? []
      if (!cases.includes(g.case)) cases.push(g.case)
      byTarget.set(target, cases)
    }
  }
  return byTarget
}

export interface Goal {
  text: string
  /** The verdict's figure: the median over rounds (with each round's, when there were several). */
  value: string
  met: boolean | undefined
  /** The ratio in each round that measured both sides. */
  rounds: number[]
  /** A ratio goal's sides in the round whose ratio is the verdict's (or nearest it): where to look for why. */
  sides?: GoalSides
}

/** The two sides of a ratio goal in one round: `round` 0 is the main pass, n the n-th goal round. */
export interface GoalSides {
  round: number
  best: BenchResult
  against: BenchResult
}

/** One goal's sides in one round's results, and their ratio; undefined if a side is missing. */
function ratioIn(g: RatioGoal, results: BenchResult[]): { ratio: number; best: BenchResult; against: BenchResult } | undefined {
  const result = (target: string) => results.find((r) => r.target === target && r.case === g.case && r[g.metric] > 0)
  const candidates = g.best.map(result).filter((r): r is BenchResult => r !== undefined)
  const against = result(g.against)
  if (!candidates.length || !against) return undefined
  const better = (a: BenchResult, b: BenchResult) => (g.metric === 'iops' ? a.iops >= b.iops : a.p50us <= b.p50us)
  const best = candidates.reduce((a, b) => (better(a, b) ? a : b))
  return { ratio: best[g.metric] / against[g.metric], best, against }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** The goals evaluated on a run: each ratio per round, the verdict on their median. */
export function goals(run: BenchRun): Goal[] {
  const rounds = [run.results, ...(run.goalRounds ?? [])]
  return GOALS.map((g) => {
    const measured = isRatio(g) ? rounds.map((results, round) => ({ round, ...ratioIn(g, results) })).filter((x) => x.ratio !== undefined) : []
    const samples = isRatio(g) ? measured.map((x) => x.ratio!) : [g.value(run)].filter((x): x is number => x !== undefined)
    const fmt = (r: number) => (g.show === 'percent' ? `${(r * 100).toFixed(0)}%` : `${r.toFixed(2)}x`)
    if (!samples.length) return { text: g.text, value: 'not measured', met: undefined, rounds: [] }
    const m = median(samples)
    const met = isRatio(g) ? (g.metric === 'iops' ? m >= g.bound : m <= g.bound) : m >= g.atLeast
    const value = samples.length > 1 ? `${fmt(m)} (median of ${samples.length} rounds: ${samples.map(fmt).join(', ')})` : fmt(m)
    const nearest = measured.reduce<(typeof measured)[number] | undefined>((a, b) => (a && Math.abs(a.ratio! - m) <= Math.abs(b.ratio! - m) ? a : b), undefined)
    const sides = isRatio(g) && nearest ? { round: nearest.round, best: nearest.best!, against: nearest.against! } : undefined
    return { text: g.text, value, met, rounds: samples, ...(sides && { sides }) }
  })
}
