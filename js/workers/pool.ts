// The main thread's side of worker mode: one worker thread per queue, each
// running `entry.ts`. Workers are started (and their module loaded) before
// the device is added, so a module that fails to load leaves no device
// behind. A worker that dies while the device lives is replaced: the addon
// fails what it held with EIO, and the requests that arrive meanwhile wait
// for its successor.
import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import type { NativeDevice } from '../../index.js'
import { UblkError } from '../errors'
import type { RequestContext } from '../handler'
import { moduleUrl } from '../modules'
import type { WorkerOptions } from '../options'
import { C, newCounters } from '../stats'
import { serializeError, type FromWorker, type QueueWorkerData, type SerializedError, type ToWorker } from './messages'

/**
 * The compiled entry, dist/workers/entry.js: beside this file, or built from
 * js/ when this file runs from source (under tsx, as the tests do).
 */
const ENTRY = __filename.endsWith('.ts') ? join(__dirname, '..', '..', 'dist', 'workers', 'entry.js') : join(__dirname, 'entry.js')
/** Restart delays after a worker dies, growing while replacements keep failing. */
const RESTART_DELAY_MS = [0, 100, 500, 2000, 5000]

export interface PoolEvents {
  requestError(err: Error, ctx: RequestContext): void
  workerError(err: Error, queue: number): void
  rejected(count: number): void
}

/** Rebuilds an error a worker sent: a `UblkError` when its code is an errno name. */
export function reviveError(e: SerializedError): Error {
  let err: Error
  try {
    err = e.code ? new UblkError(e.code, e.message) : new Error(e.message)
  } catch {
    err = Object.assign(new Error(e.message), { code: e.code })
  }
  err.name = e.name
  if (e.stack) err.stack = e.stack
  return err
}

class QueueWorker {
  worker: Worker | undefined
  failures = 0

  constructor(readonly data: QueueWorkerData) {}
}

export class WorkerPool {
  readonly counters: Float64Array[]
  private readonly workers: QueueWorker[]
  private closing = false
  private events: PoolEvents | undefined

  constructor(
    private readonly nativeDevice: NativeDevice,
    options: WorkerOptions,
    geometry: { queues: number; size: number; requestTimeout: number },
  ) {
    this.counters = Array.from({ length: geometry.queues }, () => newCounters(true))
    const module = moduleUrl(options.module)
    this.workers = this.counters.map(
      (counters, queue) =>
        new QueueWorker({
          token: nativeDevice.token!,
          queue,
          queues: geometry.queues,
          size: geometry.size,
          module,
          data: options.data,
          requestTimeout: geometry.requestTimeout,
          pin: options.pin ?? true,
          counters,
        }),
    )
  }

  /** Starts every worker; resolves once each has loaded its handler and attached. */
  async start(): Promise<void> {
    const started = this.workers.map((w) => this.spawn(w))
    const results = await Promise.allSettled(started)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await this.stop()
      throw failed.reason
    }
  }

  /** From now on, worker events go to `events` (the device). */
  listen(events: PoolEvents): void {
    this.events = events
  }

  /** Spawns `w`'s worker and resolves when it is ready, rejects if it dies first. */
  private spawn(w: QueueWorker): Promise<void> {
    const worker = new Worker(ENTRY, { workerData: w.data, name: `ublk queue ${w.data.queue}` })
    w.worker = worker
    return new Promise((resolve, reject) => {
      let ready = false
      let lastError: Error | undefined
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          ready = true
          w.failures = 0
          resolve()
        } else if (m.type === 'requestError') this.events?.requestError(reviveError(m.error), m.ctx)
        else if (m.type === 'rejected') this.events?.rejected(m.count)
      })
      // What a worker throws crosses as a clone that is no native Error: rebuild it.
      worker.on('error', (err: unknown) => (lastError = reviveError(serializeError(err))))
      worker.on('exit', (code) => {
        if (w.worker === worker) w.worker = undefined
        const why =
          lastError ?? new Error(`the worker serving queue ${w.data.queue} exited with code ${code}${ready ? '' : ' before it was ready'}`)
        if (!ready) return reject(why)
        if (this.closing) return
        this.lost(w, why)
      })
    })
  }

  /** A worker died while serving: fail what it held, report, replace it. */
  private lost(w: QueueWorker, why: Error): void {
    const queue = w.data.queue
    this.nativeDevice.detachQueue(queue)
    w.data.counters[C.inFlight] = 0
    this.events?.workerError(why, queue)
    const delay = RESTART_DELAY_MS[Math.min(w.failures, RESTART_DELAY_MS.length - 1)]
    w.failures++
    setTimeout(() => {
      if (this.closing) return
      this.spawn(w).catch((err: Error) => {
        if (!this.closing) this.lost(w, err)
      })
    }, delay)
  }

  /** Tells every worker to let go of its queue and waits for them to end. */
  async stop(): Promise<void> {
    this.closing = true
    await Promise.all(
      this.workers.map(async (w) => {
        const worker = w.worker
        if (!worker) return
        const exited = new Promise((resolve) => worker.once('exit', resolve))
        worker.postMessage({ type: 'close' } satisfies ToWorker)
        const timer = setTimeout(() => void worker.terminate(), 2000)
        await exited
        clearTimeout(timer)
      }),
    )
  }
}
