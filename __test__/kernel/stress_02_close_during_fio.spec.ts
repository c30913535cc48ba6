// stress_02: closing a device while fio hammers it: fio sees errors, close()
// resolves within seconds, the kernel logs no oops, and the server process
// exits by itself afterwards.
import test from 'ava'
import { join } from 'node:path'
import { exec, kernelTrouble, requireUblkKernel, spawnServer, ublkBlockDevices } from './helpers'

const SERVE = join(__dirname, 'fixtures', 'serve.js')

test('close() while fio runs: fio fails, close resolves, node exits on its own', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], {
    env: { ...process.env, UBLK_TEST_CLOSE_ON_STDIN: '1', UBLK_TEST_QUEUES: '2' },
    stdin: true,
    t,
  })
  const path = server.path

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
  server.proc.stdin!.write('close\n')
  const fioResult = await fio
  t.not(fioResult.code, 0, 'fio saw the device go away')
  const { code } = await Promise.race([
    server.exited(),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error('server did not exit')), 30_000)),
  ])
  t.is(code, 0)
  const closed = server.output().split('\n').find((l) => l.startsWith('closed '))
  t.truthy(closed, 'close() resolved')
  t.true(Number(closed?.split(' ')[1]) < 15_000, `close took ${closed}`)
  t.deepEqual(ublkBlockDevices(), [])
  t.deepEqual(kernelTrouble(), [])
})

test('a server that never closes keeps serving until SIGTERM, which removes the device', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], { t })
  await new Promise((r) => setTimeout(r, 2000))
  t.is(server.proc.exitCode, null, 'still serving without being told to close')
  const read = await exec('dd', [`if=${server.path}`, 'of=/dev/null', 'bs=64k', 'count=16', 'iflag=direct'])
  t.is(read.code, 0, read.stderr)
  const { code, signal } = await server.stop()
  t.true(signal === 'SIGTERM' || code !== 0, `died of the signal (code ${code}, signal ${signal})`)
  t.deepEqual(ublkBlockDevices(), [])
})

test('process.exit() without close() still deletes the device', async (t) => {
  requireUblkKernel()
  const server = await spawnServer([SERVE], { env: { ...process.env, UBLK_TEST_EXIT_AFTER_START: '1' }, t })
  const { code } = await server.exited()
  t.is(code, 0)
  t.deepEqual(ublkBlockDevices(), [])
})
