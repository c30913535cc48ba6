// The counters behind dev.stats().
import test from 'ava'
import { C, COUNTER_FIELDS, emptyStats, newCounters, OP_COUNTERS, requestsOf, statsFrom } from '../../js/stats'

test('requestsOf counts every op once, and nothing else', (t) => {
  const counters = newCounters()
  COUNTER_FIELDS.forEach((f, i) => (counters[C[f]] = 10 ** i))
  // reads..other are the first six counters: 1 + 10 + ... + 100000.
  t.is(requestsOf(statsFrom(0, counters)), 111_111)
  t.is(requestsOf(emptyStats(3)), 0)
  t.deepEqual([...OP_COUNTERS], COUNTER_FIELDS.slice(0, OP_COUNTERS.length), 'the op counters lead the counter list')
})
