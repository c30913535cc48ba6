// generic_09: the `ublk` command against the real driver: features, serve
// (a backend, a file, a module), list, and delete (refusing a live server,
// cleaning up after a dead one).
import test from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, kernelVersion, requireUblkKernel, sh, spawnServer, tempImage, ublk, ublkBlockDevices, type Server } from './helpers'

/** Starts `ublk serve ...` and resolves once its device is live. */
function serve(t: { teardown(fn: () => unknown): void }, ...args: string[]): Promise<Server> {
  return spawnServer([CLI, 'serve', ...args], { t })
}

test('features prints the mask and the flag names, and says when the kernel cannot report them', async (t) => {
  requireUblkKernel()
  const r = await ublk('features')
  t.is(r.code, 0, r.stderr)
  const [major, minor] = kernelVersion()
  if (major === 6 && minor < 5) {
    t.regex(r.stdout, /^# Linux \S+ has no GET_FEATURES \(6\.5\+\): these are the features of its mainline release\n0x[0-9a-f]+\n/)
  } else {
    t.regex(r.stdout, /^0x[0-9a-f]+\n/)
  }
  t.regex(r.stdout, /UBLK_F_USER_RECOVERY/)
  const json = JSON.parse((await ublk('features', '--json')).stdout)
  t.is(json.source, major === 6 && minor < 5 ? 'kernel version' : 'GET_FEATURES')
})

test.serial('serve --backend memory shows in list, delete refuses while it lives, SIGTERM removes it', async (t) => {
  requireUblkKernel()
  const server = await serve(t, '--backend', 'memory', '--size', '64M', '--queues', '2')
  const { path, id } = server
  const pid = server.proc.pid
  await sh('dd', ['if=/dev/urandom', `of=${path}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none'])
  const list = await ublk('list', '--json')
  t.is(list.code, 0, list.stderr)
  const entry = JSON.parse(list.stdout).find((d: { id: number }) => d.id === id)
  t.like(entry, { state: 'LIVE', size: 64 << 20, queues: 2, queueDepth: 128, recovery: 'off', pid, alive: true, recoverable: false })
  const table = await ublk('list')
  t.regex(table.stdout, new RegExp(`^${id}\\s+LIVE\\s+64M\\s+2\\s+128\\s+off\\s+${pid}\\s+alive$`, 'm'))
  const refused = await ublk('delete', String(id))
  t.is(refused.code, 3)
  t.regex(refused.stderr, new RegExp(`pid ${pid}`))
  t.true(ublkBlockDevices().includes(`ublkb${id}`), 'still there')
  await server.stop()
  t.false(ublkBlockDevices().includes(`ublkb${id}`))
})

test.serial('a killed server without recovery leaves a DEAD device, and delete --dead removes it', async (t) => {
  requireUblkKernel()
  const server = await serve(t, '--backend', 'null', '--size', '16M')
  const id = server.id
  await server.stop('SIGKILL')
  // The kernel stops a device without recovery once its server is gone (6.1
  // notices from its monitor work, every 5 s): DEAD, with no server.
  let listed: { id: number; alive: boolean; state: string } | undefined
  for (let i = 0; i < 300; i++) {
    const list = JSON.parse((await ublk('list', '--json')).stdout) as Array<{ id: number; alive: boolean; state: string }>
    listed = list.find((d) => d.id === id)
    if (listed?.state === 'DEAD') break
    await new Promise((r) => setTimeout(r, 50))
  }
  t.like(listed, { alive: false, state: 'DEAD' })
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
  await mod.stop()

  const image = await tempImage(t, 4 << 20)
  const file = await serve(t, '--backend', `file:${image}`)
  await sh('sh', ['-c', `printf 'on the file' | dd of=${file.path} bs=4096 seek=3 conv=sync oflag=direct status=none`])
  await file.stop()
  t.is((await readFile(image)).subarray(3 * 4096, 3 * 4096 + 11).toString(), 'on the file')
})

test('serve <module> --workers serves the module on a worker thread', async (t) => {
  requireUblkKernel()
  const mod = await serve(t, join(__dirname, 'fixtures', 'xor-handler.js'), '--size', '8M', '--workers')
  await sh('sh', ['-c', `printf 'hello worker' | dd of=${mod.path} bs=4096 seek=5 conv=sync oflag=direct status=none`])
  const back = await sh('dd', [`if=${mod.path}`, 'bs=4096', 'skip=5', 'count=1', 'iflag=direct', 'status=none'])
  t.is(back.slice(0, 12), 'hello worker')
  const { code, signal } = await mod.stop()
  t.true(code === 0 || signal === 'SIGTERM', `exit ${code ?? signal}`)
  t.false(ublkBlockDevices().includes(`ublkb${mod.id}`))
})

test('usage errors exit 2 with the command help', async (t) => {
  const r = await ublk('serve', '--backend', 'memory')
  t.is(r.code, 2)
  t.regex(r.stderr, /needs --size/)
  t.regex(r.stderr, /Usage: ublk serve/)
  t.is((await ublk('nonsense')).code, 2)
  const both = await ublk('serve', '--backend', 'memory', '--size', '8M', '--workers')
  t.is(both.code, 2)
  t.regex(both.stderr, /--workers serves a module/)
  const help = await ublk('delete', '--help')
  t.is(help.code, 0)
  t.regex(help.stdout, /--dead/)
})
