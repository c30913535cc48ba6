#!/usr/bin/env node
// `npm test`: builds what is stale, runs the Rust checks (cargo test, clippy,
// rustfmt), the unit tests and the S3 backend's tests against a local Ceph
// cluster on this machine, then the real-kernel tests (__test__/kernel) either directly, when this kernel
// has ublk and we are root, or inside the QEMU guest under each kernel
// (scripts/vm). Ends with one line `N passed, N failed[, N skipped]`.
'use strict'

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')
const inCI = process.env.CI === 'true'
const ava = path.join(root, 'node_modules', '.bin', 'ava')
const totals = { passed: 0, failed: 0, skipped: 0 }
const notes = []

function newestMtime(dir) {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

function mtime(p) {
  return fs.existsSync(p) ? fs.statSync(p).mtimeMs : 0
}

function runOrDie(cmd, args) {
  const res = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' })
  if (res.status !== 0) {
    console.log(`${cmd} ${args.join(' ')} failed`)
    console.log('0 passed, 1 failed')
    process.exit(1)
  }
}

/** Rebuilds the addon and the TypeScript layer when their sources are newer. */
function buildIfNeeded() {
  const addon = fs.readdirSync(root).find((f) => /^ublk\..*\.node$/.test(f))
  const rustSources = Math.max(newestMtime(path.join(root, 'crates')), mtime(path.join(root, 'Cargo.toml')))
  if (!addon || mtime(path.join(root, addon)) < rustSources) runOrDie('npm', ['run', '--silent', 'build:native'])
  if (mtime(path.join(root, 'dist', 'index.js')) < newestMtime(path.join(root, 'js'))) {
    runOrDie('npm', ['run', '--silent', 'build:js'])
  }
}

/** Sums ava's TAP trailer (`# pass N`, ...). */
function countTap(text) {
  const count = (key) => {
    const m = text.match(new RegExp(`^# ${key} (\\d+)$`, 'm'))
    return m ? parseInt(m[1], 10) : 0
  }
  return { planned: /^1\.\.\d+$/m.test(text), pass: count('pass'), fail: count('fail'), skip: count('skip') + count('todo') }
}

/** Runs a command whose stdout is ava's TAP, echoing it, and adds its counts. */
function runTap(label, cmd, args, env) {
  return new Promise((resolve) => {
    console.log(`# ${label}`)
    const started = Date.now()
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      process.stdout.write(chunk)
    })
    child.on('close', (code, signal) => {
      const c = countTap(out)
      totals.passed += c.pass
      totals.failed += c.fail
      totals.skipped += c.skip
      const seconds = ((Date.now() - started) / 1000).toFixed(1)
      if (!c.planned || (code !== 0 && c.fail === 0)) {
        totals.failed += 1
        const why = code === 86 ? 'the guest died without reporting an exit code' : `exit ${code ?? signal}`
        notes.push(`${label}: did not finish (${why})`)
      }
      console.log(`# ${label}: ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped in ${seconds}s`)
      resolve()
    })
  })
}

/** Runs a command, echoing its output; resolves with its exit code and stdout. */
function runEcho(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      process.stdout.write(chunk)
    })
    child.on('close', (code, signal) => resolve({ code: code ?? signal, out }))
  })
}

/** Sums libtest's `test result: ok. N passed; M failed; K ignored` lines. */
function countCargoTests(text) {
  const c = { pass: 0, fail: 0, skip: 0 }
  for (const m of text.matchAll(/^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored/gm)) {
    c.pass += parseInt(m[1], 10)
    c.fail += parseInt(m[2], 10)
    c.skip += parseInt(m[3], 10)
  }
  return c
}

/**
 * The Rust unit tests of every crate (each counted; release profile, so they
 * reuse what the addon build compiled), then the static checks, one test
 * each: clippy with warnings as errors, rustfmt, and the TypeScript types of
 * the tests, the benchmark and the examples.
 */
async function runStaticChecks() {
  console.log('# Rust unit tests (cargo test --workspace)')
  const started = Date.now()
  const tests = await runEcho('cargo', ['test', '--workspace', '--release', '--locked'])
  const c = countCargoTests(tests.out)
  totals.passed += c.pass
  totals.failed += c.fail
  totals.skipped += c.skip
  if (tests.code !== 0 && c.fail === 0) {
    totals.failed += 1
    notes.push(`cargo test: exit ${tests.code} (did not build or did not finish)`)
  }
  console.log(`# cargo test: ${c.pass} passed, ${c.fail} failed, ${c.skip} ignored in ${((Date.now() - started) / 1000).toFixed(1)}s`)
  const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
  const checks = [
    ['cargo clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--locked', '--', '-D', 'warnings']],
    ['cargo fmt --check', 'cargo', ['fmt', '--all', '--check']],
    ['tsc --noEmit (tests and benchmark)', tsc, ['-p', '__test__/tsconfig.json', '--noEmit']],
    ['tsc --noEmit (examples)', tsc, ['-p', 'examples/tsconfig.json', '--noEmit']],
  ]
  for (const [label, cmd, args] of checks) {
    console.log(`# ${label}`)
    const r = await runEcho(cmd, args)
    if (r.code === 0) {
      totals.passed += 1
      console.log(`ok - ${label}`)
    } else {
      totals.failed += 1
      notes.push(`${label} failed (exit ${r.code})`)
      console.log(`not ok - ${label}`)
    }
  }
}

/**
 * The executable of ublk-core's unit tests, as `cargo test` above built it:
 * the kernel tests run its CPU-dependent tests again where they run (the
 * guest's CPU has protection keys, this machine's may not). Null if cargo
 * does not name it.
 */
function coreTestBinary() {
  const args = ['test', '-p', 'ublk-core', '--lib', '--release', '--locked', '--no-run', '--message-format=json']
  const res = spawnSync('cargo', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  for (const line of (res.stdout ?? '').split('\n')) {
    if (!line.startsWith('{')) continue
    const m = JSON.parse(line)
    if (m.reason === 'compiler-artifact' && m.profile?.test && m.target?.name === 'ublk_core' && m.executable) return m.executable
  }
  return null
}

/**
 * Tests that could not start because their setup failed: a failure in CI
 * (where the setup must work), a skip elsewhere (a machine without it).
 */
function setupMissing(why) {
  if (inCI) {
    totals.failed += 1
    notes.push(why)
  } else {
    totals.skipped += 1
    notes.push(`${why}; skipped`)
  }
}

/**
 * The S3 backend's handler tests, against a real single-host Ceph cluster
 * on this machine's loopback (scripts/ceph), started for them and stopped
 * after. (The device tests start their own inside the guest.)
 */
async function runStoreTests() {
  const label = 'S3 backend against Ceph (this machine)'
  const start = spawnSync('bash', [path.join(root, 'scripts/ceph/start')], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  if (start.status !== 0) {
    setupMissing(`${label}: scripts/ceph/start exited ${start.status}`)
    return
  }
  const env = {}
  for (const m of start.stdout.matchAll(/^([A-Z0-9_]+)=(.*)$/gm)) env[m[1]] = m[2]
  try {
    await runTap(label, ava, ['--tap', '--serial', '__test__/store/*.spec.ts'], env)
  } finally {
    spawnSync('bash', [path.join(root, 'scripts/ceph/stop')], { cwd: root, stdio: 'inherit' })
  }
}

function hasUblkHere() {
  if (process.getuid?.() !== 0) return false
  if (!fs.existsSync('/dev/ublk-control')) spawnSync('modprobe', ['ublk_drv'], { stdio: 'ignore' })
  return fs.existsSync('/dev/ublk-control')
}

function kernelTestFiles() {
  const dir = path.join(root, '__test__', 'kernel')
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.spec.ts'))
    .sort()
    .map((f) => path.posix.join('__test__', 'kernel', f))
}

async function main() {
  buildIfNeeded()
  await runStaticChecks()
  await runTap('unit tests (this machine)', ava, ['--tap', '__test__/unit/*.spec.ts'])
  await runStoreTests()

  const avaKernelArgs = ['--tap', '--serial', '--concurrency=1', '--timeout=10m', ...kernelTestFiles()]
  const coreTests = coreTestBinary()
  if (!coreTests) setupMissing("cargo did not name ublk-core's unit test executable")
  const kernelEnv = coreTests ? { UBLK_CORE_TEST_BINARY: coreTests } : {}
  if (hasUblkHere()) {
    await runTap('real-kernel tests (this kernel)', ava, avaKernelArgs, kernelEnv)
  } else {
    const kernels = process.env.UBLK_VM_KERNEL ? [process.env.UBLK_VM_KERNEL] : ['6.1', '6.12', '7']
    for (const kernel of kernels) {
      const env = { ...kernelEnv, UBLK_VM_KERNEL: kernel }
      const prep = spawnSync('bash', [path.join(root, 'scripts/vm/prepare')], {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'inherit', 'inherit'],
      })
      if (prep.status !== 0) {
        setupMissing(`real-kernel tests under ${kernel}: the test guest could not be prepared (scripts/vm/prepare exited ${prep.status})`)
        continue
      }
      const command = [ava, ...avaKernelArgs].map((a) => `'${a}'`).join(' ')
      await runTap(`real-kernel tests (guest, kernel ${kernel})`, 'bash', [path.join(root, 'scripts/vm/run'), command], env)
    }
  }

  for (const note of notes) console.log(`# ${note}`)
  const skipped = totals.skipped ? `, ${totals.skipped} skipped` : ''
  console.log(`${totals.passed} passed, ${totals.failed} failed${skipped}`)
  process.exit(totals.failed ? 1 : 0)
}

main().catch((err) => {
  console.error(err)
  console.log(`${totals.passed} passed, ${totals.failed + 1} failed`)
  process.exit(1)
})
