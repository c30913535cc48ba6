// Small helpers shared by the CLI's subcommands.

/** A usage error: printed with the subcommand's help, exit code 2. */
export class UsageError extends Error {}

/** Exit codes of the `ublk` command. */
export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3 } as const

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/** Parses a byte count: `4096`, `512K`, `64M`, `1G`, `2T` (binary units, optional `iB`/`B`). */
export function parseSize(text: string, name = '--size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim())
  if (!m) throw new UsageError(`${name} must be a byte count like 1G, 512M or 4096. Received "${text}"`)
  const bytes = Number(m[1]) * UNITS[m[2].toLowerCase()]
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`${name} must be a whole, positive number of bytes. Received "${text}"`)
  return bytes
}

/** Parses a positive integer option. */
export function parseCount(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${name} must be a positive integer. Received "${text}"`)
  return n
}

/** Formats a byte count with a binary unit. */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= factor) return `${Number((bytes / factor).toFixed(1))}${unit}`
  }
  return `${bytes}B`
}
