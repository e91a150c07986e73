import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { redact } from '../core/secrets.js'
import { syntheticPostgresLedger, syntheticSqliteLedger } from './ledger-data.js'
import { alternate, median, timed } from './measure.js'
import { project, REPO_ROOT, type Project } from './project.js'
import { format, seconds, type BenchOptions, type Row } from './suites.js'

const BIN = path.join(REPO_ROOT, 'bin/filedge.js')
const PG_URL = process.env.FILEDGE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** The README's three questions, as a user types them. */
export const QUESTIONS = {
  'failures per day': "SELECT occurred_at::DATE AS day, count(*) AS failures FROM events WHERE event = 'file:failed' GROUP BY day ORDER BY day",
  'rows per pipeline': "SELECT pipeline, count(*) AS files, sum(rows) AS rows FROM files WHERE state = 'COMMITTED' GROUP BY pipeline ORDER BY rows DESC",
  'slowest files': "SELECT pipeline, path, rows, committed_at - created_at AS took FROM files WHERE state = 'COMMITTED' ORDER BY took DESC LIMIT 10",
} as const

/**
 * A synthetic ledger of `files` files (bench/ledger-data.ts), kept in
 * bench/.data between runs: 1,000,000 files take about 45 s to write and
 * 1.8 GB. Its times end when it was written; nothing here depends on now.
 */
function sqliteLedger(options: BenchOptions, files: number): string {
  const file = path.join(options.dataDir, `ledger-${files}`, 'ledger.db')
  const done = `${file}.done`
  if (!existsSync(done)) {
    mkdirSync(path.dirname(file), { recursive: true })
    process.stderr.write(`  writing a synthetic SQLite ledger of ${format.format(files)} files…\n`)
    syntheticSqliteLedger(file, { files })
    writeFileSync(done, '')
  }
  return file
}

function ledgerProject(ledger: string, env?: NodeJS.ProcessEnv): Project {
  return project({
    sourceDir: 'incoming',
    include: '*.csv',
    imports: "import { env } from 'filedge'\nimport { sqlite } from 'filedge/plugins/sqlite'",
    destination: "sqlite({ path: 'warehouse.db' })",
    config: `ledger: ${ledger},`,
    ...(env === undefined ? {} : { env }),
    state: [],
  })
}

/** Runs each question through the real CLI (startup, config and all), alternating, `reps` times; one row each. */
async function questionRows(side: Project, ledger: string, options: BenchOptions, env?: NodeJS.ProcessEnv): Promise<Row[]> {
  const runs = await alternate(
    options.reps,
    Object.fromEntries(
      Object.entries(QUESTIONS).map(([name, sql]) => [
        name,
        async () => {
          const result = await timed(process.execPath, [BIN, 'query', sql, '--json'], { cwd: side.dir, env })
          const rows = JSON.parse(result.stdout) as unknown[]
          if (rows.length === 0) throw new Error(`${name}: no answer (${result.stderr})`)
          return result
        },
      ]),
    ),
  )
  return Object.keys(QUESTIONS).map((name) => {
    const ms = median(runs[name].map((run) => run.ms))
    return {
      work: `filedge query "${name}" over ${ledger}`,
      filedge: seconds(ms),
      target: '≤ 2 s',
      met: ms <= 2000,
      detail: { ms: runs[name].map((run) => Math.round(run.ms)), maxRssMb: Math.max(...runs[name].map((run) => Math.round(run.maxRssMb))) },
    }
  })
}

/**
 * `filedge query`: the README's three questions over a synthetic ledger of
 * 1,000,000 files (`--ledger-files`), SQLite and, when it answers, Postgres.
 * The whole CLI is timed, as a user waits for it.
 */
export async function querySuite(options: BenchOptions): Promise<Row[]> {
  const files = options.ledgerFiles
  const rows: Row[] = []
  const sqliteFile = sqliteLedger(options, files)
  const side = ledgerProject(JSON.stringify(`sqlite:${sqliteFile}`))
  try {
    rows.push(...(await questionRows(side, `a SQLite ledger of ${format.format(files)} files`, options)))
  } finally {
    side.remove()
  }
  rows.push(...(await postgresQuestions(options, files)))
  return rows
}

async function postgresQuestions(options: BenchOptions, files: number): Promise<Row[]> {
  const db = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 })
  try {
    await db.connect()
  } catch (error) {
    await db.end().catch(() => undefined)
    return [{ work: 'filedge query over a Postgres ledger', filedge: 'skipped', target: '≤ 2 s', detail: { why: redact(`cannot connect to ${PG_URL} (${String(error)}); set FILEDGE_BENCH_PG_URL`) } }]
  }
  const schema = `filedge_bench_ledger_${process.pid}`
  const url = new URL(PG_URL)
  url.searchParams.set('schema', schema)
  const side = ledgerProject("env('FILEDGE_BENCH_LEDGER_URL')", { FILEDGE_BENCH_LEDGER_URL: url.toString() })
  try {
    process.stderr.write(`  writing a synthetic Postgres ledger of ${format.format(files)} files…\n`)
    await syntheticPostgresLedger(PG_URL, schema, { files })
    return await questionRows(side, `a Postgres ledger of ${format.format(files)} files`, options, { FILEDGE_BENCH_LEDGER_URL: url.toString() })
  } finally {
    side.remove()
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined)
    await db.end()
  }
}

/** `filedge audit export` of the 1,000,000-file SQLite ledger: the whole page, written. */
export async function auditSuite(options: BenchOptions): Promise<Row[]> {
  const files = options.ledgerFiles
  const side = ledgerProject(JSON.stringify(`sqlite:${sqliteLedger(options, files)}`))
  try {
    const runs = await alternate(options.reps, { export: () => timed(process.execPath, [BIN, 'audit', 'export', '--out', 'report'], { cwd: side.dir }) })
    const page = path.join(side.dir, 'report', 'index.html')
    const html = readFileSync(page, 'utf8')
    const listed = /(\d[\d,]*) listed of (\d[\d,]*)/.exec(html)
    const ms = median(runs.export.map((run) => run.ms))
    rmSync(path.join(side.dir, 'report'), { recursive: true, force: true })
    return [
      {
        work: `filedge audit export of a SQLite ledger of ${format.format(files)} files (${listed?.[1] ?? '?'} listed, a ${(Buffer.byteLength(html) / 1e6).toFixed(1)} MB page)`,
        filedge: seconds(ms),
        target: '≤ 5 s',
        met: ms <= 5000,
        detail: { ms: runs.export.map((run) => Math.round(run.ms)), maxRssMb: Math.max(...runs.export.map((run) => Math.round(run.maxRssMb))) },
      },
    ]
  } finally {
    side.remove()
  }
}
