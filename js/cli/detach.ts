// `ublk detach`: a planned hand-off from the command line. The server of a
// device created with --recovery is asked (SIGUSR2) to `dev.detach()` and
// exit; `ublk recover` then serves the device in a new process.
import { parseArgs } from 'node:util'
import { EXIT, UsageError } from './args'
import { listedDevices } from './info'
import { isAlive } from './processes'

/** The signal `ublk serve` and `ublk recover` take as "detach and exit". */
export const DETACH_SIGNAL = 'SIGUSR2'

export const detachHelp = `Usage: ublk detach <id> [--timeout <seconds>]

Hands device <id>, served with --recovery by \`ublk serve\` or \`ublk recover\`,
to a successor: its server detaches (QUIESCE_DEV on Linux 6.16+; before, it
stops serving and the kernel takes the device over when it exits) and exits,
and the device waits for \`ublk recover <id> ...\`. Sends the server ${DETACH_SIGNAL}
and waits for it to exit (default 60 s). A process that does not handle
${DETACH_SIGNAL} dies of it, which the kernel takes as a server death under the
device's recovery mode.
Exit status: 0 handed over, 1 the server did not exit in time, 2 usage,
3 refused (no recovery, or no live server).`

export async function detach(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { timeout: { type: 'string' } }, allowPositionals: true, strict: true })
  if (positionals.length !== 1) throw new UsageError('give one device id')
  const id = Number(positionals[0])
  if (!Number.isInteger(id) || id < 0) throw new UsageError(`a device id is a number (as in /dev/ublkb3). Received "${positionals[0]}"`)
  const seconds = values.timeout === undefined ? 60 : Number(values.timeout)
  if (!(seconds > 0)) throw new UsageError(`--timeout must be a positive number of seconds. Received "${values.timeout}"`)
  const device = listedDevices().find((d) => d.id === id)
  if (!device) {
    console.error(`ublk detach: no device ${id} (see ublk list)`)
    return EXIT.refused
  }
  if (device.recovery === 'off') {
    console.error(`ublk detach: device ${id} was served without --recovery, so nothing could take it over`)
    return EXIT.refused
  }
  if (!device.alive) {
    console.error(`ublk detach: device ${id} has no live server (state ${device.state}); ublk recover ${id} serves it`)
    return EXIT.refused
  }
  process.kill(device.pid, DETACH_SIGNAL)
  const deadline = Date.now() + seconds * 1000
  while (isAlive(device.pid)) {
    if (Date.now() > deadline) {
      console.error(`ublk detach: pid ${device.pid} did not exit within ${seconds} s`)
      return EXIT.failed
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  console.log(`detached ${id}: ublk recover ${id} ... serves it`)
  return EXIT.ok
}
