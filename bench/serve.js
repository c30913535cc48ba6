// Serves one of our benchmark targets until SIGTERM (which closes the device).
//   node bench/serve.js <null|memory|rust-null> <queues> <size in bytes>
// Prints the device path once it is live. Uses the built package (dist/).
'use strict'
const { createDevice, NullBackend, MemoryBackend } = require('../dist')

const [backend, queues, size] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
const options = { size, queues, queueDepth: 128 }
if (backend === 'rust-null') options.rustNullHandler = true
else if (backend === 'null') options.handler = new NullBackend()
else if (backend === 'memory') options.handler = new MemoryBackend(size)
else {
  console.error(`unknown backend ${backend}`)
  process.exit(2)
}
createDevice(options).then(
  (dev) => process.stdout.write(`${dev.path}\n`),
  (err) => {
    console.error(err)
    process.exit(1)
  },
)
