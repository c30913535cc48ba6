// `ublk serve`: serves a handler from a module, or a shipped backend, until
// SIGINT/SIGTERM.
import { parseArgs } from 'node:util'
import { FileBackend } from '../backends/file'
import { MemoryBackend } from '../backends/memory'
import { NullBackend } from '../backends/null'
import { createDevice } from '../device'
import type { Handler } from '../handler'
import { handlerFromModule, HandlerModuleError } from '../modules'
import type { WorkerOptions } from '../options'
import { resolve } from 'node:path'
import { EXIT, parseCount, parseSize, UsageError } from './args'

export const serveHelp = `Usage: ublk serve <module> --size <bytes> [options]
       ublk serve --backend memory|null|file:<path> [options]
Options:
  --size <bytes>     capacity, e.g. 1G, 512M (default for file: the file's size)
  --queues <n>       hardware queues (default 1)
  --depth <n>        requests in flight per queue (default 128)
  --read-only        the kernel refuses writes
  --id <n>           device id (default: the kernel picks)
  --workers          serve each queue on its own worker thread (a module only)

Serves /dev/ublkbN until SIGINT or SIGTERM, which delete the device. Prints
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

export async function serve(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      size: { type: 'string' },
      queues: { type: 'string' },
      depth: { type: 'string' },
      'read-only': { type: 'boolean' },
      id: { type: 'string' },
      workers: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  })
  if ((values.backend === undefined) === (positionals.length === 0) || positionals.length > 1) {
    throw new UsageError('give one module to serve, or --backend (not both)')
  }
  const options: ServeOptions = {
    size: values.size === undefined ? undefined : parseSize(values.size),
    queues: parseCount(values.queues, '--queues') ?? 1,
    queueDepth: parseCount(values.depth, '--depth') ?? 128,
    readOnly: values['read-only'] ?? false,
  }
  const id = values.id === undefined ? undefined : Number(values.id)
  if (id !== undefined && !(Number.isInteger(id) && id >= 0)) throw new UsageError(`--id must be a device number. Received "${values.id}"`)

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
    if (values.workers) workers = { module: resolve(positionals[0]), data: options }
    else handler = await handlerFor(positionals[0], options)
  }

  const dev = await createDevice({
    size,
    queues: options.queues,
    queueDepth: options.queueDepth,
    readOnly: options.readOnly,
    ...(workers ? { workers } : { handler }),
    ...(id !== undefined && { id }),
  })
  dev.on('workerError', (err: Error, queue: number) => console.error(`ublk serve: the worker of queue ${queue} died (${err.message}); restarting it`))
  dev.on('requestError', (err, ctx) => console.error(`ublk serve: ${ctx.op} on queue ${ctx.queue} failed: ${String(err)}`))
  console.log(dev.path)
  await new Promise((done) => dev.once('close', done))
  await file?.close()
  return EXIT.ok
}
