#!/usr/bin/env node
// The `ublk` command: features, list, delete, serve, recover, detach. Each has --help.
import { UblkError } from '../errors'
import { EXIT, UsageError } from './args'
import { deleteHelp, remove } from './delete'
import { detach, detachHelp } from './detach'
import { features, featuresHelp, list, listHelp } from './info'
import { recover, recoverHelp, serve, serveHelp } from './serve'

const HELP = `Usage: ublk <command> [options]

Commands:
  features   the running kernel's ublk feature flags
  list       every ublk device on this machine and who serves it
  delete     remove devices (e.g. left behind by a server that died)
  serve      serve a handler module or a shipped backend as /dev/ublkbN
  recover    serve again a device whose server died (one served with --recovery)
  detach     hand a device served with --recovery to a successor (ublk recover)

Run "ublk <command> --help" for a command's options. Most commands need root.`

const COMMANDS: Record<string, { help: string; run: (argv: string[]) => number | Promise<number> }> = {
  features: { help: featuresHelp, run: features },
  list: { help: listHelp, run: list },
  delete: { help: deleteHelp, run: remove },
  serve: { help: serveHelp, run: serve },
  recover: { help: recoverHelp, run: recover },
  detach: { help: detachHelp, run: detach },
}

/** Advice for the errors users actually hit, unless the message has it. */
function advice(err: UblkError): string {
  if (err.code === 'ENOENT' && !/modprobe|ublk_drv|CONFIG_BLK_DEV_UBLK/.test(err.message)) return 'is the ublk_drv module loaded? (sudo modprobe ublk_drv)'
  if ((err.code === 'EACCES' || err.code === 'EPERM') && !/root/.test(err.message)) return 'ublk needs root (CAP_SYS_ADMIN): run it with sudo'
  return ''
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP)
    return name === undefined ? EXIT.usage : EXIT.ok
  }
  const command = COMMANDS[name]
  if (!command) {
    console.error(`ublk: unknown command "${name}"\n\n${HELP}`)
    return EXIT.usage
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.help)
    return EXIT.ok
  }
  try {
    return await command.run(rest)
  } catch (err) {
    const e = err as Error & { code?: string }
    if (err instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`ublk ${name}: ${e.message}\n\n${command.help}`)
      return EXIT.usage
    }
    if (err instanceof UblkError) {
      const hint = advice(err)
      console.error(`ublk ${name}: ${err.message}${hint ? ` (${hint})` : ''}`)
      return EXIT.failed
    }
    if (e instanceof RangeError || e instanceof TypeError) {
      console.error(`ublk ${name}: ${e.message}`)
      return EXIT.usage
    }
    console.error(`ublk ${name}: ${e.code ? `${e.code}: ` : ''}${e.message}`)
    return EXIT.failed
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
