// The dispatch microbenchmark: no kernel needed. A synthetic request source
// in the addon (SyntheticQueue) pushes 4 KiB READs through exactly the
// production path: the request ring and a notification through the
// threadsafe function, the QueueDispatcher and its handler, and the
// completion ring back (with the eventfd when the source sleeps). Reports
// requests/s and ns per request for each batch size.
//
//   npm run bench:dispatch [-- --chunk=N] [--warmup-ms=MS] [--measure-ms=MS] [--json]
import { join } from 'node:path'
import { constants as perf, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import native from '../js/native'
import { QueueDispatcher } from '../js/dispatcher'
import { NullBackend } from '../js/backends/null'
import type { Handler } from '../js/handler'
import type { SyntheticOutcome } from '../index.js'
import { ASYNC_NULL, FLOOR, inWorker, SYNC_NULL } from './dispatch-names'

export const BATCH_SIZES = [1, 8, 64, 128]

export interface DispatchFigure {
  handler: string
  batch: number
  requests: number
  requestsPerSecond: number
  nsPerRequest: number
  /** Young-generation collections per 100k requests: what the path allocates per request, counted. */
  minorGcsPer100k?: number
  /** Times the dispatcher was notified (main-thread runs only). */
  notifications?: number
}

/** Counts V8's minor (scavenge) collections from now until `stop()`. */
function countMinorGcs(): { stop(): number } {
  let count = 0
  const tally = (entries: PerformanceEntry[]) => {
    for (const e of entries) if ((e as { detail?: { kind?: number } }).detail?.kind === perf.NODE_PERFORMANCE_GC_MINOR) count++
  }
  const observer = new PerformanceObserver((list) => tally(list.getEntries()))
  observer.observe({ entryTypes: ['gc'] })
  return {
    stop() {
      tally(observer.takeRecords())
      observer.disconnect()
      return count
    },
  }
}

/** An async handler doing what NullBackend does: measures the promise hop. */
class AsyncNullBackend implements Handler {
  async read(buf: Buffer): Promise<void> {
    buf.fill(0)
  }
}

export const HANDLERS: Record<string, () => Handler> = {
  [SYNC_NULL]: () => new NullBackend(),
  [ASYNC_NULL]: () => new AsyncNullBackend(),
}

/**
 * How long each figure runs. A figure first runs for `warmupMs` on the same
 * queue and handler without counting (V8 tiers the dispatcher's code up by
 * how often it ran, which under emulation takes thousands of batches, and a
 * worker's isolate starts cold), then for `measureMs`, in runs of `chunk`
 * requests (at least one); it reports the measured runs only.
 */
export interface DispatchBudget {
  chunk: number
  warmupMs: number
  measureMs: number
}

/** `npm run bench:dispatch`'s default: seconds per figure on any machine. */
export const DEFAULT_BUDGET: DispatchBudget = { chunk: 20_000, warmupMs: 500, measureMs: 2000 }

/** One synthetic run of `requests` READs. */
type SyntheticRun = (requests: number) => Promise<SyntheticOutcome>

/** Repeats `run` in chunks until `ms` have passed (at least once); sums what the runs measured. */
async function repeatFor(ms: number, chunk: number, run: SyntheticRun): Promise<{ requests: number; elapsedNs: number }> {
  const sum = { requests: 0, elapsedNs: 0 }
  const end = performance.now() + ms
  do {
    const outcome = await run(chunk)
    if (outcome.error) throw new Error(`synthetic run failed: ${outcome.error.code}: ${outcome.error.message}`)
    sum.requests += outcome.requests
    sum.elapsedNs += outcome.elapsedNs
  } while (performance.now() < end)
  return sum
}

/** The budget's warm-up, then its measured runs, with `around` wrapped around the latter. */
async function warmThenMeasure<T>(budget: DispatchBudget, run: SyntheticRun, around: { start(): T } = { start: () => undefined as T }) {
  if (budget.warmupMs > 0) await repeatFor(budget.warmupMs, budget.chunk, run)
  const during = around.start()
  const measured = await repeatFor(budget.measureMs, budget.chunk, run)
  return { ...measured, during }
}

const rates = (batch: number, m: { requests: number; elapsedNs: number }) => ({
  batch,
  requests: m.requests,
  requestsPerSecond: m.requests / (m.elapsedNs / 1e9),
  nsPerRequest: m.elapsedNs / m.requests,
})

/** Runs READs in batches of `batch` through one dispatcher for `budget`. */
export async function measureDispatch(handler: Handler, batch: number, budget: DispatchBudget): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  const dispatcher = new QueueDispatcher(queue, 0, handler, { onRequestError: () => {}, requestTimeout: 0 })
  const onRequests = () => dispatcher.onNotify()
  try {
    const counting = { start: () => ({ gcs: countMinorGcs(), notified: dispatcher.stats.notifications }) }
    const m = await warmThenMeasure(budget, (n) => queue.run(onRequests, batch, n), counting)
    const minorGcs = m.during.gcs.stop()
    return {
      ...rates(batch, m),
      minorGcsPer100k: (minorGcs * 100_000) / m.requests,
      notifications: dispatcher.stats.notifications - m.during.notified,
    }
  } finally {
    dispatcher.dispose()
  }
}

/**
 * Like `measureDispatch`, in worker mode: the handler runs on a worker
 * thread attached to the queue through the addon's router, as a device's
 * queue worker does. (Minor collections are the worker's, not counted here.)
 */
export async function measureDispatchInWorker(handler: string, batch: number, budget: DispatchBudget): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  const token = queue.shareWithWorkers()
  const worker = new Worker(join(__dirname, 'dispatch-worker.js'), { workerData: { token, handler } })
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve())
      worker.once('error', reject)
    })
    return rates(batch, await warmThenMeasure(budget, (n) => queue.runRouted(batch, n)))
  } finally {
    worker.postMessage('close')
    await worker.terminate()
  }
}

/** The same round trip with a Rust thread as the handler: the floor. */
export async function measureFloor(batch: number, budget: DispatchBudget): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  return rates(batch, await warmThenMeasure(budget, (n) => queue.runFloor(batch, n)))
}

export async function runDispatchBenchmark(budget: DispatchBudget, log: (line: string) => void = () => {}): Promise<DispatchFigure[]> {
  const figures: DispatchFigure[] = []
  const line = (f: DispatchFigure, floor?: DispatchFigure) =>
    `${f.handler.padEnd(32)} batch ${String(f.batch).padStart(3)}: ${Math.round(f.requestsPerSecond).toLocaleString('en-US').padStart(10)} req/s  ${f.nsPerRequest.toFixed(0).padStart(6)} ns/req` +
    (floor ? `  ${(f.nsPerRequest / floor.nsPerRequest).toFixed(1).padStart(5)}x the floor` : '') +
    (f.minorGcsPer100k !== undefined ? `  ${f.minorGcsPer100k.toFixed(1).padStart(5)} minor GCs/100k req` : '')
  const floors = new Map<number, DispatchFigure>()
  for (const batch of BATCH_SIZES) {
    const f = { handler: FLOOR, ...(await measureFloor(batch, budget)) }
    floors.set(batch, f)
    figures.push(f)
    log(line(f))
  }
  for (const [name, make] of Object.entries(HANDLERS)) {
    for (const batch of BATCH_SIZES) {
      const f = { handler: name, ...(await measureDispatch(make(), batch, budget)) }
      figures.push(f)
      log(line(f, floors.get(batch)))
    }
  }
  for (const name of Object.keys(HANDLERS)) {
    for (const batch of BATCH_SIZES) {
      const f = { handler: inWorker(name), ...(await measureDispatchInWorker(name, batch, budget)) }
      figures.push(f)
      log(line(f, floors.get(batch)))
    }
  }
  return figures
}

if (require.main === module) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const budget: DispatchBudget = {
    chunk: Number(arg('chunk') ?? DEFAULT_BUDGET.chunk),
    warmupMs: Number(arg('warmup-ms') ?? DEFAULT_BUDGET.warmupMs),
    measureMs: Number(arg('measure-ms') ?? DEFAULT_BUDGET.measureMs),
  }
  const json = process.argv.includes('--json')
  runDispatchBenchmark(budget, json ? undefined : console.log).then(
    (figures) => {
      if (json) console.log(JSON.stringify(figures, null, 2))
    },
    (err) => {
      console.error(err)
      process.exit(1)
    },
  )
}
