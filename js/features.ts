import native from './native'
import { fromNative } from './errors'

/** The ublk features the running kernel supports, from GET_FEATURES. */
export interface KernelFeatures {
  /** The raw `UBLK_F_*` bit mask. */
  mask: number
  /** The names of the bits set, e.g. `UBLK_F_USER_COPY`. */
  names: string[]
}

/**
 * Reads the running kernel's ublk feature mask (Linux 6.5+).
 *
 * Rejects with a `UblkError` whose `code` is `ENOENT` when `/dev/ublk-control`
 * is missing (the `ublk_drv` module is not loaded) and `EACCES` without root.
 */
export async function kernelFeatures(): Promise<KernelFeatures> {
  let mask: number
  try {
    mask = native.kernelFeatures()
  } catch (err) {
    throw fromNative(err)
  }
  return { mask, names: native.featureNames(mask) }
}

/** Names of the `UBLK_F_*` bits set in `mask`. */
export function featureNames(mask: number): string[] {
  return native.featureNames(mask)
}
