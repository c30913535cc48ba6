// Who holds what: the processes that have a ublk device's nodes open, from
// /proc. Used by `ublk list` and `ublk delete`.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { isAlive } from '../pids'

export { isAlive }

export interface Holder {
  pid: number
  command: string
}


/** The command line of `pid`, shortened, or "?" when it cannot be read. */
export function commandOf(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
    const text = argv.join(' ')
    return text.length > 80 ? `${text.slice(0, 77)}...` : text || '?'
  } catch {
    return '?'
  }
}

/** Processes that have any of `paths` open. */
export function holdersOf(paths: string[]): Holder[] {
  const wanted = new Set(paths)
  const holders: Holder[] = []
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      if (wanted.has(target)) {
        holders.push({ pid, command: commandOf(pid) })
        break
      }
    }
  }
  return holders
}

/** Where `/dev/ublkb<id>` (or a partition of it) is mounted. */
export function mountsOf(id: number): string[] {
  let info: string
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const out: string[] = []
  for (const line of info.split('\n')) {
    const [pre, post] = line.split(' - ')
    if (!post) continue
    const source = post.split(' ')[1]
    if (new RegExp(`^/dev/ublkb${id}(p\\d+)?$`).test(source)) out.push(pre.split(' ')[4])
  }
  return out
}
