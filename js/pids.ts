// Whether a process exists: the one check the CLI (who holds a device) and the
// S3 lease (is the holder of this host gone) share.

/** Whether process `pid` exists (one we may not signal exists too). */
export function isAlive(pid: number): boolean {
  if (!(pid > 0)) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
