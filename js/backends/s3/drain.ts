// How fast the store takes dirty objects: objects stored (PUT or DELETE) per
// second while at least one write-back runs, as a moving average over windows
// of about a second. The cache holds dirty data to what drains within its
// flush budget at this rate, so a FLUSH ends in bounded time.

export class DrainRate {
  /** Bytes per second, the estimate now. */
  bytesPerSecond: number
  private running = 0
  private busySince = 0
  private busyMs = 0
  private bytes = 0

  /** Starts from `initial` bytes per second until measured. */
  constructor(initial: number) {
    this.bytesPerSecond = initial
  }

  /** A write-back starts. */
  begin(): void {
    if (this.running++ === 0) this.busySince = performance.now()
  }

  /** A write-back ended, having drained `bytes` (0 when it failed). */
  end(bytes: number): void {
    const now = performance.now()
    this.bytes += bytes
    if (--this.running === 0) {
      this.busyMs += now - this.busySince
      this.busySince = now
    }
    const busy = this.busyMs + (this.running > 0 ? now - this.busySince : 0)
    if (busy < 1000) return
    const measured = this.bytes / (busy / 1000)
    this.bytesPerSecond = this.bytesPerSecond / 2 + measured / 2
    this.bytes = 0
    this.busyMs = 0
    this.busySince = now
  }
}
