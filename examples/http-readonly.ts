// A read-only block device served from an HTTP(S) URL with range requests:
// each READ becomes `GET` with `Range: bytes=...`. Mount an ISO or a disk
// image straight from a web server, nothing downloaded up front.
//
//   sudo node --import tsx examples/http-readonly.ts http://host/disk.img
//
// The server must answer HEAD with Content-Length and honour Range (206).
import { createDevice, UblkError, type Handler } from 'ublk'

/** Reads `[offset, offset + buf.length)` of `url` into `buf`. */
async function fetchRange(url: string, buf: Buffer, offset: number): Promise<void> {
  const res = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + buf.length - 1}` } })
  if (res.status !== 206) throw new UblkError('EIO', `${url}: expected 206 Partial Content, got ${res.status}`)
  const body = Buffer.from(await res.arrayBuffer())
  if (body.length !== buf.length) throw new UblkError('EIO', `${url}: short range (${body.length} of ${buf.length} bytes)`)
  body.copy(buf)
}

export function httpHandler(url: string): Handler {
  // No write method: with `readOnly` the kernel refuses writes before they get here.
  return { read: (buf, offset) => fetchRange(url, buf, offset) }
}

async function main(): Promise<void> {
  const url = process.argv[2]
  if (!url) throw new Error('usage: http-readonly.ts <url>')
  const head = await fetch(url, { method: 'HEAD' })
  const size = Number(head.headers.get('content-length'))
  if (!head.ok || !(size > 0) || size % 512 !== 0) throw new Error(`${url}: need a Content-Length that is a multiple of 512 (got ${head.status}, ${size})`)
  const dev = await createDevice({ size, readOnly: true, queues: 2, handler: httpHandler(url) })
  console.log(dev.path)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
