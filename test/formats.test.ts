import { mkdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { DuckDBInstance } from '@duckdb/node-api'
import { afterEach, describe, expect, it } from 'vitest'
import { jsonArrayObjects } from '../core/formats/json.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

const COLUMNS = `{
  id: { type: 'string', required: true },
  n: 'integer',
  amount: { type: 'decimal', precision: 12, scale: 2 },
  ok: 'boolean',
  day: 'date',
  doc: 'json',
}`

function rows(w: Workspace) {
  return w.query<Record<string, unknown>>('warehouse.db', 'SELECT id, n, amount, ok, day, doc, _source_row_number AS row FROM orders ORDER BY _source_file_hash, _source_row_number')
}

function failures(w: Workspace) {
  return w.query<{ path: string; error: string }>('.filedge/ledger.db', "SELECT path, error FROM files WHERE state = 'FAILED' ORDER BY path")
}

const NDJSON = [
  '{"id":"a","n":1,"amount":129.9,"ok":true,"day":"2024-05-01","doc":{"tags":["x","y"],"deep":{"k":null}}}',
  '',
  '{"id":"b","n":9007199254740993,"amount":"15.00","ok":"no","doc":[1,2.50,12345678901234567890]}',
  '{"id":"c"}',
].join('\n')

const EXPECTED = [
  { id: 'a', n: 1, amount: '129.90', ok: 1, day: '2024-05-01', doc: '{"tags":["x","y"],"deep":{"k":null}}', row: 1 },
  { id: 'b', n: 9007199254740993n, amount: '15.00', ok: 0, day: null, doc: '[1,2.50,12345678901234567890]', row: 2 },
  { id: 'c', n: null, amount: null, ok: null, day: null, doc: null, row: 3 },
]

describe('NDJSON', () => {
  it('loads .ndjson, .jsonl and their gzipped forms: JSON types kept, nested values as exact JSON text, big integers exact', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS }),
      'incoming/a.ndjson': NDJSON,
      'incoming/b.jsonl.gz': gzipSync(NDJSON.replace(/"a"|"b"|"c"/g, (id) => id.replace('"', '"j')).replace(/\n/g, '\r\n')),
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const db = new (await import('better-sqlite3')).default(ws.file('warehouse.db'), { readonly: true })
    db.defaultSafeIntegers(true)
    const stored = db.prepare('SELECT id, n, amount, ok, day, doc, _source_row_number AS row FROM orders ORDER BY id').all() as Record<string, unknown>[]
    db.close()
    const plain = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).map(([key, value]) => [key, typeof value === 'bigint' && key !== 'n' ? Number(value) : value]))
    expect(stored.map(plain)).toEqual([
      ...EXPECTED.map((row) => ({ ...row, n: row.n === null ? null : BigInt(row.n) })),
      ...EXPECTED.map((row) => ({ ...row, id: `j${row.id}`, n: row.n === null ? null : BigInt(row.n) })),
    ])
  })

  it('fails a file by line and column for numbers that do not fit, nested values in scalar columns, bad lines and unknown keys', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS }),
      'incoming/fraction.ndjson': '{"id":"a","n":1}\n{"id":"b","n":3.7}\n',
      'incoming/float-spelling.ndjson': '{"id":"a","n":3.0}\n',
      'incoming/nested.ndjson': '{"id":{"first":"a"}}\n',
      'incoming/syntax.ndjson': '{"id":"a"}\n\n{"id": "b",}\n',
      'incoming/array-line.ndjson': '["a"]\n',
      'incoming/unknown.ndjson': '{"id":"a","extra":1}\n',
      'incoming/rounded.ndjson': '{"id":"a","amount":1.005}\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(failures(ws).map((file) => file.error)).toEqual([
      'incoming/array-line.ndjson:1: expected each line to be a JSON object, found an array',
      'incoming/float-spelling.ndjson:1 column n: 3.0 is not an integer',
      'incoming/fraction.ndjson:2 column n: 3.7 is not an integer',
      'incoming/nested.ndjson:1 column id: cannot coerce an object to string (declare the column as json)',
      'incoming/rounded.ndjson:1 column amount: 1.005 has more than 2 digits after the point (decimal(12,2)); it is not rounded',
      expect.stringMatching(/^incoming\/syntax\.ndjson:3: invalid JSON \(/),
      `incoming/unknown.ndjson:1: unknown field "extra"; declare it in columns or set unknownColumns: 'ignore'`,
    ])
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 0 }])
  })
})

describe('JSON arrays', () => {
  const PRETTY = `[
  {
    "id": "a", "n": 1, "amount": 129.9, "ok": true, "day": "2024-05-01",
    "doc": {"tags": ["x", "y"], "deep": {"k": null}}
  },
  {"id": "b", "n": 9007199254740993, "amount": "15.00", "ok": "no", "doc": [1, 2.50, 12345678901234567890]},
  {"id": "c", "note": "a ] and a } inside a string, and an escaped \\" quote"}
]
`
  it('loads .json and .json.gz arrays of objects with line numbers of each element', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, extra: "unknownColumns: 'ignore'," }),
      'incoming/a.json.gz': gzipSync(PRETTY),
      'incoming/bad.json': PRETTY.replace('"id": "c"', '"id": "c", "n": "x"'),
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(rows(ws)).toEqual(EXPECTED.map((row) => ({ ...row, n: row.n === null ? null : Number(row.n) })))
    // The bad element starts on line 7.
    expect(failures(ws).map((file) => file.error)).toEqual(['incoming/bad.json:7 column n: cannot coerce "x" to integer'])
  })

  it('fails truncated arrays, scalars where objects belong, and text after the array', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }),
      'incoming/empty.json': '[]',
      'incoming/scalar.json': '[{"id":"a"}, 42]',
      'incoming/trailing-comma.json': '[{"id":"a"},]',
      'incoming/truncated.json': '[{"id":"a"},\n{"id":"b"',
      'incoming/after.json': '[{"id":"a"}] {}',
      'incoming/ndjson-named-json.json': '{"id":"a"}\n{"id":"b"}\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(failures(ws).map((file) => file.error)).toEqual([
      'incoming/after.json:1: invalid JSON array: text after the closing "]": "{}"',
      `incoming/ndjson-named-json.json:1: invalid JSON array: expected the file to start with "[", found "{" (one object per line is NDJSON: name the file .ndjson or set format: 'ndjson')`,
      'incoming/scalar.json:1: expected each array element to be a JSON object, found "42]"',
      'incoming/trailing-comma.json:1: invalid JSON array: "]" right after ","',
      'incoming/truncated.json:2: invalid JSON array: the file ends before its closing "]" (truncated?)',
    ])
    expect(ws.query('.filedge/ledger.db', "SELECT path, rows FROM files WHERE state = 'COMMITTED'")).toEqual([{ path: 'incoming/empty.json', rows: 0 }])
  })

  it('streams: the first objects come out before the array is complete', async () => {
    const stream = new PassThrough()
    stream.write('[{"id":"a"},{"id":"b"},')
    const reader = jsonArrayObjects(stream, 'endless.json', 2)
    const first = await reader.next()
    expect(first.value).toEqual({ objects: [{ id: 'a' }, { id: 'b' }], lines: [1, 1] })
    stream.end('{"id":"c"}]')
    expect((await reader.next()).value).toEqual({ objects: [{ id: 'c' }], lines: [1] })
    expect((await reader.next()).done).toBe(true)
  })
})

async function writeParquet(target: string, select: string, compression: string): Promise<void> {
  mkdirSync(path.dirname(target), { recursive: true })
  const instance = await DuckDBInstance.create(':memory:')
  const connection = await instance.connect()
  try {
    await connection.run(`COPY (${select}) TO '${target.replace(/'/g, "''")}' (FORMAT parquet, COMPRESSION ${compression}, ROW_GROUP_SIZE 2)`)
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
}

describe('Parquet', () => {
  const SELECT = `SELECT * FROM (VALUES
      ('a', 1::BIGINT, 129.90::DECIMAL(12,2), true, DATE '2024-05-01', {'tags': ['x', 'y']}, TIMESTAMPTZ '2024-05-01 13:45:00.123456+00', 1.5::DOUBLE),
      ('b', 9007199254740993::BIGINT, 15.00::DECIMAL(12,2), false, NULL, NULL, NULL, NULL),
      ('c', NULL, -0.05::DECIMAL(12,2), NULL, DATE '1969-12-31', {'tags': []}, TIMESTAMPTZ '1969-12-31 23:59:59.999999+00', -2.0::DOUBLE)
    ) AS t(id, n, amount, ok, day, doc, "at", x)`

  it('loads Parquet (snappy, zstd, gzipped file) with exact decimals, 64-bit integers, dates, microsecond timestamps and nested values as JSON', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: COLUMNS.replace(/\}$/, "  at: 'timestamp',\n  x: 'float',\n}") }) })
    await writeParquet(ws.file('incoming/snappy.parquet'), SELECT, 'snappy')
    await writeParquet(ws.file('incoming/zstd.parquet'), SELECT.replace(/'([abc])'/g, "'z$1'"), 'zstd')
    await writeParquet(ws.file('plain.parquet'), SELECT.replace(/'([abc])'/g, "'g$1'"), 'uncompressed')
    ws.write('incoming/file.parquet.gz', gzipSync(readFileSync(ws.file('plain.parquet'))))
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const stored = ws.query<Record<string, unknown>>('warehouse.db', 'SELECT id, n, amount, ok, day, doc, at, x, _source_row_number AS row FROM orders ORDER BY id')
    const expected = [
      { id: 'a', n: 1, amount: '129.90', ok: 1, day: '2024-05-01', doc: '{"tags":["x","y"]}', at: '2024-05-01T13:45:00.123456Z', x: 1.5, row: 1 },
      { id: 'b', n: 9007199254740993, amount: '15.00', ok: 0, day: null, doc: null, at: null, x: null, row: 2 },
      { id: 'c', n: null, amount: '-0.05', ok: null, day: '1969-12-31', doc: '{"tags":[]}', at: '1969-12-31T23:59:59.999999Z', x: -2, row: 3 },
    ]
    expect(stored).toEqual([...expected, ...expected.map((row) => ({ ...row, id: `g${row.id}` })), ...expected.map((row) => ({ ...row, id: `z${row.id}` }))])
  })

  it('fails a Parquet value that does not fit its column by row and column', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string', n: 'integer' }" }) })
    await writeParquet(ws.file('incoming/a.parquet'), `SELECT * FROM (VALUES ('a', 1.0::DOUBLE), ('b', 2.0), ('c', 3.7)) AS t(id, n)`, 'snappy')
    ws.write('incoming/not-parquet.parquet', 'id,n\na,1\n')
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(failures(ws).map((file) => file.error)).toEqual([
      'incoming/a.parquet:3 column n: 3.7 is not an integer',
      expect.stringMatching(/^incoming\/not-parquet\.parquet: not a readable Parquet file/),
    ])
  })
})

describe('gzip', () => {
  it('a truncated .gz fails its file cleanly, whatever the format, and the other files commit', async () => {
    const csv = `id\n${Array.from({ length: 5_000 }, (_, i) => `row-${i}-${'x'.repeat(i % 50)}`).join('\n')}\n`
    const ndjson = Array.from({ length: 5_000 }, (_, i) => JSON.stringify({ id: `row-${i}` })).join('\n')
    const cut = (bytes: Buffer) => bytes.subarray(0, Math.floor(bytes.length / 2))
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }),
      'incoming/whole.csv.gz': gzipSync(csv),
      'incoming/cut.csv.gz': cut(gzipSync(csv)),
      'incoming/cut.ndjson.gz': cut(gzipSync(ndjson)),
      'incoming/cut.json.gz': cut(gzipSync(`[${ndjson.replace(/\n/g, ',')}]`)),
    })
    await writeParquet(ws.file('ids.parquet'), `SELECT 'row-' || i AS id FROM range(5000) t(i)`, 'snappy')
    ws.write('incoming/cut.parquet.gz', cut(gzipSync(readFileSync(ws.file('ids.parquet')))))
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(failures(ws)).toEqual([
      { path: 'incoming/cut.csv.gz', error: 'incoming/cut.csv.gz: corrupt or truncated gzip data (unexpected end of file)' },
      { path: 'incoming/cut.json.gz', error: 'incoming/cut.json.gz: corrupt or truncated gzip data (unexpected end of file)' },
      { path: 'incoming/cut.ndjson.gz', error: 'incoming/cut.ndjson.gz: corrupt or truncated gzip data (unexpected end of file)' },
      { path: 'incoming/cut.parquet.gz', error: 'incoming/cut.parquet.gz: corrupt or truncated gzip data (unexpected end of file)' },
    ])
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 5_000 }])
  })
})

describe('format detection and override', () => {
  it('reads any extension with an explicit format, and rejects misspelt format options', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }", include: "'*.log'", extra: "format: 'ndjson'," }),
      'incoming/events.log': '{"id":"a"}\n{"id":"b"}\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id FROM orders ORDER BY id')).toEqual([{ id: 'a' }, { id: 'b' }])
    ws.write('filedge.config.ts', sqliteConfig({ columns: "{ id: 'string' }", extra: "format: { type: 'ndjson', delimiter: ',' }," }))
    const invalid = await ws.cli()
    expect(invalid.code).toBe(2)
    expect(invalid.stderr).toContain('pipelines[0].format.delimiter: unknown key')
  })
})
