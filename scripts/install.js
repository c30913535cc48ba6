#!/usr/bin/env node
// npm's install step for `ublk`: use the prebuilt binary when one matches this
// platform (the `ublk-<platform>` package, or `ublk.<platform>.node` beside the
// loader); otherwise build the addon from the Rust sources with cargo.
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.resolve(__dirname, '..')

function platformTriple() {
  const arch = { x64: 'x64', arm64: 'arm64' }[process.arch]
  if (process.platform !== 'linux' || !arch) return null
  const glibc = process.report?.getReport?.().header?.glibcVersionRuntime
  return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
}

function prebuiltLoads() {
  try {
    require(path.join(root, 'index.js'))
    return true
  } catch {
    return false
  }
}

function fail(message) {
  console.error(`ublk: ${message}`)
  process.exit(1)
}

function main() {
  if (prebuiltLoads()) return
  const triple = platformTriple()
  if (!triple) fail(`ublk devices exist only on Linux (x64 or arm64); this is ${process.platform}-${process.arch}`)
  if (!fs.existsSync(path.join(root, 'crates'))) fail(`no prebuilt binary for ${triple} and no sources to build one`)
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' })
  if (cargo.status !== 0) {
    fail(
      `no prebuilt binary for ${triple}, and building one needs a Rust toolchain (https://rustup.rs) ` +
        'plus libclang (Debian: apt-get install libclang-dev)',
    )
  }
  console.error(`ublk: no prebuilt binary for ${triple}; building the addon from source with cargo`)
  const build = spawnSync('cargo', ['build', '--release', '--locked', '-p', 'ublk-node'], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) fail('cargo build failed (see above); libclang-dev and linux-libc-dev are needed for bindgen')
  const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(root, 'target')
  fs.copyFileSync(path.join(targetDir, 'release', 'libublk_node.so'), path.join(root, `ublk.${triple}.node`))
  if (!prebuiltLoads()) fail('the freshly built addon does not load')
}

main()
