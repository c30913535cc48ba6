// Closing open devices on SIGINT/SIGTERM, so that a Ctrl-C never leaves a
// device behind. Devices created with `handleSignals: false` are not tracked.

interface Closable {
  close(): Promise<void>
}

const open = new Set<Closable>()
const signals = ['SIGINT', 'SIGTERM'] as const
let installed = false

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  await Promise.allSettled([...open].map((d) => d.close()))
  uninstall()
  // Nobody else listens: die of the signal as if we had never caught it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
}

function install(): void {
  if (installed) return
  installed = true
  for (const s of signals) process.on(s, onSignal)
}

function uninstall(): void {
  if (!installed) return
  installed = false
  for (const s of signals) process.removeListener(s, onSignal)
}

export function trackForSignals(device: Closable): void {
  open.add(device)
  install()
}

export function untrackForSignals(device: Closable): void {
  open.delete(device)
  if (open.size === 0) uninstall()
}
