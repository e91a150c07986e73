import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from './project.js'
import { duckdbBulk, postgresBulk, postgresWorkers } from './destinations.js'
import { parquetSuite } from './parquet.js'
import { s3Source } from './s3.js'
import { cacheSuite } from './cache.js'
import { stagesSuite } from './stages.js'
import { pondsSuite } from './ponds.js'
import { auditSuite, querySuite } from './audit.js'
import { queueSuite } from './queue.js'
import { encryptSuite, quarantineSuite } from './row-controls.js'
import { hashing, largeFile, sqliteBulk, sqliteSmallFiles, watchLatency, type BenchOptions, type Row } from './suites.js'

/**
 * `npm run bench`: filedge against the native bulk loaders, in one run,
 * alternating A/B, medians. Prints a table and writes bench/results/*.json.
 */

const SUITES: Record<string, { run: (options: BenchOptions) => Promise<Row[]>; about: string }> = {
  sqlite: { run: sqliteBulk, about: '--rows orders → SQLite vs sqlite3 .import' },
  duckdb: { run: duckdbBulk, about: '--rows orders → DuckDB vs read_csv (and filedge with native: false)' },
  parquet: { run: parquetSuite, about: 'a real Parquet file (3M flights, fetched once from npm) → DuckDB vs read_parquet; → SQLite and Postgres' },
  postgres: { run: postgresBulk, about: '--rows orders → Postgres vs psql \\copy (FILEDGE_BENCH_PG_URL)' },
  workers: { run: postgresWorkers, about: '1 vs 2 workers on a Postgres ledger, --worker-files × --worker-rows-per-file' },
  small: { run: sqliteSmallFiles, about: '--files × --rows-per-file → SQLite, files/s, then a no-op rerun and an empty run' },
  s3: { run: s3Source, about: 'S3 (s3rver on loopback): no-op rerun over --s3-files objects; --rows orders from S3 vs local disk' },
  cache: { run: cacheSuite, about: 'retry of a --rows file whose destination failed, with and without the cache; cache set/get vs fs' },
  stages: { run: stagesSuite, about: '--rows orders → SQLite through three trivial stages vs without stages' },
  ponds: { run: pondsSuite, about: '50 files into a standing wave (--watch) two ponds downstream: last write → outlet table, beyond the settle window' },
  query: { run: querySuite, about: "filedge query: the README's three questions over a --ledger-files ledger, SQLite and Postgres" },
  audit: { run: auditSuite, about: 'filedge audit export of a --ledger-files SQLite ledger' },
  encrypt: { run: encryptSuite, about: '--rows orders → SQLite with two encrypted columns vs plain' },
  quarantine: { run: quarantineSuite, about: 'a --rows file with 1% bad records through a quarantine vs the clean file without one' },
  hash: { run: hashing, about: 'SHA-256 of the --rows CSV vs a Node crypto stream' },
  large: { run: largeFile, about: 'peak RSS loading a ~1 GB CSV (only with --large)' },
  watch: { run: watchLatency, about: 'watch mode, last write → committed' },
  queue: { run: queueSuite, about: '--queue-messages × 1 KB from NATS JetStream → DuckDB vs a consumer that only acks; publish → committed row in watch mode (FILEDGE_BENCH_NATS)' },
}

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    files: { type: 'string', default: '5000' },
    'rows-per-file': { type: 'string', default: '100' },
    's3-files': { type: 'string', default: '10000' },
    'worker-files': { type: 'string', default: '200' },
    'worker-rows-per-file': { type: 'string', default: '1000' },
    'ledger-files': { type: 'string', default: '1000000' },
    'queue-messages': { type: 'string', default: '100000' },
    reps: { type: 'string', default: '5' },
    large: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (values.help) {
  console.log(`npm run bench -- [--rows N] [--files N] [--rows-per-file N] [--s3-files N] [--worker-files N] [--worker-rows-per-file N] [--ledger-files N] [--queue-messages N] [--reps N] [--large] [--only SUITE,…]

Suites (all by default):
${Object.entries(SUITES)
  .map(([name, suite]) => `  ${name.padEnd(9)} ${suite.about}`)
  .join('\n')}

Postgres suites run in a schema of their own at FILEDGE_BENCH_PG_URL (default
postgres://postgres@127.0.0.1:5432/test), dropped afterwards; unreachable, they
print a row saying so.`)
  process.exit(0)
}

const options: BenchOptions = {
  rows: Number(values.rows),
  files: Number(values.files),
  rowsPerFile: Number(values['rows-per-file']),
  s3Files: Number(values['s3-files']),
  workerFiles: Number(values['worker-files']),
  workerRowsPerFile: Number(values['worker-rows-per-file']),
  reps: Number(values.reps),
  large: values.large,
  ledgerFiles: Number(values['ledger-files']),
  queueMessages: Number(values['queue-messages']),
  dataDir: path.join(REPO_ROOT, 'bench', '.data'),
}
const chosen = values.only ? values.only.split(',') : Object.keys(SUITES)
const unknown = chosen.filter((name) => !(name in SUITES))
if (unknown.length > 0) {
  console.error(`--only: unknown suite ${unknown.map((name) => `"${name}"`).join(', ')}; have ${Object.keys(SUITES).join(', ')}`)
  process.exit(2)
}

// On a shared machine every figure moves with the load: it goes into the results with them.
const loadBefore = os.loadavg()
const rows: Row[] = []
for (const name of chosen) {
  process.stderr.write(`running ${name}…\n`)
  rows.push(...(await SUITES[name].run(options)))
}

const machine = { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}`, loadAverage: { before: loadBefore, after: os.loadavg() } }
// Each figure beside its target, and beside the Python filedge's where the bench knows it (PYTHON_FILEDGE in suites.ts says whence).
const table = [
  ['work', 'filedge', 'native', 'ratio', 'target', '', 'Python filedge'],
  ...rows.map((row) => [
    row.work,
    row.filedge,
    row.native ?? '',
    row.ratio === undefined ? '' : `${row.ratio.toFixed(2)}×`,
    row.target,
    row.met === undefined ? '' : row.met ? 'met' : 'MISSED',
    row.ancestor ?? '',
  ]),
]
const widths = table[0].map((_, column) => Math.max(...table.map((line) => line[column].length)))
console.log(`\nfiledge bench — ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}, median of ${options.reps}, load average ${loadBefore[0].toFixed(1)} → ${machine.loadAverage.after[0].toFixed(1)}\n`)
for (const line of table) console.log(`| ${line.map((cell, column) => cell.padEnd(widths[column])).join(' | ')} |`)

const resultsDir = path.join(REPO_ROOT, 'bench', 'results')
mkdirSync(resultsDir, { recursive: true })
const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(file, JSON.stringify({ machine, options, rows }, null, 2))
console.log(`\nresults: ${path.relative(process.cwd(), file)}`)
