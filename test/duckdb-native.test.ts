import { randomUUID } from 'node:crypto'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig, type ColumnInput, type FormatInput, type LimitsConfig, type Plugin, type WriteJob } from '../core/index.js'
import { DEFAULT_LIMITS } from '../core/config/limits.js'
import { hashFile } from '../core/source/hash.js'
import { coercerFor } from '../core/columns/coerce.js'
import { duckdb } from '../plugins/duckdb/index.js'
import { decimalPattern } from '../plugins/duckdb/native-csv.js'
import { loadIntoDuckdb, readDuckdb, type DuckdbOutcome } from './helpers/duckdb.js'

/**
 * The native path (DuckDB reads the CSV itself) against the JS path (filedge's
 * parser and the Appender): same files, same rows, same errors. Runs the real
 * runner in-process so it can watch which path a file took: the JS path pulls
 * batches, which fires `fileProgress`; the native path never does.
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function load(
  files: Record<string, string | Buffer>,
  columns: Record<string, ColumnInput>,
  options: { native?: boolean; format?: FormatInput; plugins?: Plugin[]; unknownColumns?: 'error' | 'ignore'; limits?: LimitsConfig } = {},
): Promise<DuckdbOutcome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-native-'))
  dirs.push(dir)
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, 'incoming', name)), { recursive: true })
    writeFileSync(path.join(dir, 'incoming', name), content)
  }
  return loadIntoDuckdb(dir, columns, options)
}

const ROWS = 400_000

const TYPES: Record<string, ColumnInput> = {
  id: { type: 'string', required: true },
  n: 'integer',
  x: 'float',
  d: { type: 'decimal', precision: 12, scale: 2 },
  b: 'boolean',
  day: 'date',
  at: 'timestamp',
  note: 'string',
}

describe('DuckDB native CSV path', () => {
  // DuckDB reads a CSV in parallel once it is larger than its 32 MB buffer: this file is ~40 MB, with
  // quoted newlines, so the record numbers are checked across parallel reads.
  it('loads a CSV natively with exact values and record numbers through the parallel reader', async () => {
    const lines = ['id,n,x,d,b,day,at,note']
    for (let i = 1; i <= ROWS; i++) {
      const note = i % 7 === 0 ? `"line one\nline two, ""quoted"" and some padding"` : i % 5 === 0 ? '' : `note ${i} and some padding`
      lines.push(`r${i},${i - 60_000},${i / 8},${(i % 1000) + 0.25},${i % 2 === 0 ? 'yes' : 'F'},2024-02-${String((i % 28) + 1).padStart(2, '0')},2024-05-01T13:45:0${i % 10}.123456+02:00,${note}`)
    }
    const text = `${lines.join('\n')}\n`
    expect(text.length).toBeGreaterThan(36 * 1024 * 1024)
    const { summary, rows, viaJs } = await load({ 'big.csv': text }, TYPES)
    expect(summary).toMatchObject({ committed: 1, failed: 0, rows: ROWS })
    expect(viaJs.size).toBe(0)
    expect(rows).toHaveLength(ROWS)
    const mismatched = rows.filter((row) => row.id !== `r${row._source_row_number}`)
    expect(mismatched).toEqual([])
    expect(rows[6]).toMatchObject({ id: 'r7', n: -59_993n, x: 7 / 8, b: false, note: 'line one\nline two, "quoted" and some padding' })
    expect(rows[4].note).toBeNull()
    expect((rows[6].at as Date).toISOString()).toBe('2024-05-01T11:45:07.123Z')
    expect((rows[6].day as Date).toISOString().slice(0, 10)).toBe('2024-02-08')
  })

  // Values where DuckDB's own casts are laxer than filedge's rules, or the SQL checks stricter:
  // both paths must end with the same rows or the same error.
  const GOOD = [
    'id,n,x,d,b,day,at,note',
    'a, 42 ,-.5e-3,129.9,YES,2024-02-29,2024-05-01T13:45:00Z,  spaced  ',
    'b,+7,1e3,5.,t,2024-05-01,2024-05-01 13:45:00,',
    'c,007,2,.5,0,2024-05-01,2024-05-01T13:45:00.5-05:30,""',
    'd,"",,,,,,NULL',
  ].join('\n')
  const FALLBACK_GOOD = [
    'id,n,x,d,b,day,at,note',
    'a,\t5,1,1,true,2024-05-01,2024-05-01T13:45,tab-padded integer and a timestamp without seconds',
    'b,6,1,1,true,2024-05-01,"2024-05-01T13:45:00,5Z",comma before the fraction',
  ].join('\n')
  const BAD: Record<string, string> = {
    'fraction-in-integer.csv': 'id,n\na,1\nb,3.7\n',
    'short-date.csv': 'id,day\na,2024-1-5\n',
    'impossible-date.csv': 'id,day\na,2023-02-29\n',
    'year-zero-date.csv': 'id,day\na,0000-01-01\n',
    'year-zero-timestamp.csv': 'id,at\na,0000-06-01T00:00:00Z\n',
    'infinite-float.csv': 'id,x\na,1e999\n',
    'word-boolean.csv': 'id,b\na,maybe\n',
    'rounded-decimal.csv': 'id,d\na,1.005\n',
    'wide-decimal.csv': 'id,d\na,12345678901.5\n',
    'missing-required.csv': 'id,n\n,1\n',
    'quote-in-field.csv': 'id,note\na,say "hi"\n',
    'trailing-delimiter.csv': 'id,note\na,x,\n',
    'nul-byte.csv': 'id,note\na,x\u0000y\n',
    'too-few-fields.csv': 'id,note\na\n',
    'unterminated.csv': 'id,note\na,"open\n',
    'hour-24.csv': 'id,at\na,2024-05-01T24:00:00Z\n',
    'integer-overflow.csv': 'id,n\na,9223372036854775808\n',
  }

  it('gives the same rows as the JS path, falling back to it where the SQL checks are stricter', async () => {
    const files = { 'good.csv': GOOD, 'fallback.csv': FALLBACK_GOOD }
    const format: FormatInput = { type: 'csv', nullValues: ['NULL'] }
    const native = await load(files, TYPES, { format })
    const js = await load(files, TYPES, { format, native: false })
    expect(native.summary).toMatchObject({ committed: 2, failed: 0, rows: 6 })
    expect(native.rows).toEqual(js.rows)
    expect([...native.viaJs]).toEqual(['incoming/fallback.csv'])
    expect(native.rows.find((row) => row.id === 'a' && row._source_row_number === 1n && row.n === 42n)).toMatchObject({ d: 129.9, b: true, note: '  spaced  ' })
    expect(native.rows.find((row) => row.id === 'd')).toMatchObject({ n: null, x: null, d: null, b: null, note: null })
    expect(native.rows.find((row) => row.id === 'c')).toMatchObject({ note: '' })
  })

  it('reads other delimiters, quotes, null markers, renamed and missing columns the same way natively', async () => {
    const columns: Record<string, ColumnInput> = {
      id: { type: 'string', required: true, source: 'Order ID' },
      qty: { type: 'integer', source: 'Qty; units' },
      absent: 'date',
    }
    const files = { 'a.csv': "'Order ID';'Qty; units';ignored\n'a;1';NA;x\nb;7;y\n'it''s';-3;NA\n" }
    const format: FormatInput = { type: 'csv', delimiter: ';', quote: "'", nullValues: ['NA'] }
    const native = await load(files, columns, { format })
    const js = await load(files, columns, { format, native: false })
    expect(native.summary).toMatchObject({ committed: 0, failed: 1 })
    expect(native.errors).toEqual(js.errors)
    expect(native.errors[0]).toContain('unknown field "ignored"')
    const nativeOk = await load(files, columns, { format, unknownColumns: 'ignore' })
    const jsOk = await load(files, columns, { format, native: false, unknownColumns: 'ignore' })
    expect(nativeOk.summary).toMatchObject({ committed: 1, rows: 3 })
    expect(nativeOk.viaJs.size).toBe(0)
    expect(nativeOk.rows).toEqual(jsOk.rows)
    expect(nativeOk.rows.map((row) => [row.id, row.qty, row.absent])).toEqual([
      ['a;1', null, null],
      ['b', 7n, null],
      ["it's", -3n, null],
    ])
  })

  it('fails every bad file with the same file:line column error as the JS path', async () => {
    const native = await load(BAD, TYPES, { format: 'csv' })
    const js = await load(BAD, TYPES, { format: 'csv', native: false })
    expect(native.summary).toMatchObject({ committed: 0, failed: Object.keys(BAD).length })
    expect(native.errors).toEqual(js.errors)
    expect(native.errors).toContain('ROW_INVALID incoming/fraction-in-integer.csv:3 column n: cannot coerce "3.7" to integer')
    expect(native.errors).toContain('FILE_INVALID incoming/trailing-delimiter.csv:2: expected 2 fields, found 3 (field 3 has no name in the header)')
    expect(native.errors.find((error) => error.includes('quote-in-field'))).toMatch(/^FILE_INVALID incoming\/quote-in-field.csv:2 column note: quote character inside unquoted field/)
    expect(native.rows).toEqual([])
  })

  it('holds the pipeline’s limits: a field past limits.maxFieldChars fails as on the JS path, a file within them loads natively', async () => {
    // The long field comes after the first read of the file (which the core parses for the header), where only DuckDB's reader sees it.
    const files = { 'long.csv': `id,note\n${'a,x\n'.repeat(400_000)}b,${'x'.repeat(150)}\n`, 'short.csv': `id,note\nc,${'y'.repeat(50)}\n` }
    const native = await load(files, { id: 'string', note: 'string' }, { limits: { maxFieldChars: 100 } })
    const js = await load(files, { id: 'string', note: 'string' }, { limits: { maxFieldChars: 100 }, native: false })
    expect(native.errors).toEqual(['FILE_INVALID incoming/long.csv:400002 column note: a field is longer than 100 characters; raise limits.maxFieldChars if the file is genuine'])
    expect(native.errors).toEqual(js.errors)
    expect(native.rows.map((row) => row.id)).toEqual(['c'])
    expect(native.viaJs.has('incoming/short.csv')).toBe(false)
  })

  it('is idempotent per hash on the native path too: writing the same file again replaces its rows', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-native-'))
    dirs.push(dir)
    const csv = path.join(dir, 'a.csv')
    writeFileSync(csv, 'id,n\na,1\nb,2\n')
    const { hash, size } = await hashFile(csv)
    const file = { hash, size, path: 'a.csv', version: String(statSync(csv).mtimeMs), modifiedAt: statSync(csv).mtimeMs }
    const columns = [
      { name: 'id', source: 'id', type: 'string', required: true },
      { name: 'n', source: 'n', type: 'integer', required: false },
    ] as const
    const destination = duckdb({ path: path.join(dir, 'w.duckdb') })
    const config = resolveConfig({ pipelines: [{ name: 'p', source: '.', destination, table: 't', columns: { id: 'string' } }] }, { cwd: dir })
    await destination.open!({ config, logger: { debug() {}, info() {}, warn() {}, error() {} } })
    try {
      await destination.prepare({ name: 't', columns })
      const job = (): WriteJob => ({
        pipeline: 'p',
        table: { name: 't', columns },
        writeMode: { kind: 'append' },
        file,
        loadId: randomUUID(),
        ingestedAt: '2026-01-02T03:04:05.000000Z',
        // Pulling batches would mean the JS path ran.
        batches: (async function* () {
          throw new Error('the JS path ran')
        })(),
        source: { format: { type: 'csv', options: {} }, fields: ['id', 'n'], headerLine: 1, columns, unknownColumns: 'error', limits: DEFAULT_LIMITS },
        localPath: csv,
        signal: new AbortController().signal,
        assertLease: async () => {},
      })
      expect(await destination.write(job())).toEqual({ rows: 2 })
      expect(await destination.write(job())).toEqual({ rows: 2 })
    } finally {
      await destination.close!()
    }
    expect(await readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT id, n, _source_row_number FROM t ORDER BY id')).toEqual([
      { id: 'a', n: 1n, _source_row_number: 1n },
      { id: 'b', n: 2n, _source_row_number: 2n },
    ])
  })

  it('refuses to commit a file rewritten after it was claimed', async () => {
    // A pre plugin rewrites the file between the claim and the load: the native reader would see the new bytes.
    const rewrite: Plugin = {
      name: 'rewriter',
      enforce: 'pre',
      apply({ hooks }) {
        hooks.load.tapPromise('rewriter', async ({ pipeline, file }) => {
          appendFileSync((await hooks.locate.promise({ pipeline, path: file.path }))!, 'z,99\n')
          return undefined
        })
      },
    }
    const result = await load({ 'a.csv': 'id,n\na,1\n' }, { id: 'string', n: 'integer' }, { plugins: [rewrite] })
    expect(result.errors).toHaveLength(1)
    expect(result.errors[0]).toMatch(/^FILE_CHANGED incoming\/a.csv: the file changed after it was hashed/)
    expect(result.rows).toEqual([])
  })
})

describe('decimalPattern (the native path’s decimal rule)', () => {
  it('accepts exactly what the decimal coercer accepts', () => {
    const texts = ['0', '00', '5', '5.', '.5', '+.5', '-.5', '.', '+', '-', '', '0.00', '-0', '12', '123', '0012', '1.5', '1.50', '1.500', '1.505', '.123', '.100',
      '12.34', '99.99', '100', '1e2', '1,5', ' 5 ', '5 .5', '0.', '-0.000', '00.5', '1_0', '0x10', '٣']
    const sizes = [[2, 2], [4, 2], [3, 0], [1, 0], [38, 9], [5, 1]] as const
    for (const [precision, scale] of sizes) {
      const coerce = coercerFor({ type: 'decimal', precision, scale })
      const pattern = new RegExp(`^ *${decimalPattern(precision, scale)} *$`)
      for (const text of texts) {
        let accepted = true
        try {
          coerce(text)
        } catch {
          accepted = false
        }
        expect([precision, scale, text, pattern.test(text)]).toEqual([precision, scale, text, accepted && text !== ''])
      }
    }
  })
})
