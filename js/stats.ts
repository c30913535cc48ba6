/** Counters of one hardware queue since the device started. */
export interface QueueStats {
  queue: number
  reads: number
  writes: number
  flushes: number
  discards: number
  writeZeroes: number
  /** Requests with an op the package does not serve (they fail with EOPNOTSUPP). */
  other: number
  bytesRead: number
  bytesWritten: number
  /** Requests completed with an error (timeouts included). */
  errors: number
  /** Requests failed with ETIMEDOUT because the handler did not settle within `requestTimeout`. */
  timedOut: number
  /** Requests handed to the handler and not completed yet. */
  inFlight: number
  /**
   * Times the queue thread woke this queue's handlers to read its request
   * ring; requests per notification is how much arrives per wake-up.
   */
  notifications: number
  /**
   * Completions the addon refused to pass to the kernel: out-of-range tags,
   * repeats, or completions of a request that was already answered.
   */
  rejectedCompletions: number
}

export function emptyStats(queue: number): QueueStats {
  return {
    queue,
    reads: 0,
    writes: 0,
    flushes: 0,
    discards: 0,
    writeZeroes: 0,
    other: 0,
    bytesRead: 0,
    bytesWritten: 0,
    errors: 0,
    timedOut: 0,
    inFlight: 0,
    notifications: 0,
    rejectedCompletions: 0,
  }
}

/** The counters a dispatcher keeps, in the order of its `Float64Array`. */
export const COUNTER_FIELDS = [
  'reads',
  'writes',
  'flushes',
  'discards',
  'writeZeroes',
  'other',
  'bytesRead',
  'bytesWritten',
  'errors',
  'timedOut',
  'inFlight',
  'notifications',
] as const satisfies ReadonlyArray<keyof QueueStats>

export type CounterField = (typeof COUNTER_FIELDS)[number]

/** The counters of requests by op: each request counts in exactly one. */
export const OP_COUNTERS = ['reads', 'writes', 'flushes', 'discards', 'writeZeroes', 'other'] as const satisfies ReadonlyArray<CounterField>

/** Requests the handlers were given, of every op. */
export function requestsOf(s: QueueStats): number {
  return OP_COUNTERS.reduce((sum, f) => sum + s[f], 0)
}

/** Each counter's index in a counters array. */
export const C = Object.fromEntries(COUNTER_FIELDS.map((f, i) => [f, i])) as Record<CounterField, number>

/**
 * A queue's counters: local memory, or a SharedArrayBuffer when a worker
 * thread serves the queue and the main thread reads them (one writer; an
 * aligned 8-byte store is never seen torn on the platforms we build for).
 */
export function newCounters(shared = false): Float64Array {
  const bytes = COUNTER_FIELDS.length * Float64Array.BYTES_PER_ELEMENT
  return new Float64Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes))
}

/** A snapshot of `counters` as `QueueStats`. */
export function statsFrom(queue: number, counters: Float64Array, rejectedCompletions = 0): QueueStats {
  const s = emptyStats(queue)
  for (const f of COUNTER_FIELDS) s[f] = counters[C[f]]
  s.rejectedCompletions = rejectedCompletions
  return s
}
