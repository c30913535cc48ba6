// The dispatch microbenchmark's worker thread: TypeScript like the rest of
// the benchmark, loaded through tsx's CommonJS hook (a worker does not
// inherit the main thread's loader).
'use strict'
require('tsx/cjs')
require('./dispatch-worker-body.ts')
