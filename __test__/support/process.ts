// Child processes for the real-kernel tests and the benchmark: commands run
// without blocking the event loop (the device under test may be served by
// this very process, so a synchronous spawn could deadlock), and servers
// started as their own processes, waited for until their device is live.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { once } from 'node:events'

export interface Exec {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs a command and resolves with how it ended and what it printed. */
export function exec(cmd: string, args: string[], timeoutMs = 300_000, onSpawn?: (pid: number) => void): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' })
    if (onSpawn) child.once('spawn', () => onSpawn(child.pid!))
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** Like `exec`, but rejects with the command's stderr when it fails. */
export async function sh(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await exec(cmd, args, timeoutMs)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`)
  return r.stdout
}

/** A process serving a ublk device. */
export interface Server {
  proc: ChildProcess
  /** `/dev/ublkbN`, the first line it printed. */
  path: string
  id: number
  /** Everything it printed on stdout so far. */
  output(): string
  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves when it exits by itself. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export interface ServerOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Give the server a stdin pipe (`server.proc.stdin`). Default: none. */
  stdin?: boolean
  /** The test (ava's `t`): a SIGKILL at its teardown makes sure the server does not outlive it. */
  t?: { teardown(fn: () => unknown): void }
}

function exitOf(proc: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode })
  return once(proc, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
}

/**
 * Starts `node <args>` and resolves once it printed its device path as its
 * first line; rejects if it exits first.
 */
export async function spawnServer(args: string[], options: ServerOptions = {}): Promise<Server> {
  const stdio: StdioOptions = [options.stdin ? 'pipe' : 'ignore', 'pipe', 'inherit']
  const proc = spawn(process.execPath, args, { cwd: options.cwd, env: options.env ?? process.env, stdio })
  options.t?.teardown(() => proc.kill('SIGKILL'))
  const exit = exitOf(proc)
  let out = ''
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  while (!out.includes('\n')) {
    const first = await Promise.race([once(proc.stdout!, 'data'), exit])
    if (!Array.isArray(first)) {
      throw new Error(`node ${args.join(' ')} exited (${first.code ?? first.signal}) before its device was live`)
    }
  }
  const path = out.slice(0, out.indexOf('\n')).trim()
  const match = /^\/dev\/ublkb(\d+)$/.exec(path)
  if (!match) {
    proc.kill('SIGKILL')
    throw new Error(`node ${args.join(' ')} printed ${JSON.stringify(path)}, not a device path`)
  }
  return {
    proc,
    path,
    id: Number(match[1]),
    output: () => out,
    exited: () => exit,
    async stop(signal = 'SIGTERM', graceMs = 30_000) {
      proc.kill(signal)
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      try {
        return await exit
      } finally {
        clearTimeout(timer)
      }
    },
  }
}
