// Option validation: everything is checked here, before any kernel call, and
// each error names the option (`options.queueDepth`) like Node's validators.
import type { NativeDeviceOptions } from '../index.js'
import type { Handler } from './handler'

/** Options of `createDevice`. Sizes are in bytes. */
export interface DeviceOptions {
  /** Capacity in bytes: a positive multiple of `logicalBlockSize`. */
  size: number
  /** Serves the requests. (Absent only with `rustNullHandler`.) */
  handler?: Handler
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
  /** Close the device on SIGINT/SIGTERM, then exit. Default true. */
  handleSignals?: boolean
  /**
   * Diagnostic, for benchmarks: serve every request inside the addon's queue
   * threads as a null device (zeros on read, like `NullBackend`), never
   * calling JavaScript. Measures what the JS hop costs; give no `handler`.
   */
  rustNullHandler?: boolean
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

function integer(options: Record<string, unknown>, name: string, min: number, max: number, fallback: number): number {
  const value = options[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw OptionError.type(name, 'of type number', value)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw OptionError.range(name, `an integer >= ${min} and <= ${max}`, value)
  }
  return value
}

function powerOfTwo(options: Record<string, unknown>, name: string, min: number, max: number, fallback: number): number {
  const value = integer(options, name, min, max, fallback)
  if ((value & (value - 1)) !== 0) throw OptionError.range(name, `a power of two from ${min} to ${max}`, value)
  return value
}

function boolean(options: Record<string, unknown>, name: string, fallback: boolean): boolean {
  const value = options[name]
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw OptionError.type(name, 'of type boolean', value)
  return value
}

const MAX_SAFE_SIZE = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 4096)

/** The validated options, with defaults filled in. */
export interface ResolvedOptions {
  native: NativeDeviceOptions & Required<Omit<NativeDeviceOptions, 'id' | 'buffers'>>
  /** Absent when `rustNullHandler` serves the requests. */
  handler: Handler | undefined
  handleSignals: boolean
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

export function resolveOptions(options: unknown): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw Object.assign(new TypeError(`The "options" argument must be of type object. Received ${describe(options)}`), {
      code: 'ERR_INVALID_ARG_TYPE',
    })
  }
  const o = options as Record<string, unknown>
  const rustNullHandler = boolean(o, 'rustNullHandler', false)
  const handler = rustNullHandler ? undefined : validHandler(o.handler)
  if (rustNullHandler && o.handler !== undefined) {
    throw OptionError.type('handler', 'undefined when rustNullHandler is true', o.handler)
  }
  const hasOp = (op: keyof Handler) => (rustNullHandler ? true : handler?.[op] !== undefined)

  const logicalBlockSize = powerOfTwo(o, 'logicalBlockSize', 512, 4096, 512)
  const physicalBlockSize = powerOfTwo(o, 'physicalBlockSize', logicalBlockSize, 65536, Math.max(4096, logicalBlockSize))
  if (o.size === undefined) throw OptionError.type('size', 'of type number', o.size)
  const size = integer(o, 'size', logicalBlockSize, MAX_SAFE_SIZE, 0)
  if (size % logicalBlockSize !== 0) throw OptionError.range('size', `a multiple of logicalBlockSize (${logicalBlockSize})`, size)
  const queues = integer(o, 'queues', 1, 64, 1)
  const queueDepth = integer(o, 'queueDepth', 1, 4096, 128)
  const maxIoSize = integer(o, 'maxIoSize', 4096, 32 << 20, 512 << 10)
  if (maxIoSize % 4096 !== 0) throw OptionError.range('maxIoSize', 'a multiple of 4096', maxIoSize)
  const readOnly = boolean(o, 'readOnly', false)
  const rotational = boolean(o, 'rotational', false)
  const discard = boolean(o, 'discard', hasOp('discard') || hasOp('writeZeroes'))
  const writeCache = boolean(o, 'writeCache', hasOp('flush'))
  const fua = boolean(o, 'fua', false)
  if (fua && !writeCache) throw OptionError.range('fua', 'false when writeCache is false', fua)
  const id = o.id === undefined ? -1 : integer(o, 'id', 0, 1 << 20, -1)
  const handleSignals = boolean(o, 'handleSignals', true)
  const buffers = buffersFromEnv()

  return {
    native: {
      id,
      size,
      logicalBlockSize,
      physicalBlockSize,
      queues,
      queueDepth,
      maxIoSize,
      readOnly,
      rotational,
      discard,
      writeCache,
      fua,
      ...(buffers && { buffers }),
      rustNullHandler,
    },
    handler,
    handleSignals,
  }
}
