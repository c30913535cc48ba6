// The body of a queue's worker thread: loads the user's handler module,
// attaches to its queue through the addon, and serves that queue's requests
// with the same dispatcher the main thread uses. Started by `pool.ts`.
import { parentPort, workerData } from 'node:worker_threads'
import { failBatch, QueueDispatcher } from '../dispatcher'
import { handlerFromModule } from '../modules'
import native from '../native'
import { serializeError, type FromWorker, type QueueWorkerData, type ToWorker } from './messages'

const config = workerData as QueueWorkerData
const post = (m: FromWorker) => parentPort!.postMessage(m)

async function main(): Promise<void> {
  const { queue, queues, size } = config
  // A module that fails to load throws here: the worker's 'error' event.
  const handler = await handlerFromModule(config.module, [config.data, { queue, queues, size }])
  let dispatcher: QueueDispatcher | undefined
  const attachment = native.attachQueue(config.token, queue, (q: number, batch: Uint32Array) => {
    try {
      dispatcher ??= new QueueDispatcher(attachment, queue, handler, {
        requestTimeout: config.requestTimeout,
        counters: config.counters,
        onRequestError: (err, ctx) => post({ type: 'requestError', error: serializeError(err), ctx }),
        onRejected: (count) => post({ type: 'rejected', count }),
      })
    } catch (err) {
      process.emitWarning(`ublk: cannot serve queue ${q}: ${String(err)}`)
      failBatch(attachment, q, batch)
      return
    }
    dispatcher.onBatch(batch)
  })
  parentPort!.on('message', (m: ToWorker) => {
    if (m.type !== 'close') return
    // The device is gone: let go of the queue so this thread can end.
    dispatcher?.dispose()
    attachment.detach()
    parentPort!.close()
  })
  post({ type: 'ready' })
}

void main().catch((err: unknown) => {
  // Reported by the main thread from this worker's 'error' event.
  throw err
})
