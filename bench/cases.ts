// The fio cases of `npm run bench`. QD is the total queue depth: from QD 32
// on, fio runs 2 jobs (one per guest CPU, so both hardware queues of a
// 2-queue device see IO) of QD/2 each.

export interface FioCase {
  name: string
  rw: 'randread' | 'randwrite' | 'randrw' | 'read' | 'write'
  bs: string
  qd: number
  /** Percentage of reads for randrw. */
  readPercent?: number
}

const random: FioCase[] = []
for (const rw of ['randread', 'randwrite', 'randrw'] as const) {
  for (const qd of [1, 32, 128]) {
    const label = rw === 'randrw' ? 'randrw 70/30' : rw
    random.push({ name: `4k ${label} QD${qd}`, rw, bs: '4k', qd, ...(rw === 'randrw' && { readPercent: 70 }) })
  }
}

export const CASES: FioCase[] = [
  ...random,
  { name: '128k read QD32', rw: 'read', bs: '128k', qd: 32 },
  { name: '128k write QD32', rw: 'write', bs: '128k', qd: 32 },
]

/** `--quick`: the cases the goals are stated on. */
export const QUICK_CASES: FioCase[] = CASES.filter((c) =>
  ['4k randread QD1', '4k randread QD32', '4k randwrite QD32', '4k randread QD128'].includes(c.name),
)

/** fio jobs and per-job depth for a total queue depth. */
export function jobsFor(qd: number): { numjobs: number; iodepth: number } {
  return qd >= 32 ? { numjobs: 2, iodepth: qd / 2 } : { numjobs: 1, iodepth: qd }
}
