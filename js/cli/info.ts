// `ublk features` and `ublk list`.
import { parseArgs } from 'node:util'
import native from '../native'
import { fromNative } from '../errors'
import { kernelFeatures } from '../features'
import { EXIT, formatSize } from './args'
import { isAlive } from './processes'

export const featuresHelp = `Usage: ublk features [--json]

Prints the running kernel's ublk feature flags by name: as GET_FEATURES
reports them (Linux 6.5+), or, on older kernels that cannot say, those the
mainline release of the running version has (stated as such).`

export async function features(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, strict: true })
  const f = await kernelFeatures()
  if (values.json) {
    console.log(JSON.stringify({ mask: `0x${f.mask.toString(16)}`, names: f.names, source: f.source, kernel: f.kernel }))
  } else {
    if (f.source !== 'GET_FEATURES') {
      console.log(`# Linux ${f.kernel} has no GET_FEATURES (6.5+): these are the features of its mainline release`)
    }
    console.log(`0x${f.mask.toString(16)}`)
    for (const name of f.names) console.log(name)
  }
  return EXIT.ok
}

export const listHelp = `Usage: ublk list [--json]

Lists every ublk device on this machine: id, state (the kernel's: LIVE,
QUIESCED, FAIL_IO, DEAD), size, queues, queue depth, recovery mode (what
happens to its IO when its server dies: off, reissue, fail-inflight,
fail-io), and the serving process (pid, and whether it is still alive).
A device whose server died and that has a recovery mode waits for
\`ublk recover\`.`

/** `UBLK_S_DEV_*` by value, as the kernel names them. */
const STATES = ['DEAD', 'LIVE', 'QUIESCED', 'FAIL_IO']

export interface ListedDevice {
  id: number
  state: string
  size: number
  queues: number
  queueDepth: number
  /** `off`, `reissue`, `fail-inflight` or `fail-io`. */
  recovery: string
  pid: number
  alive: boolean
  /** Its server is gone but the device waits for another (`ublk recover`). */
  recoverable: boolean
}

export function listedDevices(): ListedDevice[] {
  let devices: ReturnType<typeof native.listDevices>
  try {
    devices = native.listDevices()
  } catch (err) {
    throw fromNative(err)
  }
  return devices.map((d) => {
    const state = STATES[d.state] ?? `state ${d.state}`
    const alive = isAlive(d.ublksrvPid)
    return {
      id: d.id,
      state,
      size: d.size,
      queues: d.queues,
      queueDepth: d.queueDepth,
      recovery: d.recovery,
      pid: d.ublksrvPid,
      alive,
      recoverable: d.recovery !== 'off' && !alive && state !== 'DEAD',
    }
  })
}

export function list(argv: string[]): number {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean' } }, strict: true })
  const devices = listedDevices()
  if (values.json) {
    console.log(JSON.stringify(devices))
    return EXIT.ok
  }
  const rows = [['ID', 'STATE', 'SIZE', 'QUEUES', 'DEPTH', 'RECOVERY', 'PID', 'SERVER']]
  for (const d of devices) {
    const server = d.pid > 0 ? (d.alive ? 'alive' : d.recoverable ? 'gone (waits for ublk recover)' : 'gone') : '-'
    rows.push([String(d.id), d.state, formatSize(d.size), String(d.queues), String(d.queueDepth), d.recovery, d.pid > 0 ? String(d.pid) : '-', server])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd())
  return EXIT.ok
}
