// Prebuilt installs: `npm pack` makes the main package and the linux-x64-gnu
// platform package; both tarballs go into an empty directory, offline and
// with no Rust toolchain on PATH. CommonJS and ESM consumers load the
// prebuilt binary (no build runs), TypeScript consumers type-check, and the
// `ublk` bin runs.
import test from 'ava'
import { spawnSync, type SpawnSyncOptions } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

const root = join(__dirname, '..', '..')
const binary = 'ublk.linux-x64-gnu.node'

function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...options })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`)
  return String(r.stdout)
}

const onX64Gnu = process.arch === 'x64' && existsSync(join(root, binary))

;(onX64Gnu ? test : test.skip)('packed tarballs install offline without Rust and load for CJS, ESM and TypeScript', (t) => {
  const work = mkdtempSync(join(tmpdir(), 'ublk-install-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) =>
    run('npm', ['--no-audit', '--no-fund', '--loglevel=error', ...args], { cwd, env })

  // The platform package, as `napi prepublish` would fill it.
  const platformDir = join(work, 'platform')
  cpSync(join(root, 'npm', 'linux-x64-gnu'), platformDir, { recursive: true })
  copyFileSync(join(root, binary), join(platformDir, binary))
  npm(['pack', '--pack-destination', work], platformDir)
  npm(['pack', '--pack-destination', work], root)
  const tarballs = readdirSync(work).filter((f) => f.endsWith('.tgz'))
  t.is(tarballs.length, 2, tarballs.join(' '))
  const listing = run('tar', ['tzf', join(work, tarballs.find((f) => /^ublk-\d/.test(f))!)])
  t.false(listing.includes('.node'), 'the main package carries no binary')
  t.true(listing.includes('package/dist/index.d.ts') && listing.includes('package/dist/cli/main.js'))

  // An empty project; PATH without cargo, and npm offline: nothing may build.
  const app = join(work, 'app')
  run('mkdir', ['-p', app])
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, CARGO: '/nonexistent', npm_config_offline: 'true' }
  t.not(spawnSync('sh', ['-c', 'command -v cargo'], { env }).status, 0, 'no cargo on PATH')
  npm(['install', ...tarballs.map((f) => join(work, f))], app, env)
  t.false(existsSync(join(app, 'node_modules', 'ublk', 'target')), 'no cargo build ran')
  t.false(existsSync(join(app, 'node_modules', 'ublk', binary)), 'the binary comes from the platform package')

  writeFileSync(join(app, 'cjs.cjs'), "const u = require('ublk'); console.log(typeof u.createDevice, typeof u.MemoryBackend, u.featureNames(2).join(','))\n")
  t.is(run(process.execPath, ['cjs.cjs'], { cwd: app, env }).trim(), 'function function UBLK_F_URING_CMD_COMP_IN_TASK')
  writeFileSync(join(app, 'esm.mjs'), "import { createDevice, FileBackend, UblkError } from 'ublk'\nconsole.log(typeof createDevice, typeof FileBackend, new UblkError('ENOSPC').errno)\n")
  t.is(run(process.execPath, ['esm.mjs'], { cwd: app, env }).trim(), 'function function -28')

  writeFileSync(
    join(app, 'consumer.ts'),
    [
      "import { createDevice, MemoryBackend, type DeviceOptions, type Handler } from 'ublk'",
      'const handler: Handler = new MemoryBackend(1 << 20)',
      'const options: DeviceOptions = { size: 1 << 20, queues: 1, handler }',
      'export const start = () => createDevice(options).then((dev) => dev.path.length)',
      '',
    ].join('\n'),
  )
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, module: 'node16', moduleResolution: 'node16', target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable'], types: ['node'], typeRoots: [join(root, 'node_modules', '@types')], noEmit: true }, files: ['consumer.ts'] }),
  )
  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app, env })

  t.regex(run(join(app, 'node_modules', '.bin', 'ublk'), ['--help'], { cwd: app, env }), /Commands:/)
})
