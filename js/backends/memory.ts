import type { Handler } from '../handler'
import { UblkError } from '../errors'

/** Bytes per chunk of a MemoryBackend: the unit allocated on first write. */
const CHUNK = 64 * 1024

/**
 * A sparse RAM disk: chunks are allocated on first write and freed by
 * discard/write-zeroes, so a 1 TiB device costs only what was written.
 * Unwritten ranges read as zeros.
 */
export class MemoryBackend implements Handler {
  private readonly chunks = new Map<number, Buffer>()

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`MemoryBackend: size must be a positive integer. Received ${size}`)
  }

  /** Bytes of RAM the written data holds. */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK
  }

  private check(offset: number, length: number): void {
    if (offset + length > this.size) throw new UblkError('EIO', `request beyond the end of a ${this.size}-byte device`)
  }

  read(buf: Buffer, offset: number): void {
    this.check(offset, buf.length)
    for (let done = 0; done < buf.length; ) {
      const pos = offset + done
      const index = Math.floor(pos / CHUNK)
      const within = pos - index * CHUNK
      const n = Math.min(CHUNK - within, buf.length - done)
      const chunk = this.chunks.get(index)
      if (chunk) chunk.copy(buf, done, within, within + n)
      else buf.fill(0, done, done + n)
      done += n
    }
  }

  write(buf: Buffer, offset: number): void {
    this.check(offset, buf.length)
    for (let done = 0; done < buf.length; ) {
      const pos = offset + done
      const index = Math.floor(pos / CHUNK)
      const within = pos - index * CHUNK
      const n = Math.min(CHUNK - within, buf.length - done)
      let chunk = this.chunks.get(index)
      if (!chunk) {
        chunk = Buffer.alloc(CHUNK)
        this.chunks.set(index, chunk)
      }
      buf.copy(chunk, within, done, done + n)
      done += n
    }
  }

  flush(): void {}

  discard(offset: number, length: number): void {
    this.zero(offset, length)
  }

  writeZeroes(offset: number, length: number): void {
    this.zero(offset, length)
  }

  /** Frees whole chunks in the range and zeroes the partial ones at its edges. */
  private zero(offset: number, length: number): void {
    this.check(offset, length)
    const end = offset + length
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / CHUNK)
      const within = pos - index * CHUNK
      const n = Math.min(CHUNK - within, end - pos)
      if (n === CHUNK) this.chunks.delete(index)
      else this.chunks.get(index)?.fill(0, within, within + n)
      pos += n
    }
  }
}
