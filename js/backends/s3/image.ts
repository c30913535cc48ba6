// An image in the store: its header object (the geometry) and the name of
// each data object.
//
//   <prefix>header        JSON: { format, version, size, objectSize }
//   <prefix>lease         JSON: who serves the image (lease.ts)
//   <prefix>data/<index>  bytes [index * objectSize, (index + 1) * objectSize), hex index
//
// A data object that does not exist reads as zeros; one that exists holds
// exactly objectSize bytes (the last one padded with zeros).
import { UblkError } from '../../errors'
import { ConditionFailed, type Store } from './store'

const FORMAT = 'ublk-s3-image'
const VERSION = 1
const INDEX_DIGITS = 12

/** What the header object holds. */
export interface Geometry {
  /** Bytes in the image. */
  size: number
  /** Bytes per data object (the last one holds the remainder, padded with zeros). */
  objectSize: number
}

/** The keys of one image's objects. */
export class ImageKeys {
  readonly header: string
  readonly lease: string
  readonly dataPrefix: string

  constructor(readonly prefix: string) {
    this.header = `${prefix}header`
    this.lease = `${prefix}lease`
    this.dataPrefix = `${prefix}data/`
  }

  data(index: number): string {
    return this.dataPrefix + index.toString(16).padStart(INDEX_DIGITS, '0')
  }

  /** The index of a data object's key, or undefined for another key. */
  indexOf(key: string): number | undefined {
    if (!key.startsWith(this.dataPrefix)) return undefined
    const hex = key.slice(this.dataPrefix.length)
    return /^[0-9a-f]+$/.test(hex) ? parseInt(hex, 16) : undefined
  }
}

/**
 * Reads the image's header, or creates the image when there is none and
 * `wanted.size` is given. A geometry that differs from the one asked for is
 * refused (EINVAL): the image keeps its own.
 */
export async function openGeometry(store: Store, keys: ImageKeys, wanted: Partial<Geometry> & { defaultObjectSize: number }): Promise<{ geometry: Geometry; created: boolean }> {
  const where = store.url(keys.prefix)
  let found = await store.getSmall(keys.header)
  if (found === null) {
    if (wanted.size === undefined) throw new UblkError('ENOENT', `no image at ${where} (no ${keys.header}); give size to create one`)
    const geometry = { size: wanted.size, objectSize: wanted.objectSize ?? wanted.defaultObjectSize }
    try {
      await store.put(keys.header, Buffer.from(JSON.stringify({ format: FORMAT, version: VERSION, ...geometry, created: new Date().toISOString() }) + '\n'), { ifNoneMatch: '*' })
      return { geometry, created: true }
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err
      // Created meanwhile (a retry of our own PUT, or another server): read it.
      found = await store.getSmall(keys.header)
      if (found === null) throw new UblkError('EIO', `${store.url(keys.header)}: the header was created and is gone again`)
    }
  }
  const body = found.body
  let header: { format?: unknown; version?: unknown; size?: unknown; objectSize?: unknown }
  try {
    header = JSON.parse(body.toString('utf8'))
  } catch {
    throw new UblkError('EINVAL', `${store.url(keys.header)} is not a ublk image header (not JSON)`)
  }
  if (header.format !== FORMAT) throw new UblkError('EINVAL', `${store.url(keys.header)} is not a ublk image header (format ${JSON.stringify(header.format)})`)
  if (header.version !== VERSION) throw new UblkError('EINVAL', `${where} has image format version ${String(header.version)}; this ublk reads version ${VERSION}`)
  const { size, objectSize } = header
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(objectSize)) throw new UblkError('EINVAL', `${store.url(keys.header)}: size and objectSize must be integers`)
  const geometry = { size: size as number, objectSize: objectSize as number }
  if (wanted.size !== undefined && wanted.size !== geometry.size) {
    throw new UblkError('EINVAL', `${where} holds a ${geometry.size}-byte image, not ${wanted.size} bytes (an existing image keeps its size: leave size out)`)
  }
  if (wanted.objectSize !== undefined && wanted.objectSize !== geometry.objectSize) {
    throw new UblkError('EINVAL', `${where} was made with objectSize ${geometry.objectSize}, not ${wanted.objectSize} (an existing image keeps its object size)`)
  }
  return { geometry, created: false }
}
