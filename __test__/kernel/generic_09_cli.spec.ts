// generic_09: the `ublk` command against the real driver: features, serve
// (a backend, a file, a module), list, and delete (refusing a live server,
// cleaning up after a dead one).
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exec, requireUblkKernel, sh, ublkBlockDevices } from './helpers'

const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js')

function ublk(...args: string[]) {
  return exec(process.execPath, [CLI, ...args])
}

/** Starts `ublk serve ...` and resolves with the process and its device path. */
async function serve(t: { teardown(fn: () => unknown): void }, ...args: string[]): Promise<{ server: ChildProcess; path: string; id: number }> {
  const server = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => server.kill('SIGKILL'))
  const [first] = (await Promise.race([once(server.stdout!, 'data'), once(server, 'exit')])) as [Buffer | number]
  if (!Buffer.isBuffer(first)) throw new Error(`ublk serve ${args.join(' ')} exited ${first}`)
  const path = first.toString().trim()
  return { server, path, id: Number(/^\/dev\/ublkb(\d+)$/.exec(path)?.[1]) }
}

async function stop(server: ChildProcess): Promise<void> {
  server.kill('SIGTERM')
  if (server.exitCode === null && server.signalCode === null) await once(server, 'exit')
}

test('features prints the mask and the flag names', async (t) => {
  requireUblkKernel()
  const r = await ublk('features')
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^0x[0-9a-f]+\n/)
  t.regex(r.stdout, /UBLK_F_USER_RECOVERY/)
})

test('serve --backend memory shows in list, delete refuses while it lives, SIGTERM removes it', async (t) => {
  requireUblkKernel()
  const { server, path, id } = await serve(t, '--backend', 'memory', '--size', '64M', '--queues', '2')
  await sh('dd', ['if=/dev/urandom', `of=${path}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none'])
  const list = await ublk('list', '--json')
  t.is(list.code, 0, list.stderr)
  const entry = JSON.parse(list.stdout).find((d: { id: number }) => d.id === id)
  t.like(entry, { state: 'live', size: 64 << 20, queues: 2, queueDepth: 128, pid: server.pid, alive: true })
  const table = await ublk('list')
  t.regex(table.stdout, new RegExp(`^${id}\\s+live\\s+64M\\s+2\\s+128\\s+${server.pid}\\s+alive$`, 'm'))
  const refused = await ublk('delete', String(id))
  t.is(refused.code, 3)
  t.regex(refused.stderr, new RegExp(`pid ${server.pid}`))
  t.true(ublkBlockDevices().includes(`ublkb${id}`), 'still there')
  await stop(server)
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
})

test('delete --dead removes the device a killed server left behind', async (t) => {
  requireUblkKernel()
  const { server, id } = await serve(t, '--backend', 'null', '--size', '16M')
  server.kill('SIGKILL')
  await once(server, 'exit')
  const list = JSON.parse((await ublk('list', '--json')).stdout) as Array<{ id: number; alive: boolean }>
  t.like(list.find((d) => d.id === id), { alive: false })
  const r = await ublk('delete', '--dead')
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, new RegExp(`deleted ${id}`))
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
  const again = await ublk('delete', String(id))
  t.is(again.code, 1)
  t.regex(again.stderr, /no device/)
})

test('serve <module> serves a handler factory; serve --backend file: serves a file', async (t) => {
  requireUblkKernel()
  const mod = await serve(t, join(__dirname, 'fixtures', 'xor-handler.js'), '--size', '8M')
  await sh('sh', ['-c', `printf 'hello ublk' | dd of=${mod.path} bs=4096 conv=sync oflag=direct status=none`])
  const back = await sh('dd', [`if=${mod.path}`, 'bs=4096', 'count=1', 'iflag=direct', 'status=none'])
  t.is(back.slice(0, 10), 'hello ublk')
  await stop(mod.server)

  const dir = mkdtempSync(join(tmpdir(), 'ublk-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const image = join(dir, 'disk.img')
  await writeFile(image, '')
  await truncate(image, 4 << 20)
  const file = await serve(t, '--backend', `file:${image}`)
  await sh('sh', ['-c', `printf 'on the file' | dd of=${file.path} bs=4096 seek=3 conv=sync oflag=direct status=none`])
  await stop(file.server)
  t.is((await readFile(image)).subarray(3 * 4096, 3 * 4096 + 11).toString(), 'on the file')
})

test('usage errors exit 2 with the command help', async (t) => {
  const r = await ublk('serve', '--backend', 'memory')
  t.is(r.code, 2)
  t.regex(r.stderr, /needs --size/)
  t.regex(r.stderr, /Usage: ublk serve/)
  t.is((await ublk('nonsense')).code, 2)
  const help = await ublk('delete', '--help')
  t.is(help.code, 0)
  t.regex(help.stdout, /--dead/)
})
