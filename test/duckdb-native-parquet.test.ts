import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { afterEach, describe, expect, it } from 'vitest'
import { env, type ColumnInput } from '../core/index.js'
import { loadIntoDuckdb, type DuckdbOutcome } from './helpers/duckdb.js'

/**
 * DuckDB reading a Parquet file itself (plugins/duckdb/native-parquet.ts)
 * against filedge's own Parquet reader and coercion (`native: false`): the
 * same files give the same rows, record numbers and errors. Where the file's
 * types or values are not ones DuckDB reads as filedge does, the file goes
 * through the JS path, seen by the `fileProgress` it fires (the native path
 * never pulls a batch).
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Writes each `name: SELECT` as a Parquet file (small row groups: several per file), then loads them all into DuckDB. */
async function load(files: Record<string, string>, columns: Record<string, ColumnInput>, native: boolean, rowGroupSize = 20_000): Promise<DuckdbOutcome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-native-parquet-'))
  dirs.push(dir)
  mkdirSync(path.join(dir, 'incoming'))
  const writer = await DuckDBInstance.create(':memory:')
  const connection = await writer.connect()
  try {
    for (const [name, select] of Object.entries(files)) {
      const target = path.join(dir, 'incoming', name).replace(/'/g, "''")
      await connection.run(`COPY (${select}) TO '${target}' (FORMAT parquet, ROW_GROUP_SIZE ${rowGroupSize})`)
    }
  } finally {
    connection.closeSync()
    writer.closeSync()
  }
  return loadIntoDuckdb(dir, columns, { native })
}

const COLUMNS: Record<string, ColumnInput> = {
  id: { type: 'string', required: true },
  n: 'integer',
  small: 'integer',
  x: 'float',
  f32: 'float',
  counted: 'float',
  amount: { type: 'decimal', precision: 12, scale: 2 },
  whole: { type: 'decimal', precision: 18, scale: 2 },
  ok: 'boolean',
  day: 'date',
  at: 'timestamp',
  local: 'timestamp',
  ms: 'timestamp',
  note: 'string',
}

/** 120,000 rows of every pairing the native path takes, NULLs among them, in six row groups. */
const EVERY_TYPE = `SELECT
    'r' || i AS id,
    CASE WHEN i % 11 = 0 THEN NULL ELSE i * 1000003 - 9007199254740000 END::BIGINT AS n,
    (i % 30000 - 15000)::SMALLINT AS small,
    CASE WHEN i % 13 = 0 THEN NULL ELSE i / 7.0 END::DOUBLE AS x,
    (i / 3.0)::FLOAT AS f32,
    (i % 1000)::INTEGER AS counted,
    CASE WHEN i % 17 = 0 THEN NULL ELSE (i % 100000) / 100.0 END::DECIMAL(9,2) AS amount,
    (i % 1000000)::INTEGER AS whole,
    CASE WHEN i % 3 = 0 THEN NULL ELSE i % 2 = 0 END AS ok,
    CASE WHEN i % 19 = 0 THEN NULL ELSE DATE '1969-12-25' + (i % 40000)::INTEGER END AS day,
    CASE WHEN i % 23 = 0 THEN NULL ELSE TIMESTAMPTZ '1999-12-31 23:59:59.999999+00' + to_microseconds(i * 1000003) END AS at,
    TIMESTAMP '2024-05-01 13:45:00.5' + to_seconds(i) AS local,
    CAST(TIMESTAMP '2024-05-01 13:45:00.123' + to_milliseconds(i) AS TIMESTAMP_MS) AS ms,
    CASE WHEN i % 7 = 0 THEN 'line one' || chr(10) || 'line "two", ünïcødé' WHEN i % 5 = 0 THEN '' ELSE 'note ' || i END AS note
  FROM range(1, 120001) t(i)`

describe('DuckDB native Parquet path', () => {
  it('loads every type it takes as filedge would, with record numbers across row groups read in parallel', async () => {
    const native = await load({ 'every.parquet': EVERY_TYPE }, COLUMNS, true)
    expect(native.errors).toEqual([])
    expect(native.summary).toMatchObject({ committed: 1, failed: 0, rows: 120_000 })
    expect([...native.viaJs]).toEqual([])
    const js = await load({ 'every.parquet': EVERY_TYPE }, COLUMNS, false)
    expect([...js.viaJs]).toEqual(['incoming/every.parquet'])
    expect(native.rows).toHaveLength(120_000)
    // Row by row, so a difference names its row rather than burying it in a 120,000-row diff.
    for (let i = 0; i < native.rows.length; i++) {
      if (JSON.stringify(native.rows[i], (_, value) => (typeof value === 'bigint' ? `${value}n` : value)) !== JSON.stringify(js.rows[i], (_, value) => (typeof value === 'bigint' ? `${value}n` : value))) {
        expect(native.rows[i]).toEqual(js.rows[i])
      }
    }
    expect(native.rows.filter((row) => row.id !== `r${row._source_row_number}`)).toEqual([])
    expect(native.rows[6]).toMatchObject({ id: 'r7', note: 'line one\nline "two", ünïcødé', ok: false })
    expect(native.rows[4].note).toBe('')
  })

  it('leaves pairings and values it would read differently to filedge’s reader, with the same outcome as native: false', async () => {
    const files = {
      // Numbers into a string column: filedge writes them as text its own way.
      'numbers-as-text.parquet': "SELECT 'a' AS id, 1.5::DOUBLE AS note",
      // Nanoseconds: filedge refuses sub-microsecond digits.
      'nanoseconds.parquet': "SELECT 'b' AS id, TIMESTAMP_NS '2024-05-01 13:45:00.123456789' AS at",
      'nanoseconds-whole.parquet': "SELECT 'c' AS id, TIMESTAMP_NS '2024-05-01 13:45:00.123456' AS at",
      // Outside years 1–9999: the WHERE leaves the row out, the count gives it away.
      'year-zero.parquet': "SELECT * FROM (VALUES ('d', DATE '2024-01-01'), ('e', DATE '0000-06-01')) AS t(id, day)",
      'not-finite.parquet': "SELECT * FROM (VALUES ('f', 1.0::DOUBLE), ('g', 'NaN'::DOUBLE)) AS t(id, x)",
      // More digits than filedge's reader holds exactly.
      'wide-decimal.parquet': "SELECT 'h' AS id, 1234567890123456.78::DECIMAL(18,2) AS whole",
      // A scale wider than the column's: never rounded.
      'wider-scale.parquet': "SELECT 'i' AS id, 1.005::DECIMAL(9,3) AS amount",
      'missing-required.parquet': "SELECT * FROM (VALUES ('j'), (NULL)) AS t(id)",
      'unsigned.parquet': "SELECT 'k' AS id, 4000000000::UINTEGER AS n",
      'text-number.parquet': "SELECT 'l' AS id, ' 42 ' AS n",
    }
    const native = await load(files, COLUMNS, true)
    const js = await load(files, COLUMNS, false)
    // The files that load went through the JS path; those that fail, fail as they do there (before a batch is handed on).
    expect([...native.viaJs].sort()).toEqual(['nanoseconds-whole', 'numbers-as-text', 'text-number', 'unsigned'].map((name) => `incoming/${name}.parquet`))
    expect(native.errors).toEqual(js.errors)
    expect(native.summary).toMatchObject({ committed: js.summary.committed, failed: js.summary.failed })
    expect(native.rows).toEqual(js.rows)
    const failed = ['missing-required', 'nanoseconds', 'not-finite', 'wide-decimal', 'wider-scale', 'year-zero']
    expect(native.errors.map((error) => /incoming\/([\w-]+)\.parquet/.exec(error)?.[1]).sort()).toEqual(failed)
    expect(native.errors.join('\n')).toContain('incoming/year-zero.parquet:2 column day')
  })

  it('stays off for a pipeline whose columns are protected: DuckDB would store the clear values', async () => {
    process.env.FILEDGE_TEST_PARQUET_KEY = '11'.repeat(32)
    try {
      const columns: Record<string, ColumnInput> = { id: { type: 'string', required: true }, note: { type: 'string', encrypt: { key: env('FILEDGE_TEST_PARQUET_KEY') } } }
      const outcome = await load({ 'secret.parquet': "SELECT 'r' || i AS id, 'secret ' || i AS note FROM range(1, 1001) t(i)" }, columns, true)
      expect(outcome.errors).toEqual([])
      expect([...outcome.viaJs]).toEqual(['incoming/secret.parquet'])
      expect(outcome.rows).toHaveLength(1000)
      expect(outcome.rows.filter((row) => !String(row.note).startsWith('fe1:'))).toEqual([])
    } finally {
      delete process.env.FILEDGE_TEST_PARQUET_KEY
    }
  })
})
