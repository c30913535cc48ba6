// Serves one of our benchmark targets until SIGTERM (which closes the device).
//   node bench/serve.js <null|memory|rust-null|null-workers|xts-main|xts-workers|s3> <queues> <size in bytes>
// s3 takes S3_ENDPOINT, S3_BUCKET, UBLK_BENCH_S3_PREFIX and UBLK_BENCH_S3_CACHE (bytes) from the
// environment (bench/s3.ts sets them), and the credentials the AWS way.
// Prints the device path once it is live. For each line `stats` on its stdin
// it prints one line `stats {"notifications":N,"requests":M}`: the handlers'
// notifications and the requests they were given so far, over all queues
// (bench/targets.ts asks around each case). Uses the built package (dist/).
'use strict'
const { randomBytes } = require('node:crypto')
const { join } = require('node:path')
const { createInterface } = require('node:readline')
const { createDevice, NullBackend, MemoryBackend, S3Backend } = require('../dist')
const { requestsOf } = require('../dist/stats')

const [backend, queues, size] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
const options = { size, queues, queueDepth: 128 }
const xtsData = () => ({ memory: new SharedArrayBuffer(size), key: randomBytes(64) })
if (backend === 'rust-null') options.rustNullHandler = true
else if (backend === 'null') options.handler = new NullBackend()
else if (backend === 'memory') options.handler = new MemoryBackend(size)
else if (backend === 'null-workers') options.workers = { module: join(__dirname, 'handlers', 'null.js') }
else if (backend === 'xts-main') options.handler = require('./handlers/xts-memory')(xtsData())
else if (backend === 'xts-workers') options.workers = { module: join(__dirname, 'handlers', 'xts-memory.js'), data: xtsData() }
else if (backend !== 's3') {
  console.error(`unknown backend ${backend}`)
  process.exit(2)
}
const s3 = () =>
  S3Backend.open({
    endpoint: process.env.S3_ENDPOINT,
    bucket: process.env.S3_BUCKET,
    prefix: process.env.UBLK_BENCH_S3_PREFIX,
    size,
    cacheBytes: Number(process.env.UBLK_BENCH_S3_CACHE),
  })
const handler = backend === 's3' ? s3() : Promise.resolve(options.handler)
handler.then((h) => createDevice({ ...options, handler: h })).then(
  (dev) => {
    process.stdout.write(`${dev.path}\n`)
    createInterface({ input: process.stdin }).on('line', (line) => {
      if (line.trim() !== 'stats') return
      const total = (pick) => dev.stats().reduce((sum, q) => sum + pick(q), 0)
      const notifications = total((q) => q.notifications)
      const requests = total(requestsOf)
      process.stdout.write(`stats ${JSON.stringify({ notifications, requests })}\n`)
    })
  },
  (err) => {
    console.error(err)
    process.exit(1)
  },
)
