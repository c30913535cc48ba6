// `ublk delete`: removes devices, e.g. those left by a server that died,
// without hanging on one still in use.
import { parseArgs } from 'node:util'
import native from '../native'
import { EXIT, UsageError } from './args'
import { listedDevices } from './info'
import { holdersOf, mountsOf } from './processes'

export const deleteHelp = `Usage: ublk delete <id>...
       ublk delete --all | --dead
Options:
  --all     every ublk device on this machine
  --dead    devices whose serving process is gone, except those waiting for
            \`ublk recover\` (served with --recovery)
  --force   delete even a device that a live process serves, that is mounted,
            or that waits for recovery (its IO then fails)

Deletes ublk devices (DEL_DEV). A device still served by a live process, or
mounted, is left alone and its holders are named, unless --force is given;
stopping the server (SIGTERM) is the clean way to remove those.
Exit status: 0 all deleted, 1 a deletion failed, 2 usage, 3 some refused.`

export async function remove(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { all: { type: 'boolean' }, dead: { type: 'boolean' }, force: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  })
  const chosen = [values.all, values.dead, positionals.length > 0].filter(Boolean).length
  if (chosen !== 1) throw new UsageError('give device ids, or --all, or --dead (one of them)')
  const devices = listedDevices()
  let ids: number[]
  if (positionals.length) {
    ids = positionals.map((p) => {
      const id = Number(p)
      if (!Number.isInteger(id) || id < 0) throw new UsageError(`a device id is a number (as in /dev/ublkb3). Received "${p}"`)
      return id
    })
  } else {
    const waiting = values.all || values.force ? [] : devices.filter((d) => d.recoverable)
    for (const d of waiting) {
      console.log(`kept ${d.id}: it waits for recovery (${d.recovery}); ublk recover ${d.id} serves it, ublk delete --force ${d.id} removes it`)
    }
    ids = devices.filter((d) => values.all || (!d.alive && !waiting.includes(d))).map((d) => d.id)
    if (ids.length === 0) console.log(values.all ? 'no ublk devices' : 'no devices without a live server')
  }
  let failed = false
  let refused = false
  for (const id of ids) {
    const device = devices.find((d) => d.id === id)
    if (!device) {
      console.error(`ublk delete: no device ${id} (see ublk list)`)
      failed = true
      continue
    }
    const holders = holdersOf([`/dev/ublkc${id}`]).filter((h) => h.pid !== process.pid)
    const mounts = mountsOf(id)
    if (!values.force && (holders.length > 0 || mounts.length > 0)) {
      const who = holders.map((h) => `pid ${h.pid} (${h.command})`).join(', ')
      const reasons = [...(who ? [`served by ${who}`] : []), ...(mounts.length ? [`mounted at ${mounts.join(', ')}`] : [])]
      console.error(`ublk delete: device ${id} is ${reasons.join(' and ')}; ` + (who ? 'stop the server (SIGTERM deletes its device)' : 'unmount it') + ', or pass --force')
      refused = true
      continue
    }
    const outcome = await native.deleteDevice(id)
    if (outcome.error) {
      console.error(`ublk delete: device ${id}: ${outcome.error.message}`)
      failed = true
    } else {
      console.log(`deleted ${id}`)
    }
  }
  return failed ? EXIT.failed : refused ? EXIT.refused : EXIT.ok
}
