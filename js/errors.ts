import { constants } from 'node:os'

const errnoByName = constants.errno as Record<string, number>

function nameOfErrno(errno: number): string | undefined {
  return Object.keys(errnoByName).find((name) => errnoByName[name] === errno)
}

/**
 * An error from ublk: a kernel or setup error reported by the addon, or one a
 * handler throws to fail a request with a chosen errno.
 *
 * Like Node's own system errors, `code` is the symbolic name (`'ENOSPC'`) and
 * `errno` the negated number (`-28`).
 */
export class UblkError extends Error {
  readonly code: string
  readonly errno: number

  /**
   * @param errno an errno name (`'ENOSPC'`) or a negative errno number (`-28`)
   * @param message what happened; defaults to the errno's name
   * @param options `cause`: the error behind this one
   */
  constructor(errno: string | number, message?: string, options?: ErrorOptions) {
    let code: string | undefined
    let value: number | undefined
    if (typeof errno === 'string') {
      value = errnoByName[errno]
      code = errno
    } else if (Number.isInteger(errno) && errno < 0) {
      value = -errno
      code = nameOfErrno(value)
    }
    if (value === undefined || code === undefined) {
      throw new RangeError(`UblkError: ${String(errno)} is not an errno name or a negative errno number`)
    }
    super(message ?? code, options)
    this.name = 'UblkError'
    this.code = code
    this.errno = -value
  }
}

/** Turns an error thrown by the addon (whose `code` is an errno name) into a UblkError. */
export function fromNative(err: unknown): unknown {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined
  if (err instanceof Error && typeof code === 'string') {
    if (code in errnoByName) {
      const wrapped = new UblkError(code, err.message)
      wrapped.stack = err.stack
      return wrapped
    }
  }
  return err
}
