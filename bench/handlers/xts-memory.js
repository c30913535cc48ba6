// A CPU-bound handler for `npm run bench`: AES-256-XTS per 4 KiB block (as in
// examples/encrypted-file.ts) over a RAM disk in shared memory, so the same
// module serves on the main thread or on a worker per queue.
//   factory({ memory: SharedArrayBuffer, key: 64-byte Uint8Array })
'use strict'
const { createCipheriv, createDecipheriv } = require('node:crypto')

const BLOCK = 4096

function crypt(encrypt, key, from, offset, to) {
  const iv = Buffer.alloc(16)
  for (let at = 0; at < from.length; at += BLOCK) {
    iv.writeBigUInt64LE(BigInt((offset + at) / BLOCK))
    const c = encrypt ? createCipheriv('aes-256-xts', key, iv) : createDecipheriv('aes-256-xts', key, iv)
    const out = c.update(from.subarray(at, at + BLOCK))
    out.copy(to, at)
    c.final()
  }
}

module.exports = function xtsMemory(data) {
  const disk = Buffer.from(data.memory)
  const key = Buffer.from(data.key)
  return {
    read(buf, offset) {
      crypt(false, key, disk.subarray(offset, offset + buf.length), offset, buf)
    },
    write(buf, offset) {
      crypt(true, key, buf, offset, disk.subarray(offset, offset + buf.length))
    },
  }
}
