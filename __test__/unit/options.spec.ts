import test from 'ava'
import { existsSync } from 'node:fs'
import { createDevice, NullBackend, recoverDevice, UblkError, type DeviceOptions } from '../../js'
import { buffersFromEnv, resolveCloseOptions, resolveOptions } from '../../js/options'
import native from '../../js/native'

const base = (): DeviceOptions => ({ size: 1 << 30, handler: new NullBackend() })

const invalid: Array<[string, Partial<DeviceOptions> | Record<string, unknown>, ErrorConstructor, RegExp]> = [
  ['size missing', { size: undefined }, TypeError, /options\.size/],
  ['size not a number', { size: '1G' }, TypeError, /options\.size/],
  ['size zero', { size: 0 }, RangeError, /options\.size/],
  ['size not a multiple of the block size', { size: 1000 }, RangeError, /options\.size/],
  ['logicalBlockSize not a power of two', { logicalBlockSize: 1536 }, RangeError, /options\.logicalBlockSize/],
  ['logicalBlockSize too large', { logicalBlockSize: 8192 }, RangeError, /options\.logicalBlockSize/],
  ['physicalBlockSize below logical', { logicalBlockSize: 4096, physicalBlockSize: 512 }, RangeError, /options\.physicalBlockSize/],
  ['queues zero', { queues: 0 }, RangeError, /options\.queues/],
  ['queues over the limit', { queues: 65 }, RangeError, /options\.queues.*<= 64/],
  ['requestTimeout negative', { requestTimeout: -1 }, RangeError, /options\.requestTimeout/],
  ['requestTimeout not a number', { requestTimeout: '5s' }, TypeError, /options\.requestTimeout/],
  ['requestTimeout fractional', { requestTimeout: 0.5 }, RangeError, /options\.requestTimeout/],
  ['queues fractional', { queues: 1.5 }, RangeError, /options\.queues/],
  ['queueDepth too deep', { queueDepth: 4097 }, RangeError, /options\.queueDepth/],
  ['queueDepth zero', { queueDepth: 0 }, RangeError, /options\.queueDepth/],
  ['maxIoSize not a page multiple', { maxIoSize: 5000 }, RangeError, /options\.maxIoSize/],
  ['maxIoSize over 32 MiB', { maxIoSize: 64 << 20 }, RangeError, /options\.maxIoSize/],
  ['readOnly not a boolean', { readOnly: 'yes' }, TypeError, /options\.readOnly/],
  ['rotational not a boolean', { rotational: 1 }, TypeError, /options\.rotational/],
  ['discard not a boolean', { discard: 'on' }, TypeError, /options\.discard/],
  ['fua without a write cache', { fua: true, writeCache: false }, RangeError, /options\.fua/],
  ['id negative', { id: -5 }, RangeError, /options\.id/],
  ['handler missing', { handler: undefined }, TypeError, /options\.handler/],
  ['handler without read', { handler: { write() {} } }, TypeError, /options\.handler\.read/],
  ['handler.flush not a function', { handler: { read() {}, flush: 1 } }, TypeError, /options\.handler\.flush/],
]

for (const [what, patch, type, message] of invalid) {
  test(`rejects ${what} before any kernel call`, async (t) => {
    const err = await t.throwsAsync(createDevice({ ...base(), ...patch } as DeviceOptions), { instanceOf: type })
    t.regex(err?.message ?? '', message)
  })
}

test('rejects options that are not an object', async (t) => {
  await t.throwsAsync(createDevice(undefined as unknown as DeviceOptions), { instanceOf: TypeError, message: /"options"/ })
})

;(existsSync('/dev/ublk-control') ? test.skip : test)(
  'createDevice without /dev/ublk-control rejects with a UblkError that says to load ublk_drv',
  async (t) => {
    const err = await t.throwsAsync(createDevice(base()), { instanceOf: UblkError })
    t.is(err?.code, 'ENOENT')
    t.regex(err?.message ?? '', /ublk_drv/)
  },
)

test('UBLK_BUFFERS accepts js and external, and names itself when wrong', (t) => {
  t.is(buffersFromEnv({}), undefined)
  t.is(buffersFromEnv({ UBLK_BUFFERS: 'js' }), 'js')
  t.is(buffersFromEnv({ UBLK_BUFFERS: 'external' }), 'external')
  t.throws(() => buffersFromEnv({ UBLK_BUFFERS: 'copy' }), { instanceOf: RangeError, message: /UBLK_BUFFERS/ })
})

test('rustNullHandler takes no handler, and a handler is required without it', async (t) => {
  await t.throwsAsync(createDevice({ size: 1 << 20, rustNullHandler: true, handler: new NullBackend() }), {
    instanceOf: TypeError,
    message: /options\.handler.*rustNullHandler/,
  })
  await t.throwsAsync(createDevice({ size: 1 << 20 }), { instanceOf: TypeError, message: /options\.handler/ })
  await t.throwsAsync(createDevice({ size: 1 << 20, rustNullHandler: 1 as unknown as boolean }), {
    instanceOf: TypeError,
    message: /options\.rustNullHandler/,
  })
})

test('the addon itself refuses options that do not fit, before any kernel call', (t) => {
  for (const bad of [
    { size: 1.5 },
    { size: Number.NaN },
    { size: -4096 },
    { size: 1 << 20, queues: 70_000 },
    { size: 1 << 20, queueDepth: 5000 },
    { size: 1 << 20, queues: 0 },
    { size: 1 << 20, maxIoSize: 4095 },
    { size: 1 << 20, logicalBlockSize: 3000 },
  ]) {
    t.throws(() => new native.NativeDevice(bad), { code: 'InvalidArg' }, JSON.stringify(bad))
  }
})

test('the limits come from the addon', (t) => {
  t.is(native.UBLK_MAX_QUEUE_DEPTH, 4096)
  t.is(native.MAX_IO_BUF_BYTES, 32 << 20)
  t.is(native.REQUEST_WORDS, 5)
})

test('recoverDevice refuses geometry options (the device keeps its own) before any kernel call', async (t) => {
  const handler = { read() {} }
  for (const name of ['size', 'queues', 'queueDepth', 'logicalBlockSize', 'recovery', 'id']) {
    const err = await t.throwsAsync(recoverDevice(3, { handler, [name]: 1 } as never), { instanceOf: TypeError })
    t.regex(err?.message ?? '', new RegExp(`options\\.${name}.*takes it from the device`))
  }
  await t.throwsAsync(recoverDevice(-1, { handler }), { instanceOf: RangeError })
})

test('recovery must be false or a mode', (t) => {
  const handler = { read() {} }
  t.is(resolveOptions({ size: 4096, handler }).native.recovery, 'off')
  t.is(resolveOptions({ size: 4096, handler, recovery: 'reissue' }).native.recovery, 'reissue')
  t.throws(() => resolveOptions({ size: 4096, handler, recovery: true }), { instanceOf: TypeError, message: /options\.recovery.*'reissue', 'fail-inflight', 'fail-io'/ })
})

test('close options: ifUnused must be a boolean', (t) => {
  t.deepEqual(resolveCloseOptions(undefined), { ifUnused: false })
  t.deepEqual(resolveCloseOptions({ ifUnused: true }), { ifUnused: true })
  t.throws(() => resolveCloseOptions({ ifUnused: 1 }), { instanceOf: TypeError, message: /options\.ifUnused.*boolean/ })
  t.throws(() => resolveCloseOptions('yes'), { instanceOf: TypeError, message: /"options" argument must be of type object/ })
})
