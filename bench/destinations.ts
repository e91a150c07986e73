import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { redact } from '../core/secrets.js'
import { smallFiles } from './data.js'
import { alternate, median, timed, type Timed } from './measure.js'
import { project, type Project } from './project.js'
import { bigCsv, format, perSecond, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * filedge against DuckDB's and Postgres' own loaders, and filedge workers
 * sharing a Postgres ledger. Every side is a whole process on a fresh
 * database, as a user or a scheduler runs it.
 */

const READ_CSV_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'duckdb-read-csv.js')

/** 1M rows into DuckDB: filedge (native CSV path, and its parser + Appender path) vs DuckDB's `read_csv` into the same typed table, in a child node process. */
export async function duckdbBulk(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const filedgeProject = (native: boolean) =>
    project({
      sourceDir: path.dirname(data.file),
      include: path.basename(data.file),
      imports: "import { duckdb } from 'filedge/plugins/duckdb'",
      destination: `duckdb({ path: 'warehouse.duckdb', native: ${native} })`,
      state: ['warehouse.duckdb', 'warehouse.duckdb.wal'],
    })
  const native = filedgeProject(true)
  const appender = filedgeProject(false)
  const nativeDir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-native-'))
  const load = async (filedge: Project) => {
    filedge.reset()
    const run = await filedge.run()
    if (run.summary.rows !== data.rows) throw new Error(`filedge loaded ${run.summary.rows} rows into DuckDB, expected ${data.rows}`)
    return run
  }
  try {
    const runs = await alternate(options.reps, {
      filedge: () => load(native),
      readCsv: async () => {
        rmSync(nativeDir, { recursive: true, force: true })
        mkdirSync(nativeDir)
        const run = await timed(process.execPath, [READ_CSV_SCRIPT, path.join(nativeDir, 'native.duckdb'), data.file])
        if (Number(run.stdout.trim()) !== data.rows) throw new Error(`read_csv loaded ${run.stdout.trim()} rows, expected ${data.rows}`)
        return run
      },
      appender: () => load(appender),
    })
    const ours = median(runs.filedge.map((run) => run.ms))
    const theirs = median(runs.readCsv.map((run) => run.ms))
    const js = median(runs.appender.map((run) => run.ms))
    return [
      {
        work: `${format.format(data.rows)} rows → DuckDB`,
        filedge: `${seconds(ours)} (${format.format(perSecond(data.rows, ours))} rows/s)`,
        native: `${seconds(theirs)} DuckDB read_csv`,
        ratio: ours / theirs,
        target: '≤ 1.25× read_csv',
        met: ours / theirs <= 1.25,
        detail: { filedgeMs: msOf(runs.filedge), nativeMs: msOf(runs.readCsv), filedgeMaxRssMb: rssOf(runs.filedge), nativeMaxRssMb: rssOf(runs.readCsv), bytes: data.bytes },
      },
      {
        work: `${format.format(data.rows)} rows → DuckDB, native: false (parser + Appender)`,
        filedge: `${seconds(js)} (${format.format(perSecond(data.rows, js))} rows/s)`,
        native: `${seconds(theirs)} DuckDB read_csv`,
        ratio: js / theirs,
        target: 'informational',
        detail: { filedgeMs: msOf(runs.appender), filedgeMaxRssMb: rssOf(runs.appender) },
      },
    ]
  } finally {
    native.remove()
    appender.remove()
    rmSync(nativeDir, { recursive: true, force: true })
  }
}

const PG_URL = process.env.FILEDGE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

// The typed table filedge creates for the orders columns, without and with its provenance columns and index.
const PG_TABLE = 'order_id text NOT NULL, customer_id bigint NOT NULL, amount double precision NOT NULL, order_date date NOT NULL, status text, note text'
const PG_PROVENANCE = `_source_file_hash text NOT NULL DEFAULT '${'0'.repeat(64)}', _ingested_at timestamptz NOT NULL DEFAULT now(), _source_row_number bigint GENERATED ALWAYS AS IDENTITY`

/**
 * A Postgres database to benchmark in: one schema for this run (ledger,
 * filedge's table and psql's tables), dropped between sides and at the end.
 * When Postgres or psql is not there, the reason the suites are skipped.
 */
async function postgresBench(): Promise<{ db: pg.Client; schema: string; fresh(): Promise<void>; close(): Promise<void> } | { skipped: string }> {
  try {
    await timed('psql', ['--version'])
  } catch {
    return { skipped: 'psql is not on PATH' }
  }
  const db = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 })
  try {
    await db.connect()
  } catch (error) {
    await db.end().catch(() => undefined)
    return { skipped: redact(`cannot connect to ${PG_URL} (${error instanceof Error ? error.message : String(error)}); set FILEDGE_BENCH_PG_URL`) }
  }
  const schema = `filedge_bench_${process.pid}`
  const drop = () => db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  return {
    db,
    schema,
    async fresh() {
      await drop()
      // So the previous side's dirty pages are not written during the next one. Needs superuser or
      // pg_checkpoint; without it the figures are noisier, not wrong.
      await db.query('CHECKPOINT').catch(() => undefined)
    },
    async close() {
      await drop()
      await db.end()
    },
  }
}

/** A project on the Postgres preset (ledger and destination), both in `schema`. */
function postgresProject(sourceDir: string, include: string, schema: string): Project {
  const ledger = new URL(PG_URL)
  ledger.searchParams.set('schema', schema)
  return project({
    sourceDir,
    include,
    imports: "import { env } from 'filedge'\nimport { postgresPreset } from 'filedge/presets/postgres'",
    config: `presets: [postgresPreset({ url: env('FILEDGE_BENCH_PG_URL'), ledger: env('FILEDGE_BENCH_LEDGER_URL'), schema: '${schema}' })],`,
    env: { FILEDGE_BENCH_PG_URL: PG_URL, FILEDGE_BENCH_LEDGER_URL: ledger.toString() },
    state: [],
  })
}

async function count(db: pg.Client, sql: string): Promise<number> {
  const result = await db.query<{ n: number }>(`SELECT (${sql})::int AS n`)
  return result.rows[0].n
}

/**
 * 1M rows into Postgres: filedge (Postgres ledger and destination) vs
 * `psql \copy` into the same typed table; and, to show what filedge's table
 * itself costs, `psql \copy` into a table of filedge's shape (provenance
 * columns filled by defaults, the index on `_source_file_hash`).
 */
export async function postgresBulk(options: BenchOptions): Promise<Row[]> {
  const work = `${format.format(options.rows)} rows → Postgres`
  const target = '≤ 1.3× psql \\copy'
  const bench = await postgresBench()
  if ('skipped' in bench) return [{ work, filedge: `skipped: ${bench.skipped}`, target }]
  const { db, schema } = bench
  const data = await bigCsv(options)
  const filedge = postgresProject(path.dirname(data.file), path.basename(data.file), schema)
  /** `psql \copy` into `table`, created by `ddl` (untimed; filedge creates its table within its run). */
  const copy = async (table: string, ddl: string) => {
    await bench.fresh()
    await db.query(`CREATE SCHEMA ${schema}; ${ddl}`)
    const run = await timed('psql', [PG_URL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy ${schema}.${table} (order_id, customer_id, amount, order_date, status, note) FROM '${data.file}' WITH (FORMAT csv, HEADER true)`])
    const loaded = await count(db, `SELECT count(*) FROM ${schema}.${table}`)
    if (loaded !== data.rows) throw new Error(`psql \\copy loaded ${loaded} rows, expected ${data.rows}`)
    return run
  }
  try {
    const runs = await alternate(options.reps, {
      filedge: async () => {
        await bench.fresh()
        const run = await filedge.run()
        const loaded = await count(db, `SELECT count(*) FROM ${schema}.orders`)
        if (loaded !== data.rows) throw new Error(`filedge loaded ${loaded} rows into Postgres, expected ${data.rows}`)
        return run
      },
      psql: () => copy('orders_psql', `CREATE TABLE ${schema}.orders_psql (${PG_TABLE})`),
      psqlShaped: () => copy('orders_shaped', `CREATE TABLE ${schema}.orders_shaped (${PG_TABLE}, ${PG_PROVENANCE}); CREATE INDEX ON ${schema}.orders_shaped (hashtext(_source_file_hash))`),
    })
    const ours = median(runs.filedge.map((run) => run.ms))
    const theirs = median(runs.psql.map((run) => run.ms))
    const shaped = median(runs.psqlShaped.map((run) => run.ms))
    return [
      {
        work,
        filedge: `${seconds(ours)} (${format.format(perSecond(data.rows, ours))} rows/s)`,
        native: `${seconds(theirs)} psql \\copy`,
        ratio: ours / theirs,
        target,
        met: ours / theirs <= 1.3,
        detail: { filedgeMs: msOf(runs.filedge), nativeMs: msOf(runs.psql), filedgeMaxRssMb: rssOf(runs.filedge), bytes: data.bytes, server: (await db.query('SHOW server_version')).rows[0].server_version },
      },
      {
        work: `${work}, psql into filedge's table shape`,
        filedge: seconds(ours),
        native: `${seconds(shaped)} psql \\copy, provenance + index`,
        ratio: ours / shaped,
        target: 'informational',
        detail: { nativeMs: msOf(runs.psqlShaped) },
      },
    ]
  } finally {
    filedge.remove()
    await bench.close()
  }
}

/**
 * Scaling: one worker vs two worker processes started together on one
 * Postgres ledger and destination (the Postgres preset), over many
 * mid-sized files. Files per second from the first start to the last exit.
 */
export async function postgresWorkers(options: BenchOptions): Promise<Row[]> {
  const work = `${format.format(options.workerFiles)} × ${format.format(options.workerRowsPerFile)}-row files → Postgres, shared Postgres ledger`
  const target = '2 workers ≥ 1.6× 1 worker (informal)'
  const bench = await postgresBench()
  if ('skipped' in bench) return [{ work, filedge: `skipped: ${bench.skipped}`, target }]
  const { db, schema } = bench
  const data = await smallFiles(path.join(options.dataDir, `small-${options.workerFiles}x${options.workerRowsPerFile}`), options.workerFiles, options.workerRowsPerFile)
  const filedge = postgresProject(data.dir, '*.csv', schema)
  const workers = async (processes: number) => {
    await bench.fresh()
    const started = performance.now()
    const runs = await Promise.all(Array.from({ length: processes }, () => filedge.run()))
    const ms = performance.now() - started
    const byWorkers = runs.reduce((sum, run) => sum + run.summary.committed, 0)
    const inLedger = await count(db, `SELECT count(*) FROM ${schema}.files WHERE state = 'COMMITTED'`)
    const loaded = await count(db, `SELECT count(*) FROM ${schema}.orders`)
    if (byWorkers !== data.files || inLedger !== data.files || loaded !== data.rows) {
      throw new Error(`${processes} worker(s): committed ${byWorkers} files by their summaries, ${inLedger} by the ledger, ${loaded} rows; expected ${data.files} files, ${data.rows} rows`)
    }
    return { ms, perWorker: runs.map((run) => run.summary.committed) }
  }
  try {
    const runs = await alternate(options.reps, { one: () => workers(1), two: () => workers(2) })
    const one = median(runs.one.map((run) => run.ms))
    const two = median(runs.two.map((run) => run.ms))
    return [
      {
        work,
        filedge: `2 workers: ${format.format(perSecond(data.files, two))} files/s (${seconds(two)})`,
        native: `1 worker: ${format.format(perSecond(data.files, one))} files/s (${seconds(one)})`,
        ratio: one / two,
        target,
        met: one / two >= 1.6,
        detail: { oneWorkerMs: runs.one.map((run) => Math.round(run.ms)), twoWorkersMs: runs.two.map((run) => Math.round(run.ms)), filesPerWorker: runs.two.map((run) => run.perWorker) },
      },
    ]
  } finally {
    filedge.remove()
    await bench.close()
  }
}

const msOf = (runs: readonly Timed[]) => runs.map((run) => Math.round(run.ms))
const rssOf = (runs: readonly Timed[]) => runs.map((run) => Math.round(run.maxRssMb))
