// The production dispatch path driven by the addon's synthetic request
// source (no kernel): batches cross the threadsafe function, the dispatcher
// calls the handler with views of the slots, completions come back batched.
import test from 'ava'
import { measureDispatch } from '../../bench/dispatch'
import { NullBackend, UblkError, type RequestContext } from '../../js'

test('every request reaches the handler once, with its offset and a 4 KiB view', async (t) => {
  const seen: Array<[number, number, RequestContext]> = []
  const handler = {
    read(buf: Buffer, offset: number, ctx: RequestContext) {
      seen.push([offset, buf.length, ctx])
      buf.fill(1)
    },
  }
  const result = await measureDispatch(handler, 8, 100)
  t.is(result.requests, 100)
  t.is(seen.length, 100)
  t.deepEqual(
    seen.map(([offset]) => offset),
    Array.from({ length: 100 }, (_, i) => i * 4096),
  )
  t.true(seen.every(([, length, ctx]) => length === 4096 && ctx.op === 'read' && ctx.queue === 0 && ctx.tag < 8))
})

test('async handlers complete through the same path', async (t) => {
  let calls = 0
  const handler = {
    async read(buf: Buffer) {
      await new Promise((resolve) => setImmediate(resolve))
      calls++
      buf.fill(0)
    },
  }
  const result = await measureDispatch(handler, 64, 500)
  t.is(result.requests, 500)
  t.is(calls, 500)
})

test('a failed request comes back as an error result', async (t) => {
  const handler = {
    read() {
      throw new UblkError('EIO')
    },
  }
  await t.throwsAsync(measureDispatch(handler, 1, 1), { message: /synthetic run failed/ })
})

test('reports a positive rate for each batch size', async (t) => {
  for (const batch of [1, 8, 64, 128]) {
    const r = await measureDispatch(new NullBackend(), batch, 1000)
    t.true(r.requestsPerSecond > 0 && Number.isFinite(r.nsPerRequest), `batch ${batch}`)
  }
})
