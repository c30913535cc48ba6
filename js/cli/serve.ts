// `ublk serve`: serves a handler from a module, or a shipped backend, until
// SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { FileBackend } from '../backends/file'
import { MemoryBackend } from '../backends/memory'
import { NullBackend } from '../backends/null'
import { S3Backend } from '../backends/s3/backend'
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
       ublk serve --backend memory|null|file:<path>|s3://<bucket>/<prefix> [options]
Options:
  --size <bytes>     capacity, e.g. 1G, 512M (default for file: the file's size;
                     for s3: needed to create an image, an existing one keeps its own)
  --queues <n>       hardware queues (default 1)
  --depth <n>        requests in flight per queue (default 128)
  --read-only        the kernel refuses writes
  --id <n>           device id (default: the kernel picks)
  --workers          serve each queue on its own worker thread (a module only)
  --recovery <mode>  the device outlives a server that dies, for \`ublk recover\`:
                     reissue, fail-inflight or fail-io (see recoverDevice)
S3 backend (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws):
  --endpoint <url>   the S3 store, e.g. http://127.0.0.1:7480 (default: AWS)
  --object-size <b>  bytes per object of a new image (default 4M)
  --cache <bytes>    memory for cached and dirty objects (default 256M)
  --force            take the image over although another server's lease is fresh
                     (after waiting out that lease, so the other server has stopped writing)

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
       ublk recover <id> --backend memory|null|file:<path>|s3://<bucket>/<prefix> [S3 options]
Re-attaches to device <id>, left by a server that died (it was served with
--recovery), and serves it until SIGINT or SIGTERM, which delete it. Its size,
queues, depth and block sizes are the device's own. Prints the device path
once it is live again.`

/** What serves a device: a handler (main thread) or a worker module, and the backend to close after it. */
interface Serving {
  handler?: Handler
  workers?: WorkerOptions
  backend?: { close(): Promise<void> }
  size: number
}

const SERVING_OPTIONS = {
  backend: { type: 'string' },
  workers: { type: 'boolean' },
  endpoint: { type: 'string' },
  'object-size': { type: 'string' },
  cache: { type: 'string' },
  force: { type: 'boolean' },
} as const

interface ServingValues {
  backend?: string
  workers?: boolean
  endpoint?: string
  'object-size'?: string
  cache?: string
  force?: boolean
}

/** Opens `s3://bucket/prefix` with the S3 options of the command line. */
async function s3BackendFor(url: string, values: ServingValues, size: number | undefined): Promise<S3Backend> {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url)
  if (!m) throw new UsageError(`--backend s3:// needs a bucket: s3://<bucket>/<prefix>. Received "${url}"`)
  try {
    const s3 = await S3Backend.open({
      bucket: m[1],
      prefix: m[2],
      ...(values.endpoint !== undefined && { endpoint: values.endpoint }),
      ...(size !== undefined && { size }),
      ...(values['object-size'] !== undefined && { objectSize: parseSize(values['object-size'], '--object-size') }),
      ...(values.cache !== undefined && { cacheBytes: parseSize(values.cache, '--cache') }),
      ...(values.force && { force: true }),
    })
    s3.on('writebackError', (err, key) => console.error(`ublk: write-back of ${key} failed (kept in memory, tried again): ${err.message}`))
    return s3
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) throw new UsageError(err.message)
    throw err
  }
}

async function servingFor(
  values: ServingValues,
  module: string | undefined,
  options: ServeOptions,
): Promise<Serving> {
  const backend = values.backend
  let handler: Handler | undefined
  let workers: WorkerOptions | undefined
  let size = options.size
  let closer: { close(): Promise<void> } | undefined
  if (backend !== undefined && values.workers) throw new UsageError('--workers serves a module, not a --backend')
  const s3Only = (['endpoint', 'object-size', 'cache', 'force'] as const).find((o) => values[o] !== undefined)
  if (s3Only && !backend?.startsWith('s3://')) throw new UsageError(`--${s3Only} is an option of --backend s3://`)
  if (backend === 'memory' || backend === 'null') {
    if (size === undefined) throw new UsageError(`--backend ${backend} needs --size`)
    handler = backend === 'memory' ? new MemoryBackend(size) : new NullBackend()
  } else if (backend?.startsWith('file:')) {
    const file = await FileBackend.open(backend.slice('file:'.length), { readOnly: options.readOnly })
    closer = file
    size ??= file.size
    if (size > file.size) throw new UsageError(`--size ${size} is larger than ${file.path} (${file.size} bytes)`)
    handler = file
  } else if (backend?.startsWith('s3://')) {
    const s3 = await s3BackendFor(backend, values, size)
    closer = s3
    if (size !== undefined && size !== s3.size) {
      await s3.close()
      throw new UsageError(`--size ${size} differs from the image's ${s3.size} bytes`)
    }
    size = s3.size
    handler = s3
  } else if (backend !== undefined) {
    throw new UsageError(`--backend must be memory, null, file:<path> or s3://<bucket>/<prefix>. Received "${backend}"`)
  } else {
    if (size === undefined) throw new UsageError('serving a module needs --size')
    if (values.workers) workers = { module: resolve(module as string), data: options }
    else handler = await handlerFor(module as string, options)
  }
  return { handler, workers, backend: closer, size }
}

const EXIT_SIGNALS = ['SIGINT', 'SIGTERM'] as const

/** Runs `make` with the backend open, closing the backend if it fails. */
async function withBackend(serving: Serving, make: () => Promise<Device>): Promise<Device> {
  try {
    return await make()
  } catch (err) {
    await serving.backend?.close().catch(() => undefined)
    throw err
  }
}

/** Serves `dev` until it closes (SIGINT/SIGTERM), reporting handler trouble on stderr. */
async function serveUntilClosed(command: string, dev: Device, backend: Serving['backend']): Promise<number> {
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
  // With a backend to close (the S3 one writes back its cache), SIGINT/SIGTERM
  // close the device and then the backend before the process exits, instead
  // of dying of the signal once the device is gone.
  const stay = () => {}
  if (backend) for (const s of EXIT_SIGNALS) process.on(s, stay)
  await new Promise((done) => dev.once('close', done))
  process.off(DETACH_SIGNAL, onDetach)
  try {
    await backend?.close()
  } finally {
    for (const s of EXIT_SIGNALS) process.off(s, stay)
  }
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
  const serving = await servingFor(values, positionals[0], options)
  const { handler, workers, size } = serving
  const dev = await withBackend(serving, () =>
    createDevice({
      size,
      queues: options.queues,
      queueDepth: options.queueDepth,
      readOnly: options.readOnly,
      ...(workers ? { workers } : { handler }),
      ...(id !== undefined && { id }),
      ...(recovery !== undefined && { recovery: recovery as Recovery }),
    }),
  )
  return serveUntilClosed('serve', dev, serving.backend)
}

export async function recover(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: SERVING_OPTIONS, allowPositionals: true, strict: true })
  const [idArg, ...modules] = positionals
  const id = Number(idArg)
  if (idArg === undefined || !Number.isInteger(id) || id < 0) throw new UsageError(`give the id of the device to recover first. Received "${idArg ?? ''}"`)
  oneModuleOrBackend(values.backend, modules)
  const kept = describeDevice(id)
  const options: ServeOptions = { size: kept.size, queues: kept.queues, queueDepth: kept.queueDepth, readOnly: kept.readOnly }
  const serving = await servingFor(values, modules[0], options)
  const { handler, workers } = serving
  const dev = await withBackend(serving, () => recoverDevice(id, workers ? { workers } : { handler }))
  return serveUntilClosed('recover', dev, serving.backend)
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
