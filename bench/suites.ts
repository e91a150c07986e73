import { createHash } from 'node:crypto'
import { createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { hashStream } from '../core/source/hash.js'
import { localSource } from '../core/source/local.js'
import { LOAD_MARKER_TABLE } from '../core/load-marker.js'
import { ordersCsv, smallFiles, smallFilesWithProvenance, withProvenance } from './data.js'
import { alternate, median, p95, timed, type Timed } from './measure.js'
import { project, watcher } from './project.js'

export interface BenchOptions {
  readonly rows: number
  readonly files: number
  readonly rowsPerFile: number
  /** Objects of the S3 no-op rerun. */
  readonly s3Files: number
  readonly workerFiles: number
  readonly workerRowsPerFile: number
  readonly reps: number
  readonly large: boolean
  /** Files of the synthetic ledger the query and audit suites read. */
  readonly ledgerFiles: number
  /** Messages of the queue suite's throughput run. */
  readonly queueMessages: number
  readonly dataDir: string
}

export interface Row {
  readonly work: string
  readonly filedge: string
  readonly native?: string
  readonly ratio?: number
  /** The Python filedge's figure for the same work, where the bench knows it (PYTHON_FILEDGE), and how filedge compares. */
  readonly ancestor?: string
  readonly target: string
  /** undefined: informational, no target. */
  readonly met?: boolean
  readonly detail?: Record<string, unknown>
}

/**
 * The Python filedge (the ancestor, on PyPI) on the same work at the bench's
 * default sizes, measured side by side with this filedge, from outside (the
 * wall time of each CLI), on this project's 2-core bench machine in an
 * earlier session. The bench does not run it (it is not installed here): its
 * figures are quoted beside ours, only for those sizes.
 */
export const PYTHON_FILEDGE = {
  /** 1,000,000 rows of the orders CSV → SQLite. */
  sqlite: { rows: 1_000_000, seconds: 16.0 },
  /** 5,000 files of 100 rows → SQLite. */
  smallFiles: { files: 5_000, rowsPerFile: 100, filesPerSecond: 166 },
} as const

export const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`
export const perSecond = (count: number, ms: number) => Math.round(count / (ms / 1000))
export const format = new Intl.NumberFormat('en-US')

/** The `--rows` orders CSV every bulk suite loads. */
export async function bigCsv(options: BenchOptions) {
  return ordersCsv(path.join(options.dataDir, `orders-${options.rows}`, `orders-${options.rows}.csv`), options.rows)
}

const SQLITE_TABLE = `CREATE TABLE orders (order_id TEXT NOT NULL, customer_id INTEGER NOT NULL, amount REAL NOT NULL, order_date TEXT NOT NULL, status TEXT, note TEXT) STRICT`
// The table and index filedge creates for the orders columns (the suite checks them against filedge's database).
const SQLITE_SAME_TABLE =
  'CREATE TABLE "orders" ("order_id" TEXT NOT NULL, "customer_id" INTEGER NOT NULL, "amount" REAL NOT NULL, "order_date" TEXT NOT NULL, "status" TEXT, "note" TEXT, ' +
  '"_source_file_hash" TEXT NOT NULL, "_ingested_at" TEXT NOT NULL, "_source_row_number" INTEGER NOT NULL) STRICT; ' +
  'CREATE INDEX "orders__source_file_hash" ON "orders" (substr("_source_file_hash", 1, 16));'

/** A SQLite database's tables and indexes, as `sqlite3` prints them, `IF NOT EXISTS` left out; filedge's load markers are not the orders table's. */
async function sqliteSchema(database: string): Promise<string> {
  const { stdout } = await timed('sqlite3', [database, `SELECT sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' AND name <> '${LOAD_MARKER_TABLE}' ORDER BY name`])
  return stdout.replace(/ IF NOT EXISTS/g, '').trim()
}

/**
 * 1M rows into SQLite: filedge (provenance, coercion and ledger included) vs
 * `sqlite3 .import` into a table of the same declared types, same journal
 * mode; and, informational, `.import` of the same rows with their provenance
 * values into filedge's own table and index.
 */
export async function sqliteBulk(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const same = await withProvenance(data)
  const filedge = project({
    sourceDir: path.dirname(data.file),
    include: path.basename(data.file),
    imports: "import { sqlite } from 'filedge/plugins/sqlite'",
    destination: "sqlite({ path: 'warehouse.db' })",
    state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'],
  })
  const nativeDir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-native-'))
  const nativeDb = path.join(nativeDir, 'native.db')
  const schemas = { filedge: '', native: '' }
  try {
    const runs = await alternate(options.reps, {
      a: async () => {
        filedge.reset()
        return filedge.run()
      },
      b: async () => {
        rmSync(nativeDir, { recursive: true, force: true })
        mkdirSync(nativeDir)
        await timed('sqlite3', [nativeDb, 'PRAGMA journal_mode=WAL;', SQLITE_TABLE])
        return timed('sqlite3', [nativeDb, '.mode csv', `.import --skip 1 ${data.file} orders`])
      },
      same: async () => {
        rmSync(nativeDir, { recursive: true, force: true })
        mkdirSync(nativeDir)
        await timed('sqlite3', [nativeDb, 'PRAGMA journal_mode=WAL;', SQLITE_SAME_TABLE])
        const run = await timed('sqlite3', [nativeDb, '.mode csv', `.import --skip 1 ${same.file} orders`])
        schemas.native = await sqliteSchema(nativeDb)
        return run
      },
    })
    schemas.filedge = await sqliteSchema(path.join(filedge.dir, 'warehouse.db'))
    if (schemas.filedge !== schemas.native) throw new Error(`sqlite3's table is not the one filedge creates; update SQLITE_SAME_TABLE:\nfiledge:\n${schemas.filedge}\nsqlite3:\n${schemas.native}`)
    const theirsSame = median(runs.same.map((run) => run.ms))
    const ours = median(runs.a.map((run) => run.ms))
    const theirs = median(runs.b.map((run) => run.ms))
    const rss = Math.max(...runs.a.map((run) => run.maxRssMb))
    return [
      {
        work: `${format.format(data.rows)} rows → SQLite`,
        filedge: `${seconds(ours)} (${format.format(perSecond(data.rows, ours))} rows/s)`,
        native: `${seconds(theirs)} sqlite3 .import`,
        ratio: ours / theirs,
        ...(data.rows === PYTHON_FILEDGE.sqlite.rows ? { ancestor: `${PYTHON_FILEDGE.sqlite.seconds.toFixed(1)} s (filedge ${(PYTHON_FILEDGE.sqlite.seconds / (ours / 1000)).toFixed(1)}× faster)` } : {}),
        target: '≤ 2.0× sqlite3 .import',
        met: ours / theirs <= 2.0,
        detail: { filedgeMs: runs.a.map((run) => Math.round(run.ms)), nativeMs: runs.b.map((run) => Math.round(run.ms)), bytes: data.bytes },
      },
      {
        work: `${format.format(data.rows)} rows → SQLite, .import into the same table`,
        filedge: seconds(ours),
        native: `${seconds(theirsSame)} sqlite3 .import, same rows with provenance`,
        ratio: ours / theirsSame,
        target: 'informational',
        detail: { nativeMs: runs.same.map((run) => Math.round(run.ms)), nativeBytes: same.bytes },
      },
      { work: `peak RSS loading ${format.format(data.rows)} rows (${Math.round(data.bytes / 2 ** 20)} MB)`, filedge: `${Math.round(rss)} MB`, target: 'informational' },
    ]
  } finally {
    filedge.remove()
    rmSync(nativeDir, { recursive: true, force: true })
  }
}

/**
 * Many small files into SQLite (files/s), then a rerun over them once
 * committed (nothing to do), and a run over an empty folder: the last two are
 * mostly the CLI's start. Each repetition does all three, one after the other.
 */
export async function sqliteSmallFiles(options: BenchOptions): Promise<Row[]> {
  const data = await smallFiles(path.join(options.dataDir, `small-${options.files}x${options.rowsPerFile}`), options.files, options.rowsPerFile)
  const sqliteProject = (sourceDir: string) =>
    project({
      sourceDir,
      include: '*.csv',
      imports: "import { sqlite } from 'filedge/plugins/sqlite'",
      destination: "sqlite({ path: 'warehouse.db' })",
      state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'],
    })
  const filedge = sqliteProject(data.dir)
  const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-empty-'))
  const empty = sqliteProject(emptyDir)
  const same = await smallFilesWithProvenance(data)
  const nativeDir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-native-'))
  const nativeDb = path.join(nativeDir, 'native.db')
  try {
    const loads: Timed[] = []
    const inProcess: number[] = []
    const reruns: Timed[] = []
    const rerunsInProcess: number[] = []
    const emptyRuns: Timed[] = []
    const natives: Timed[] = []
    // The first start of a project compiles its TypeScript config (jiti keeps it for the next): not measured.
    await empty.run()
    for (let rep = 0; rep < options.reps; rep++) {
      rmSync(nativeDir, { recursive: true, force: true })
      mkdirSync(nativeDir)
      await timed('sqlite3', [nativeDb, 'PRAGMA journal_mode=WAL;', SQLITE_SAME_TABLE])
      natives.push(await timed('sqlite3', [nativeDb, '.mode csv', `.import --skip 1 ${same.file} orders`]))
      filedge.reset()
      const load = await filedge.run()
      if (load.summary.committed !== data.files) throw new Error(`expected ${data.files} files committed, got ${load.summary.committed}`)
      loads.push(load)
      inProcess.push(load.summary.durationMs)
      const rerun = await filedge.run()
      if (rerun.summary.committed !== 0) throw new Error('the rerun loaded files again')
      reruns.push(rerun)
      rerunsInProcess.push(rerun.summary.durationMs)
      emptyRuns.push(await empty.run())
    }
    const load = median(loads.map((run) => run.ms))
    const rerun = median(reruns.map((run) => run.ms))
    const emptyRun = median(emptyRuns.map((run) => run.ms))
    const native = median(natives.map((run) => run.ms))
    const rate = perSecond(data.files, load)
    const ancestor = data.files === PYTHON_FILEDGE.smallFiles.files && options.rowsPerFile === PYTHON_FILEDGE.smallFiles.rowsPerFile
    return [
      {
        work: `${format.format(data.files)} × ${options.rowsPerFile}-row files → SQLite`,
        filedge: `${format.format(rate)} files/s, ${format.format(perSecond(data.rows, load))} rows/s (${seconds(load)}; run itself ${seconds(median(inProcess))}; CPU ${seconds(median(loads.map((run) => run.cpuMs)))})`,
        ...(ancestor ? { ancestor: `${PYTHON_FILEDGE.smallFiles.filesPerSecond} files/s (filedge ${(rate / PYTHON_FILEDGE.smallFiles.filesPerSecond).toFixed(1)}× faster)` } : {}),
        target: '≥ 2,000 files/s',
        met: rate >= 2000,
        detail: { wallMs: loads.map((run) => Math.round(run.ms)), cpuMs: loads.map((run) => run.cpuMs), inProcessMs: inProcess },
      },
      {
        // The floor under the row above: the same rows into the same table by SQLite's own loader, all in one
        // transaction (no file is atomic on its own, no ledger, no parse in JavaScript).
        work: `the same ${format.format(data.rows)} rows → SQLite, .import into the same table, one transaction`,
        filedge: seconds(load),
        native: `${seconds(native)} sqlite3 .import (CPU ${seconds(median(natives.map((run) => run.cpuMs)))}): ${format.format(perSecond(data.files, native))} files/s`,
        ratio: load / native,
        target: '—',
        detail: { nativeMs: natives.map((run) => Math.round(run.ms)), nativeCpuMs: natives.map((run) => run.cpuMs) },
      },
      {
        work: `no-op rerun over ${format.format(data.files)} committed files`,
        filedge: `${seconds(rerun)} (run itself ${seconds(median(rerunsInProcess))}; CPU ${seconds(median(reruns.map((run) => run.cpuMs)))})`,
        target: '≤ 0.3 s',
        met: rerun <= 300,
        detail: { wallMs: reruns.map((run) => Math.round(run.ms)), cpuMs: reruns.map((run) => run.cpuMs), inProcessMs: rerunsInProcess },
      },
      {
        work: 'empty run (a config, a ledger, no files)',
        filedge: `${seconds(emptyRun)} (CPU ${seconds(median(emptyRuns.map((run) => run.cpuMs)))})`,
        target: '≤ 0.3 s',
        met: emptyRun <= 300,
        detail: { wallMs: emptyRuns.map((run) => Math.round(run.ms)), cpuMs: emptyRuns.map((run) => run.cpuMs) },
      },
    ]
  } finally {
    filedge.remove()
    empty.remove()
    rmSync(emptyDir, { recursive: true, force: true })
    rmSync(nativeDir, { recursive: true, force: true })
  }
}

/** filedge's file hashing vs Node's crypto stream over the same file. */
export async function hashing(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const raw = async () => {
    const started = performance.now()
    const hash = createHash('sha256')
    await pipeline(createReadStream(data.file), hash)
    hash.digest('hex')
    return performance.now() - started
  }
  // As a run hashes a local file: the local source's stream into hashStream.
  const source = localSource({ dir: path.dirname(data.file), root: path.dirname(data.file), include: ['*.csv'], exclude: [], followSymlinks: 'inside' })
  const ours = async () => {
    const started = performance.now()
    const entry = (await source.stat!(path.basename(data.file)))!
    await hashStream(await source.read(entry, { signal: new AbortController().signal }), { keep: 1024 * 1024 })
    return performance.now() - started
  }
  const runs = await alternate(Math.max(options.reps, 5), { a: ours, b: raw })
  const mbps = (ms: number) => Math.round(data.bytes / 2 ** 20 / (ms / 1000))
  const ratio = mbps(median(runs.a)) / mbps(median(runs.b))
  return [
    {
      work: `SHA-256 of a ${Math.round(data.bytes / 2 ** 20)} MB file`,
      filedge: `${mbps(median(runs.a))} MB/s`,
      native: `${mbps(median(runs.b))} MB/s Node crypto stream`,
      ratio,
      target: '≥ 0.9× raw stream',
      met: ratio >= 0.9,
    },
  ]
}

/** Peak RSS of filedge loading a ~1 GB CSV into SQLite. Opt-in (`--large`): generating the file takes a while. */
export async function largeFile(options: BenchOptions): Promise<Row[]> {
  if (!options.large) return []
  const rows = 14_000_000
  const data = await ordersCsv(path.join(options.dataDir, `orders-${rows}`, `orders-${rows}.csv`), rows)
  const filedge = project({
    sourceDir: path.dirname(data.file),
    include: path.basename(data.file),
    imports: "import { sqlite } from 'filedge/plugins/sqlite'",
    destination: "sqlite({ path: 'warehouse.db' })",
    state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'],
  })
  try {
    const run = await filedge.run()
    return [
      {
        work: `peak RSS loading a ${(statSync(data.file).size / 2 ** 30).toFixed(2)} GB CSV → SQLite`,
        filedge: `${Math.round(run.maxRssMb)} MB (${seconds(run.ms)})`,
        target: '≤ 256 MB',
        met: run.maxRssMb <= 256,
      },
    ]
  } finally {
    filedge.remove()
  }
}

/**
 * Watch latency: from a file's last write to its rows being committed, minus
 * the settle window (the time filedge deliberately waits to be sure the file
 * is complete). 50 small files, written one at a time.
 */
export async function watchLatency(options: BenchOptions): Promise<Row[]> {
  const settleMs = 200
  const files = 50
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-watch-src-'))
  const filedge = project({
    sourceDir: dir,
    include: '*.csv',
    imports: "import { sqlite } from 'filedge/plugins/sqlite'",
    destination: "sqlite({ path: 'warehouse.db' })",
    columns: "{ id: 'string', n: 'integer' }",
    config: `watch: { settle: '${settleMs}ms' },`,
    state: [],
  })
  // Commits stamped on arrival: the same clock as the writes, no parsing of the event's own time.
  const watch = watcher(filedge.dir, 'watch bench', 30_000)
  try {
    await watch.until(() => watch.ready, 'the watcher to start')
    const drop = async (index: number, name: string) => {
      writeFileSync(path.join(dir, name), `id,n\n${Array.from({ length: 100 }, (_, row) => `r${index}-${row},${row}`).join('\n')}\n`)
      const written = performance.now()
      await watch.until(() => watch.committed.has(name), `${name} to commit`)
      return watch.committed.get(name)! - written - settleMs
    }
    // Not measured: the watcher logs "Ctrl-C to stop" before its sweep of the folder, and a file
    // the sweep finds is loaded at once, without the settle window (-150 ms when it was counted).
    // Once this one is committed the sweep is over, and every file below arrives through the watcher.
    await drop(-1, 'warm-up.csv')
    const latencies: number[] = []
    for (let index = 0; index < files; index++) latencies.push(await drop(index, `drop-${String(index).padStart(3, '0')}.csv`))
    const mid = median(latencies)
    return [
      {
        work: `watch: last write → committed, beyond a ${settleMs} ms settle window (${files} files)`,
        filedge: `median ${Math.round(mid)} ms, p95 ${Math.round(p95(latencies))} ms`,
        target: 'median ≤ 300 ms',
        met: mid <= 300,
        detail: { latenciesMs: latencies.map(Math.round) },
      },
    ]
  } finally {
    await watch.stop()
    filedge.remove()
    rmSync(dir, { recursive: true, force: true })
  }
}
