import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createCache } from '../plugins/cache/index.js'
import { alternate, median } from './measure.js'
import { project, REPO_ROOT, type Project } from './project.js'
import { bigCsv, format, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * A plugin of the bench's projects: it times how long the destination waits
 * for rows (reading, parsing, coercing, or replaying them), which is what
 * the cache saves on a retry; with BENCH_FAIL=1 it drains the rows and then
 * fails the file as a warehouse timing out at COMMIT would.
 */
const TIMING_PLUGIN = `import { writeFileSync } from 'node:fs'
export const timing = {
  name: 'bench-timing',
  enforce: 'pre',
  apply({ hooks }) {
    hooks.commit.tapPromise({ name: 'bench-timing', stage: -1000 }, async (job) => {
      const inner = job.batches
      let waited = 0
      job.batches = (async function* () {
        const it = inner[Symbol.asyncIterator]()
        for (;;) {
          const started = performance.now()
          const next = await it.next()
          waited += performance.now() - started
          if (next.done) break
          yield next.value
        }
        writeFileSync('timing.json', JSON.stringify({ waitedMs: waited }))
      })()
      if (process.env.BENCH_FAIL !== '1') return undefined
      for await (const batch of job.batches) void batch
      throw new Error('the warehouse timed out at COMMIT (bench)')
    })
  },
}
`

const BIN = path.join(REPO_ROOT, 'bin/filedge.js')

function cli(dir: string, env: NodeJS.ProcessEnv): Promise<{ ms: number; code: number }> {
  const started = performance.now()
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, '--reporter', 'json'], { cwd: dir, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 }, (error) => {
      resolve({ ms: performance.now() - started, code: error ? Number((error as { code?: number }).code ?? 1) : 0 })
    })
  })
}

/**
 * The retry of a `--rows` file whose destination failed after reading it
 * all: without the cache (the file is read and parsed again) and with it
 * (the parsed rows are replayed). Measured: how long the destination waits
 * for rows on the retry, and the retry's wall time; and what keeping the
 * rows costs the first, failing, load.
 */
/** A project loading `file` into SQLite with the timing plugin, the cache plugin or not, and `extra` pipeline keys (stages). */
export function timedProject(file: string, withCache: boolean, extra = ''): Project {
  const side = project({
    sourceDir: path.dirname(file),
    include: path.basename(file),
    imports: `import { stage } from 'filedge'\nimport { sqlite } from 'filedge/plugins/sqlite'\nimport { cache } from 'filedge/plugins/cache'\nimport { timing } from './timing.mjs'`,
    destination: "sqlite({ path: 'warehouse.db' })",
    config: `plugins: [${withCache ? "cache({ dir: '.cache' }), " : ''}timing],`,
    extra,
    state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm', '.cache', 'timing.json'],
  })
  writeFileSync(path.join(side.dir, 'timing.mjs'), TIMING_PLUGIN)
  return side
}

/** From a clean state: a load whose destination fails after reading every row, then its retry; what each waited for rows, and took. */
export async function failThenRetry(side: Project): Promise<{ firstWaitMs: number; firstMs: number; retryWaitMs: number; retryMs: number }> {
  const waited = () => (JSON.parse(readFileSync(path.join(side.dir, 'timing.json'), 'utf8')) as { waitedMs: number }).waitedMs
  side.reset()
  const failed = await cli(side.dir, { BENCH_FAIL: '1' })
  if (failed.code !== 1) throw new Error(`the failing load exited ${failed.code}, not 1`)
  const first = waited()
  rmSync(path.join(side.dir, 'timing.json'))
  const retried = await cli(side.dir, { BENCH_FAIL: '0' })
  if (retried.code !== 0) throw new Error(`the retry exited ${retried.code}`)
  return { firstWaitMs: first, firstMs: failed.ms, retryWaitMs: waited(), retryMs: retried.ms }
}

async function retry(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const sides = { cold: timedProject(data.file, false), cached: timedProject(data.file, true) }
  const attempt = (side: Project) => () => failThenRetry(side)
  try {
    const results = await alternate(options.reps, { cold: attempt(sides.cold), cached: attempt(sides.cached) })
    const of = (side: 'cold' | 'cached', key: 'firstWaitMs' | 'firstMs' | 'retryWaitMs' | 'retryMs') => median(results[side].map((result) => result[key]))
    const ratio = of('cached', 'retryWaitMs') / of('cold', 'retryWaitMs')
    return [
      {
        work: `retry of a ${format.format(data.rows)}-row file whose destination failed: time waiting for rows`,
        filedge: `${seconds(of('cached', 'retryWaitMs'))} replayed (retry ${seconds(of('cached', 'retryMs'))})`,
        native: `${seconds(of('cold', 'retryWaitMs'))} parsed again (retry ${seconds(of('cold', 'retryMs'))})`,
        ratio: Number(ratio.toFixed(3)),
        target: '≤ 25% of the cold retry',
        met: ratio <= 0.25,
        detail: results,
      },
      {
        work: 'the first load keeping its parsed rows (cache on vs off): time waiting for rows',
        filedge: `${seconds(of('cached', 'firstWaitMs'))} (run ${seconds(of('cached', 'firstMs'))})`,
        native: `${seconds(of('cold', 'firstWaitMs'))} (run ${seconds(of('cold', 'firstMs'))})`,
        ratio: Number((of('cached', 'firstWaitMs') / of('cold', 'firstWaitMs')).toFixed(3)),
        target: 'informational',
      },
    ]
  } finally {
    sides.cold.remove()
    sides.cached.remove()
  }
}

/** cache set/get against writing (temp file + rename, as the cache does) and reading the same bytes with fs. */
async function throughput(options: BenchOptions): Promise<Row[]> {
  const rows: Row[] = []
  for (const { count, size } of [
    { count: 5000, size: 1024 },
    { count: 200, size: 1024 * 1024 },
  ]) {
    const values = Array.from({ length: count }, () => randomBytes(size))
    const scratch = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-cache-'))
    let round = 0
    const results = await alternate(options.reps, {
      async cache() {
        const dir = path.join(scratch, `cache-${round++}`)
        const store = createCache({ dir })
        const started = performance.now()
        for (let i = 0; i < count; i++) await store.set(`key-${i}`, values[i]!)
        const wrote = performance.now()
        for (let i = 0; i < count; i++) if ((await store.get<Buffer>(`key-${i}`))?.length !== size) throw new Error('cache miss')
        const read = performance.now()
        await store.close()
        rmSync(dir, { recursive: true, force: true })
        return { setMs: wrote - started, getMs: read - wrote }
      },
      async fs() {
        const dir = mkdtempSync(path.join(scratch, 'fs-'))
        const started = performance.now()
        for (let i = 0; i < count; i++) {
          await writeFile(path.join(dir, `${i}.tmp`), values[i]!)
          await rename(path.join(dir, `${i}.tmp`), path.join(dir, String(i)))
        }
        const wrote = performance.now()
        for (let i = 0; i < count; i++) if ((await readFile(path.join(dir, String(i)))).length !== size) throw new Error('short read')
        const read = performance.now()
        rmSync(dir, { recursive: true, force: true })
        return { setMs: wrote - started, getMs: read - wrote }
      },
    })
    rmSync(scratch, { recursive: true, force: true })
    const of = (side: 'cache' | 'fs', key: 'setMs' | 'getMs') => median(results[side].map((result) => result[key]))
    const rate = (ms: number) => `${format.format(Math.round(count / (ms / 1000)))}/s (${format.format(Math.round((count * size) / 1024 / 1024 / (ms / 1000)))} MiB/s)`
    const label = size >= 1024 * 1024 ? `${size / 1024 / 1024} MiB` : `${size / 1024} KiB`
    for (const op of ['set', 'get'] as const) {
      const key = op === 'set' ? 'setMs' : 'getMs'
      rows.push({
        work: `cache ${op} of ${format.format(count)} × ${label} values vs fs ${op === 'set' ? 'write + rename' : 'read'}`,
        filedge: rate(of('cache', key)),
        native: rate(of('fs', key)),
        ratio: Number((of('cache', key) / of('fs', key)).toFixed(2)),
        target: 'informational',
        detail: results,
      })
    }
  }
  return rows
}

export async function cacheSuite(options: BenchOptions): Promise<Row[]> {
  return [...(await retry(options)), ...(await throughput(options))]
}
