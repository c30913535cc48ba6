// The `ublk` command's parts that need no kernel: argument parsing, usage
// errors and their exit codes, help.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { formatSize, parseSize, UsageError } from '../../js/cli/args'

const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js')
const ublk = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' })

test('sizes take binary units', (t) => {
  t.is(parseSize('4096'), 4096)
  t.is(parseSize('512K'), 512 << 10)
  t.is(parseSize('64M'), 64 << 20)
  t.is(parseSize('1GiB'), 2 ** 30)
  t.is(parseSize('1.5G'), 1.5 * 2 ** 30)
  t.is(parseSize('2t'), 2 * 2 ** 40)
  for (const bad of ['', 'lots', '-1G', '0', '1.3']) t.throws(() => parseSize(bad), { instanceOf: UsageError }, bad)
  t.is(formatSize(64 << 20), '64M')
  t.is(formatSize(1536), '1.5K')
})

test('every command has --help, and no command prints the overview with exit 2', (t) => {
  for (const cmd of ['features', 'list', 'delete', 'serve', 'recover', 'detach']) {
    const r = ublk(cmd, '--help')
    t.is(r.status, 0, cmd)
    t.regex(r.stdout, new RegExp(`Usage: ublk ${cmd}`))
  }
  const none = ublk()
  t.is(none.status, 2)
  t.regex(none.stdout, /Commands:/)
  t.is(ublk('--help').status, 0)
})

test('usage errors exit 2 and say what is wrong', (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['serve'], /one module to serve, or --backend/],
    [['serve', '--backend', 'tape', '--size', '1G'], /--backend must be memory, null, file:<path> or s3:\/\/<bucket>\/<prefix>/],
    [['serve', '--backend', 's3://'], /--backend s3:\/\/ needs a bucket/],
    [['serve', '--backend', 's3://Not_A_Bucket/vm1'], /bucket must be a valid S3 bucket name/],
    [['serve', '--backend', 's3://disks/vm1', '--object-size', '3000'], /objectSize must be from 65536/],
    [['serve', '--backend', 's3://disks/vm1', '--endpoint', 'localhost:7480'], /endpoint must be an http/],
    [['serve', '--backend', 'memory', '--size', '1G', '--endpoint', 'http://127.0.0.1:7480'], /--endpoint is an option of --backend s3:\/\//],
    [['serve', '--backend', 'null', '--size', 'huge'], /--size must be a byte count/],
    [['serve', '--backend', 'null', '--size', '1G', '--queues', '0'], /--queues must be a positive integer/],
    [['delete'], /give device ids, or --all, or --dead/],
    [['delete', '--all', '3'], /give device ids, or --all, or --dead/],
    [['list', '--bogus'], /bogus/],
    [['detach'], /give one device id/],
    [['detach', 'ublkb3'], /a device id is a number/],
    [['detach', '3', '--timeout', '0'], /--timeout must be a positive number/],
    [['serve', '--backend', 'null', '--size', '1G', '--recovery', 'always'], /--recovery must be reissue, fail-inflight, fail-io/],
  ]
  for (const [args, message] of cases) {
    const r = ublk(...args)
    t.is(r.status, 2, args.join(' '))
    t.regex(r.stderr, message, args.join(' '))
  }
})

test('serving a module whose default export is no handler is a usage error', (t) => {
  const r = ublk('serve', join(__dirname, '..', '..', 'package.json'), '--size', '1M')
  t.is(r.status, 2, r.stderr)
})

test('a TypeScript module is loaded through tsx, then checked', (t) => {
  const r = ublk('serve', join(__dirname, 'fixtures', 'not-a-handler.ts'), '--size', '1M')
  t.is(r.status, 2, r.stderr)
  t.regex(r.stderr, /not-a-handler\.ts: the default export must be a handler object/)
})
