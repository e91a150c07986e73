// The second half of `npm run build`: bundles what tsc compiled into dist/ into dist/bundle/, which the CLI
// (bin/filedge.js) and the package's entry points (`exports`) load. Types stay tsc's (dist/**/*.d.ts).
//
// Why: a run is mostly start-up when it has little to do. Unbundled, the CLI's start loaded ~370 files
// (117 of ours, 100 of zod, 60 of fast-glob and its helpers, tapable, commander), each resolved, read
// through a promise, compiled and linked on its own: an empty run took 0.75 s of CPU, 0.46 s bundled (medians of 10 alternating runs).
//
// One build with every public entry point, split into shared chunks, so that the CLI and a config that
// imports `filedge` and `filedge/plugins/sqlite` share one instance of every module (an error class, a
// symbol, a registry), as they did unbundled. A bundle of the CLI alone would hand the config a second copy.
//
// What is bundled: our code, the pure-JavaScript packages every run loads (BUNDLED), and the JavaScript of
// @duckdb/node-api, which `filedge query` and DuckDB destinations load (~40 small CommonJS files: a query's
// start 0.59–0.76 s → 0.51–0.69 s; its native half, @duckdb/node-bindings, stays external). Everything else
// stays an import of node_modules: native packages (better-sqlite3, @duckdb/node-bindings), optional peers
// (the cloud SDKs, NATS, amqplib, OpenTelemetry, vitest), packages that find their own files at run time
// (jiti loads its Babel build lazily, by path), and packages only some commands or plugins load, which
// they import lazily anyway (pg, chokidar, cosmiconfig, listr2, …).
import { existsSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { rolldown } from 'rolldown'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DIST = path.join(ROOT, 'dist')
const OUT = path.join(DIST, 'bundle')

const BUNDLED = new Set([
  'zod',
  'commander',
  'tapable',
  'fast-glob',
  '@nodelib/fs.scandir',
  '@nodelib/fs.stat',
  '@nodelib/fs.walk',
  'micromatch',
  'braces',
  'picomatch',
  'merge2',
  'glob-parent',
  'is-glob',
  'is-extglob',
  'fastq',
  'reusify',
  'run-parallel',
  'queue-microtask',
  'fill-range',
  'to-regex-range',
  'is-number',
  '@duckdb/node-api',
])

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
function packageOf(specifier) {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/** The package's public entry points, as `exports` names them, from tsc's output. */
function entryPoints() {
  const input = {
    'core/cli/main': path.join(DIST, 'core/cli/main.js'),
    'core/index': path.join(DIST, 'core/index.js'),
    'test/conformance/index': path.join(DIST, 'test/conformance/index.js'),
    // Not imported but started as a worker thread by its path (core/protect/pool.ts finds it from wherever the pool lands).
    'core/protect/worker': path.join(DIST, 'core/protect/worker.js'),
  }
  for (const kind of ['plugins', 'presets']) {
    for (const name of readdirSync(path.join(DIST, kind))) {
      const file = path.join(DIST, kind, name, 'index.js')
      if (existsSync(file)) input[`${kind}/${name}/index`] = file
    }
  }
  for (const file of Object.values(input)) if (!existsSync(file)) throw new Error(`${path.relative(ROOT, file)} is missing: run tsc first (npm run build)`)
  return input
}

const bundle = await rolldown({
  input: entryPoints(),
  platform: 'node',
  external: (id) => !id.startsWith('.') && !path.isAbsolute(id) && !BUNDLED.has(packageOf(id)),
  // A warning is a build that does not do what this file says (an import left unresolved, say): fail it.
  onwarn(warning) {
    throw new Error(`bundling: ${warning.message}`)
  },
})
rmSync(OUT, { recursive: true, force: true })
await bundle.write({ dir: OUT, format: 'esm', entryFileNames: '[name].js', chunkFileNames: 'chunks/[name]-[hash].js', sourcemap: true })
await bundle.close()
