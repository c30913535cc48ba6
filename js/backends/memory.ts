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

  /** Calls `fn` for each piece of [offset, offset + length) within one chunk. */
  private forEachChunk(offset: number, length: number, fn: (index: number, within: number, done: number, n: number) => void): void {
    this.check(offset, length)
    for (let done = 0; done < length; ) {
      const pos = offset + done
      const index = Math.floor(pos / CHUNK)
      const within = pos - index * CHUNK
      const n = Math.min(CHUNK - within, length - done)
      fn(index, within, done, n)
      done += n
    }
  }

  read(buf: Buffer, offset: number): void {
    this.forEachChunk(offset, buf.length, (index, within, done, n) => {
      const chunk = this.chunks.get(index)
      if (chunk) chunk.copy(buf, done, within, within + n)
      else buf.fill(0, done, done + n)
    })
  }

  write(buf: Buffer, offset: number): void {
    this.forEachChunk(offset, buf.length, (index, within, done, n) => {
      let chunk = this.chunks.get(index)
      if (!chunk) {
        chunk = Buffer.alloc(CHUNK)
        this.chunks.set(index, chunk)
      }
      buf.copy(chunk, within, done, done + n)
    })
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
    this.forEachChunk(offset, length, (index, within, _done, n) => {
      if (n === CHUNK) this.chunks.delete(index)
      else this.chunks.get(index)?.fill(0, within, within + n)
    })
  }
}
