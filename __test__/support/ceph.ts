// The real S3 store of the S3 backend's tests and benchmark: the single-host
// Ceph cluster of scripts/ceph, started here when the environment does not
// already point at one (npm test starts it once for the host's tests; inside
// the guest the kernel tests start their own, on the guest's loopback).
import { randomUUID } from 'node:crypto'
import { join, resolve } from 'node:path'
import { S3Backend, type S3BackendOptions } from '../../js'
import { exec, sh } from './process'

const root = resolve(__dirname, '..', '..')
const start = join(root, 'scripts', 'ceph', 'start')
const stop = join(root, 'scripts', 'ceph', 'stop')

/** How to reach the store: what scripts/ceph/start prints. */
export interface S3Env {
  S3_ENDPOINT: string
  S3_BUCKET: string
  AWS_ACCESS_KEY_ID: string
  AWS_SECRET_ACCESS_KEY: string
  AWS_REGION: string
}

const NAMES = ['S3_ENDPOINT', 'S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION'] as const

function parseEnv(text: string): S3Env {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim())
    if (m) env[m[1]] = m[2]
  }
  for (const name of NAMES) if (!env[name]) throw new Error(`scripts/ceph/start did not print ${name}: ${text}`)
  return env as unknown as S3Env
}

let started = false

/**
 * The store's settings, also put in `process.env` (the SDK reads the
 * credentials from there). Starts the cluster (idempotent) unless
 * `S3_ENDPOINT` is already set.
 */
export async function cephStore(): Promise<S3Env> {
  if (process.env.S3_ENDPOINT) return parseEnv(NAMES.map((n) => `${n}=${process.env[n] ?? ''}`).join('\n'))
  const env = parseEnv(await sh('bash', [start], 600_000))
  Object.assign(process.env, env)
  started = true
  return env
}

/** Stops the cluster if `cephStore` started it (call from `test.after.always`). */
export async function stopCephStore(): Promise<void> {
  if (started) await sh('bash', [stop])
}

/** Stops radosgw only (the data stays); `startRgw` brings it back. */
export async function stopRgw(): Promise<void> {
  await sh('bash', [stop, 'rgw'])
}

export async function startRgw(): Promise<void> {
  await sh('bash', [start], 300_000)
}

/** A prefix no other test uses. */
export function freshPrefix(name: string): string {
  return `${name}-${randomUUID().slice(0, 8)}/`
}

/** Opens an image on the test store (credentials from the environment). */
export async function openS3(env: S3Env, options: Partial<S3BackendOptions> & { prefix: string }): Promise<S3Backend> {
  return S3Backend.open({ endpoint: env.S3_ENDPOINT, bucket: env.S3_BUCKET, ...options })
}

/** Keys under `prefix` in the bucket, listed with curl's SigV4 (not through the backend under test). */
export async function listKeys(env: S3Env, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let token = ''
  for (;;) {
    const query = `list-type=2&prefix=${encodeURIComponent(prefix)}${token ? `&continuation-token=${encodeURIComponent(token)}` : ''}`
    const r = await exec('curl', [
      '-fsS',
      '--aws-sigv4',
      `aws:amz:${env.AWS_REGION}:s3`,
      '--user',
      `${env.AWS_ACCESS_KEY_ID}:${env.AWS_SECRET_ACCESS_KEY}`,
      '-H',
      'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      `${env.S3_ENDPOINT}/${env.S3_BUCKET}?${query}`,
    ])
    if (r.code !== 0) throw new Error(`listing ${prefix}: curl exited ${r.code}: ${r.stderr}`)
    for (const m of r.stdout.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(m[1])
    const next = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(r.stdout)
    if (!/<IsTruncated>true<\/IsTruncated>/.test(r.stdout) || !next) return keys
    token = next[1]
  }
}

/** The data objects of the image at `prefix`. */
export async function dataObjects(env: S3Env, prefix: string): Promise<string[]> {
  return (await listKeys(env, `${prefix}data/`)).sort()
}
