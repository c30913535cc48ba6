// Temporary directories and image files, removed when the test ends.
import { mkdtempSync, rmSync } from 'node:fs'
import { truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exec } from './process'

type Test = { teardown(fn: () => unknown): void }

/** A fresh directory under the system's temp dir, removed at teardown. */
export function tempDir(t: Test, prefix = 'ublk-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A sparse image file of `size` bytes (zeros) in a fresh temp dir. */
export async function tempImage(t: Test, size: number, name = 'disk.img'): Promise<string> {
  const path = join(tempDir(t, 'ublk-image-'), name)
  await writeFile(path, '')
  await truncate(path, size)
  return path
}

/**
 * An empty directory to mount a file system on; at teardown whatever is
 * mounted there is unmounted (before the device under it goes away, as
 * teardowns run last-registered first) and the directory removed.
 */
export function tempMountPoint(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'ublk-mnt-'))
  t.teardown(async () => {
    await exec('umount', [dir])
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}
