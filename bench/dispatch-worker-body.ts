// The worker side of the dispatch microbenchmark's worker mode: attaches to
// the synthetic queue shared by the main thread and serves it with the
// production QueueDispatcher, as a device's queue worker does.
import { parentPort, workerData } from 'node:worker_threads'
import { QueueDispatcher } from '../js/dispatcher'
import native from '../js/native'
import { HANDLERS } from './dispatch'

const { token, handler } = workerData as { token: number; handler: string }
let dispatcher: QueueDispatcher | undefined
const attachment = native.attachQueue(token, 0, () => dispatcher?.onNotify())
dispatcher = new QueueDispatcher(attachment, 0, HANDLERS[handler](), { onRequestError: () => {}, requestTimeout: 0 })
parentPort!.postMessage('ready')
parentPort!.on('message', () => {
  attachment.detach()
  parentPort!.close()
})
