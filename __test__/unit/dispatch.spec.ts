// The production dispatch path driven by the addon's synthetic request
// source (no kernel): requests cross the request ring (notified through the
// threadsafe function), the dispatcher calls the handler with views of the
// slots, completions come back through the completion ring.
import test from 'ava'
import { measureDispatch, measureDispatchInWorker, type DispatchBudget } from '../../bench/dispatch'
import { ASYNC_NULL } from '../../bench/dispatch-names'
import { NullBackend, UblkError, type RequestContext } from '../../js'
import { QueueDispatcher } from '../../js/dispatcher'
import native from '../../js/native'
import { QueueRing } from '../../js/ring'

type SyntheticQueue = InstanceType<typeof native.SyntheticQueue>

/** One synthetic run of `requests`, no warm-up. */
const once = (requests: number): DispatchBudget => ({ chunk: requests, warmupMs: 0, measureMs: 0 })

/** `queue` as a dispatcher's port, keeping a view of the ring it hands out. */
function portKeepingRing(queue: SyntheticQueue) {
  let ring: Int32Array | undefined
  const port = {
    queueBuffer: (q: number) => queue.queueBuffer(q),
    replaceSlot: (q: number, id: number) => queue.replaceSlot(q, id),
    slotBytes: (q: number) => queue.slotBytes(q),
    complete: (q: number, pairs: Int32Array) => queue.complete(q, pairs),
    wake: (q: number) => queue.wake(q),
    queueRing(q: number) {
      const buffer = queue.queueRing(q)
      ring = new Int32Array(buffer)
      return buffer
    },
  }
  return { port, ring: () => ring! }
}

test('every request reaches the handler once, with its offset and a 4 KiB view', async (t) => {
  const seen: Array<[number, number, RequestContext]> = []
  const handler = {
    read(buf: Buffer, offset: number, ctx: RequestContext) {
      seen.push([offset, buf.length, ctx])
      buf.fill(1)
    },
  }
  const result = await measureDispatch(handler, 8, once(100))
  t.is(result.requests, 100)
  const notified = result.notifications ?? -1
  t.true(notified >= 13 && notified <= 100, `${notified} notifications for 13 batches`)
  t.is(seen.length, 100)
  t.deepEqual(
    seen.map(([offset]) => offset),
    Array.from({ length: 100 }, (_, i) => i * 4096),
  )
  t.true(seen.every(([, length, ctx]) => length === 4096 && ctx.op === 'read' && ctx.queue === 0 && ctx.tag < 8))
})

test('a figure counts only its measured runs, not its warm-up, and runs whole chunks for its time', async (t) => {
  let calls = 0
  const handler = {
    read(buf: Buffer) {
      calls++
      buf.fill(0)
    },
  }
  const result = await measureDispatch(handler, 8, { chunk: 100, warmupMs: 1, measureMs: 30 })
  t.true(result.requests >= 100 && result.requests % 100 === 0, `${result.requests} requests measured`)
  t.true(calls > result.requests, `${calls} served in all, the warm-up's included`)
  const notified = result.notifications ?? -1
  t.true(notified >= result.requests / 8 && notified <= result.requests, `${notified} notifications counted for ${result.requests} requests`)
})

test('a worker attached through the router serves the same requests', async (t) => {
  for (const batch of [1, 64]) {
    const result = await measureDispatchInWorker(ASYNC_NULL, batch, once(1000))
    t.is(result.requests, 1000, `batch ${batch}`)
  }
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
  const result = await measureDispatch(handler, 64, once(500))
  t.is(result.requests, 500)
  t.is(calls, 500)
})

test('a failed request comes back as an error result', async (t) => {
  const handler = {
    read() {
      throw new UblkError('EIO')
    },
  }
  await t.throwsAsync(measureDispatch(handler, 1, once(1)), { message: /synthetic run failed/ })
})

test('reports a positive rate for each batch size', async (t) => {
  for (const batch of [1, 8, 64, 128]) {
    const r = await measureDispatch(new NullBackend(), batch, once(1000))
    t.true(r.requestsPerSecond > 0 && Number.isFinite(r.nsPerRequest), `batch ${batch}`)
  }
})

test('a handler that never settles fails its request with ETIMEDOUT; its late result is ignored', async (t) => {
  const queue = new native.SyntheticQueue(8, 4096)
  const errors: unknown[] = []
  let settleLate: (() => void) | undefined
  const buffers: Buffer[] = []
  const handler = {
    read(buf: Buffer, offset: number, ctx: RequestContext) {
      if (ctx.tag === 0) buffers.push(buf)
      if (offset !== 0 || settleLate) return
      return new Promise<void>((resolve) => (settleLate = resolve))
    },
  }
  const dispatcher = new QueueDispatcher(queue, 0, handler, { onRequestError: (err) => errors.push(err), requestTimeout: 80 })
  t.teardown(() => dispatcher.dispose())
  const started = Date.now()
  const outcome = await queue.run(() => dispatcher.onNotify(), 2, 2)
  const waited = Date.now() - started
  t.is(outcome.error?.code, 'ETIMEDOUT', 'the synthetic source saw the timed-out result')
  t.true(waited >= 80, `failed after ${waited} ms, not before the timeout`)
  t.is(errors.length, 1)
  t.true(errors[0] instanceof UblkError && errors[0].code === 'ETIMEDOUT')
  t.is(dispatcher.stats.timedOut, 1)
  t.is(dispatcher.stats.inFlight, 0)
  settleLate?.()
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.is(dispatcher.stats.inFlight, 0, 'the late result changed nothing')
  t.is(queue.rejectedCompletions(0), 0, 'and never reached the addon')
  // The timed-out request's slot was retired: tag 0's next request has a
  // buffer of its own, which a late write into the old one cannot touch.
  const again = await queue.run(() => dispatcher.onNotify(), 1, 1)
  t.is(again.error, undefined)
  t.is(buffers.length, 2)
  t.not(buffers[1].buffer, buffers[0].buffer, 'a different ArrayBuffer')
  buffers[0].fill(0xee)
  t.false(buffers[1].includes(0xee), 'the late handler cannot reach the new slot')
  t.throws(() => queue.replaceSlot(0, 0), undefined, 'only a request the handlers hold can have its slot replaced')
})

test('the addon drops out-of-range, repeated and stale completions and counts them', async (t) => {
  const queue = new native.SyntheticQueue(8, 4096)
  t.is(queue.complete(0, Int32Array.from([5000, 0, -1, 0, 3, 0])), 3, 'none of these tags is held')
  t.is(queue.rejectedCompletions(0), 3)
  // With every request served, replay every completion the ring holds
  // through the native path: old ones (stale or repeated) and, at times, one
  // the source has not taken yet (which then goes through once). The run
  // still sees each request completed once, with its own result.
  const { port, ring } = portKeepingRing(queue)
  const replay = () => {
    const r = ring()
    const at = r[native.RING_COMPLETIONS_AT]
    queue.complete(0, r.slice(at, at + r[native.RING_CAPACITY] * native.COMPLETION_WORDS))
  }
  const handler = {
    read(buf: Buffer) {
      replay()
      buf.fill(0)
    },
  }
  const dispatcher = new QueueDispatcher(port, 0, handler, { onRequestError: () => {}, requestTimeout: 0 })
  const outcome = await queue.run(() => dispatcher.onNotify(), 4, 400)
  t.is(outcome.error, undefined)
  t.is(outcome.requests, 400)
  t.true(queue.rejectedCompletions(0) >= 3 + 400, `${queue.rejectedCompletions(0)} rejected`)
})

test('a dispatcher writes no more completions than the ring has room for: the rest go by the native path', async (t) => {
  // A source of batches as deep as the queue (8, ring capacity 8) whose
  // completions all come in one turn: they fit exactly; nothing is rejected.
  const queue = new native.SyntheticQueue(8, 4096)
  const dispatcher = new QueueDispatcher(queue, 0, new NullBackend(), { onRequestError: () => {}, requestTimeout: 0 })
  const outcome = await queue.run(() => dispatcher.onNotify(), 8, 800)
  t.is(outcome.error, undefined)
  t.is(outcome.requests, 800)
  t.is(queue.rejectedCompletions(0), 0)
})

test('synchronous completions are published before the notification returns, later ones soon after', async (t) => {
  for (const mode of ['sync', 'async'] as const) {
    const queue = new native.SyntheticQueue(8, 4096)
    const { port, ring } = portKeepingRing(queue)
    const handler = {
      read(buf: Buffer) {
        buf.fill(0)
        return mode === 'async' ? Promise.resolve() : undefined
      },
    }
    const dispatcher = new QueueDispatcher(port, 0, handler, { onRequestError: () => {}, requestTimeout: 0 })
    // After each notification: requests served, and completions published.
    const seen: Array<[number, number]> = []
    const outcome = await queue.run(
      () => {
        dispatcher.onNotify()
        seen.push([dispatcher.stats.reads, Atomics.load(ring(), native.RING_COMPLETION_TAIL)])
      },
      8,
      200,
    )
    t.is(outcome.error, undefined, mode)
    t.is(outcome.requests, 200, mode)
    if (mode === 'sync') {
      t.true(
        seen.every(([served, published]) => served === published),
        `every completion out by the end of its notification: ${JSON.stringify(seen.slice(0, 5))}`,
      )
    } else {
      // A promise settles after the notification: the completions of the
      // requests it just served cannot be out yet (a notification may find
      // nothing new when an earlier one already read its requests).
      const fresh = seen.filter(([served], i) => served > (i > 0 ? seen[i - 1][0] : 0))
      t.true(fresh.length > 0 && fresh.every(([served, published]) => published < served), JSON.stringify(seen.slice(0, 5)))
    }
  }
})

test('a visitor that throws does not strand the completions it made', async (t) => {
  const queue = new native.SyntheticQueue(4, 4096)
  const { port, ring } = portKeepingRing(queue)
  const queueRing = new QueueRing(port, 0)
  const publishedAfterThrow: number[] = []
  let threw = false
  const outcome = await queue.run(
    () => {
      try {
        queueRing.drain((id) => {
          queueRing.complete(id, 4096)
          if (!threw) {
            threw = true
            throw new Error('visitor failed')
          }
        })
      } catch {
        publishedAfterThrow.push(Atomics.load(ring(), native.RING_COMPLETION_TAIL))
      }
    },
    1,
    3,
  )
  t.deepEqual(publishedAfterThrow, [1], 'the completion made before the throw is out')
  t.is(outcome.error, undefined)
  t.is(outcome.requests, 3)
})
