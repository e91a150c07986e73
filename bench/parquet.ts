import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { postgresBench, postgresProject } from './destinations.js'
import { alternate, median, timed, type Timed } from './measure.js'
import { project, type Project } from './project.js'
import { format, perSecond, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * A real Parquet file: the 3,000,000 flights of `vega-datasets` (13 MB,
 * snappy, five columns: a microsecond timestamp, two BIGINTs, two strings),
 * fetched once from the npm registry into the bench's data folder.
 *
 * - into DuckDB, the native path (DuckDB's `read_parquet` inside filedge's
 *   INSERT, record numbers from `file_row_number`) against `read_parquet`
 *   into a table of the same columns by hand (target ≤ 1.5×), and filedge's
 *   own reader (`native: false`) for what the native path saves;
 * - into SQLite and Postgres, filedge's reader: throughput.
 */

const PACKAGE = 'vega-datasets@3.2.1'
const MEMBER = 'package/data/flights-3m.parquet'
const ROWS = 3_000_000
const READ_PARQUET_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'duckdb-read-parquet.js')

const COLUMNS = "{ date: { type: 'timestamp', required: true }, delay: 'integer', distance: 'integer', origin: 'string', destination: 'string' }"

/** The flights file, downloaded (npm pack) and extracted on first use; undefined with the reason when that fails. */
async function flights(options: BenchOptions): Promise<{ file: string } | { skipped: string }> {
  const dir = path.join(options.dataDir, 'flights-3m')
  const file = path.join(dir, 'flights-3m.parquet')
  if (existsSync(file)) return { file }
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-vega-'))
  try {
    process.stderr.write(`  fetching ${PACKAGE} from the npm registry for its ${path.basename(MEMBER)}…\n`)
    await timed('npm', ['pack', PACKAGE, '--pack-destination', scratch, '--silent'])
    const tarball = readdirSync(scratch).find((name) => name.endsWith('.tgz'))
    if (tarball === undefined) return { skipped: `npm pack ${PACKAGE} wrote no tarball` }
    await timed('tar', ['-xzf', path.join(scratch, tarball), '-C', scratch, MEMBER])
    mkdirSync(dir, { recursive: true })
    renameSync(path.join(scratch, MEMBER), file)
    return { file }
  } catch (error) {
    return { skipped: `cannot fetch ${PACKAGE} (${error instanceof Error ? error.message.split('\n')[0] : String(error)})` }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

function flightsProject(file: string, destination: string, imports: string, state: readonly string[]): Project {
  return project({ sourceDir: path.dirname(file), include: path.basename(file), imports, destination, columns: COLUMNS, state })
}

async function loaded(side: Project): Promise<Timed> {
  side.reset()
  const run = await side.run()
  if (run.summary.rows !== ROWS || run.summary.committed !== 1) throw new Error(`filedge loaded ${JSON.stringify(run.summary)}, expected 1 file of ${ROWS} rows`)
  return run
}

export async function parquetSuite(options: BenchOptions): Promise<Row[]> {
  const source = await flights(options)
  if ('skipped' in source) return [{ work: 'a real Parquet file (3M flights) → DuckDB', filedge: 'skipped', target: '≤ 1.5× read_parquet', detail: { why: source.skipped } }]
  const { file } = source
  const duck = (native: boolean) => flightsProject(file, `duckdb({ path: 'warehouse.duckdb', native: ${native} })`, "import { duckdb } from 'filedge/plugins/duckdb'", ['warehouse.duckdb', 'warehouse.duckdb.wal'])
  const sides = {
    native: duck(true),
    js: duck(false),
    sqlite: flightsProject(file, "sqlite({ path: 'warehouse.db' })", "import { sqlite } from 'filedge/plugins/sqlite'", ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm']),
  }
  const nativeDir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-parquet-'))
  const readParquet = async () => {
    rmSync(nativeDir, { recursive: true, force: true })
    mkdirSync(nativeDir)
    const run = await timed(process.execPath, [READ_PARQUET_SCRIPT, path.join(nativeDir, 'native.duckdb'), file])
    if (Number(run.stdout.trim()) !== ROWS) throw new Error(`read_parquet loaded ${run.stdout.trim()} rows, expected ${ROWS}`)
    return run
  }
  const rows: Row[] = []
  try {
    const runs = await alternate(options.reps, { native: () => loaded(sides.native), readParquet, js: () => loaded(sides.js), sqlite: () => loaded(sides.sqlite) })
    const ms = (list: readonly Timed[]) => median(list.map((run) => run.ms))
    const [ours, theirs, js, sqlite] = [ms(runs.native), ms(runs.readParquet), ms(runs.js), ms(runs.sqlite)]
    const all = (list: readonly Timed[]) => ({ ms: list.map((run) => Math.round(run.ms)), maxRssMb: list.map((run) => Math.round(run.maxRssMb)) })
    rows.push(
      {
        work: `a real Parquet file (${format.format(ROWS)} flights, 13 MB) → DuckDB`,
        filedge: `${seconds(ours)} (${format.format(perSecond(ROWS, ours))} rows/s)`,
        native: `${seconds(theirs)} DuckDB read_parquet`,
        ratio: ours / theirs,
        target: '≤ 1.5× read_parquet',
        met: ours / theirs <= 1.5,
        detail: { filedge: all(runs.native), readParquet: all(runs.readParquet) },
      },
      {
        work: 'the same file → DuckDB, native: false (filedge reads the Parquet)',
        filedge: `${seconds(js)} (${format.format(perSecond(ROWS, js))} rows/s)`,
        native: `${seconds(theirs)} DuckDB read_parquet`,
        ratio: js / theirs,
        target: 'informational',
        detail: all(runs.js),
      },
      {
        work: 'the same file → SQLite',
        filedge: `${seconds(sqlite)} (${format.format(perSecond(ROWS, sqlite))} rows/s)`,
        target: 'throughput',
        detail: all(runs.sqlite),
      },
    )
  } finally {
    for (const side of Object.values(sides)) side.remove()
    rmSync(nativeDir, { recursive: true, force: true })
  }
  const pg = await postgresBench()
  if ('skipped' in pg) {
    rows.push({ work: 'the same file → Postgres', filedge: 'skipped', target: 'throughput', detail: { why: pg.skipped } })
    return rows
  }
  const side = postgresProject(path.dirname(file), path.basename(file), pg.schema, COLUMNS)
  try {
    const runs = await alternate(options.reps, {
      postgres: async () => {
        await pg.fresh()
        return loaded(side)
      },
    })
    const postgres = median(runs.postgres.map((run) => run.ms))
    rows.push({ work: 'the same file → Postgres', filedge: `${seconds(postgres)} (${format.format(perSecond(ROWS, postgres))} rows/s)`, target: 'throughput', detail: { ms: runs.postgres.map((run) => Math.round(run.ms)) } })
  } finally {
    side.remove()
    await pg.close()
  }
  return rows
}
