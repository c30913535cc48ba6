// A fault-injecting HTTP proxy for the S3 tests: put in front of the real
// radosgw, it forwards every request unchanged (Host included, so SigV4 still
// verifies) except those the current rule faults: S3 error statuses, resets,
// stalls, a store gone silent, truncated or corrupted bodies, delays.
import * as http from 'node:http'
import * as net from 'node:net'
import type { TestFn } from 'ava'
import { cephStore, stopCephStore, type S3Env } from './ceph'

/** Which requests a rule faults (all when absent). */
export interface FaultMatch {
  method?: string
  /** Tested against the decoded object key: the URL path after the bucket (path-style), without the leading '/' or the query; '' for bucket requests. */
  key?: RegExp
}

interface Common {
  match?: FaultMatch
  /** Fault only the first `times` matching requests, then forward (default: all). */
  times?: number
  /** Fault a matching request with this probability (default 1), drawn from mulberry32(`seed`) if given, else Math.random. */
  probability?: number
  seed?: number
}

export type FaultRule = Common &
  (
    | { kind: 'status'; status: number; code?: string } // an S3 XML error, not forwarded
    | { kind: 'reset' } // the client's socket reset at once
    | { kind: 'stall' } // the body read, never answered
    | { kind: 'blackhole' } // nothing read any more; with no `match`, new connections are held unread too
    | { kind: 'truncate'; bytes?: number } // upstream's head, then `bytes` (default half) of the body, then the socket destroyed
    | { kind: 'corrupt' } // one bit of the middle byte of the body flipped
    | { kind: 'delay'; ms: number } // forwarded after `ms`
  )

export interface FaultProxy {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string
  /** Replaces the rule for requests arriving from now on (stalled ones stay stalled); null forwards everything. */
  set(rule: FaultRule | null): void
  /** Every request seen (a held connection counts as one), and those a rule changed. */
  counts: { requests: number; faulted: number }
  /** Destroys every socket, both sides, and closes the server. */
  close(): Promise<void>
}

const CODES: Record<number, string> = { 400: 'InvalidRequest', 403: 'AccessDenied', 404: 'NoSuchKey', 429: 'SlowDown', 500: 'InternalError', 501: 'NotImplemented', 503: 'SlowDown' }

/** A tiny seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  return h === 'localhost' || h === '::1' || (net.isIPv4(h) && h.startsWith('127.'))
}

/** The decoded object key of a path-style request: what `match.key` is tested against. */
function objectKey(url: string): string {
  const path = new URL(url, 'http://x').pathname
  const rest = path.slice(1).replace(/^[^/]*\/?/, '')
  try {
    return decodeURIComponent(rest)
  } catch {
    return rest
  }
}

/** Answers an S3-style XML error. */
function reply(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`
  res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}

/** Starts a proxy to `upstream` (a loopback URL such as http://127.0.0.1:7480) on a free loopback port. */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream)
  if (target.protocol !== 'http:' || !isLoopback(target.hostname)) throw new Error(`fault proxy: upstream must be http on loopback: ${upstream}`)
  const agent = new http.Agent({ keepAlive: true })
  const sockets = new Set<net.Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const counts = { requests: 0, faulted: 0 }
  let active: { rule: FaultRule; left: number; random: () => number } | null = null

  const track = (s: net.Socket): void => {
    if (sockets.has(s)) return
    sockets.add(s)
    s.on('error', () => {})
    s.once('close', () => sockets.delete(s))
  }
  /** Whether the active rule faults this one (consuming one of its `times`). */
  const take = (req: http.IncomingMessage | null): FaultRule | null => {
    const a = active
    if (!a || a.left <= 0) return null
    const m = a.rule.match
    if (req && m?.method && m.method.toUpperCase() !== req.method) return null
    if (req && m?.key && !m.key.test(objectKey(req.url ?? '/'))) return null
    if (a.random() >= (a.rule.probability ?? 1)) return null
    a.left--
    counts.faulted++
    return a.rule
  }

  /** Forwards `req` unchanged; `body` (if given) receives the whole upstream body and sends the response itself. */
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body?: (up: http.IncomingMessage, data: Buffer) => void): void => {
    const headers = req.rawHeaders
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, setHost: false, agent })
    up.on('socket', track)
    up.on('error', (err) => (res.headersSent ? res.destroy() : reply(res, 502, 'BadGateway', `fault proxy: upstream: ${err.message}`)))
    up.on('response', (ur) => {
      ur.on('error', () => res.destroy())
      if (!body) {
        res.writeHead(ur.statusCode ?? 502, ur.statusMessage, ur.rawHeaders)
        ur.pipe(res)
        return
      }
      const chunks: Buffer[] = []
      ur.on('data', (c: Buffer) => chunks.push(c))
      ur.on('end', () => body(ur, Buffer.concat(chunks)))
    })
    req.on('error', () => up.destroy())
    res.on('close', () => res.writableFinished || up.destroy())
    req.pipe(up)
  }

  const server = http.createServer({ requestTimeout: 0 }, (req, res) => {
    counts.requests++
    req.on('error', () => {})
    res.on('error', () => {})
    const rule = take(req)
    const head = (ur: http.IncomingMessage): http.ServerResponse => res.writeHead(ur.statusCode ?? 502, ur.statusMessage, ur.rawHeaders)
    switch (rule?.kind) {
      case undefined:
        return forward(req, res)
      case 'status':
        req.on('end', () => reply(res, rule.status, rule.code ?? CODES[rule.status] ?? (rule.status >= 500 ? 'InternalError' : 'InvalidRequest'), 'injected by the fault proxy'))
        req.resume()
        return
      case 'reset':
        return void req.socket.resetAndDestroy()
      case 'stall':
        return void req.resume()
      case 'blackhole':
        return void req.socket.pause()
      case 'truncate':
        return forward(req, res, (ur, data) => {
          head(ur).write(data.subarray(0, rule.bytes ?? data.length >> 1), () => res.socket?.destroy())
        })
      case 'corrupt':
        return forward(req, res, (ur, data) => {
          if (data.length > 0) data[data.length >> 1] ^= 0x10
          head(ur).end(data)
        })
      case 'delay': {
        const timer = setTimeout(() => {
          timers.delete(timer)
          if (!req.socket.destroyed) forward(req, res)
        }, rule.ms)
        timers.add(timer)
      }
    }
  })
  server.on('clientError', (_err, socket) => socket.destroy())

  // Connections reach the HTTP server through here, so a blackhole can hold new ones unread.
  const listener = net.createServer((socket) => {
    track(socket)
    if (active?.rule.kind === 'blackhole' && !active.rule.match && take(null)) return void counts.requests++
    server.emit('connection', socket)
  })
  listener.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = listener.address() as net.AddressInfo

  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts,
    set(rule) {
      active = rule && { rule, left: rule.times ?? Infinity, random: rule.seed === undefined ? Math.random : mulberry32(rule.seed) }
    },
    async close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      for (const s of sockets) s.destroy()
      agent.destroy()
      await new Promise<void>((resolve) => listener.close(() => resolve()))
    },
  }
}

/**
 * For a test file: the Ceph store and a proxy in front of its radosgw,
 * started before the file's tests, the proxy's rule cleared after each test,
 * both stopped after all of them. Read `store.env` and `store.proxy` in tests.
 */
export function cephBehindFaultProxy(test: TestFn): { env: S3Env; proxy: FaultProxy } {
  const store = {} as { env: S3Env; proxy: FaultProxy }
  test.before(async () => {
    store.env = await cephStore()
    store.proxy = await startFaultProxy(store.env.S3_ENDPOINT)
  })
  test.after.always(async () => {
    await store.proxy?.close()
    await stopCephStore()
  })
  test.afterEach.always(() => store.proxy?.set(null))
  return store
}
