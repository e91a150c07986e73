import { readFileSync } from 'node:fs'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { DuckDBInstance } from '@duckdb/node-api'
import { afterEach, describe, expect, it } from 'vitest'
import { REPO_ROOT, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

const FIXTURES = path.join(REPO_ROOT, 'test/fixtures')
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name))

let ws: Workspace | undefined
afterEach(() => ws?.remove())

describe('filedge inspect', () => {
  it('prints a ready-to-paste columns block with every tier and a note for each non-high one (CSV)', async () => {
    ws = workspace({ 'tiers.csv': fixture('inspect/tiers.csv') })
    const result = await ws.cli(['inspect', 'tiers.csv'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(result.stdout).toBe(`// tiers.csv: 4 rows sampled (csv)
columns: {
  id: 'string',
  qty: 'integer',
  price: { type: 'decimal', precision: 18, scale: 2 },
  ratio: 'float',
  day: 'date',
  at: 'timestamp',
  paid: 'boolean',
  flag: 'integer', // ambiguous: only 0 and 1 seen: integer, or boolean?
  note: 'string', // low: nulls in 2 of 4 rows (not required)
  ship_date: 'string', // ambiguous: non-ISO dates (e.g. "05/01/2024"): filedge reads dates only as YYYY-MM-DD; typed as string
  code: 'string', // ambiguous: mixed values: 3 of 4 are integer, 1 not (e.g. "N/A"); typed as string (nullValues in the format options can turn placeholders into nulls)
  unused: 'string', // low: only nulls in 4 rows; typed as string
},
`)
  })

  it('the printed block, pasted into a pipeline, loads the file', async () => {
    ws = workspace({ 'incoming/tiers.csv': fixture('inspect/tiers.csv') })
    const block = (await ws.cli(['inspect', 'incoming/tiers.csv'])).stdout.split('\n').slice(1).join('\n')
    ws.write('filedge.config.ts', sqliteConfig({ columns: '{}' }).replace('columns: {},', block.trim()))
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, price, ship_date, code FROM orders ORDER BY id')).toEqual([
      { id: 'A-1', price: '129.90', ship_date: '05/01/2024', code: '17' },
      { id: 'A-2', price: '15.00', ship_date: '05/02/2024', code: '23' },
      { id: 'A-3', price: '1204.50', ship_date: '05/03/2024', code: 'N/A' },
      { id: 'A-4', price: '89.99', ship_date: '2024-05-04', code: '42' },
    ])
  })

  it('types NDJSON numbers, big integers and nested values, and samples only --rows records', async () => {
    ws = workspace({ 'numbers.ndjson.gz': gzipSync(fixture('inspect/numbers.ndjson')) })
    const result = await ws.cli(['inspect', 'numbers.ndjson.gz', '--json'])
    expect(result.code).toBe(0)
    const report = JSON.parse(result.stdout)
    expect(report).toMatchObject({ format: 'ndjson', rows: 3 })
    expect(Object.fromEntries(report.columns.map((column: { name: string; type: string; tier: string }) => [column.name, `${column.type} ${column.tier}`]))).toEqual({
      id: 'integer high',
      score: 'float high',
      big: 'integer high',
      tags: 'json low',
      meta: 'json low',
      mixed: 'json ambiguous',
      when: 'date high',
      ok: 'boolean high',
    })
    const sampled = JSON.parse((await ws.cli(['inspect', 'numbers.ndjson.gz', '--json', '--rows', '1'])).stdout)
    expect(sampled.rows).toBe(1)
    expect(sampled.columns.find((column: { name: string }) => column.name === 'meta')).toMatchObject({ type: 'json', tier: 'low' })
  })

  it('reads JSON arrays and TSV too, and refuses what it cannot read with exit 2 or 1', async () => {
    ws = workspace({ 'a.json': '[{"n": 1, "when": "2024-05-01T10:00:00Z", "id": 12345678901234567890}, {"n": 2, "when": "2024-05-01T11:00:00Z", "id": 1}]', 'b.tsv': 'x\ty\n1.5\thello\n', 'c.txt': 'x\n' })
    expect((await ws.cli(['inspect', 'a.json'])).stdout).toContain(
      "  n: 'integer',\n  when: 'timestamp',\n  id: { type: 'decimal', precision: 38, scale: 0 }, // ambiguous: integers beyond the 64-bit range: decimal(38,0) keeps them exact (float would round them)\n",
    )
    expect((await ws.cli(['inspect', 'b.tsv'])).stdout).toContain("  x: 'float',\n  y: 'string',\n")
    const unknown = await ws.cli(['inspect', 'c.txt'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('c.txt: cannot tell the format')
    expect((await ws.cli(['inspect', 'c.txt', '--format', 'csv'])).stdout).toContain("  x: 'string', // low: no rows in the sample\n")
    expect((await ws.cli(['inspect', 'missing.csv'])).code).toBe(2)
    expect((await ws.cli(['inspect', 'a.json', '--rows', '0'])).code).toBe(2)
  })
})

describe('filedge inspect on Parquet', () => {
  it('proposes types from Parquet values: exact decimals, 64-bit integers, dates, timestamps, nested as json', async () => {
    ws = workspace()
    const instance = await DuckDBInstance.create(':memory:')
    const connection = await instance.connect()
    await connection.run(
      `COPY (SELECT * FROM (VALUES (1::BIGINT, 129.90::DECIMAL(12,2), DATE '2024-05-01', TIMESTAMPTZ '2024-05-01 10:00:00+00', {'k': 1}, 'x'), (9007199254740993::BIGINT, 15.00::DECIMAL(12,2), DATE '2024-05-02', NULL, {'k': 2}, 'y')) AS t(id, amount, day, "at", doc, name)) TO '${ws.file('a.parquet')}' (FORMAT parquet)`,
    )
    connection.closeSync()
    instance.closeSync()
    const result = await ws.cli(['inspect', 'a.parquet'])
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe(`// a.parquet: 2 rows sampled (parquet)
columns: {
  id: 'integer',
  amount: { type: 'decimal', precision: 18, scale: 2 },
  day: 'date',
  at: 'timestamp', // low: nulls in 1 of 2 rows (not required)
  doc: 'json', // low: nested objects/arrays: stored as JSON text
  name: 'string',
},
`)
  })
})

const VALIDATE_COLUMNS = `{
  order_id: { type: 'string', required: true },
  customer_id: { type: 'integer', required: true },
  amount: { type: 'decimal', precision: 12, scale: 2 },
  order_date: 'date',
}`

describe('filedge validate', () => {
  it('lists every failing row and column, exits 1, and writes nothing', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: VALIDATE_COLUMNS }), 'incoming/orders.csv': fixture('validate/orders.csv') })
    const result = await ws.cli(['validate', 'incoming/orders.csv'])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe(`✗ incoming/orders.csv (orders, csv): 5 failures, 4 of 6 rows
  incoming/orders.csv:3 column customer_id: cannot coerce "x" to integer
  incoming/orders.csv:4 column amount: 1204.505 has more than 2 digits after the point (decimal(12,2)); it is not rounded
  incoming/orders.csv:4 column order_date: cannot coerce "2024-13-01" to date (expected YYYY-MM-DD)
  incoming/orders.csv:5 column order_id: required value is missing
  incoming/orders.csv:6 column amount: expected 4 fields, found 2 (no value for "amount", "order_date")
`)
    expect(ws.exists('warehouse.db')).toBe(false)
    expect(ws.exists('.filedge')).toBe(false)
  })

  it('exits 0 on clean files; --json gives every failure with line, column and value; a parse error stops the file', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: VALIDATE_COLUMNS }),
      'incoming/clean.csv': fixture('validate/clean.csv'),
      'incoming/broken.ndjson': fixture('validate/broken.ndjson'),
    })
    const clean = await ws.cli(['validate', 'incoming/clean.csv'])
    expect(clean.code).toBe(0)
    expect(clean.stdout).toBe('✓ incoming/clean.csv (orders, csv): 2 rows valid\n')
    const both = await ws.cli(['validate', 'incoming/clean.csv', 'incoming/broken.ndjson', '--json'])
    expect(both.code).toBe(1)
    const report = JSON.parse(both.stdout)
    expect(report.ok).toBe(false)
    expect(report.files[0]).toMatchObject({ path: 'incoming/clean.csv', rows: 2, failedRows: 0, failures: [] })
    expect(report.files[1]).toMatchObject({ path: 'incoming/broken.ndjson', format: 'ndjson', rows: 2, stopped: true })
    expect(report.files[1].failures).toEqual([
      // 3.0 as written: JSON.parse would have made it 3, a valid integer.
      { code: 'ROW_INVALID', message: 'incoming/broken.ndjson:2 column customer_id: 3.0 is not an integer', line: 2, column: 'customer_id', value: '3.0' },
      expect.objectContaining({ code: 'FILE_INVALID', line: 3, message: expect.stringMatching(/^incoming\/broken\.ndjson:3: invalid JSON/) }),
    ])
  })

  it('in a cdc pipeline, reports the change checks a load would fail the file on, named as the file names the columns', async () => {
    const columns = "{ customer_id: { type: 'integer', source: 'CustomerID' }, op: { type: 'string', source: 'Action' }, updated_at: { type: 'timestamp', source: 'ChangedAt' }, name: { type: 'string', required: true } }"
    const extra = "writeMode: { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } },"
    const changes = [
      'CustomerID,Action,ChangedAt,name',
      '1,c,2024-05-02T09:00:00Z,Ann',
      '2,x,2024-05-02T09:00:00Z,Bob', // an op no list names
      '3,u,2024-05-02T09:00:00Z,', // an update without its required name
      '4,d,2024-05-02T09:00:00Z,', // a delete may leave it empty
      '1,u,2024-05-02T09:00:00Z,Ann B.', // key 1 again with the same sequence
      ',c,2024-05-02T09:00:00Z,Cy', // no key: coercion's own check
      '',
    ].join('\n')
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns, extra }), 'incoming/changes.csv': changes })
    const result = await ws.cli(['validate', 'incoming/changes.csv'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(1)
    expect(result.stdout).toBe(`✗ incoming/changes.csv (orders, csv): 4 failures, 4 of 6 rows
  incoming/changes.csv:3 column Action (→ op): unknown op "x"; expected one of "c" (insert), "u" (update), "d" (delete)
  incoming/changes.csv:4 column name: required value is missing (an update carries the whole row; only a delete may leave it empty)
  incoming/changes.csv:6 column ChangedAt (→ updated_at): same updated_at "2024-05-02T09:00:00.000000Z" as line 2 for key customer_id="1"; which change is the last cannot be told
  incoming/changes.csv:7 column CustomerID (→ customer_id): required value is missing
`)
    expect(ws.exists('warehouse.db')).toBe(false)
    // The load agrees. It stops at the first failure of its own order: coercion while the changes are
    // staged (line 7), then, with that line gone, the change checks (line 3).
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('incoming/changes.csv:7 column CustomerID (→ customer_id): required value is missing')
    ws.write('incoming/changes.csv', changes.replace(',c,2024-05-02T09:00:00Z,Cy\n', ''))
    const again = await ws.cli(['--reporter', 'simple'])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('incoming/changes.csv:3 column Action (→ op): unknown op "x"; expected one of "c" (insert), "u" (update), "d" (delete)')
  })

  it('--max-failures lists the first N and counts the rest', async () => {
    const bad = `order_id,customer_id\n${Array.from({ length: 30 }, (_, i) => `A-${i},x${i}`).join('\n')}\n`
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ order_id: 'string', customer_id: 'integer' }" }), 'incoming/bad.csv': bad })
    const result = await ws.cli(['validate', 'incoming/bad.csv', '--max-failures', '2'])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe(`✗ incoming/bad.csv (orders, csv): 30 failures, 30 of 30 rows
  incoming/bad.csv:2 column customer_id: cannot coerce "x0" to integer
  incoming/bad.csv:3 column customer_id: cannot coerce "x1" to integer
  … and 28 more (raise --max-failures to list them)
`)
  })

  it("picks the pipeline whose source holds the file, and asks for --pipeline when that is not clear", async () => {
    const config = `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
const destination = sqlite({ path: 'warehouse.db' })
export default defineConfig({
  pipelines: [
    { name: 'orders', source: 'orders', destination, table: 'orders', columns: { id: 'integer' } },
    { name: 'events', source: 'events', destination, table: 'events', columns: { id: 'string' } },
  ],
})
`
    ws = workspace({ 'filedge.config.ts': config, 'orders/a.csv': 'id\nabc\n', 'events/a.csv': 'id\nabc\n', 'elsewhere.csv': 'id\nabc\n' })
    expect((await ws.cli(['validate', 'orders/a.csv'])).code).toBe(1)
    expect((await ws.cli(['validate', 'events/a.csv'])).code).toBe(0)
    const unclear = await ws.cli(['validate', 'elsewhere.csv'])
    expect(unclear.code).toBe(2)
    expect(unclear.stderr).toContain(`is not in any pipeline's source; choose one with --pipeline ("orders", "events")`)
    expect((await ws.cli(['validate', 'elsewhere.csv', '--pipeline', 'events'])).code).toBe(0)
  })
})

describe('inspect and validate with row controls', () => {
  const KEY = 'a1'.repeat(32)
  const config = sqliteConfig({
    columns: "{ id: { type: 'integer', required: true }, amount: 'float', ssn: { type: 'string', encrypt: { key: env('PII_KEY') } }, email: { type: 'string', hash: { key: env('PII_KEY') } } }",
    imports: "import { env } from 'filedge'",
    extra: "quarantine: { maxRows: 1, key: env('PII_KEY') },",
  })

  it('validate: bad records a quarantine would set aside are listed, and the file loads (exit 0); one too many and it fails whole (exit 1)', async () => {
    ws = workspace({ 'filedge.config.ts': config, 'incoming/one.csv': 'id,amount,ssn,email\n1,1.5,111,a\nx,2.5,222,b\n', 'incoming/two.csv': 'id,amount,ssn,email\nx,1.5,111,a\ny,2.5,222,b\n3,3.5,333,c\n' })
    // No key needed: validate writes nothing and shows no protected value.
    const one = await ws.cli(['validate', 'incoming/one.csv'])
    expect(one.stderr).toBe('')
    expect(one.code).toBe(0)
    expect(one.stdout).toBe('✓ incoming/one.csv (orders, csv): 1 failure, 1 of 2 rows\n  incoming/one.csv:3 column id: cannot coerce "x" to integer\n  quarantine: 1 record would be quarantined (maxRows 1); the file would load 1 row\n')
    const two = await ws.cli(['validate', 'incoming/two.csv', '--json'])
    expect(two.code).toBe(1)
    const report = JSON.parse(two.stdout) as { ok: boolean; files: { quarantine: unknown; failedRows: number }[] }
    expect(report.ok).toBe(false)
    expect(report.files[0]).toMatchObject({ failedRows: 2, quarantine: { records: 2, maxRows: 1, loads: false } })
    expect(ws.exists('.filedge')).toBe(false)
  })

  it("inspect --pipeline: keeps the pipeline's protection in the block, never shows a protected value, and says what its quarantine would set aside", async () => {
    ws = workspace({ 'filedge.config.ts': config, 'incoming/a.csv': 'id,amount,ssn,email\n1,1.5,111-11-1111,a@x.com\n2,n/a,SECRET-222,b@x.com\nx,3.5,333-33-3333,c@x.com\n4,4.5,not-a-number,d@x.com\n' })
    const result = await ws.cli(['inspect', 'incoming/a.csv', '--pipeline', 'orders'], { env: { PII_KEY: KEY } })
    expect(result.stderr).toBe('')
    expect(result.stdout).toContain('// quarantine: 2 of 4 sampled records would be set aside (maxRows 1 counts the whole file)')
    expect(result.stdout).toContain("  ssn: { type: 'string', encrypt: { key: env('PII_KEY') } },")
    expect(result.stdout).toContain("  email: { type: 'string', hash: { key: env('PII_KEY') } },")
    expect(result.stdout).not.toContain('SECRET')
    expect(result.stdout).not.toContain('not-a-number')
  })
})
