#!/usr/bin/env node
// Postgres benchmarks (run after `npm run build`):
//
//   node bench/postgres.js [--rows 1000000] [--reps 3] [--files 200] [--file-rows 1000] [--only copy|workers]
//
// Both measure wall time of whole processes, startup included, as a user or
// scheduler sees it. The machine load is recorded: on a shared 2-core machine
// it moves every figure.
//
// 1. A 1M-row CSV into Postgres with filedge (the real CLI, Postgres ledger and
//    destination) against `psql \copy` of the same file into the same typed
//    table, in the same run, alternating, medians of --reps.
// 2. 1 worker against 2 workers (separate processes) sharing one Postgres
//    ledger over --files files: files per second, medians of --reps.
//
// FILEDGE_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test) must
// let the user CREATE SCHEMA and run CHECKPOINT. Results are printed and
// written to bench/results/postgres-<time>.json.
import { execFile } from 'node:child_process'
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'
import pg from 'pg'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin/filedge.js')
const PG_URL = process.env.FILEDGE_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

function flag(name, fallback) {
  const index = process.argv.indexOf(`--${name}`)
  return index === -1 ? fallback : Number(process.argv[index + 1])
}
const ROWS = flag('rows', 1_000_000)
const REPS = flag('reps', 3)
const FILES = flag('files', 200)
const FILE_ROWS = flag('file-rows', 1_000)

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function sql(text) {
  const client = new pg.Client({ connectionString: PG_URL })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

/** Deterministic rows: string id, integer, 2-decimal amount, ISO date, status, a note (~15% quoted, with commas). */
function* orderLines(count, seed = 1) {
  let state = seed >>> 0
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state
  }
  const statuses = ['new', 'paid', 'shipped', 'cancelled', 'refunded']
  for (let i = 1; i <= count; i++) {
    const qty = next() % 1000
    const amount = `${next() % 100000}.${String(next() % 100).padStart(2, '0')}`
    const day = new Date(Date.UTC(2020, 0, 1) + (next() % 1500) * 86_400_000).toISOString().slice(0, 10)
    const status = statuses[next() % statuses.length]
    const words = `customer ${next() % 50000} note ${i}`
    const note = next() % 100 < 15 ? `"${words}, with a comma, and ""quotes"""` : words
    yield `${seed === 1 ? 'ORD' : `F${seed}`}-${String(i).padStart(8, '0')},${qty},${amount},${day},${status},${note}\n`
  }
}

async function writeCsv(file, count, seed) {
  const out = createWriteStream(file)
  out.write('order_id,qty,amount,order_date,status,note\n')
  let chunk = ''
  for (const line of orderLines(count, seed)) {
    chunk += line
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain')
      chunk = ''
    }
  }
  out.end(chunk)
  await once(out, 'finish')
}

const COLUMNS = `{
  order_id: { type: 'string', required: true },
  qty: 'integer',
  amount: { type: 'decimal', precision: 12, scale: 2 },
  order_date: 'date',
  status: 'string',
  note: 'string',
}`
// The same typed table filedge creates for those columns, without the provenance columns.
const TYPED_TABLE = 'order_id text NOT NULL, qty bigint, amount numeric(12,2), order_date date, status text, note text'

function project(dir, destSchema) {
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true })
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'filedge'), 'dir')
  writeFileSync(
    path.join(dir, 'filedge.config.ts'),
    `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(destSchema)} }),
    table: 'orders',
    columns: ${COLUMNS},
  }],
})
`,
  )
}

function timed(command, args, options) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    execFile(command, args, { maxBuffer: 64 << 20, ...options }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || error.message}`))
      else resolve({ ms: performance.now() - started, stdout })
    })
  })
}

function ledgerUrl(schema) {
  const url = new URL(PG_URL)
  url.searchParams.set('schema', schema)
  return url.toString()
}

async function fresh(...schemas) {
  for (const schema of schemas) await sql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await sql('CHECKPOINT')
}

async function filedgeRun(dir, ledgerSchema, workers = 1) {
  const env = { ...process.env, FILEDGE_LEDGER_URL: ledgerUrl(ledgerSchema), FILEDGE_DEST_URL: PG_URL, NO_COLOR: '1' }
  const started = performance.now()
  await Promise.all(Array.from({ length: workers }, () => timed(process.execPath, [BIN, '--reporter', 'silent'], { cwd: dir, env })))
  return performance.now() - started
}

async function oneMillion(results) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-pg-'))
  try {
    project(dir, 'bench_dest')
    mkdirSync(path.join(dir, 'incoming'))
    const csv = path.join(dir, 'incoming', 'orders.csv')
    await writeCsv(csv, ROWS, 1)
    const bytes = statSync(csv).size
    console.log(`${ROWS.toLocaleString('en')} rows, ${(bytes / 1e6).toFixed(1)} MB`)
    const psqlMs = []
    const sameTableMs = []
    const filedgeMs = []
    for (let rep = 0; rep < REPS; rep++) {
      await fresh('bench_psql')
      await sql(`CREATE SCHEMA bench_psql; CREATE TABLE bench_psql.orders (${TYPED_TABLE})`)
      const copy = await timed('psql', [PG_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `\\copy bench_psql.orders FROM '${csv}' WITH (FORMAT csv, HEADER true)`])
      psqlMs.push(copy.ms)

      // The table filedge writes, provenance columns (filled by defaults) and hash index included:
      // what psql pays for the same table, leaving filedge's own overhead in the ratio.
      await fresh('bench_psql')
      await sql(`CREATE SCHEMA bench_psql; CREATE TABLE bench_psql.orders (${TYPED_TABLE},
        _source_file_hash text NOT NULL DEFAULT '${'0'.repeat(64)}', _ingested_at timestamptz NOT NULL DEFAULT now(),
        _source_row_number bigint GENERATED ALWAYS AS IDENTITY); CREATE INDEX ON bench_psql.orders (_source_file_hash)`)
      const same = await timed('psql', [PG_URL, '-v', 'ON_ERROR_STOP=1', '-qc', `\\copy bench_psql.orders (order_id, qty, amount, order_date, status, note) FROM '${csv}' WITH (FORMAT csv, HEADER true)`])
      sameTableMs.push(same.ms)

      await fresh('bench_dest', 'bench_ledger')
      filedgeMs.push(await filedgeRun(dir, 'bench_ledger'))
      const [{ n }] = await sql('SELECT count(*)::int AS n FROM bench_dest.orders')
      if (n !== ROWS) throw new Error(`filedge loaded ${n} rows, expected ${ROWS}`)
      console.log(`  rep ${rep + 1}: psql \\copy ${(copy.ms / 1000).toFixed(2)} s · psql \\copy into filedge's table ${(same.ms / 1000).toFixed(2)} s · filedge ${(filedgeMs.at(-1) / 1000).toFixed(2)} s`)
    }
    results.oneMillion = {
      rows: ROWS,
      bytes,
      psqlMs,
      sameTableMs,
      filedgeMs,
      psqlMedianMs: median(psqlMs),
      sameTableMedianMs: median(sameTableMs),
      filedgeMedianMs: median(filedgeMs),
      ratio: median(filedgeMs) / median(psqlMs),
      ratioSameTable: median(filedgeMs) / median(sameTableMs),
    }
    console.log(
      `  median: psql \\copy ${(median(psqlMs) / 1000).toFixed(2)} s · into filedge's table ${(median(sameTableMs) / 1000).toFixed(2)} s · filedge ${(median(filedgeMs) / 1000).toFixed(2)} s · ratio ${results.oneMillion.ratio.toFixed(2)}× (${results.oneMillion.ratioSameTable.toFixed(2)}× against the same table)`,
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await fresh('bench_psql', 'bench_dest', 'bench_ledger')
  }
}

async function workers(results) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-pg-'))
  try {
    project(dir, 'bench_dest')
    mkdirSync(path.join(dir, 'incoming'))
    for (let f = 0; f < FILES; f++) await writeCsv(path.join(dir, 'incoming', `orders-${String(f).padStart(4, '0')}.csv`), FILE_ROWS, f + 2)
    console.log(`${FILES} files × ${FILE_ROWS.toLocaleString('en')} rows`)
    const runs = { 1: [], 2: [] }
    for (let rep = 0; rep < REPS; rep++) {
      for (const count of [1, 2]) {
        await fresh('bench_dest', 'bench_ledger')
        const ms = await filedgeRun(dir, 'bench_ledger', count)
        const [{ n }] = await sql(`SELECT count(*)::int AS n FROM bench_ledger.files WHERE state = 'COMMITTED'`)
        if (n !== FILES) throw new Error(`${count} worker(s) committed ${n} files, expected ${FILES}`)
        runs[count].push(ms)
        console.log(`  rep ${rep + 1}: ${count} worker${count > 1 ? 's' : ''} ${(ms / 1000).toFixed(2)} s (${((FILES * 1000) / ms).toFixed(1)} files/s)`)
      }
    }
    const one = median(runs[1])
    const two = median(runs[2])
    results.workers = { files: FILES, rowsPerFile: FILE_ROWS, oneWorkerMs: runs[1], twoWorkersMs: runs[2], oneMedianMs: one, twoMedianMs: two, speedup: one / two }
    console.log(`  median: 1 worker ${(one / 1000).toFixed(2)} s · 2 workers ${(two / 1000).toFixed(2)} s · speedup ${(one / two).toFixed(2)}×`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await fresh('bench_dest', 'bench_ledger')
  }
}

const results = { at: new Date().toISOString(), cpus: os.cpus().length, loadBefore: os.loadavg(), node: process.version, postgres: (await sql('SHOW server_version'))[0].server_version }
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined
if (only === undefined || only === 'copy') await oneMillion(results)
if (only === undefined || only === 'workers') await workers(results)
results.loadAfter = os.loadavg()
mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true })
const out = path.join(ROOT, 'bench/results', `postgres-${results.at.replace(/[:.]/g, '-')}.json`)
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
console.log(`results: ${path.relative(ROOT, out)}`)
