import type { Handler } from '../handler'

/** Reads zeros and accepts (drops) writes: the cheapest possible handler. */
export class NullBackend implements Handler {
  read(buf: Buffer): void {
    buf.fill(0)
  }

  write(): void {}

  flush(): void {}

  discard(): void {}

  writeZeroes(): void {}
}
