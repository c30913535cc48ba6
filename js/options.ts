// Option validation: everything is checked here, before any kernel call, and
// each error names the option (`options.queueDepth`) like Node's validators.
// The device's geometry options are one schema (`DEVICE_SCHEMA`), their
// limits the addon's own constants; the native options are derived from it.
import type { NativeDeviceOptions } from '../index.js'
import type { Handler } from './handler'
import native from './native'

/** Options of `createDevice`. Sizes are in bytes. */
export interface DeviceOptions {
  /** Capacity in bytes: a positive multiple of `logicalBlockSize`. */
  size: number
  /** Serves the requests on the main thread. (Exclusive with `workers` and `rustNullHandler`.) */
  handler?: Handler
  /**
   * Serve each queue on its own worker thread instead: each worker imports
   * `module` (a path, `file:` URL or package name; TypeScript with tsx) whose
   * default export is a handler object, or a factory
   * `(data, { queue, queues, size })` returning one (or a promise of one).
   * `data` is copied to each worker (structured clone: a SharedArrayBuffer
   * in it is shared). The main thread is then not on the IO path.
   */
  workers?: WorkerOptions
  /** Logical block size: a power of two from 512 to 4096. Default 512. */
  logicalBlockSize?: number
  /** Physical block size: a power of two from `logicalBlockSize` to 65536. Default 4096. */
  physicalBlockSize?: number
  /** Hardware queues, one server thread each. Default 1. */
  queues?: number
  /** Requests in flight per queue, 1 to 4096. Default 128. */
  queueDepth?: number
  /** Largest request: a multiple of 4096 up to 32 MiB. Default 512 KiB. */
  maxIoSize?: number
  /** Writes fail in the kernel. Default false. */
  readOnly?: boolean
  /** Report a rotational disk. Default false. */
  rotational?: boolean
  /** Accept DISCARD and WRITE_ZEROES (served by `discard`/`writeZeroes`). Default: whether the handler has either. */
  discard?: boolean
  /** Report a volatile write cache, so FLUSH reaches the handler. Default: whether the handler has `flush`. */
  writeCache?: boolean
  /** Pass FUA on writes (needs `writeCache`). Default false. */
  fua?: boolean
  /** Device id (`/dev/ublkb<id>`); default: the kernel picks. */
  id?: number
  /**
   * Milliseconds a handler has to settle a request before it fails with
   * ETIMEDOUT (and a `'requestError'`); its late result is then ignored.
   * 0: no limit. Default 30000.
   */
  requestTimeout?: number
  /** Close the device on SIGINT/SIGTERM, then exit. Default true. */
  handleSignals?: boolean
  /**
   * Whether the device outlives a server that dies (kill -9, a crash), so
   * that another process can `recoverDevice(id, ...)` it (USER_RECOVERY):
   * `'reissue'`: IO the dead server had not completed is re-issued to the
   * next one, nothing fails. `'fail-inflight'`: that IO fails with EIO, IO
   * queued after the death waits for the next server. `'fail-io'` (Linux
   * 6.13+): every IO fails with EIO from the death until a server recovers
   * the device. Refused, with the kernel named, where the kernel lacks it.
   * Default false: the device dies with its server. `close()`,
   * signals and a normal exit still delete the device.
   */
  recovery?: Recovery
  /**
   * Diagnostic, for benchmarks: serve every request inside the addon's queue
   * threads as a null device (zeros on read, like `NullBackend`), never
   * calling JavaScript. Measures what the JS hop costs; give no `handler`.
   */
  rustNullHandler?: boolean
}

/** See `DeviceOptions.recovery`. */
/** The recovery modes, by the names the option, `ublk serve --recovery` and the addon use. */
export const RECOVERY_MODES = ['reissue', 'fail-inflight', 'fail-io'] as const
export type Recovery = false | (typeof RECOVERY_MODES)[number]

function validRecovery(value: unknown): Recovery {
  if (value === undefined || value === false) return false
  if (typeof value === 'string' && (RECOVERY_MODES as readonly string[]).includes(value)) return value as Recovery
  throw OptionError.type('recovery', `false or one of ${RECOVERY_MODES.map((m) => `'${m}'`).join(', ')}`, value)
}

/** See `DeviceOptions.workers`. */
export interface WorkerOptions {
  module: string | URL
  data?: unknown
  /**
   * Pin each worker thread to the CPU its queue's thread is pinned to (one
   * CPU per queue, as the C servers serve each queue on one thread); false
   * leaves the worker to the scheduler. Default true. Nothing is pinned
   * where the queue threads are not (`UBLK_QUEUE_AFFINITY=0`, or CPUs this
   * process may not use).
   */
  pin?: boolean
}

const OptionError = {
  type(name: string, expected: string, value: unknown): TypeError {
    const err = new TypeError(`The "options.${name}" property must be ${expected}. Received ${describe(value)}`)
    return Object.assign(err, { code: 'ERR_INVALID_ARG_TYPE' })
  },

  range(name: string, expected: string, value: unknown): RangeError {
    const err = new RangeError(`The value of "options.${name}" is out of range. It must be ${expected}. Received ${describe(value)}`)
    return Object.assign(err, { code: 'ERR_OUT_OF_RANGE' })
  },
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'function'
  if (typeof value === 'object') return value === null ? 'null' : 'an object'
  return `${typeof value} ${String(value)}`
}

/**
 * Where the IO buffers live, from the environment: `UBLK_BUFFERS=js` forces
 * the fallback for runtimes that refuse external ArrayBuffers (to test it),
 * `external` forbids the fallback; unset lets the addon decide.
 */
export function buffersFromEnv(env: NodeJS.ProcessEnv = process.env): 'external' | 'js' | undefined {
  const value = env.UBLK_BUFFERS
  if (value === undefined || value === '') return undefined
  if (value === 'js' || value === 'external') return value
  throw Object.assign(new RangeError(`UBLK_BUFFERS must be "js" or "external". Received ${JSON.stringify(value)}`), {
    code: 'ERR_OUT_OF_RANGE',
  })
}

function validHandler(handler: unknown): Handler {
  if (typeof handler !== 'object' || handler === null) throw OptionError.type('handler', 'an object', handler)
  const h = handler as Record<string, unknown>
  if (typeof h.read !== 'function') throw OptionError.type('handler.read', 'a function', h.read)
  for (const method of ['write', 'flush', 'discard', 'writeZeroes'] as const) {
    if (h[method] !== undefined && typeof h[method] !== 'function') {
      throw OptionError.type(`handler.${method}`, 'a function', h[method])
    }
  }
  return handler as Handler
}

function validWorkers(value: unknown): WorkerOptions {
  if (typeof value !== 'object' || value === null) throw OptionError.type('workers', 'an object', value)
  const w = value as Record<string, unknown>
  if (!(typeof w.module === 'string' && w.module !== '') && !(w.module instanceof URL)) {
    throw OptionError.type('workers.module', 'a non-empty string or a URL', w.module)
  }
  if (w.pin !== undefined && typeof w.pin !== 'boolean') throw OptionError.type('workers.pin', 'a boolean', w.pin)
  return { module: w.module, data: w.data, pin: w.pin ?? true }
}

/** What a schema entry's bounds and defaults may depend on. */
interface SchemaContext {
  /** The options resolved so far (entries are resolved in order). */
  resolved: Record<string, number | boolean>
  /** Whether the handler serves an op (always true for `rustNullHandler`). */
  hasOp(op: keyof Handler): boolean
}

type Dependent<T> = T | ((c: SchemaContext) => T)

interface IntegerSpec {
  kind: 'integer'
  min: Dependent<number>
  max: number
  default?: Dependent<number>
  /** The value must be a multiple of this (after min/max). */
  multipleOf?: Dependent<number>
  powerOfTwo?: boolean
}

interface BooleanSpec {
  kind: 'boolean'
  default: Dependent<boolean>
}

const MAX_SAFE_SIZE = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 4096)

/**
 * The device options that become `NativeDeviceOptions`, in the order they are
 * resolved (later bounds may depend on earlier values). Their documentation
 * is on `DeviceOptions`; the Rust side checks the same limits again.
 */
const DEVICE_SCHEMA = {
  logicalBlockSize: { kind: 'integer', min: 512, max: 4096, default: 512, powerOfTwo: true },
  physicalBlockSize: {
    kind: 'integer',
    min: (c) => c.resolved.logicalBlockSize as number,
    max: 65536,
    default: (c) => Math.max(4096, c.resolved.logicalBlockSize as number),
    powerOfTwo: true,
  },
  size: {
    kind: 'integer',
    min: (c) => c.resolved.logicalBlockSize as number,
    max: MAX_SAFE_SIZE,
    multipleOf: (c) => c.resolved.logicalBlockSize as number,
  },
  queues: { kind: 'integer', min: 1, max: native.MAX_QUEUES, default: 1 },
  queueDepth: { kind: 'integer', min: 1, max: native.UBLK_MAX_QUEUE_DEPTH, default: 128 },
  maxIoSize: { kind: 'integer', min: 4096, max: native.MAX_IO_BUF_BYTES, default: 512 << 10, multipleOf: 4096 },
  readOnly: { kind: 'boolean', default: false },
  rotational: { kind: 'boolean', default: false },
  discard: { kind: 'boolean', default: (c) => c.hasOp('discard') || c.hasOp('writeZeroes') },
  writeCache: { kind: 'boolean', default: (c) => c.hasOp('flush') },
  fua: { kind: 'boolean', default: false },
  id: { kind: 'integer', min: 0, max: 1 << 20, default: -1 },
} satisfies Record<string, IntegerSpec | BooleanSpec>

type SchemaKey = keyof typeof DEVICE_SCHEMA

function valueOf<T>(d: Dependent<T>, c: SchemaContext): T {
  return typeof d === 'function' ? (d as (c: SchemaContext) => T)(c) : d
}

function resolveEntry(name: string, spec: IntegerSpec | BooleanSpec, value: unknown, c: SchemaContext): number | boolean {
  if (spec.kind === 'boolean') {
    if (value === undefined) return valueOf(spec.default, c)
    if (typeof value !== 'boolean') throw OptionError.type(name, 'of type boolean', value)
    return value
  }
  if (value === undefined) {
    if (spec.default === undefined) throw OptionError.type(name, 'of type number', value)
    return valueOf(spec.default, c)
  }
  if (typeof value !== 'number') throw OptionError.type(name, 'of type number', value)
  const min = valueOf(spec.min, c)
  if (!Number.isInteger(value) || value < min || value > spec.max) {
    throw OptionError.range(name, `an integer >= ${min} and <= ${spec.max}`, value)
  }
  if (spec.powerOfTwo && (value & (value - 1)) !== 0) throw OptionError.range(name, `a power of two from ${min} to ${spec.max}`, value)
  const multiple = spec.multipleOf === undefined ? 1 : valueOf(spec.multipleOf, c)
  if (value % multiple !== 0) throw OptionError.range(name, `a multiple of ${multiple}`, value)
  return value
}

/** The validated options, with defaults filled in. */
export interface ResolvedOptions {
  native: NativeDeviceOptions & Required<Omit<NativeDeviceOptions, 'id' | 'buffers'>>
  /** Absent when `rustNullHandler` or `workers` serve the requests. */
  handler: Handler | undefined
  workers: WorkerOptions | undefined
  handleSignals: boolean
  /** Milliseconds; 0 means no limit. */
  requestTimeout: number
}

/** The largest `requestTimeout` a timer can serve (about 24.8 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

/** Options of `recoverDevice`: how to serve; the geometry is the device's own. */
export type RecoverOptions = Pick<DeviceOptions, 'handler' | 'workers' | 'rustNullHandler' | 'requestTimeout' | 'handleSignals'>

/** The options `recoverDevice` takes from the kernel, never from its caller. */
export const KEPT_BY_THE_KERNEL = [...Object.keys(DEVICE_SCHEMA), 'recovery'] as const

export function resolveOptions(options: unknown): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw Object.assign(new TypeError(`The "options" argument must be of type object. Received ${describe(options)}`), {
      code: 'ERR_INVALID_ARG_TYPE',
    })
  }
  const o = options as Record<string, unknown>
  const rustNullHandler = resolveEntry('rustNullHandler', { kind: 'boolean', default: false }, o.rustNullHandler, {} as SchemaContext)
  const workers = o.workers === undefined ? undefined : validWorkers(o.workers)
  if (rustNullHandler && o.handler !== undefined) {
    throw OptionError.type('handler', 'undefined when rustNullHandler is true', o.handler)
  }
  if (workers && o.handler !== undefined) throw OptionError.type('handler', 'undefined when workers is given', o.handler)
  if (workers && rustNullHandler) throw OptionError.type('workers', 'undefined when rustNullHandler is true', o.workers)
  const handler = rustNullHandler || workers ? undefined : validHandler(o.handler)
  const resolved: Record<string, number | boolean> = {}
  // A worker module's handler is not known here: assume it serves every op
  // (what it lacks fails with EOPNOTSUPP, as on the main thread).
  const c: SchemaContext = { resolved, hasOp: (op) => (rustNullHandler || workers ? true : handler?.[op] !== undefined) }
  for (const [name, spec] of Object.entries(DEVICE_SCHEMA) as Array<[SchemaKey, IntegerSpec | BooleanSpec]>) {
    resolved[name] = resolveEntry(name, spec, o[name], c)
  }
  if (resolved.fua && !resolved.writeCache) throw OptionError.range('fua', 'false when writeCache is false', resolved.fua)
  const handleSignals = resolveEntry('handleSignals', { kind: 'boolean', default: true }, o.handleSignals, c) as boolean
  const requestTimeout = resolveEntry('requestTimeout', { kind: 'integer', min: 0, max: MAX_TIMEOUT_MS, default: 30_000 }, o.requestTimeout, c) as number
  const recovery = validRecovery(o.recovery)
  const buffers = buffersFromEnv()
  return {
    native: {
      ...(resolved as { [K in SchemaKey]: (typeof DEVICE_SCHEMA)[K] extends BooleanSpec ? boolean : number }),
      ...(buffers && { buffers }),
      rustNullHandler: rustNullHandler as boolean,
      workers: workers !== undefined,
      recovery: recovery || 'off',
      recover: false,
    },
    handler,
    workers,
    handleSignals,
    requestTimeout,
  }
}

/** Options of `dev.close()`. */
export interface CloseOptions {
  /**
   * Stop only if nothing holds the block device open (not mounted, no open
   * fd): otherwise reject with EBUSY and keep serving. TRY_STOP_DEV on
   * Linux 7.0+ decides it in the kernel; older kernels are checked from
   * /proc and sysfs first, which cannot refuse an open that comes after.
   * Default false: stop whoever has it open.
   */
  ifUnused?: boolean
}

export function resolveCloseOptions(options: unknown): Required<CloseOptions> {
  if (options === undefined) return { ifUnused: false }
  if (typeof options !== 'object' || options === null) {
    throw Object.assign(new TypeError(`The "options" argument must be of type object. Received ${describe(options)}`), {
      code: 'ERR_INVALID_ARG_TYPE',
    })
  }
  const { ifUnused } = options as Record<string, unknown>
  return { ifUnused: resolveEntry('ifUnused', { kind: 'boolean', default: false }, ifUnused, {} as SchemaContext) as boolean }
}
