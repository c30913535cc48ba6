// The dispatch microbenchmark: no kernel needed. A synthetic request source
// in the addon (SyntheticQueue) pushes 4 KiB READs through exactly the
// production path: the request ring and a notification through the
// threadsafe function, the QueueDispatcher and its handler, and the
// completion ring back (with the eventfd when the source sleeps). Reports
// requests/s and ns per request for each batch size.
//
//   npm run bench:dispatch [-- --requests=N] [--json]
import { join } from 'node:path'
import { constants as perf, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import native from '../js/native'
import { QueueDispatcher } from '../js/dispatcher'
import { NullBackend } from '../js/backends/null'
import type { Handler } from '../js/handler'
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

/** Runs `requests` READs in batches of `batch` through a fresh dispatcher. */
export async function measureDispatch(handler: Handler, batch: number, requests: number): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  const dispatcher = new QueueDispatcher(queue, 0, handler, { onRequestError: () => {}, requestTimeout: 0 })
  const onRequests = () => dispatcher.onNotify()
  const gcs = countMinorGcs()
  const outcome = await queue.run(onRequests, batch, requests)
  const minorGcs = gcs.stop()
  if (outcome.error) throw new Error(`synthetic run failed: ${outcome.error.code}: ${outcome.error.message}`)
  const seconds = outcome.elapsedNs / 1e9
  return {
    batch,
    requests: outcome.requests,
    requestsPerSecond: outcome.requests / seconds,
    nsPerRequest: outcome.elapsedNs / outcome.requests,
    minorGcsPer100k: (minorGcs * 100_000) / outcome.requests,
    notifications: dispatcher.stats.notifications,
  }
}

/**
 * Like `measureDispatch`, in worker mode: the handler runs on a worker
 * thread attached to the queue through the addon's router, as a device's
 * queue worker does. (Minor collections are the worker's, not counted here.)
 */
export async function measureDispatchInWorker(handler: string, batch: number, requests: number): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  const token = queue.shareWithWorkers()
  const worker = new Worker(join(__dirname, 'dispatch-worker.js'), { workerData: { token, handler } })
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve())
      worker.once('error', reject)
    })
    await queue.runRouted(batch, Math.min(requests, 2000)) // warm-up (JIT)
    const outcome = await queue.runRouted(batch, requests)
    if (outcome.error) throw new Error(`synthetic run failed: ${outcome.error.code}: ${outcome.error.message}`)
    return {
      batch,
      requests: outcome.requests,
      requestsPerSecond: outcome.requests / (outcome.elapsedNs / 1e9),
      nsPerRequest: outcome.elapsedNs / outcome.requests,
    }
  } finally {
    worker.postMessage('close')
    await worker.terminate()
  }
}

/** The same round trip with a Rust thread as the handler: the floor. */
export async function measureFloor(batch: number, requests: number): Promise<Omit<DispatchFigure, 'handler'>> {
  const queue = new native.SyntheticQueue(Math.max(batch, 128), 4096)
  const outcome = await queue.runFloor(batch, requests)
  if (outcome.error) throw new Error(`synthetic floor run failed: ${outcome.error.code}: ${outcome.error.message}`)
  return { batch, requests: outcome.requests, requestsPerSecond: outcome.requests / (outcome.elapsedNs / 1e9), nsPerRequest: outcome.elapsedNs / outcome.requests }
}

export async function runDispatchBenchmark(requests: number, log: (line: string) => void = () => {}): Promise<DispatchFigure[]> {
  const figures: DispatchFigure[] = []
  const line = (f: DispatchFigure, floor?: DispatchFigure) =>
    `${f.handler.padEnd(32)} batch ${String(f.batch).padStart(3)}: ${Math.round(f.requestsPerSecond).toLocaleString('en-US').padStart(10)} req/s  ${f.nsPerRequest.toFixed(0).padStart(6)} ns/req` +
    (floor ? `  ${(f.nsPerRequest / floor.nsPerRequest).toFixed(1).padStart(5)}x the floor` : '') +
    (f.minorGcsPer100k !== undefined ? `  ${f.minorGcsPer100k.toFixed(1).padStart(5)} minor GCs/100k req` : '')
  const floors = new Map<number, DispatchFigure>()
  for (const batch of BATCH_SIZES) {
    await measureFloor(batch, Math.min(requests, 2000))
    const f = { handler: FLOOR, ...(await measureFloor(batch, requests)) }
    floors.set(batch, f)
    figures.push(f)
    log(line(f))
  }
  for (const [name, make] of Object.entries(HANDLERS)) {
    for (const batch of BATCH_SIZES) {
      await measureDispatch(make(), batch, Math.min(requests, 2000)) // warm-up (JIT)
      const f = { handler: name, ...(await measureDispatch(make(), batch, requests)) }
      figures.push(f)
      log(line(f, floors.get(batch)))
    }
  }
  for (const name of Object.keys(HANDLERS)) {
    for (const batch of BATCH_SIZES) {
      const f = { handler: inWorker(name), ...(await measureDispatchInWorker(name, batch, requests)) }
      figures.push(f)
      log(line(f, floors.get(batch)))
    }
  }
  return figures
}

if (require.main === module) {
  const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const requests = Number(arg('requests') ?? 200_000)
  const json = process.argv.includes('--json')
  runDispatchBenchmark(requests, json ? undefined : console.log).then(
    (figures) => {
      if (json) console.log(JSON.stringify(figures, null, 2))
    },
    (err) => {
      console.error(err)
      process.exit(1)
    },
  )
}
