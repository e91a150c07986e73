// filedge → DuckDB against DuckDB's own read_csv into the same typed table.
//
//   npm run build && node bench/duckdb.js [--rows 1000000] [--rounds 5]
//
// Each measurement is a fresh process on a fresh database file, so both sides
// pay process start-up and the final checkpoint: filedge as a user runs it
// (`filedge` CLI: config, hash, ledger, claim, load, commit), DuckDB as a
// user would load the file by hand (@duckdb/node-api, read_csv with declared
// column types, INSERT into the typed table). Rounds alternate so machine
// load hits both alike; medians are reported, of wall time and of CPU time
// (user + system, all threads: steadier than wall time on a shared machine).
// Results go to bench/results/.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ORDERS_COLUMNS, ordersCsv } from './data.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const arg = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const ROWS = arg('rows', 1_000_000)
const ROUNDS = arg('rounds', 5)
const JS_ROUNDS = arg('js-rounds', 3)

const DUCKDB_TYPES = { string: 'VARCHAR', integer: 'BIGINT', date: 'DATE' }
const sqlType = (spec) => (typeof spec === 'string' ? DUCKDB_TYPES[spec] : spec.type === 'decimal' ? `DECIMAL(${spec.precision},${spec.scale})` : DUCKDB_TYPES[spec.type])

const BASELINE = `
import { DuckDBInstance } from '@duckdb/node-api'
const [file, csv, columns] = process.argv.slice(2)
const declared = JSON.parse(columns)
const instance = await DuckDBInstance.create(file)
const connection = await instance.connect()
const ddl = Object.entries(declared).map(([name, type]) => '"' + name + '" ' + type).join(', ')
const struct = '{' + Object.entries(declared).map(([name, type]) => "'" + name + "': '" + type + "'").join(', ') + '}'
await connection.run('CREATE TABLE orders (' + ddl + ')')
await connection.run('INSERT INTO orders SELECT * FROM read_csv($csv, header = true, auto_detect = false, columns = ' + struct + ')', { csv })
connection.closeSync()
instance.closeSync()
`

function project(native) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-'))
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true })
  mkdirSync(path.join(dir, 'incoming'))
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'filedge'), 'dir')
  writeFileSync(
    path.join(dir, 'filedge.config.mjs'),
    `import { defineConfig } from 'filedge'
import { duckdb } from 'filedge/plugins/duckdb'
export default defineConfig({
  pipelines: [{ name: 'orders', source: 'incoming', format: 'csv', destination: duckdb({ path: 'warehouse.duckdb', native: ${native} }), table: 'orders', columns: ${JSON.stringify(ORDERS_COLUMNS)} }],
})
`,
  )
  writeFileSync(path.join(dir, 'baseline.mjs'), BASELINE)
  return dir
}

// Preloaded into each measured process: writes its CPU time (all threads) where CPU_REPORT says.
const CPU_REPORT = `import { writeFileSync } from 'node:fs'
process.on('exit', () => {
  const { user, system } = process.cpuUsage()
  writeFileSync(process.env.CPU_REPORT, String((user + system) / 1e6))
})
`

function timed(fn) {
  const report = path.join(os.tmpdir(), `filedge-bench-cpu-${process.pid}`)
  const started = performance.now()
  fn({ ...process.env, CPU_REPORT: report })
  const wall = (performance.now() - started) / 1000
  return { wall, cpu: Number(readFileSync(report, 'utf8')) }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const csv = await ordersCsv(path.join(ROOT, 'bench/results/data', `orders-${ROWS}.csv`), ROWS)
const columns = JSON.stringify(Object.fromEntries(Object.entries(ORDERS_COLUMNS).map(([name, spec]) => [name, sqlType(spec)])))
const times = { duckdb: [], native: [], js: [] }
const preload = path.join(ROOT, 'bench/results', `cpu-report-${process.pid}.mjs`)
mkdirSync(path.dirname(preload), { recursive: true })
writeFileSync(preload, CPU_REPORT)

function once(kind) {
  const dir = project(kind !== 'js')
  try {
    if (kind === 'duckdb') {
      // node_modules/@duckdb resolves from the repository: run the script from there.
      const script = path.join(ROOT, 'bench/results', `baseline-${process.pid}.mjs`)
      writeFileSync(script, BASELINE)
      return timed((env) => execFileSync(process.execPath, ['--import', preload, script, path.join(dir, 'baseline.duckdb'), csv, columns], { stdio: 'inherit', env }))
    }
    copyFileSync(csv, path.join(dir, 'incoming/orders.csv'))
    return timed((env) => {
      const out = execFileSync(process.execPath, ['--import', preload, path.join(ROOT, 'bin/filedge.js'), '--reporter', 'simple'], { cwd: dir, encoding: 'utf8', env })
      if (!out.includes(`rows ${ROWS.toLocaleString('en-US')}`) && !out.includes(`rows ${ROWS}`)) throw new Error(`unexpected filedge output:\n${out}`)
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

for (let round = 0; round < ROUNDS; round++) {
  for (const kind of round % 2 === 0 ? ['duckdb', 'native'] : ['native', 'duckdb']) {
    const measured = once(kind)
    times[kind].push(measured)
    console.log(`round ${round + 1} ${kind.padEnd(6)} ${measured.wall.toFixed(2)} s wall, ${measured.cpu.toFixed(2)} s CPU`)
  }
  if (round < JS_ROUNDS) {
    const measured = once('js')
    times.js.push(measured)
    console.log(`round ${round + 1} js     ${measured.wall.toFixed(2)} s wall, ${measured.cpu.toFixed(2)} s CPU`)
  }
}

function medians(measure) {
  const of = (kind) => (times[kind].length === 0 ? null : median(times[kind].map((time) => time[measure])))
  const seconds = { duckdbReadCsv: of('duckdb'), filedgeNative: of('native'), filedgeJsPath: of('js') }
  return { seconds, ratio: { native: seconds.filedgeNative / seconds.duckdbReadCsv, js: seconds.filedgeJsPath / seconds.duckdbReadCsv } }
}

const result = {
  date: new Date().toISOString(),
  rows: ROWS,
  bytes: statSync(csv).size,
  cpus: os.cpus().length,
  loadavg: os.loadavg(),
  wall: medians('wall'),
  cpu: medians('cpu'),
  times,
}
console.log(JSON.stringify(result, null, 2))
mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true })
writeFileSync(path.join(ROOT, 'bench/results', `duckdb-${result.date.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(result, null, 2)}\n`)
