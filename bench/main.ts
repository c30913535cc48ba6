// `npm run bench [-- --quick]`: the project's main job. Serves devices from
// TypeScript handlers and measures them with fio next to the kernel's own
// devices and NBD: directly when this kernel has ublk and we are root,
// otherwise inside the QEMU test guest (UBLK_VM_KERNEL=6.12|7, default 7).
// Writes bench/results/<date>-<kernel>-<mode>.{json,md,svg}, prints the
// table, and after a full run puts it into the README's benchmark section.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, relative, resolve } from 'node:path'
import { goalRounds } from './env'
import { readmeSection, render } from './report'

const root = resolve(__dirname, '..')
const quick = process.argv.includes('--quick')

function hasUblkHere(): boolean {
  if (process.getuid?.() !== 0) return false
  if (!existsSync('/dev/ublk-control')) spawnSync('modprobe', ['ublk_drv'], { stdio: 'ignore' })
  return existsSync('/dev/ublk-control')
}

function ensureBuilt(): void {
  const built = existsSync(join(root, 'dist', 'index.js')) && require('node:fs').readdirSync(root).some((f: string) => /^ublk\..*\.node$/.test(f))
  if (built) return
  console.log('bench: building the addon and dist/ first')
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}

/** Replaces the README's benchmark section (between the markers) with `md`. */
export function updateReadme(readme: string, md: string): string {
  const begin = '<!-- bench:begin -->'
  const end = '<!-- bench:end -->'
  const a = readme.indexOf(begin)
  const b = readme.indexOf(end)
  if (a < 0 || b < a) return readme
  return `${readme.slice(0, a + begin.length)}\n${md}${readme.slice(b)}`
}

function main(): void {
  try {
    goalRounds(process.env.UBLK_BENCH_GOAL_ROUNDS) // before booting the guest
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`)
    process.exit(2)
  }
  ensureBuilt()
  const direct = hasUblkHere()
  const kernel = process.env.UBLK_VM_KERNEL ?? '7'
  const stamp = new Date().toISOString().slice(0, 10)
  const label = direct ? os.release().split('-')[0] : kernel === '7' ? '7.x' : kernel
  const out = join(root, 'bench', 'results', `${stamp}-linux-${label}-${quick ? 'quick' : 'full'}.json`)
  const runArgs = [process.execPath, '--import', 'tsx', join(root, 'bench', 'run.ts'), `--out=${out}`, ...(quick ? ['--quick'] : [])]
  console.log(`bench: ${quick ? 'quick' : 'full'} run ${direct ? 'on this kernel' : `in the test guest, kernel ${kernel}`}`)
  const env = {
    ...process.env,
    UBLK_VM_KERNEL: kernel,
    UBLK_VM_RW_DIRS: join(root, 'bench', 'results'),
    UBLK_VM_MEM: process.env.UBLK_VM_MEM ?? '3G',
    UBLK_VM_TIMEOUT: process.env.UBLK_VM_TIMEOUT ?? '3600',
    UBLK_VM_ENV: `${process.env.UBLK_VM_ENV ?? ''} UBLK_BENCH_HOST UBLK_BENCH_ONLY UBLK_BENCH_GOAL_ROUNDS`.trim(),
    UBLK_BENCH_HOST: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
  }
  const r = direct
    ? spawnSync(runArgs[0], runArgs.slice(1), { cwd: root, stdio: 'inherit' })
    : spawnSync('bash', [join(root, 'scripts', 'vm', 'run'), runArgs.map((a) => `'${a}'`).join(' ')], { cwd: root, env, stdio: 'inherit' })
  if (r.status !== 0 || !existsSync(out)) {
    console.error(`bench: the run failed (exit ${r.status ?? r.signal})`)
    process.exit(1)
  }
  const md = render(out)
  console.log(`\n${md}`)
  console.log(`bench: wrote ${relative(root, out).replace(/\.json$/, '')}.{json,md,svg}`)
  if (!quick) {
    const readmePath = join(root, 'README.md')
    const section = readmeSection(out, relative(root, out))
    writeFileSync(readmePath, updateReadme(readFileSync(readmePath, 'utf8'), section))
    console.log('bench: updated the README benchmark section')
  }
}

if (require.main === module) main()
