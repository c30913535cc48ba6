// Worker mode before the kernel is involved: each queue's worker loads its
// handler module before the device is added, so a module that cannot load
// rejects createDevice with its own error, and nothing is left running.
import test from 'ava'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { createDevice, NullBackend, UblkError } from '../../js'

const fixtures = join(__dirname, '..', 'kernel', 'fixtures')

test('a worker module that throws at load rejects createDevice with its error', async (t) => {
  await t.throwsAsync(createDevice({ size: 1 << 20, queues: 2, workers: { module: join(fixtures, 'throws-at-load.js') } }), {
    message: /broken on purpose/,
  })
})

test('a worker module without a handler export is refused by name', async (t) => {
  await t.throwsAsync(createDevice({ size: 1 << 20, workers: { module: join(__dirname, 'fixtures', 'not-a-handler.ts') } }), {
    message: /not-a-handler\.ts: the default export must be a handler/,
  })
})

test('a missing worker module is refused', async (t) => {
  await t.throwsAsync(createDevice({ size: 1 << 20, workers: { module: join(fixtures, 'no-such-module.js') } }), {
    message: /Cannot find module|ERR_MODULE_NOT_FOUND|no-such-module/,
  })
})

;(existsSync('/dev/ublk-control') ? test.skip : test)('workers that loaded are stopped when the kernel refuses the device', async (t) => {
  const memory = new SharedArrayBuffer(1 << 20)
  const err = await t.throwsAsync(
    createDevice({ size: 1 << 20, queues: 2, workers: { module: join(fixtures, 'shared-memory-handler.js'), data: { memory } } }),
    { instanceOf: UblkError },
  )
  t.is(err?.code, 'ENOENT')
})

test('workers and handler (or rustNullHandler) are exclusive, and the module is required', async (t) => {
  const workers = { module: join(fixtures, 'shared-memory-handler.js') }
  await t.throwsAsync(createDevice({ size: 1 << 20, handler: new NullBackend(), workers }), { instanceOf: TypeError, message: /options\.handler/ })
  await t.throwsAsync(createDevice({ size: 1 << 20, rustNullHandler: true, workers }), { instanceOf: TypeError, message: /options\.workers/ })
  await t.throwsAsync(createDevice({ size: 1 << 20, workers: {} as never }), { instanceOf: TypeError, message: /options\.workers\.module/ })
  await t.throwsAsync(createDevice({ size: 1 << 20, workers: { ...workers, pin: 'yes' as never } }), {
    instanceOf: TypeError,
    message: /options\.workers\.pin" property must be a boolean/,
  })
})
