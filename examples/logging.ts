// A handler that counts and logs IO by op and request size, wrapping any
// other handler (here a MemoryBackend). Prints a summary every few seconds
// and once more when the device closes.
//
//   sudo node --import tsx examples/logging.ts [size, e.g. 256M] [seconds between summaries]
import { createDevice, MemoryBackend, type Handler, type RequestContext } from 'ublk'

type Counts = Map<string, number> // "read 4096" -> requests

/** Wraps `inner`, counting every request by op and length before passing it on. */
export function counting(inner: Handler, counts: Counts): Handler {
  const count = (ctx: RequestContext, length: number) => {
    const key = `${ctx.op} ${length}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
  return {
    read: (buf, offset, ctx) => (count(ctx, buf.length), inner.read(buf, offset, ctx)),
    write: inner.write && ((buf, offset, ctx) => (count(ctx, buf.length), inner.write!(buf, offset, ctx))),
    flush: inner.flush && ((ctx) => (count(ctx, 0), inner.flush!(ctx))),
    discard: inner.discard && ((offset, length, ctx) => (count(ctx, length), inner.discard!(offset, length, ctx))),
    writeZeroes: inner.writeZeroes && ((offset, length, ctx) => (count(ctx, length), inner.writeZeroes!(offset, length, ctx))),
  }
}

/** One line per op and size, busiest first: `read 4096 x 1234`. */
export function summary(counts: Counts): string {
  return [...counts].sort((a, b) => b[1] - a[1]).map(([key, n]) => `${key} x ${n}`).join('\n')
}

async function main(): Promise<void> {
  const units: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }
  const arg = process.argv[2] ?? '256M'
  const size = parseInt(arg, 10) * (units[arg.slice(-1).toUpperCase()] ?? 1)
  const every = Number(process.argv[3] ?? 5) * 1000
  const counts: Counts = new Map()
  const dev = await createDevice({ size, handler: counting(new MemoryBackend(size), counts) })
  console.log(dev.path)
  const timer = setInterval(() => counts.size && console.log(`-- IO so far\n${summary(counts)}`), every)
  dev.once('close', () => {
    clearInterval(timer)
    console.log(`-- IO in total\n${summary(counts)}`)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
