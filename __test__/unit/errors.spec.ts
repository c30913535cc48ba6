import test from 'ava'
import { UblkError } from '../../js'

test('UblkError takes an errno name and reports code and negative errno', (t) => {
  const err = new UblkError('ENOSPC')
  t.is(err.code, 'ENOSPC')
  t.is(err.errno, -28)
  t.is(err.name, 'UblkError')
  t.true(err instanceof Error)
})

test('UblkError takes a negative errno number and finds its name', (t) => {
  const err = new UblkError(-5, 'disk on fire')
  t.is(err.code, 'EIO')
  t.is(err.errno, -5)
  t.is(err.message, 'disk on fire')
})

test('UblkError rejects what is not an errno', (t) => {
  t.throws(() => new UblkError('ENOTANERRNO'), { instanceOf: RangeError })
  t.throws(() => new UblkError(5), { instanceOf: RangeError })
})
