import { EventEmitter } from 'node:events'
import native from './native'
import type { NativeDevice, NativeDeviceInfo, OutcomeError } from '../index.js'
import { QueueDispatcher } from './dispatcher'
import { fromNative, UblkError } from './errors'
import type { RequestContext } from './handler'
import { KEPT_BY_THE_KERNEL, resolveCloseOptions, resolveOptions, type CloseOptions, type DeviceOptions, type RecoverOptions, type ResolvedOptions } from './options'
import { trackForSignals, untrackForSignals } from './signals'
import { emptyStats, statsFrom, type QueueStats } from './stats'
import { WorkerPool } from './workers/pool'

/**
 * What the kernel reports about a live device (id, queues, queueDepth,
 * maxIoBufBytes, flags, ublksrvPid, state), where the IO buffers live
 * (`buffers`: "external", or "js" on runtimes that refuse external
 * ArrayBuffers), plus the geometry it was created with.
 */
export interface DeviceInfo extends NativeDeviceInfo {
  size: number
  logicalBlockSize: number
  physicalBlockSize: number
  readOnly: boolean
}

/** Devices not yet gone, for the process-exit hook. */
const live = new Set<Device>()
let exitHookInstalled = false

// On process exit (process.exit(), an uncaught exception, the loop running
// dry) JavaScript can serve no more IO: abandon each device's queues and
// delete it synchronously, so no device outlives its process.
function onExit(): void {
  for (const device of live) device[closeOnExit]()
}

const closeOnExit = Symbol('closeOnExit')
/** @internal Reaches the addon's handle (tests of the native boundary). */
export const nativeHandle = Symbol('nativeHandle')

function toError(error: OutcomeError): UblkError {
  try {
    return new UblkError(error.code, error.message)
  } catch {
    return new UblkError('EIO', error.message)
  }
}

/** Who serves a device's queues: dispatchers on this thread, or worker threads. */
interface Servers {
  /** A queue's counters (without the addon's rejected completions). */
  statsOf(queue: number): QueueStats
  /** The device is gone: stop timers, let workers end. */
  stop(): Promise<void>
  /** Process exit: nothing more will run. */
  stopNow(): void
}

/**
 * A live ublk block device, `/dev/ublkb<id>`. Close it with `close()` or
 * `await using`. Emits `'close'` once it is gone, and `'requestError'`
 * `(err, ctx)` when a handler fails a request with something other than a
 * `UblkError` (the request fails with EIO) or does not settle in time, and,
 * in worker mode, `'workerError'` `(err, queue)` when a queue's worker dies
 * (what it held fails with EIO; a new worker takes over the queue).
 */
/**
 * How `detach()` left the device: `'quiesced'` (QUIESCE_DEV, Linux 6.16+: a
 * successor may recover it now) or `'at-exit'` (older kernels: this process
 * stopped serving, and the kernel hands the device over once it exits, as at
 * a server death under the device's recovery mode).
 */
export type Handoff = 'quiesced' | 'at-exit'

export class Device extends EventEmitter implements AsyncDisposable {
  readonly id: number
  readonly path: string
  private current: Readonly<DeviceInfo>
  private closing: Promise<void> | undefined
  /** A `close({ ifUnused: true })` still asking whether the device is in use. */
  private stoppingIfUnused: Promise<void> | undefined
  private detaching: Promise<Handoff> | undefined
  private resizing: Promise<void> = Promise.resolve()
  private gone = false
  /**
   * Keeps the event loop alive while the device is open. JS handlers need no
   * help (the addon's threadsafe function is ref'd), but `rustNullHandler`
   * devices have nothing else in the loop.
   */
  private keepAlive: NodeJS.Timeout | undefined

  /** @internal */
  constructor(
    private readonly nativeDevice: NativeDevice,
    private readonly servers: Servers,
    info: DeviceInfo,
    private readonly handleSignals: boolean,
    servedInRust = false,
  ) {
    super()
    this.id = info.id
    this.path = `/dev/ublkb${info.id}`
    this.current = Object.freeze(info)
    if (handleSignals) trackForSignals(this)
    if (servedInRust) this.keepAlive = setInterval(() => {}, 1 << 30)
    live.add(this)
    if (!exitHookInstalled) {
      exitHookInstalled = true
      process.on('exit', onExit)
    }
  }

  /** @internal Synchronous teardown at process exit. */
  [closeOnExit](): void {
    if (this.gone) return
    this.gone = true
    this.servers.stopNow()
    live.delete(this)
    // A device being detached is its successor's, whatever this exit cuts short.
    if (!this.detaching) this.nativeDevice.closeSync()
  }

  /**
   * Per-queue counters: requests by op, bytes, errors, timeouts, requests in
   * flight, and completions the addon refused to pass to the kernel.
   */
  stats(): QueueStats[] {
    const out: QueueStats[] = []
    for (let q = 0; q < this.info.queues; q++) {
      const s = this.servers.statsOf(q)
      s.rejectedCompletions = this.nativeDevice.rejectedCompletions(q)
      out.push(s)
    }
    return out
  }

  /** @internal The addon's handle, for tests of the native boundary. */
  get [nativeHandle](): NativeDevice {
    return this.nativeDevice
  }

  /** What the kernel reported at start, with the size as `resize()` left it. */
  get info(): Readonly<DeviceInfo> {
    return this.current
  }

  /** True once `close()` or `detach()` was called. */
  get closed(): boolean {
    return this.closing !== undefined
  }

  /** The device left this process: detached, or stopped and deleted. */
  private settle(): void {
    this.gone = true
    live.delete(this)
    if (this.handleSignals) untrackForSignals(this)
    clearInterval(this.keepAlive)
  }

  /**
   * Changes the device's capacity while it serves (UPDATE_SIZE, Linux
   * 6.16+): `bytes` must be a positive whole number of logical blocks. The
   * handler must serve the new range. Rejects with a `UblkError` (code
   * EOPNOTSUPP, naming the kernel that has it) on older kernels.
   */
  resize(bytes: number): Promise<void> {
    const block = this.current.logicalBlockSize
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % block !== 0) {
      const why = `It must be a positive multiple of the logical block size (${block}). Received ${String(bytes)}`
      return Promise.reject(Object.assign(new RangeError(`The value of "bytes" is out of range. ${why}`), { code: 'ERR_OUT_OF_RANGE' }))
    }
    if (this.closing) return Promise.reject(new UblkError('ENODEV', `cannot resize ${this.path}: it was closed or detached`))
    // One at a time, so that `info.size` ends as the last resize left it.
    const next = this.resizing.then(async () => {
      const outcome = await native.resizeDevice(this.id, bytes)
      if (outcome.error) throw toError(outcome.error)
      this.current = Object.freeze({ ...this.current, size: bytes })
    })
    this.resizing = next.catch(() => {})
    return next
  }

  /**
   * Leaves the device to a successor (`recoverDevice`) instead of deleting
   * it: a planned hand-off, for a device created with `recovery`. With
   * QUIESCE_DEV (Linux 6.16+) the kernel holds new IO, this process lets go
   * and resolves `'quiesced'`; requests the handler still held are re-issued
   * to the successor ('reissue') or fail ('fail-inflight'). On older kernels
   * the queues stop handing out requests, the handler finishes those it holds,
   * and it resolves `'at-exit'`: the kernel takes the device over when this
   * process exits. Either way exit, SIGINT and SIGTERM no longer delete it.
   */
  detach(): Promise<Handoff> {
    if (this.detaching) return this.detaching
    if (this.current.recovery === 'off') {
      return Promise.reject(
        new UblkError('EINVAL', `cannot detach ${this.path}: it was created without recovery, so nothing could take it over (the \`recovery\` option)`),
      )
    }
    if (this.closing) return Promise.reject(new UblkError('ENODEV', `cannot detach ${this.path}: it is being closed`))
    this.detaching = this.nativeDevice.detach().then(async (outcome) => {
      this.settle()
      await this.servers.stop()
      this.emit('close')
      if (outcome.error) throw toError(outcome.error)
      return (outcome.handoff ?? 'at-exit') as Handoff
    })
    this.closing = this.detaching.then(() => {})
    return this.detaching
  }

  /**
   * Stops the device (requests in flight are still served; results of
   * handlers that settle later are ignored), then deletes it. Idempotent:
   * once it is closing, every call returns the same promise.
   *
   * With `{ ifUnused: true }` it stops only if nothing holds the block
   * device open, and otherwise rejects with a `UblkError` EBUSY that names
   * what holds it while the device keeps serving (see `CloseOptions`).
   */
  close(options?: CloseOptions): Promise<void> {
    let ifUnused: boolean
    try {
      ifUnused = resolveCloseOptions(options).ifUnused
    } catch (err) {
      return Promise.reject(err)
    }
    if (ifUnused && !this.closing) {
      this.stoppingIfUnused ??= native
        .stopDeviceIfUnused(this.id)
        .then((outcome) => {
          if (outcome.error) throw toError(outcome.error)
          return this.close()
        })
        .finally(() => (this.stoppingIfUnused = undefined))
      return this.stoppingIfUnused
    }
    this.closing ??= this.nativeDevice.close().then(async (outcome) => {
      this.settle()
      await this.servers.stop()
      this.emit('close')
      if (outcome.error) throw toError(outcome.error)
    })
    return this.closing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}


let warnedJsBuffers = false

function warnJsBuffersOnce(): void {
  if (warnedJsBuffers) return
  warnedJsBuffers = true
  process.emitWarning(
    'this runtime refuses external ArrayBuffers; ublk hands the kernel ArrayBuffers allocated by JavaScript instead (still zero-copy)',
    { code: 'UBLK_JS_BUFFERS' },
  )
}

/**
 * Creates a ublk device served by `options.handler` and resolves once it is
 * live. Invalid options reject with a TypeError/RangeError naming the option
 * before anything reaches the kernel; kernel and setup errors reject with a
 * `UblkError` that says which command failed and what to check.
 */
export async function createDevice(options: DeviceOptions): Promise<Device> {
  return openDevice(resolveOptions(options))
}

/**
 * Re-attaches to device `id`, which was created with `recovery` and whose
 * server died (or left it), and serves it with `options.handler` (or
 * `workers`): its size, queues, depth, block sizes and recovery mode are the
 * ones the kernel kept. IO that waited meanwhile is served from then on.
 * Rejects with a `UblkError` when there is no such device (ENODEV), when a
 * live process serves it (EBUSY), or when it was created without recovery
 * (EINVAL); a failed recovery leaves the device waiting for the next one.
 */
export async function recoverDevice(id: number, options: RecoverOptions): Promise<Device> {
  if (!Number.isInteger(id) || id < 0) {
    throw Object.assign(new RangeError(`The value of "id" is out of range. It must be a device id (an integer >= 0). Received ${String(id)}`), {
      code: 'ERR_OUT_OF_RANGE',
    })
  }
  if (typeof options !== 'object' || options === null) return openDevice(resolveOptions(options))
  for (const name of KEPT_BY_THE_KERNEL) {
    if ((options as Record<string, unknown>)[name] !== undefined) {
      throw Object.assign(new TypeError(`The "options.${name}" property must be undefined: recoverDevice takes it from the device`), {
        code: 'ERR_INVALID_ARG_TYPE',
      })
    }
  }
  let kept: ReturnType<typeof native.describeDevice>
  try {
    kept = native.describeDevice(id)
  } catch (err) {
    const e = fromNative(err)
    if (e instanceof UblkError && e.code === 'ENODEV') throw new UblkError('ENODEV', `cannot recover ublk device ${id}: no such device`)
    throw e
  }
  if (kept.size === 0) throw new UblkError('EINVAL', `cannot recover ublk device ${id}: it was never started`)
  const resolved = resolveOptions({
    ...options,
    id,
    size: kept.size,
    logicalBlockSize: kept.logicalBlockSize,
    physicalBlockSize: kept.physicalBlockSize,
    queues: kept.queues,
    queueDepth: kept.queueDepth,
    maxIoSize: kept.maxIoSize,
    readOnly: kept.readOnly,
    rotational: kept.rotational,
    discard: kept.discard,
    writeCache: kept.writeCache,
    fua: kept.fua,
    recovery: kept.recovery === 'off' ? false : kept.recovery,
  })
  return openDevice({ ...resolved, native: { ...resolved.native, recover: true } })
}

async function openDevice(resolved: ResolvedOptions): Promise<Device> {
  const nativeDevice: NativeDevice = new native.NativeDevice(resolved.native)
  let device: Device | undefined
  const onRequestError = (err: unknown, ctx: RequestContext) => {
    if (device && device.listenerCount('requestError') > 0) device.emit('requestError', err, ctx)
  }
  const onRejected = (count: number) =>
    process.emitWarning(`ublk: the addon refused ${count} completion(s) of this process's handlers (see dev.stats())`, {
      code: 'UBLK_REJECTED_COMPLETION',
    })

  let servers: Servers
  let onRequests: ((queue: number) => void) | undefined
  let pool: WorkerPool | undefined
  if (resolved.workers) {
    pool = new WorkerPool(nativeDevice, resolved.workers, {
      queues: resolved.native.queues,
      size: resolved.native.size,
      requestTimeout: resolved.requestTimeout,
    })
    // Every worker has loaded its module and attached before the kernel
    // sees a device: a module that fails rejects with nothing left behind.
    await pool.start()
    const p = pool
    pool.listen({
      requestError: onRequestError,
      rejected: onRejected,
      workerError: (err, queue) => device?.emit('workerError', err, queue),
    })
    servers = {
      statsOf: (q) => (p.counters[q] ? statsFrom(q, p.counters[q]) : emptyStats(q)),
      stop: () => p.stop(),
      stopNow: () => {},
    }
  } else {
    const dispatchers = new Map<number, QueueDispatcher>()
    const handler = resolved.handler
    const dispatcherOptions = { onRequestError, requestTimeout: resolved.requestTimeout, onRejected }
    if (handler) {
      onRequests = (queue: number) => {
        let d = dispatchers.get(queue)
        if (!d) {
          try {
            d = new QueueDispatcher(nativeDevice, queue, handler, dispatcherOptions)
          } catch (err) {
            // Only a broken ring hand-off gets here: nothing can answer the
            // queue's requests (the teardown fails them). Loud, never fatal.
            process.emitWarning(`ublk: cannot serve queue ${queue}: ${String(err)}`)
            return
          }
          dispatchers.set(queue, d)
        }
        d.onNotify()
      }
    }
    const disposeAll = () => {
      for (const d of dispatchers.values()) d.dispose()
    }
    servers = {
      statsOf: (q) => dispatchers.get(q)?.stats ?? emptyStats(q),
      stop: async () => disposeAll(),
      stopNow: disposeAll,
    }
  }

  let outcome: Awaited<ReturnType<NativeDevice['start']>>
  try {
    outcome = await nativeDevice.start(onRequests)
  } catch (err) {
    await pool?.stop()
    throw fromNative(err)
  }
  if (outcome.error || !outcome.value) {
    await pool?.stop()
    throw toError(outcome.error ?? { code: 'EIO', message: 'the device did not start' })
  }
  const info: NativeDeviceInfo = outcome.value
  if (info.buffers === 'js' && resolved.native.buffers === undefined) warnJsBuffersOnce()
  device = new Device(
    nativeDevice,
    servers,
    {
      ...info,
      size: resolved.native.size,
      logicalBlockSize: resolved.native.logicalBlockSize,
      physicalBlockSize: resolved.native.physicalBlockSize,
      readOnly: resolved.native.readOnly,
    },
    resolved.handleSignals,
    resolved.native.rustNullHandler,
  )
  return device
}
