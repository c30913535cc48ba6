// stress_02: closing a device while fio hammers it: fio sees errors, close()
// resolves within seconds, the kernel logs no oops, and the server process
// exits by itself afterwards.
import test from 'ava'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { once } from 'node:events'
import { exec, kernelTrouble, requireUblkKernel, ublkBlockDevices } from './helpers'

test('close() while fio runs: fio fails, close resolves, node exits on its own', async (t) => {
  requireUblkKernel()
  const server = spawn(process.execPath, [join(__dirname, 'fixtures', 'serve.js')], {
    env: { ...process.env, UBLK_TEST_CLOSE_ON_STDIN: '1', UBLK_TEST_QUEUES: '2' },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  t.teardown(() => server.kill('SIGKILL'))
  const lines: string[] = []
  server.stdout.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)))
  while (lines.length === 0) await once(server.stdout, 'data')
  const path = lines[0]
  t.regex(path, /^\/dev\/ublkb\d+$/)

  const fio = exec('fio', [
    '--name=busy',
    `--filename=${path}`,
    '--rw=randrw',
    '--bs=4k',
    '--iodepth=32',
    '--ioengine=io_uring',
    '--direct=1',
    '--time_based',
    '--runtime=60',
  ])
  await new Promise((r) => setTimeout(r, 3000))
  server.stdin.write('close\n')
  const exited = once(server, 'exit')
  const fioResult = await fio
  t.not(fioResult.code, 0, 'fio saw the device go away')
  const [code] = await Promise.race([exited, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('server did not exit')), 30_000))])
  t.is(code, 0)
  const closed = lines.find((l) => l.startsWith('closed '))
  t.truthy(closed, 'close() resolved')
  t.true(Number(closed?.split(' ')[1]) < 15_000, `close took ${closed}`)
  t.deepEqual(ublkBlockDevices(), [])
  t.deepEqual(kernelTrouble(), [])
})

test('a server that never closes keeps serving until SIGTERM, which removes the device', async (t) => {
  requireUblkKernel()
  const server = spawn(process.execPath, [join(__dirname, 'fixtures', 'serve.js')], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => server.kill('SIGKILL'))
  const [first] = (await once(server.stdout, 'data')) as [Buffer]
  const path = first.toString().trim()
  await new Promise((r) => setTimeout(r, 2000))
  t.is(server.exitCode, null, 'still serving without being told to close')
  const read = await exec('dd', [`if=${path}`, 'of=/dev/null', 'bs=64k', 'count=16', 'iflag=direct'])
  t.is(read.code, 0, read.stderr)
  server.kill('SIGTERM')
  const [code, signal] = await once(server, 'exit')
  t.true(signal === 'SIGTERM' || code !== 0, `died of the signal (code ${code}, signal ${signal})`)
  t.deepEqual(ublkBlockDevices(), [])
})

test('process.exit() without close() still deletes the device', async (t) => {
  requireUblkKernel()
  const server = spawn(process.execPath, [join(__dirname, 'fixtures', 'serve.js')], {
    env: { ...process.env, UBLK_TEST_EXIT_AFTER_START: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => server.kill('SIGKILL'))
  const [first] = (await once(server.stdout, 'data')) as [Buffer]
  t.regex(first.toString(), /^\/dev\/ublkb\d+/)
  const [code] = await once(server, 'exit')
  t.is(code, 0)
  t.deepEqual(ublkBlockDevices(), [])
})
