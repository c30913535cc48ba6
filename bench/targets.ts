// What `npm run bench` measures: our devices (through JS, and with the Rust
// null handler), the kernel's own ceilings (null_blk, a loop device over
// tmpfs with direct I/O), NBD (nbdkit's memory plugin) and the S3 backend on
// an in-guest Ceph cluster (bench/s3.ts), all in one boot.
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { sh, spawnServer, type Server } from '../__test__/support/process'
import { s3Target, S3_TARGET } from './s3'
import type { NotificationCount } from './types'

export interface RunningTarget {
  path: string
  /** The process serving the device, when it is a userspace server. */
  serverPid?: number
  /** Facts worth recording (e.g. whether the loop device got direct I/O). */
  notes?: string
  /** The handlers' notifications and the requests they served so far (JS targets only). */
  notifications?(): Promise<NotificationCount>
  stop(): Promise<void>
}

export interface Target {
  name: string
  description: string
  /** Data-keeping targets are filled once before measuring, so reads hit data. */
  keepsData: boolean
  start(sizeBytes: number): Promise<RunningTarget>
}

const quiet = (p: Promise<unknown>): Promise<void> => p.then(
  () => undefined,
  () => undefined,
)
const WORKDIR = '/mnt/ublk-bench'

type Backend = 'null' | 'memory' | 'rust-null' | 'null-workers' | 'xts-main' | 'xts-workers'

function ours(name: string, backend: Backend, queues: number, description: string): Target {
  return {
    name,
    description,
    keepsData: backend === 'memory' || backend.startsWith('xts'),
    async start(sizeBytes) {
      const server = await spawnServer([join(__dirname, 'serve.js'), backend, String(queues), String(sizeBytes)], { stdin: true })
      return {
        path: server.path,
        serverPid: server.proc.pid,
        ...(backend !== 'rust-null' && { notifications: () => askStats(server) }),
        async stop() {
          await server.stop()
        },
      }
    },
  }
}

/** Asks a bench/serve.js server for its `stats` line (a `stats` line on its stdin) and waits for it. */
async function askStats(server: Server, timeoutMs = 30_000): Promise<NotificationCount> {
  const from = server.output().length
  const answered = () => /^stats (\{.*\})$/m.exec(server.output().slice(from))
  server.proc.stdin!.write('stats\n')
  const timeout = AbortSignal.timeout(timeoutMs)
  let line = answered()
  while (!line) {
    // The next output, the server's exit, or the timeout; spawnServer's own listener has the output by then.
    const next = await Promise.race([once(server.proc.stdout!, 'data', { signal: timeout }).then(() => 'data'), server.exited().then(() => 'exited')]).catch(
      () => 'timeout',
    )
    line = answered()
    if (line) break
    if (next === 'exited') throw new Error(`the server exited (${server.proc.exitCode ?? server.proc.signalCode}) before it printed its stats`)
    if (next === 'timeout') throw new Error(`the server printed no stats within ${timeoutMs} ms; it printed: ${JSON.stringify(server.output().slice(from))}`)
  }
  return JSON.parse(line[1]) as NotificationCount
}

const nullBlk: Target = {
  name: 'null_blk',
  description: 'kernel null_blk, irqmode=0 (no data), 2 submit queues: the ceiling',
  keepsData: false,
  async start(sizeBytes) {
    await quiet(sh('rmmod', ['null_blk']))
    const gb = Math.max(1, Math.ceil(sizeBytes / 2 ** 30))
    await sh('modprobe', ['null_blk', 'nr_devices=1', 'irqmode=0', 'queue_mode=2', 'submit_queues=2', `gb=${gb}`])
    return { path: '/dev/nullb0', stop: () => quiet(sh('rmmod', ['null_blk'])) }
  },
}

const loopTmpfs: Target = {
  name: 'loop (tmpfs)',
  description: 'kernel loop device over a tmpfs file with direct I/O: an in-kernel RAM disk',
  keepsData: true,
  async start(sizeBytes) {
    await sh('mkdir', ['-p', WORKDIR])
    await sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes + (64 << 20)}`, 'ublk-bench', WORKDIR])
    const file = `${WORKDIR}/loop.img`
    await sh('truncate', ['-s', String(sizeBytes), file])
    const dev = (await sh('losetup', ['--direct-io=on', '--sector-size=4096', '--find', '--show', file])).trim()
    const dio = await readFile(`/sys/block/${dev.replace('/dev/', '')}/loop/dio`, 'utf8').catch(() => '?')
    return {
      path: dev,
      notes: `direct I/O ${dio.trim() === '1' ? 'on' : 'off'}`,
      async stop() {
        await quiet(sh('losetup', ['-d', dev]))
        await quiet(sh('umount', [WORKDIR]))
      },
    }
  },
}

const nbdMemory: Target = {
  name: 'NBD (nbdkit memory)',
  description: "nbdkit's memory plugin over a Unix socket, kernel nbd client with 2 connections",
  keepsData: true,
  async start(sizeBytes) {
    await sh('mkdir', ['-p', WORKDIR])
    const socket = `${WORKDIR}/nbd.sock`
    const pidfile = `${WORKDIR}/nbdkit.pid`
    // A killed nbdkit leaves its socket behind, and a second start (the goal rounds) would find it in use.
    await sh('rm', ['-f', socket, pidfile])
    await sh('nbdkit', ['-U', socket, '-P', pidfile, 'memory', String(sizeBytes)])
    const pid = Number((await readFile(pidfile, 'utf8')).trim())
    await sh('modprobe', ['nbd', 'nbds_max=1'])
    await sh('nbd-client', ['-unix', socket, '/dev/nbd0', '-b', '4096', '-connections', '2', '-N', ''])
    return {
      path: '/dev/nbd0',
      serverPid: pid,
      async stop() {
        await quiet(sh('nbd-client', ['-d', '/dev/nbd0']))
        await quiet(sh('kill', [String(pid)]))
      },
    }
  },
}

export const TARGETS: Target[] = [
  ours('NullBackend q1', 'null', 1, 'NullBackend through JS, 1 queue'),
  ours('NullBackend q2', 'null', 2, 'NullBackend through JS, 2 queues'),
  ours('MemoryBackend q1', 'memory', 1, 'MemoryBackend through JS, 1 queue'),
  ours('MemoryBackend q2', 'memory', 2, 'MemoryBackend through JS, 2 queues'),
  ours('NullBackend workers q1', 'null-workers', 1, 'NullBackend on a worker thread per queue, 1 queue'),
  ours('NullBackend workers q2', 'null-workers', 2, 'NullBackend on a worker thread per queue, 2 queues'),
  ours('XTS main q2', 'xts-main', 2, 'AES-256-XTS over RAM (CPU-bound) on the main thread, 2 queues'),
  ours('XTS workers q2', 'xts-workers', 2, 'AES-256-XTS over RAM (CPU-bound) on a worker per queue, 2 queues'),
  ours('Rust null q1', 'rust-null', 1, 'the diagnostic Rust null handler (no JS hop), 1 queue'),
  ours('Rust null q2', 'rust-null', 2, 'the diagnostic Rust null handler (no JS hop), 2 queues'),
  nullBlk,
  loopTmpfs,
  nbdMemory,
  s3Target,
]

/** `--quick`: what the goals compare. */
export const QUICK_TARGETS = [
  'NullBackend q1',
  'NullBackend q2',
  'NullBackend workers q1',
  'NullBackend workers q2',
  'XTS main q2',
  'XTS workers q2',
  'MemoryBackend q2',
  'Rust null q1',
  'Rust null q2',
  'null_blk',
  'NBD (nbdkit memory)',
  S3_TARGET,
]

/** Requests per notification between two counts; null if there was none. */
export function requestsPerNotification(before: NotificationCount, after: NotificationCount): number | null {
  const notifications = after.notifications - before.notifications
  return notifications > 0 ? (after.requests - before.requests) / notifications : null
}
