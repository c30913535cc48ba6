// An encrypted block device over a file: every 4 KiB block is stored with
// AES-256-XTS (node:crypto), tweaked by its block number, so the backing
// file holds only ciphertext. Like dm-crypt's aes-xts-plain64, in 60 lines.
//
//   sudo node --import tsx examples/encrypted-file.ts disk.img <64-byte key as 128 hex digits>
//
// Prints the device path, serves until Ctrl-C. Make disk.img first, e.g.
// `truncate -s 1G disk.img`; its size must be a multiple of 4096.
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { createDevice, FileBackend, type Handler, type RequestContext } from 'ublk'

const BLOCK = 4096 // the device's logical block size: the unit we encrypt

/** XTS's tweak for block `n`: its number, little-endian, in 16 bytes ("plain64"). */
function tweak(n: number): Buffer {
  const iv = Buffer.alloc(16)
  iv.writeBigUInt64LE(BigInt(n))
  return iv
}

function crypt(encrypt: boolean, key: Buffer, data: Buffer, offset: number, out: Buffer): void {
  for (let at = 0; at < data.length; at += BLOCK) {
    const block = data.subarray(at, at + BLOCK)
    const iv = tweak((offset + at) / BLOCK)
    const c = encrypt ? createCipheriv('aes-256-xts', key, iv) : createDecipheriv('aes-256-xts', key, iv)
    const done = Buffer.concat([c.update(block), c.final()])
    done.copy(out, at)
  }
}

/** Wraps a FileBackend: decrypts what it reads, encrypts what it writes. */
export function encrypted(file: FileBackend, key: Buffer): Handler {
  return {
    async read(buf: Buffer, offset: number) {
      await file.read(buf, offset)
      crypt(false, key, buf, offset, buf) // in place: buf is the request's own memory
    },
    async write(buf: Buffer, offset: number, ctx: RequestContext) {
      const sealed = Buffer.allocUnsafe(buf.length) // never modify the data being written
      crypt(true, key, buf, offset, sealed)
      await file.write(sealed, offset, ctx)
    },
    flush: () => file.flush(),
  }
}

async function main(): Promise<void> {
  const [path, keyHex] = process.argv.slice(2)
  const key = Buffer.from(keyHex ?? '', 'hex')
  if (!path || key.length !== 64) throw new Error('usage: encrypted-file.ts <file> <128 hex digits of key>')
  const file = await FileBackend.open(path)
  const dev = await createDevice({ size: file.size, logicalBlockSize: BLOCK, handler: encrypted(file, key) })
  console.log(dev.path)
  dev.once('close', () => void file.close())
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
