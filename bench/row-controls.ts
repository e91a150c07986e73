import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { ordersCsvWithBadRows } from './data.js'
import { alternate, median, timed } from './measure.js'
import { ORDERS_COLUMNS, project, type Project } from './project.js'
import { bigCsv, format, seconds, type BenchOptions, type Row } from './suites.js'

/**
 * Row controls (issue 21), each against the same load without it, in the
 * same run, alternating sides: the `--rows` orders into SQLite with two
 * encrypted columns (the order id and the note, ~10–45 characters) against
 * plain; and a file of the same size with 1% bad records through a
 * quarantine against the clean file without one.
 */

const SQLITE = {
  imports: "import { env } from 'filedge'\nimport { sqlite } from 'filedge/plugins/sqlite'",
  destination: "sqlite({ path: 'warehouse.db' })",
  state: ['warehouse.db', 'warehouse.db-wal', 'warehouse.db-shm'],
}
const KEY_ENV = { BENCH_PII_KEY: '7b'.repeat(32) }
const ENCRYPTED_COLUMNS = ORDERS_COLUMNS.replace("order_id: { type: 'string', required: true }", "order_id: { type: 'string', required: true, encrypt: { key: env('BENCH_PII_KEY') } }").replace(
  "note: 'string'",
  "note: { type: 'string', encrypt: { key: env('BENCH_PII_KEY') } }",
)

function once(side: Project, expected: { rows: number; quarantined?: number }) {
  return async () => {
    side.reset()
    const result = await side.run()
    const { committed, rows, quarantined } = result.summary
    if (committed !== 1 || rows !== expected.rows || (quarantined ?? 0) !== (expected.quarantined ?? 0)) {
      throw new Error(`expected 1 file, ${expected.rows} rows and ${expected.quarantined ?? 0} quarantined, got ${JSON.stringify(result.summary)}`)
    }
    return result.ms
  }
}

/**
 * The `--rows` orders into SQLite with two encrypted columns against plain;
 * and, to tell the crypto from the size of what it stores, a plain load of
 * the very frames as text (exported from the encrypted table): a frame is
 * 4–5 times its value, and writing those bytes is most of the difference.
 */
export async function encryptSuite(options: BenchOptions): Promise<Row[]> {
  const data = await bigCsv(options)
  const make = (file: string, columns: string) => project({ sourceDir: path.dirname(file), include: path.basename(file), columns, env: KEY_ENV, ...SQLITE })
  const sides = { plain: make(data.file, ORDERS_COLUMNS), encrypted: make(data.file, ENCRYPTED_COLUMNS) }
  const framedFile = path.join(options.dataDir, `orders-${options.rows}-framed`, `orders-${options.rows}-framed.csv`)
  await once(sides.encrypted, data)()
  mkdirSync(path.dirname(framedFile), { recursive: true })
  const exported = await timed('sqlite3', ['-csv', '-header', path.join(sides.encrypted.dir, 'warehouse.db'), 'SELECT order_id, customer_id, amount, order_date, status, note FROM orders ORDER BY _source_row_number'])
  writeFileSync(framedFile, exported.stdout)
  const framed = make(framedFile, ORDERS_COLUMNS)
  try {
    const results = await alternate(options.reps, { plain: once(sides.plain, data), encrypted: once(sides.encrypted, data), framed: once(framed, data) })
    const plain = median(results.plain)
    const encrypted = median(results.encrypted)
    const frames = median(results.framed)
    const detail = { plainMs: results.plain.map(Math.round), encryptedMs: results.encrypted.map(Math.round), framedMs: results.framed.map(Math.round), values: data.rows * 2 }
    return [
      {
        work: `${format.format(data.rows)} rows → SQLite with two encrypted columns (AES-256-GCM)`,
        filedge: seconds(encrypted),
        native: `${seconds(plain)} plain`,
        ratio: Number((encrypted / plain).toFixed(2)),
        target: '≤ 1.5× the plain load',
        met: encrypted / plain <= 1.5,
        detail,
      },
      {
        work: `${format.format(data.rows)} rows → SQLite, the same frames loaded as plain text (no crypto: the cost of their size)`,
        filedge: seconds(frames),
        native: `${seconds(plain)} plain`,
        ratio: Number((frames / plain).toFixed(2)),
        target: '—',
        detail,
      },
    ]
  } finally {
    sides.plain.remove()
    sides.encrypted.remove()
    framed.remove()
  }
}

export async function quarantineSuite(options: BenchOptions): Promise<Row[]> {
  const clean = await bigCsv(options)
  const dirty = await ordersCsvWithBadRows(path.join(options.dataDir, `orders-${options.rows}-bad1pct`, `orders-${options.rows}-bad1pct.csv`), options.rows, 100)
  const make = (file: string, quarantine: boolean) =>
    project({ sourceDir: path.dirname(file), include: path.basename(file), extra: quarantine ? 'quarantine: { maxFraction: 0.02 },' : '', ...SQLITE })
  const sides = { clean: make(clean.file, false), cleanQuarantine: make(clean.file, true), dirty: make(dirty.file, true) }
  try {
    const results = await alternate(options.reps, {
      clean: once(sides.clean, clean),
      cleanQuarantine: once(sides.cleanQuarantine, clean),
      dirty: once(sides.dirty, { rows: dirty.rows - dirty.bad, quarantined: dirty.bad }),
    })
    const base = median(results.clean)
    const withQuarantine = median(results.cleanQuarantine)
    const quarantined = median(results.dirty)
    const detail = { cleanMs: results.clean.map(Math.round), cleanQuarantineMs: results.cleanQuarantine.map(Math.round), dirtyMs: results.dirty.map(Math.round), bad: dirty.bad }
    return [
      {
        work: `${format.format(dirty.rows)}-row file with 1% bad records (${format.format(dirty.bad)}) quarantined → SQLite`,
        filedge: seconds(quarantined),
        native: `${seconds(base)} the clean file, no quarantine`,
        ratio: Number((quarantined / base).toFixed(2)),
        target: '≤ 1.2× the clean load',
        met: quarantined / base <= 1.2,
        detail,
      },
      {
        work: `${format.format(clean.rows)}-row clean file through a quarantine (records' text kept, none set aside)`,
        filedge: seconds(withQuarantine),
        native: `${seconds(base)} without`,
        ratio: Number((withQuarantine / base).toFixed(2)),
        target: '—',
        detail,
      },
    ]
  } finally {
    for (const side of Object.values(sides)) side.remove()
  }
}
