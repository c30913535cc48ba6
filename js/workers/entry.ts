// The body of a queue's worker thread: loads the user's handler module,
// attaches to its queue through the addon, and serves that queue's requests
// with the same dispatcher the main thread uses. Started by `pool.ts`.
import { parentPort, workerData } from 'node:worker_threads'
import { QueueDispatcher } from '../dispatcher'
import { handlerFromModule } from '../modules'
import native from '../native'
import { serializeError, type FromWorker, type QueueWorkerData, type ToWorker } from './messages'

const config = workerData as QueueWorkerData
const post = (m: FromWorker) => parentPort!.postMessage(m)

async function main(): Promise<void> {
  const { queue, queues, size } = config
  // A module that fails to load throws here: the worker's 'error' event.
  const handler = await handlerFromModule(config.module, [config.data, { queue, queues, size }])
  // The first notification comes once the device has its queues (this
  // worker may attach before): the dispatcher is made then.
  let dispatcher: QueueDispatcher | undefined
  const attachment = native.attachQueue(config.token, queue, () => {
    if (!dispatcher) {
      try {
        dispatcher = new QueueDispatcher(attachment, queue, handler, {
          requestTimeout: config.requestTimeout,
          counters: config.counters,
          onRequestError: (err, ctx) => post({ type: 'requestError', error: serializeError(err), ctx }),
          onRejected: (count) => post({ type: 'rejected', count }),
        })
        // Now that the queue threads run (and are pinned): join this queue's.
        if (config.pin) attachment.pinToQueueCpus(queue)
      } catch (err) {
        // Without the ring this worker cannot serve: let go of the queue, so
        // that what it was given fails with EIO, and die to be replaced.
        attachment.detach()
        throw err
      }
    }
    dispatcher.onNotify()
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
