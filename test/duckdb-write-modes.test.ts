import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { ColumnInput, WriteMode } from '../core/index.js'
import { loadIntoDuckdb, readDuckdb, type DuckdbOutcome } from './helpers/duckdb.js'

/**
 * Truncate and cdc on DuckDB's native path (DuckDB reads the CSV itself):
 * truncate loads natively like append; cdc stages natively, and falls back
 * to filedge's parser when a check fails, so the message names the line.
 * Runs the runner in-process to see which path a file took: only the JS path
 * pulls batches, which fires `fileProgress`.
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function load(dir: string | undefined, files: Record<string, string>, columns: Record<string, ColumnInput>, writeMode: WriteMode, native = true): Promise<DuckdbOutcome & { readonly dir: string }> {
  dir ??= mkdtempSync(path.join(os.tmpdir(), 'filedge-duckdb-modes-'))
  if (!dirs.includes(dir)) dirs.push(dir)
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, 'incoming', name)), { recursive: true })
    writeFileSync(path.join(dir, 'incoming', name), content)
  }
  return { ...(await loadIntoDuckdb(dir, columns, { native, writeMode, read: false })), dir }
}

const SNAPSHOT: Record<string, ColumnInput> = { id: { type: 'string', required: true }, n: 'integer', amount: { type: 'decimal', precision: 10, scale: 2 } }
const CHANGES: Record<string, ColumnInput> = { customer_id: 'integer', op: 'string', updated_at: 'timestamp', name: { type: 'string', required: true }, balance: { type: 'decimal', precision: 12, scale: 2 } }
const CDC: WriteMode = { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }

describe('DuckDB native path with write modes', () => {
  it('truncate: a CSV file replaces the table without passing through JS; a header-only file is refused', async () => {
    const first = await load(undefined, { 'a.csv': 'id,n,amount\na1,1,1.50\na2,2,2.25\n', 'b.csv': 'id,n,amount\nb1,10,"3.00"\n' }, SNAPSHOT, 'truncate')
    expect(first.errors).toEqual([])
    expect(first.summary.committed).toBe(2)
    expect(first.viaJs).toEqual(new Set())
    const table = () => readDuckdb(path.join(first.dir, 'w.duckdb'), 'SELECT id, n, CAST(amount AS VARCHAR) AS amount, _source_row_number AS row FROM t ORDER BY id')
    expect(await table()).toEqual([{ id: 'b1', n: 10n, amount: '3.00', row: 1n }])

    const empty = await load(first.dir, { 'c.csv': 'id,n,amount\n' }, SNAPSHOT, 'truncate')
    expect(empty.errors).toEqual([expect.stringMatching(/^FILE_INVALID incoming\/c\.csv: no rows: applying it would empty table t/)])
    expect(await table()).toEqual([{ id: 'b1', n: 10n, amount: '3.00', row: 1n }])
  })

  it('cdc: staged natively, the same table as through filedge’s parser', async () => {
    const files = {
      '2024-05-01.csv': 'customer_id,op,updated_at,name,balance\n1,c,2024-05-01T10:00:00+02:00,"Ann, A.",10.5\n2,c,2024-05-01 09:00:00,Bob,0\n1,u,2024-05-01T09:00:00Z,Ann B.,-3\n3,c,2024-05-01T09:00:00Z,Cy,1\n3,d,2024-05-01T09:30:00Z,,\n',
      '2024-05-02.csv': 'customer_id,op,updated_at,name,balance\n2,u,2024-05-02T00:00:00Z,Bob B.,2.5\n1,u,2024-04-30T00:00:00Z,Too old,0\n4,c,2024-05-02T00:00:00Z,"Dee\n(two lines)",4\n',
    }
    const native = await load(undefined, files, CHANGES, CDC)
    const parsed = await load(undefined, files, CHANGES, CDC, false)
    expect(native.errors).toEqual([])
    expect(native.viaJs).toEqual(new Set())
    expect(parsed.viaJs).toEqual(new Set(['incoming/2024-05-01.csv', 'incoming/2024-05-02.csv']))
    const read = (dir: string) =>
      readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT customer_id, updated_at, name, CAST(balance AS VARCHAR) AS balance, _source_file_hash, _source_row_number FROM t ORDER BY customer_id')
    const rows = await read(native.dir)
    expect(rows.map((row) => [row.customer_id, row.name, row.balance, row._source_row_number])).toEqual([
      [1n, 'Ann B.', '-3.00', 3n],
      [2n, 'Bob B.', '2.50', 1n],
      [4n, 'Dee\n(two lines)', '4.00', 3n],
    ])
    expect(rows).toEqual(await read(parsed.dir))
    const tombstones = (dir: string) => readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT customer_id, updated_at, _source_row_number FROM t__filedge_deleted')
    expect(await tombstones(native.dir)).toEqual([{ customer_id: 3n, updated_at: new Date('2024-05-01T09:30:00Z'), _source_row_number: 5n }])
    expect(await tombstones(native.dir)).toEqual(await tombstones(parsed.dir))
  })

  it('cdc: a file the checks refuse is read again by filedge’s parser, so the message names the line', async () => {
    // Record 3 starts on line 5: record 2 spans lines 3 and 4.
    const outcome = await load(undefined, { 'bad.csv': 'customer_id,op,updated_at,name,balance\n1,c,2024-05-01T00:00:00Z,Ann,1\n2,c,2024-05-01T00:00:00Z,"Bob\nB.",1\n3,x,2024-05-01T00:00:00Z,Cy,1\n' }, CHANGES, CDC)
    expect(outcome.errors).toEqual(['ROW_INVALID incoming/bad.csv:5 column op: unknown op "x"; expected one of "c" (insert), "u" (update), "d" (delete)'])
    expect(outcome.viaJs).toEqual(new Set(['incoming/bad.csv']))
    expect(await readDuckdb(path.join(outcome.dir, 'w.duckdb'), 'SELECT count(*) AS n FROM t')).toEqual([{ n: 0n }])
  })
})
