import { open, type FileHandle } from 'node:fs/promises'
import native from '../native'
import { fromNative, UblkError } from '../errors'
import type { Handler, RequestContext } from '../handler'
import type { OutcomeError } from '../../index.js'

export interface FileBackendOptions {
  /** Open the file read-only (serve it with `readOnly: true`). Default false. */
  readOnly?: boolean
}

function raise(error: OutcomeError | null | undefined): void {
  if (error) throw new UblkError(error.code, error.message)
}

/**
 * A device backed by a file or another block device, like the kernel's loop
 * target: positional reads and writes, FLUSH as `fdatasync`, FUA writes
 * synced before they complete, DISCARD as a punched hole (BLKDISCARD on a
 * block device) and WRITE_ZEROES as a zeroed range. The size is the file's.
 *
 * ```ts
 * const backend = await FileBackend.open('disk.img')
 * const dev = await createDevice({ size: backend.size, handler: backend })
 * ```
 */
export class FileBackend implements Handler {
  private constructor(
    private readonly file: FileHandle,
    /** Bytes in the file or block device. */
    readonly size: number,
    readonly path: string,
    readonly readOnly: boolean,
  ) {}

  /** Opens `path` (a regular file or a block device) to serve it. */
  static async open(path: string, options: FileBackendOptions = {}): Promise<FileBackend> {
    const readOnly = options.readOnly ?? false
    const file = await open(path, readOnly ? 'r' : 'r+')
    try {
      return new FileBackend(file, native.backingSize(file.fd), path, readOnly)
    } catch (err) {
      await file.close()
      throw fromNative(err)
    }
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesRead } = await this.file.read(buf, done, buf.length - done, offset + done)
      if (bytesRead === 0) {
        buf.fill(0, done) // past the end of a file that shrank
        return
      }
      done += bytesRead
    }
  }

  async write(buf: Buffer, offset: number, ctx: RequestContext): Promise<void> {
    for (let done = 0; done < buf.length; ) {
      const { bytesWritten } = await this.file.write(buf, done, buf.length - done, offset + done)
      done += bytesWritten
    }
    if (ctx.fua) await this.file.datasync()
  }

  async flush(): Promise<void> {
    await this.file.datasync()
  }

  async discard(offset: number, length: number): Promise<void> {
    raise((await native.backingDiscard(this.file.fd, offset, length)).error)
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    raise((await native.backingWriteZeroes(this.file.fd, offset, length)).error)
  }

  /** Closes the file. Close the device first. */
  async close(): Promise<void> {
    await this.file.close()
  }
}
