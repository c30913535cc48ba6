// Loading a handler from a module, for `ublk serve <module>` and for the
// worker threads of `createDevice({ workers })`: a path, a `file:` URL or a
// package name; JavaScript, or TypeScript when tsx is installed.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { Handler } from './handler'

/** Where a module is: a path, a URL (`file:`), or a package name. */
export type ModuleSpecifier = string | URL

/**
 * The URL of `spec`: a URL as is, a path (relative to the working directory)
 * as a `file:` URL; anything else is a package name, resolved from the
 * working directory.
 */
export function moduleUrl(spec: ModuleSpecifier): string {
  if (spec instanceof URL) return spec.href
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec) && !isAbsolute(spec)) return spec
  if (spec.startsWith('.') || isAbsolute(spec) || existsSync(resolve(spec))) return pathToFileURL(resolve(spec)).href
  return pathToFileURL(createRequire(resolve('package.json')).resolve(spec)).href
}

/** Raised when a module cannot serve as a handler; its message says why. */
export class HandlerModuleError extends Error {
  readonly code = 'ERR_UBLK_HANDLER_MODULE'
}

/** Imports `spec` (TypeScript through tsx's `tsImport`). */
export async function importModule(spec: ModuleSpecifier): Promise<unknown> {
  const url = moduleUrl(spec)
  if (!/\.[mc]?ts$/.test(url)) return import(url)
  let tsx: { tsImport(specifier: string, parent: string): Promise<unknown> }
  try {
    tsx = (await import('tsx/esm/api')) as typeof tsx
  } catch {
    throw new HandlerModuleError(`${String(spec)} is TypeScript: install tsx (npm install tsx) or use the compiled .js`)
  }
  return tsx.tsImport(url, __filename)
}

/**
 * The handler a module's default export gives: the handler object itself,
 * or a factory called with `args` that returns one (or a promise of one).
 */
export async function handlerFromModule(spec: ModuleSpecifier, args: unknown[]): Promise<Handler> {
  const mod = (await importModule(spec)) as { default?: unknown }
  let exported = mod.default
  // A CommonJS module imported as ESM has its exports under `default`.
  if (exported && typeof exported === 'object' && 'default' in exported && Object.keys(exported).length === 1) {
    exported = (exported as { default: unknown }).default
  }
  const handler = typeof exported === 'function' ? await (exported as (...a: unknown[]) => unknown)(...args) : exported
  if (typeof handler !== 'object' || handler === null || typeof (handler as Handler).read !== 'function') {
    throw new HandlerModuleError(`${String(spec)}: the default export must be a handler object (with read) or a function returning one`)
  }
  return handler as Handler
}
