import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { normalizeSource, scanImports } from './normalize.js'
import { RACY_MS } from '../source/racy.js'

/**
 * The modules a stage can reach beyond its defining module's own top-level
 * declarations (see reach.ts): the local modules its reached imports name,
 * transitively, each by its whole text, plus the version of every package
 * they import: `specifiers`, followed from the defining module's directory.
 * Without them (what `run` reaches cannot be told), the defining module
 * itself counts by its whole text, with all its imports.
 *
 * Decisions:
 * - Keys are `module:<path>` with the path relative to the defining module's
 *   directory, `/`-separated (`module:filedge.config.ts`,
 *   `module:lib/clean.ts`, `module:../shared/dates.ts`): no absolute path or
 *   mtime enters a hash, so a checkout elsewhere hashes the same.
 * - An imported local module counts whole, with everything it imports:
 *   which of its exports `run` uses, and what those read, is not worked out.
 * - A package counts by the version in the `node_modules/<name>/package.json`
 *   Node would find walking up from the importing module; `missing` when
 *   there is none. Node built-ins (`fs`, `node:fs`) count for nothing: a Node
 *   upgrade would otherwise make every stage stale. Nor does `filedge`:
 *   what it hands a stage is versioned by STAGE_ABI. A package's own files
 *   and dependencies are not read: a linked package whose version does not
 *   change is not seen to change.
 * - `#internal` imports resolve through the nearest package.json's
 *   `imports`; every target any condition names counts (more modules,
 *   never fewer). URL specifiers (`data:`, `https:`) count for nothing.
 * - A module acorn cannot tokenize counts by its raw text (`raw:<sha>`) and
 *   its imports are found by a pattern, which may find more, never fewer.
 */
export function hashModules(definedIn: string, specifiers?: readonly string[]): Record<string, string> {
  const base = dirname(definedIn)
  const components: Record<string, string> = {}
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const module = readModule(file)
    components[`module:${relativePath(base, file)}`] = module?.hash ?? 'missing'
    for (const specifier of module?.imports ?? []) follow(specifier, dirname(file))
  }
  const follow = (specifier: string, from: string): void => {
    if (specifier.startsWith('./') || specifier.startsWith('../') || isAbsolute(specifier)) {
      const target = resolve(from, specifier)
      return visit(resolveLocal(target) ?? target)
    }
    if (specifier.startsWith('#')) {
      const mapped = subpathImport(from, specifier)
      if (mapped === undefined || mapped.targets.length === 0) components[`module:${specifier}`] = 'missing'
      else for (const target of mapped.targets) if (!target.startsWith('#')) follow(target, mapped.dir)
      return
    }
    if (isBuiltin(specifier) || /^[a-z][a-z\d+.-]*:/i.test(specifier)) return
    const name = packageName(specifier)
    if (name === 'filedge') return
    // Two modules may reach two copies of one package (a nested node_modules): both versions count.
    const key = `package:${name}`
    const versions = new Set([...(components[key]?.split(', ') ?? []), packageVersion(from, name)])
    components[key] = [...versions].sort().join(', ')
  }
  if (specifiers === undefined) visit(definedIn)
  else for (const specifier of specifiers) follow(specifier, base)
  return components
}

interface Module {
  readonly hash: string
  readonly imports: readonly string[]
}

const CODE_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs']

function readModule(file: string): Module | undefined {
  return readCached('module', file, (text) => {
    const extension = extname(file)
    if (extension === '.json') {
      // By its parsed value, key order kept (the importing module sees that order): layout does not count.
      const json = parseJson(text)
      if (json !== undefined) return { hash: sha256(JSON.stringify(json)), imports: [] }
    }
    const normalized = CODE_EXTENSIONS.includes(extension) ? normalizeSource(text, 'module') : undefined
    if (normalized === undefined) return { hash: `raw:${sha256(text)}`, imports: scanImports(text) }
    return { hash: sha256(normalized.text), imports: normalized.imports }
  })
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

/** As Node with TypeScript's rules would: the path as written, `.js` → `.ts`, then each extension, then `index.*`. */
function resolveLocal(target: string): string | undefined {
  const extension = extname(target)
  const swapped = { '.js': '.ts', '.mjs': '.mts', '.cjs': '.cts' }[extension]
  const candidates = [
    target,
    ...(swapped === undefined ? [] : [target.slice(0, -extension.length) + swapped]),
    ...CODE_EXTENSIONS.concat('.json').map((ext) => target + ext),
    ...CODE_EXTENSIONS.concat('.json').map((ext) => join(target, `index${ext}`)),
  ]
  return candidates.find((candidate) => statSync(candidate, { throwIfNoEntry: false })?.isFile() === true)
}

/** `lodash/fp` → `lodash`; `@scope/pkg/sub` → `@scope/pkg`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

function packageVersion(from: string, name: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = readManifest(join(dir, 'node_modules', name, 'package.json'))
    if (manifest !== undefined) return typeof manifest.version === 'string' ? manifest.version : 'unversioned'
    if (dirname(dir) === dir) return 'missing'
  }
}

/** `#internal/x` in the nearest package.json's `imports`, by exact key or `*` pattern: every string target of every key that matches. */
function subpathImport(from: string, specifier: string): { dir: string; targets: string[] } | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = basename(dir) === 'node_modules' ? undefined : readManifest(join(dir, 'package.json'))
    if (manifest !== undefined) {
      const targets = Object.entries(manifest.imports ?? {}).flatMap(([key, target]) => {
        const [prefix, suffix] = key.split('*')
        if (suffix === undefined) return key === specifier ? stringsIn(target) : []
        const matches = specifier.length >= key.length - 1 && specifier.startsWith(prefix) && specifier.endsWith(suffix)
        const star = specifier.slice(prefix.length, specifier.length - suffix.length)
        return matches ? stringsIn(target).map((path) => path.replaceAll('*', star)) : []
      })
      return { dir, targets }
    }
    if (dirname(dir) === dir) return undefined
  }
}

function stringsIn(target: unknown): string[] {
  if (typeof target === 'string') return [target]
  if (typeof target !== 'object' || target === null) return []
  return Object.values(target).flatMap(stringsIn)
}

interface Manifest {
  readonly version?: unknown
  readonly imports?: Readonly<Record<string, unknown>>
}

function readManifest(file: string): Manifest | undefined {
  return readCached('manifest', file, (text) => {
    const parsed = parseJson(text)
    return typeof parsed === 'object' && parsed !== null ? (parsed as Manifest) : { version: 'unreadable' }
  })
}

function relativePath(base: string, file: string): string {
  return relative(base, file).split(sep).join('/')
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/**
 * What a file's text gave, kept while its inode, size, mtime and ctime stay
 * the same. Decision: a file changed (by its ctime, which no tool can set
 * back) less than two seconds before it was read is not kept. File times
 * tick coarsely on some systems (2 s on FAT, a clock tick on older Linux),
 * so a second same-size write within one tick would look unchanged; git
 * calls such an entry "racily clean" and re-reads it too.
 */
const cache = new Map<string, { readonly stamp: string; readonly value: unknown }>()

export function readCached<T>(kind: 'module' | 'manifest' | 'top-level', file: string, compute: (text: string) => T): T | undefined {
  const stat = statSync(file, { bigint: true, throwIfNoEntry: false })
  if (stat === undefined || !stat.isFile()) return undefined
  const stamp = `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
  const key = `${kind}:${file}`
  const kept = cache.get(key)
  if (kept?.stamp === stamp) return kept.value as T
  const value = compute(readFileSync(file, 'utf8'))
  if (Date.now() - Number(stat.ctimeMs) > RACY_MS) cache.set(key, { stamp, value })
  else cache.delete(key)
  return value
}
