// The benchmark's environment knobs, parsed once and rejected with a clear
// error when malformed (a typo must not silently run a different benchmark).

/** UBLK_BENCH_GOAL_ROUNDS: goal rounds after the main pass (default 2; 0: none). */
export function goalRounds(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 2
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 20) {
    throw new Error(`UBLK_BENCH_GOAL_ROUNDS must be an integer from 0 to 20, got '${value}'`)
  }
  return n
}

/** UBLK_BENCH_ONLY="name,name": just those targets; undefined when unset. */
export function onlyTargets(value: string | undefined, known: readonly string[]): string[] | undefined {
  if (value === undefined || value.trim() === '') return undefined
  const names = value.split(',').map((n) => n.trim())
  const unknown = names.filter((n) => !known.includes(n))
  if (unknown.length > 0) {
    throw new Error(
      `UBLK_BENCH_ONLY names unknown targets: ${unknown.map((n) => `'${n}'`).join(', ')}; ` +
        `the targets are ${known.map((n) => `'${n}'`).join(', ')}`,
    )
  }
  return names
}
