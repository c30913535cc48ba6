// `ublk serve`: serves a handler from a module, or a shipped backend, until
// SIGINT/SIGTERM.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { FileBackend } from '../backends/file'
import { MemoryBackend } from '../backends/memory'
import { NullBackend } from '../backends/null'
import { createDevice } from '../device'
import type { Handler } from '../handler'
import { EXIT, parseCount, parseSize, UsageError } from './args'

export const serveHelp = `Usage: ublk serve <module> --size <bytes> [options]
       ublk serve --backend memory|null|file:<path> [options]
Options:
  --size <bytes>     capacity, e.g. 1G, 512M (default for file: the file's size)
  --queues <n>       hardware queues (default 1)
  --depth <n>        requests in flight per queue (default 128)
  --read-only        the kernel refuses writes
  --id <n>           device id (default: the kernel picks)

Serves /dev/ublkbN until SIGINT or SIGTERM, which delete the device. Prints
the device path once it is live. <module> is a JS file (or TS, with tsx
installed) whose default export is a handler object, or a function that
takes the options ({ size, queues, queueDepth, readOnly }) and returns one.`

/** The options a module's handler factory receives. */
export interface ServeOptions {
  size: number | undefined
  queues: number
  queueDepth: number
  readOnly: boolean
}

async function importModule(path: string): Promise<unknown> {
  const url = pathToFileURL(resolve(path)).href
  if (!/\.[mc]?ts$/.test(url)) return import(url)
  let tsx: { tsImport(specifier: string, parent: string): Promise<unknown> }
  try {
    tsx = (await import('tsx/esm/api')) as typeof tsx
  } catch {
    throw new UsageError(`${path} is TypeScript: install tsx (npm install tsx) or serve the compiled .js`)
  }
  return tsx.tsImport(url, __filename)
}

async function handlerFromModule(path: string, options: ServeOptions): Promise<Handler> {
  const mod = (await importModule(path)) as { default?: unknown }
  let exported = mod.default
  // A CommonJS module imported as ESM has its exports under `default`.
  if (exported && typeof exported === 'object' && 'default' in exported && Object.keys(exported).length === 1) {
    exported = (exported as { default: unknown }).default
  }
  const handler = typeof exported === 'function' ? await (exported as (o: ServeOptions) => unknown)(options) : exported
  if (typeof handler !== 'object' || handler === null || typeof (handler as Handler).read !== 'function') {
    throw new UsageError(`${path}: the default export must be a handler object (with read) or a function returning one`)
  }
  return handler as Handler
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

  let handler: Handler
  let size = options.size
  let file: FileBackend | undefined
  const backend = values.backend
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
    handler = await handlerFromModule(positionals[0], options)
  }

  const dev = await createDevice({ size, queues: options.queues, queueDepth: options.queueDepth, readOnly: options.readOnly, handler, ...(id !== undefined && { id }) })
  dev.on('requestError', (err, ctx) => console.error(`ublk serve: ${ctx.op} on queue ${ctx.queue} failed: ${String(err)}`))
  console.log(dev.path)
  await new Promise((done) => dev.once('close', done))
  await file?.close()
  return EXIT.ok
}
