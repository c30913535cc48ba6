// What a queue's worker thread and the main thread say to each other (never
// on the IO path: requests and completions go through the addon).
import type { RequestContext } from '../handler'

/** What the main thread gives each worker (`workerData`). */
export interface QueueWorkerData {
  /** The device's token for `attachQueue`. */
  token: number
  queue: number
  queues: number
  size: number
  module: string
  data: unknown
  requestTimeout: number
  /** Whether the worker pins its thread to its queue thread's CPU (`WorkerOptions.pin`). */
  pin: boolean
  /** The queue's counters, shared with the main thread (see stats.ts). */
  counters: Float64Array
}

/** An error as it crosses threads (structured clone drops `code`). */
export interface SerializedError {
  name: string
  message: string
  stack?: string
  code?: string
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'requestError'; error: SerializedError; ctx: RequestContext }
  | { type: 'rejected'; count: number }

export type ToWorker = { type: 'close' }

/** An error's essentials, also for error-like clones from another realm. */
export function serializeError(err: unknown): SerializedError {
  if (typeof err === 'object' && err !== null && typeof (err as Error).message === 'string') {
    const e = err as Error & { code?: unknown }
    const name = typeof e.name === 'string' ? e.name : 'Error'
    return { name, message: e.message, stack: typeof e.stack === 'string' ? e.stack : undefined, ...(typeof e.code === 'string' && { code: e.code }) }
  }
  return { name: 'Error', message: String(err) }
}
