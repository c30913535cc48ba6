// Which data objects of an image the store holds: one bit per object, so a
// 1 TiB image of 4 MiB objects (262,144 objects) costs 32 KiB whatever is
// written, read from a LIST at open and kept by the write-back since.

export class StoredObjects {
  private readonly bits: Uint8Array
  private count = 0

  /** For an image of `objects` data objects. */
  constructor(readonly objects: number) {
    this.bits = new Uint8Array(Math.ceil(objects / 8))
  }

  /** How many objects are stored. */
  get size(): number {
    return this.count
  }

  has(index: number): boolean {
    return index >= 0 && index < this.objects && (this.bits[index >> 3] & (1 << (index & 7))) !== 0
  }

  add(index: number): void {
    if (index < 0 || index >= this.objects) throw new RangeError(`object ${index} is outside an image of ${this.objects} objects`)
    if (!this.has(index)) this.count++
    this.bits[index >> 3] |= 1 << (index & 7)
  }

  delete(index: number): void {
    if (!this.has(index)) return
    this.count--
    this.bits[index >> 3] &= ~(1 << (index & 7))
  }
}
