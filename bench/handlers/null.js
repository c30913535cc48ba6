// NullBackend as a worker-mode module, for `npm run bench`.
'use strict'
const { NullBackend } = require('../../dist')

module.exports = () => new NullBackend()
