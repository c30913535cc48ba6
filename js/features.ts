import native from './native'
import { fromNative } from './errors'

/** The ublk features of the running kernel, and how they are known. */
export interface KernelFeatures {
  /** The `UBLK_F_*` bit mask. */
  mask: number
  /** The names of the bits set, e.g. `UBLK_F_USER_COPY`. */
  names: string[]
  /**
   * `'GET_FEATURES'`: the kernel reported them (Linux 6.5+). `'kernel version'`:
   * the kernel cannot say (6.1-6.4 have no GET_FEATURES), and `mask` is what
   * the mainline release of its version has; a distribution kernel may have
   * backported more.
   */
  source: 'GET_FEATURES' | 'kernel version'
  /** The running kernel's release (`uname -r`). */
  kernel: string
}

/**
 * The running kernel's ublk features: GET_FEATURES where the kernel has it
 * (6.5+), inferred from its version where it does not.
 *
 * Rejects with a `UblkError` whose `code` is `ENOENT` when `/dev/ublk-control`
 * is missing (the message says whether the module is not loaded or the kernel
 * was built without ublk, and what to do), and `EACCES` without root.
 */
export async function kernelFeatures(): Promise<KernelFeatures> {
  let f: ReturnType<typeof native.kernelFeatures>
  try {
    f = native.kernelFeatures()
  } catch (err) {
    throw fromNative(err)
  }
  const source = f.source === 'GET_FEATURES' ? 'GET_FEATURES' : 'kernel version'
  return { mask: f.mask, names: native.featureNames(f.mask), source, kernel: f.kernel }
}

/** Names of the `UBLK_F_*` bits set in `mask`. */
export function featureNames(mask: number): string[] {
  return native.featureNames(mask)
}
