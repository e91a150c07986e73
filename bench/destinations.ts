import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { redact } from '../core/secrets.js'
import { smallFiles, withProvenance } from './data.js'
import { alternate, machineBusyMs, median, postgresBusyMs, timed, type Timed } from './measure.js'
import { project, type Project } from './project.js'
import { bigCsv, format, perSecond, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * filedge against DuckDB's and Postgres' own loaders, and filedge workers
 * sharing a Postgres ledger. Every side is a whole process on a fresh
 * database, as a user or a scheduler runs it.
 */

const READ_CSV_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'duckdb-read-csv.js')

/** The columns of `orders` in a DuckDB database file, as the native script prints them. */
async function duckdbShape(database: string): Promise<string> {
  const { DuckDBInstance } = await import('@duckdb/node-api')
  const instance = await DuckDBInstance.create(database, { access_mode: 'READ_ONLY' })
  try {
    const connection = await instance.connect()
    const reader = await connection.runAndReadAll("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position")
    connection.closeSync()
    return JSON.stringify(reader.getRowObjectsJS())
  } finally {
    instance.closeSync()
  }
}

/**
 * 1M rows into DuckDB: filedge (native CSV path, and its parser + Appender
 * path) vs DuckDB's `read_csv` into a typed table of the orders columns, in a
 * child node process. Also, to show what provenance costs, `read_csv` of the
 * same rows with their provenance values into filedge's own table (checked
 * against the catalog of filedge's database).
 */
export async function duckdbBulk(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const same = await withProvenance(data)
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
  const shapes = { filedge: '', readCsv: '' }
  const load = async (filedge: Project) => {
    filedge.reset()
    const run = await filedge.run()
    if (run.summary.rows !== data.rows) throw new Error(`filedge loaded ${run.summary.rows} rows into DuckDB, expected ${data.rows}`)
    shapes.filedge ||= await duckdbShape(path.join(filedge.dir, 'warehouse.duckdb'))
    return run
  }
  const readCsv = async (file: string, kind: 'plain' | 'same') => {
    rmSync(nativeDir, { recursive: true, force: true })
    mkdirSync(nativeDir)
    const run = await timed(process.execPath, [READ_CSV_SCRIPT, path.join(nativeDir, 'native.duckdb'), file, kind])
    const [rows, shape] = run.stdout.trim().split('\n')
    if (Number(rows) !== data.rows) throw new Error(`read_csv loaded ${rows} rows, expected ${data.rows}`)
    if (kind === 'same') shapes.readCsv = shape
    return run
  }
  try {
    const runs = await alternate(options.reps, {
      filedge: () => load(native),
      readCsv: () => readCsv(data.file, 'plain'),
      appender: () => load(appender),
      readCsvSame: () => readCsv(same.file, 'same'),
    })
    if (shapes.filedge !== shapes.readCsv) throw new Error(`read_csv's table is not the one filedge creates; update bench/duckdb-read-csv.ts:\nfiledge: ${shapes.filedge}\nread_csv: ${shapes.readCsv}`)
    const ours = median(runs.filedge.map((run) => run.ms))
    const theirs = median(runs.readCsv.map((run) => run.ms))
    const js = median(runs.appender.map((run) => run.ms))
    const theirsSame = median(runs.readCsvSame.map((run) => run.ms))
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
        work: `${format.format(data.rows)} rows → DuckDB, read_csv into the same table`,
        filedge: seconds(ours),
        native: `${seconds(theirsSame)} DuckDB read_csv, same rows with provenance`,
        ratio: ours / theirsSame,
        target: 'informational',
        detail: { nativeMs: msOf(runs.readCsvSame), nativeBytes: same.bytes },
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

// The orders columns as filedge types them, and the provenance columns and index filedge adds: with both,
// the table filedge creates (the suite checks that against the catalog).
const PG_TABLE = 'order_id text NOT NULL, customer_id bigint NOT NULL, amount double precision NOT NULL, order_date date NOT NULL, status text, note text'
const PG_PROVENANCE = '_source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL'
const ORDERS_FIELDS = 'order_id, customer_id, amount, order_date, status, note'

/**
 * A Postgres database to benchmark in: one schema for this run (ledger,
 * filedge's table and psql's tables), dropped between sides and at the end.
 * When Postgres or psql is not there, the reason the suites are skipped.
 */
export async function postgresBench(): Promise<{ db: pg.Client; schema: string; fresh(): Promise<void>; close(): Promise<void> } | { skipped: string }> {
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
export function postgresProject(sourceDir: string, include: string, schema: string, columns?: string): Project {
  const ledger = new URL(PG_URL)
  ledger.searchParams.set('schema', schema)
  return project({
    sourceDir,
    include,
    imports: "import { env } from 'filedge'\nimport { postgresPreset } from 'filedge/presets/postgres'",
    config: `presets: [postgresPreset({ url: env('FILEDGE_BENCH_PG_URL'), ledger: env('FILEDGE_BENCH_LEDGER_URL'), schema: '${schema}' })],`,
    env: { FILEDGE_BENCH_PG_URL: PG_URL, FILEDGE_BENCH_LEDGER_URL: ledger.toString() },
    ...(columns === undefined ? {} : { columns }),
    state: [],
  })
}

async function count(db: pg.Client, sql: string): Promise<number> {
  const result = await db.query<{ n: number }>(`SELECT (${sql})::int AS n`)
  return result.rows[0].n
}

/**
 * A table's shape in the catalog, its name left out: columns (name, type,
 * nullability, in order) and index definitions.
 */
async function tableShape(db: pg.Client, schema: string, table: string): Promise<string> {
  const columns = await db.query<{ line: string }>(
    `SELECT column_name || ' ' || data_type || ' ' || is_nullable AS line FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
    [schema, table],
  )
  const indexes = await db.query<{ line: string }>(`SELECT regexp_replace(indexdef, '^CREATE INDEX \\S+ ON \\S+', 'CREATE INDEX ON') AS line FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY 1`, [schema, table])
  return [...columns.rows, ...indexes.rows].map((row) => row.line).join('\n')
}

/**
 * 1M rows into Postgres: filedge (Postgres ledger and destination) vs
 * `psql \copy` into the same typed table — filedge's table, provenance
 * columns and index included, from a CSV holding the provenance values filedge
 * writes (the suite fails if the two tables differ in the catalog). Also, to
 * show what provenance costs, `psql \copy` of the orders columns alone into a
 * table without provenance.
 */
export async function postgresBulk(options: BenchOptions): Promise<Row[]> {
  const work = `${format.format(options.rows)} rows → Postgres`
  const target = '≤ 1.3× psql \\copy, same table'
  const bench = await postgresBench()
  if ('skipped' in bench) return [{ work, filedge: `skipped: ${bench.skipped}`, target }]
  const { db, schema } = bench
  const data = await bigCsv(options)
  const same = await withProvenance(data)
  const filedge = postgresProject(path.dirname(data.file), path.basename(data.file), schema)
  /** `psql \copy` of `file` into `table`, created by `ddl` (untimed; filedge creates its table within its run). */
  const copy = async (table: string, ddl: string, fields: string, file: string) => {
    await bench.fresh()
    await db.query(`CREATE SCHEMA ${schema}; ${ddl}`)
    const run = await timed('psql', [PG_URL, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `\\copy ${schema}.${table} (${fields}) FROM '${file}' WITH (FORMAT csv, HEADER true)`])
    const loaded = await count(db, `SELECT count(*) FROM ${schema}.${table}`)
    if (loaded !== data.rows) throw new Error(`psql \\copy loaded ${loaded} rows, expected ${data.rows}`)
    return run
  }
  const shapes = { filedge: '', psql: '' }
  try {
    const runs = await alternate(options.reps, {
      filedge: async () => {
        await bench.fresh()
        const run = await filedge.run()
        const loaded = await count(db, `SELECT count(*) FROM ${schema}.orders`)
        if (loaded !== data.rows) throw new Error(`filedge loaded ${loaded} rows into Postgres, expected ${data.rows}`)
        shapes.filedge = await tableShape(db, schema, 'orders')
        return run
      },
      psqlSame: async () => {
        const run = await copy(
          'orders_psql',
          `CREATE TABLE ${schema}.orders_psql (${PG_TABLE}, ${PG_PROVENANCE}); CREATE INDEX ON ${schema}.orders_psql (hashtext(_source_file_hash))`,
          `${ORDERS_FIELDS}, _source_file_hash, _ingested_at, _source_row_number`,
          same.file,
        )
        shapes.psql = await tableShape(db, schema, 'orders_psql')
        return run
      },
      psqlPlain: () => copy('orders_plain', `CREATE TABLE ${schema}.orders_plain (${PG_TABLE})`, ORDERS_FIELDS, data.file),
    })
    if (shapes.filedge !== shapes.psql) throw new Error(`psql's table is not the one filedge creates; update PG_TABLE / PG_PROVENANCE:\nfiledge:\n${shapes.filedge}\npsql:\n${shapes.psql}`)
    const ours = median(runs.filedge.map((run) => run.ms))
    const theirs = median(runs.psqlSame.map((run) => run.ms))
    const plain = median(runs.psqlPlain.map((run) => run.ms))
    return [
      {
        work,
        filedge: `${seconds(ours)} (${format.format(perSecond(data.rows, ours))} rows/s)`,
        native: `${seconds(theirs)} psql \\copy, same rows into the same table`,
        ratio: ours / theirs,
        target,
        met: ours / theirs <= 1.3,
        detail: { filedgeMs: msOf(runs.filedge), nativeMs: msOf(runs.psqlSame), filedgeMaxRssMb: rssOf(runs.filedge), bytes: data.bytes, nativeBytes: same.bytes, server: (await db.query('SHOW server_version')).rows[0].server_version },
      },
      {
        work: `${work}, psql into the orders columns alone`,
        filedge: seconds(ours),
        native: `${seconds(plain)} psql \\copy, no provenance columns`,
        ratio: ours / plain,
        target: 'informational',
        detail: { nativeMs: msOf(runs.psqlPlain) },
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
  const target = '2 workers ≥ 90% of the CPU ceiling'
  const bench = await postgresBench()
  if ('skipped' in bench) return [{ work, filedge: `skipped: ${bench.skipped}`, target }]
  const { db, schema } = bench
  const data = await smallFiles(path.join(options.dataDir, `small-${options.workerFiles}x${options.workerRowsPerFile}`), options.workerFiles, options.workerRowsPerFile)
  const filedge = postgresProject(data.dir, '*.csv', schema)
  const workers = async (processes: number) => {
    await bench.fresh()
    const busyBefore = machineBusyMs()
    const serverBefore = postgresBusyMs()
    const started = performance.now()
    const runs = await Promise.all(Array.from({ length: processes }, () => filedge.run()))
    const ms = performance.now() - started
    const busyAfter = machineBusyMs()
    const serverAfter = postgresBusyMs()
    const busyMs = busyBefore === undefined || busyAfter === undefined ? undefined : busyAfter - busyBefore
    // The workers' CPU and the server's: the run's own busy time, without what other programs on a shared machine did.
    const ownMs = serverBefore === undefined || serverAfter === undefined ? undefined : serverAfter - serverBefore + runs.reduce((sum, run) => sum + run.cpuMs, 0)
    const byWorkers = runs.reduce((sum, run) => sum + run.summary.committed, 0)
    const inLedger = await count(db, `SELECT count(*) FROM ${schema}.files WHERE state = 'COMMITTED'`)
    const loaded = await count(db, `SELECT count(*) FROM ${schema}.orders`)
    if (byWorkers !== data.files || inLedger !== data.files || loaded !== data.rows) {
      throw new Error(`${processes} worker(s): committed ${byWorkers} files by their summaries, ${inLedger} by the ledger, ${loaded} rows; expected ${data.files} files, ${data.rows} rows`)
    }
    return { ms, busyMs, ownMs, perWorker: runs.map((run) => run.summary.committed), cpuMs: runs.map((run) => run.cpuMs) }
  }
  try {
    const runs = await alternate(options.reps, { one: () => workers(1), two: () => workers(2) })
    const one = median(runs.one.map((run) => run.ms))
    const two = median(runs.two.map((run) => run.ms))
    // What one worker run keeps busy, the filedge process and the Postgres server together. Two workers
    // have at least that much work to do on the same cores, so they cannot finish faster than
    // busy / cores: on a machine where one worker already keeps more than cores / 1.6 busy, 1.6× is
    // out of reach whatever filedge does. Counted from the processes themselves (the workers' CPU time,
    // a local server's from /proc) where it can be, so that other programs on a shared machine do not
    // count as filedge's work; else from the whole machine's busy time, which on an idle machine is the same.
    const own = runs.one.every((run) => run.ownMs !== undefined)
    const busy = own ? median(runs.one.map((run) => run.ownMs!)) : runs.one.every((run) => run.busyMs !== undefined) ? median(runs.one.map((run) => run.busyMs!)) : undefined
    const cores = os.cpus().length
    const busyCores = busy === undefined ? undefined : busy / one
    const limit = busyCores === undefined ? undefined : cores / busyCores
    const ceiling = limit === undefined ? '' : `; 1 worker keeps ${busyCores!.toFixed(2)} of ${cores} cores busy, so 2 can reach at most ${limit.toFixed(2)}×`
    // The workers' CPU, and with the server's: what the second process adds for the same files.
    const workerCpu = (run: { cpuMs: number[] }) => run.cpuMs.reduce((sum, ms) => sum + ms, 0)
    const cpu = (side: { cpuMs: number[]; ownMs?: number }[]) =>
      `workers' CPU ${seconds(median(side.map(workerCpu)))}${own ? `, with the server's ${seconds(median(side.map((run) => run.ownMs!)))}` : ''}`
    return [
      {
        work,
        // CPU for the same files, 2 workers against 1: however idle the machine, 2 workers reach at most 1 / this of the ceiling.
        filedge: `2 workers: ${format.format(perSecond(data.files, two))} files/s (${seconds(two)}; ${cpu(runs.two)}: ${(own ? median(runs.two.map((run) => run.ownMs!)) / median(runs.one.map((run) => run.ownMs!)) : median(runs.two.map(workerCpu)) / median(runs.one.map(workerCpu))).toFixed(2)}× one worker's)${limit === undefined ? '' : `, ${Math.round((100 * one) / two / limit)}% of the ceiling`}`,
        native: `1 worker: ${format.format(perSecond(data.files, one))} files/s (${seconds(one)}; ${cpu(runs.one)})${ceiling}`,
        ratio: one / two,
        target,
        met: limit === undefined ? one / two >= 1.6 : one / two >= 0.9 * limit,
        detail: {
          oneWorkerMs: runs.one.map((run) => Math.round(run.ms)),
          twoWorkersMs: runs.two.map((run) => Math.round(run.ms)),
          oneWorkerBusyCpuMs: runs.one.map((run) => run.busyMs),
          twoWorkersBusyCpuMs: runs.two.map((run) => run.busyMs),
          oneWorkerOwnCpuMs: runs.one.map((run) => run.ownMs),
          twoWorkersOwnCpuMs: runs.two.map((run) => run.ownMs),
          ceilingFrom: own ? 'workers and server CPU' : 'machine busy time',
          oneWorkerCpuMs: runs.one.map((run) => run.cpuMs),
          twoWorkersCpuMs: runs.two.map((run) => run.cpuMs),
          ceiling: limit,
          filesPerWorker: runs.two.map((run) => run.perWorker),
        },
      },
    ]
  } finally {
    filedge.remove()
    await bench.close()
  }
}

const msOf = (runs: readonly Timed[]) => runs.map((run) => Math.round(run.ms))
const rssOf = (runs: readonly Timed[]) => runs.map((run) => Math.round(run.maxRssMb))
