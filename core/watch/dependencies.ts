import { existsSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"]([^'"]+)['"]/g
const EXTENSIONS = ['', '.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.json']

function resolveLocal(from: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(from), specifier)
  // TypeScript lets `./x.js` name `./x.ts`.
  const candidates = [...EXTENSIONS.map((extension) => base + extension), base.replace(/\.(m|c)?js$/, '.$1ts'), ...EXTENSIONS.slice(1).map((extension) => path.join(base, `index${extension}`))]
  return candidates.find((candidate) => existsSync(candidate) && statSync(candidate).isFile())
}

/**
 * The config file and every local file it imports, transitively, found by
 * scanning import specifiers that start with `.` or `/` (packages are not
 * followed: editing node_modules is not a config edit). A watcher reloads the
 * config when any of them changes.
 */
export function configDependencies(configFile: string): string[] {
  const seen = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    if (file.endsWith('.json')) return
    let source: string
    try {
      source = readFileSync(file, 'utf8')
    } catch {
      return
    }
    for (const match of source.matchAll(SPECIFIER)) {
      const specifier = match[1]
      if (!specifier.startsWith('.') && !path.isAbsolute(specifier)) continue
      const resolved = resolveLocal(file, specifier)
      if (resolved !== undefined) visit(resolved)
    }
  }
  visit(path.resolve(configFile))
  return [...seen]
}
