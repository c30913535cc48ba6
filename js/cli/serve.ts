// `ublk serve`: serves a handler from a module, or a shipped backend, until
// SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { FileBackend } from '../backends/file'
import { MemoryBackend } from '../backends/memory'
import { NullBackend } from '../backends/null'
import { createDevice, recoverDevice, type Device } from '../device'
import { fromNative, UblkError } from '../errors'
import type { Handler } from '../handler'
import { handlerFromModule, HandlerModuleError } from '../modules'
import native from '../native'
import { RECOVERY_MODES, type Recovery, type WorkerOptions } from '../options'
import { resolve } from 'node:path'
import { EXIT, parseCount, parseSize, UsageError } from './args'
import { DETACH_SIGNAL } from './detach'

export const serveHelp = `Usage: ublk serve <module> --size <bytes> [options]
       ublk serve --backend memory|null|file:<path> [options]
Options:
  --size <bytes>     capacity, e.g. 1G, 512M (default for file: the file's size)
  --queues <n>       hardware queues (default 1)
  --depth <n>        requests in flight per queue (default 128)
  --read-only        the kernel refuses writes
  --id <n>           device id (default: the kernel picks)
  --workers          serve each queue on its own worker thread (a module only)
  --recovery <mode>  the device outlives a server that dies, for \`ublk recover\`:
                     reissue, fail-inflight or fail-io (see recoverDevice)

Serves /dev/ublkbN until SIGINT or SIGTERM, which delete the device (with
--recovery, \`ublk detach\` hands it over instead). Prints
the device path once it is live. <module> is a JS file (or TS, with tsx
installed) whose default export is a handler object, or a function that
takes the options ({ size, queues, queueDepth, readOnly }) and returns one
(with --workers, each worker calls it, with { queue, queues, size } second).`

/** The options a module's handler factory receives. */
export interface ServeOptions {
  size: number | undefined
  queues: number
  queueDepth: number
  readOnly: boolean
}

async function handlerFor(path: string, options: ServeOptions): Promise<Handler> {
  try {
    return await handlerFromModule(path, [options])
  } catch (err) {
    if (err instanceof HandlerModuleError) throw new UsageError(err.message)
    throw err
  }
}

export const recoverHelp = `Usage: ublk recover <id> <module> [--workers]
       ublk recover <id> --backend memory|null|file:<path>
Re-attaches to device <id>, left by a server that died (it was served with
--recovery), and serves it until SIGINT or SIGTERM, which delete it. Its size,
queues, depth and block sizes are the device's own. Prints the device path
once it is live again.`

/** What serves a device: a handler (main thread) or a worker module, and the backend file to close. */
interface Serving {
  handler?: Handler
  workers?: WorkerOptions
  file?: FileBackend
  size: number
}

const SERVING_OPTIONS = { backend: { type: 'string' }, workers: { type: 'boolean' } } as const

async function servingFor(
  values: { backend?: string; workers?: boolean },
  module: string | undefined,
  options: ServeOptions,
): Promise<Serving> {
  const backend = values.backend
  let handler: Handler | undefined
  let workers: WorkerOptions | undefined
  let size = options.size
  let file: FileBackend | undefined
  if (backend !== undefined && values.workers) throw new UsageError('--workers serves a module, not a --backend')
  if (backend === 'memory' || backend === 'null') {
    if (size === undefined) throw new UsageError(`--backend ${backend} needs --size`)
    handler = backend === 'memory' ? new MemoryBackend(size) : new NullBackend()
  } else if (backend?.startsWith('file:')) {
    file = await FileBackend.open(backend.slice('file:'.length), { readOnly: options.readOnly })
    size ??= file.size
    if (size > file.size) throw new UsageError(`--size ${size} is larger than ${file.path} (${file.size} bytes)`)
    handler = file
  } else if (backend !== undefined) {
    throw new UsageError(`--backend must be memory, null or file:<path>. Received "${backend}"`)
  } else {
    if (size === undefined) throw new UsageError('serving a module needs --size')
    if (values.workers) workers = { module: resolve(module as string), data: options }
    else handler = await handlerFor(module as string, options)
  }
  return { handler, workers, file, size }
}

/** Serves `dev` until it closes (SIGINT/SIGTERM), reporting handler trouble on stderr. */
async function serveUntilClosed(command: string, dev: Device, file: FileBackend | undefined): Promise<number> {
  dev.on('workerError', (err: Error, queue: number) => console.error(`ublk ${command}: the worker of queue ${queue} died (${err.message}); restarting it`))
  dev.on('requestError', (err, ctx) => console.error(`ublk ${command}: ${ctx.op} on queue ${ctx.queue} failed: ${String(err)}`))
  console.log(dev.path)
  // `ublk detach` (SIGUSR2): hand the device over, then exit.
  const onDetach = () => {
    dev.detach().then(
      (handoff) => console.error(`ublk ${command}: detached ${dev.path} (${handoff}); ublk recover ${dev.id} ... serves it`),
      (err: Error) => console.error(`ublk ${command}: detach failed: ${err.message}`),
    )
  }
  if (dev.info.recovery !== 'off') process.on(DETACH_SIGNAL, onDetach)
  await new Promise((done) => dev.once('close', done))
  process.off(DETACH_SIGNAL, onDetach)
  await file?.close()
  return EXIT.ok
}

function oneModuleOrBackend(backend: string | undefined, modules: string[]): void {
  if ((backend === undefined) === (modules.length === 0) || modules.length > 1) {
    throw new UsageError('give one module to serve, or --backend (not both)')
  }
}

export async function serve(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...SERVING_OPTIONS,
      size: { type: 'string' },
      queues: { type: 'string' },
      depth: { type: 'string' },
      'read-only': { type: 'boolean' },
      id: { type: 'string' },
      recovery: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  })
  oneModuleOrBackend(values.backend, positionals)
  const options: ServeOptions = {
    size: values.size === undefined ? undefined : parseSize(values.size),
    queues: parseCount(values.queues, '--queues') ?? 1,
    queueDepth: parseCount(values.depth, '--depth') ?? 128,
    readOnly: values['read-only'] ?? false,
  }
  const id = values.id === undefined ? undefined : Number(values.id)
  if (id !== undefined && !(Number.isInteger(id) && id >= 0)) throw new UsageError(`--id must be a device number. Received "${values.id}"`)
  const recovery = values.recovery
  if (recovery !== undefined && !(RECOVERY_MODES as readonly string[]).includes(recovery)) {
    throw new UsageError(`--recovery must be ${RECOVERY_MODES.join(', ')}. Received "${recovery}"`)
  }
  const { handler, workers, file, size } = await servingFor(values, positionals[0], options)
  const dev = await createDevice({
    size,
    queues: options.queues,
    queueDepth: options.queueDepth,
    readOnly: options.readOnly,
    ...(workers ? { workers } : { handler }),
    ...(id !== undefined && { id }),
    ...(recovery !== undefined && { recovery: recovery as Recovery }),
  })
  return serveUntilClosed('serve', dev, file)
}

export async function recover(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: SERVING_OPTIONS, allowPositionals: true, strict: true })
  const [idArg, ...modules] = positionals
  const id = Number(idArg)
  if (idArg === undefined || !Number.isInteger(id) || id < 0) throw new UsageError(`give the id of the device to recover first. Received "${idArg ?? ''}"`)
  oneModuleOrBackend(values.backend, modules)
  const kept = describeDevice(id)
  const options: ServeOptions = { size: kept.size, queues: kept.queues, queueDepth: kept.queueDepth, readOnly: kept.readOnly }
  const { handler, workers, file } = await servingFor(values, modules[0], options)
  const dev = await recoverDevice(id, workers ? { workers } : { handler })
  return serveUntilClosed('recover', dev, file)
}

/** What the kernel kept of device `id`, or a clear error. */
function describeDevice(id: number): ReturnType<typeof native.describeDevice> {
  try {
    return native.describeDevice(id)
  } catch (err) {
    const e = fromNative(err)
    if (e instanceof UblkError && e.code === 'ENODEV') throw new UblkError('ENODEV', `no ublk device ${id} (see ublk list)`)
    throw e
  }
}
