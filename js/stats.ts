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
    rejectedCompletions: 0,
  }
}
