import { createHash, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it, type TestContext } from 'vitest'
import {
  claimLost,
  isFiledgeError,
  resolveConfig,
  rowInvalid,
  type ColumnType,
  type Destination,
  type DestinationContext,
  type RowBatch,
  type TableColumn,
  type TableSpec,
  type Value,
  type WriteJob,
} from '../../core/index.js'
import { writeModeCases } from './write-modes.js'

/**
 * The destination conformance kit (`filedge/testing`). Every built-in
 * destination runs it; a third-party destination runs it in three lines:
 *
 *   import { testDestination } from 'filedge/testing'
 *   import { myDestination } from '../src/index.js'
 *   testDestination({ name: 'mine', make: (dir) => ({ destination: myDestination({ dir }), rows: (table) => readAll(dir, table) }) })
 *
 * The truncate and cdc cases (write-modes.ts) run for the modes the
 * destination declares in `capabilities.writeModes`, and show as skipped for
 * the others.
 */

export interface DestinationHarness {
  readonly destination: Destination
  /** Every row of `table`, as objects keyed by column name (provenance columns included). */
  rows(table: string): Promise<Record<string, unknown>[]>
  /** Called after each test (drop schemas, close clients). The destination itself is closed by the kit. */
  cleanup?(): Promise<void>
}

export interface TestDestinationOptions {
  readonly name: string
  /** A fresh destination writing under (or named after) `dir`, a new temp directory per test. */
  make(dir: string): DestinationHarness | Promise<DestinationHarness>
}

const ALL_TYPES: TableSpec = {
  name: 'conformance_types',
  columns: [
    { name: 'id', type: 'string', required: true },
    { name: 'n', type: 'integer', required: false },
    { name: 'x', type: 'float', required: false },
    { name: 'd', type: 'decimal', required: false, precision: 18, scale: 2 },
    { name: 'b', type: 'boolean', required: false },
    { name: 'day', type: 'date', required: false },
    { name: 'at', type: 'timestamp', required: false },
    { name: 'doc', type: 'json', required: false },
  ],
}

const TYPED_ROWS: Value[][] = [
  ['a', 1, 1.5, '10.25', true, '2024-05-01', '2024-05-01T13:45:00.123456Z', '{"k":[1,2]}'],
  ['b', 2n ** 60n, -0.001, '-3.00', false, '1999-12-31', '1970-01-01T00:00:00.000000Z', '"text"'],
  ['c', null, null, null, null, null, null, null],
]

function fakeHash(seed: string): string {
  return createHash('sha256').update(seed).digest('hex')
}

function batchesOf(table: TableSpec, rows: Value[][], size: number, failAt?: { row: number; error: Error }, delayMs = 0): AsyncIterable<RowBatch> {
  const columns = table.columns.map((column) => column.name)
  return (async function* () {
    for (let start = 0; start < rows.length; start += size) {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
      const slice = rows.slice(start, start + size)
      if (failAt !== undefined && failAt.row < start + slice.length) {
        if (failAt.row > start) {
          const head = slice.slice(0, failAt.row - start)
          yield { columns, rows: head, rowNumbers: head.map((_, i) => start + i + 1), lines: head.map((_, i) => start + i + 2) }
        }
        throw failAt.error
      }
      yield { columns, rows: slice, rowNumbers: slice.map((_, i) => start + i + 1), lines: slice.map((_, i) => start + i + 2) }
    }
    if (failAt !== undefined && failAt.row >= rows.length) throw failAt.error
  })()
}

interface JobOptions {
  readonly table: TableSpec
  readonly hash: string
  readonly rows: Value[][]
  readonly batchSize?: number
  readonly failAt?: { row: number; error: Error }
  readonly leaseLost?: boolean
  /** Pause before each batch, so two writes overlap. */
  readonly delayMs?: number
  readonly loadId?: string
}

function job(options: JobOptions): WriteJob {
  const controller = new AbortController()
  const file = { hash: options.hash, path: `incoming/${options.hash.slice(0, 8)}.csv`, size: 1, version: '0:0', modifiedAt: 0 }
  return {
    pipeline: 'conformance',
    table: options.table,
    writeMode: { kind: 'append' },
    file,
    loadId: options.loadId ?? randomUUID(),
    ingestedAt: '2026-01-02T03:04:05.678000Z',
    batches: batchesOf(options.table, options.rows, options.batchSize ?? 2, options.failAt, options.delayMs),
    signal: controller.signal,
    async assertLease() {
      if (options.leaseLost) throw claimLost(file.path, 'conformance: lease taken over')
    },
  }
}

/** Compares a value read back with what was written, allowing each store's natural representation. */
function normalize(type: ColumnType, value: unknown): unknown {
  if (value === null || value === undefined) return null
  switch (type) {
    case 'integer':
      return BigInt(String(value)).toString()
    case 'float':
      return Number(value)
    case 'decimal':
      return String(value).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '')
    case 'boolean':
      return value === true || value === 1 || value === 1n || value === 't' || value === 'true'
    case 'date':
      return value instanceof Date ? value.toISOString().slice(0, 10) : String(value).slice(0, 10)
    case 'timestamp':
      return value instanceof Date ? value.getTime() : Date.parse(String(value))
    case 'json':
      return typeof value === 'string' ? JSON.parse(value) : value
    default:
      return value
  }
}

function project(table: TableSpec, rows: Record<string, unknown>[]): unknown[][] {
  const columns: TableColumn[] = [...table.columns]
  return rows.map((row) => columns.map((column) => normalize(column.type, row[column.name])))
}

function expected(table: TableSpec, rows: Value[][]): unknown[][] {
  return rows.map((row) => table.columns.map((column, index) => normalize(column.type, row[index])))
}

const byFirstColumn = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]))

export function testDestination(options: TestDestinationOptions): void {
  describe(`destination conformance: ${options.name}`, () => {
    let dir: string
    let harness: DestinationHarness
    let destination: Destination
    let context: DestinationContext

    beforeEach(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-conformance-'))
      harness = await options.make(dir)
      destination = harness.destination
      const config = resolveConfig({ pipelines: [{ name: 'conformance', source: 'in', destination, table: 't', columns: { id: 'string' } }] }, { cwd: dir })
      context = { config, logger: { debug() {}, info() {}, warn() {}, error() {} } }
      await destination.open?.(context)
    })
    afterEach(async () => {
      await destination.close?.()
      await harness.cleanup?.()
      rmSync(dir, { recursive: true, force: true })
    })

    const read = async (table: TableSpec) => (await harness.rows(table.name)).sort((a, b) => String(a[table.columns[0].name]).localeCompare(String(b[table.columns[0].name])))

    it('answers its healthcheck, open and with a table in it, and changes nothing', async (test: TestContext) => {
      if (destination.healthcheck === undefined) {
        test.skip(`${options.name} has no healthcheck: filedge healthcheck lists it as unchecked`)
        return
      }
      await expect(destination.healthcheck(context)).resolves.toBeUndefined()
      await destination.prepare(ALL_TYPES)
      await destination.write(job({ table: ALL_TYPES, hash: fakeHash('health'), rows: TYPED_ROWS }))
      await expect(destination.healthcheck(context)).resolves.toBeUndefined()
      expect(await read(ALL_TYPES)).toHaveLength(3)
    })

    it('creates the table and stores every column type, nulls included, with provenance', async () => {
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('types')
      expect(await destination.write(job({ table: ALL_TYPES, hash, rows: TYPED_ROWS }))).toEqual({ rows: 3 })
      const rows = await read(ALL_TYPES)
      expect(project(ALL_TYPES, rows)).toEqual(expected(ALL_TYPES, TYPED_ROWS))
      expect(rows.map((row) => row._source_file_hash)).toEqual([hash, hash, hash])
      expect(rows.map((row) => Number(row._source_row_number))).toEqual([1, 2, 3])
      expect(rows.map((row) => normalize('timestamp', row._ingested_at))).toEqual(Array(3).fill(Date.parse('2026-01-02T03:04:05.678Z')))
    })

    it('prepare is repeatable on a matching table', async () => {
      await destination.prepare(ALL_TYPES)
      await destination.prepare(ALL_TYPES)
    })

    it('is idempotent per file hash: writing a file again replaces its rows, other files untouched', async () => {
      await destination.prepare(ALL_TYPES)
      const a = fakeHash('a')
      const b = fakeHash('b')
      await destination.write(job({ table: ALL_TYPES, hash: a, rows: TYPED_ROWS.slice(0, 2) }))
      await destination.write(job({ table: ALL_TYPES, hash: b, rows: [['z', 9, null, null, null, null, null, null]] }))
      await destination.write(job({ table: ALL_TYPES, hash: a, rows: TYPED_ROWS.slice(0, 2) }))
      const rows = await read(ALL_TYPES)
      expect(rows.filter((row) => row._source_file_hash === a)).toHaveLength(2)
      expect(rows.filter((row) => row._source_file_hash === b)).toHaveLength(1)
    })

    it('is atomic: a stream that fails midway leaves none of its rows and the previous version intact', async () => {
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('atomic')
      await destination.write(job({ table: ALL_TYPES, hash, rows: TYPED_ROWS }))
      const many: Value[][] = Array.from({ length: 50 }, (_, i) => [`r${String(i).padStart(3, '0')}`, i, null, null, null, null, null, null])
      const boom = new Error('conformance: the source broke')
      await expect(destination.write(job({ table: ALL_TYPES, hash, rows: many, batchSize: 10, failAt: { row: 35, error: boom } }))).rejects.toBe(boom)
      expect(project(ALL_TYPES, await read(ALL_TYPES))).toEqual(expected(ALL_TYPES, TYPED_ROWS))
    })

    it('rolls back a file whose row fails coercion, keeping the error as it is', async () => {
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('bad-row')
      const bad = rowInvalid('incoming/bad.csv', 4, 'n', 'x', 'cannot coerce "x" to integer')
      const error = await destination.write(job({ table: ALL_TYPES, hash, rows: TYPED_ROWS, batchSize: 1, failAt: { row: 2, error: bad } })).catch((caught) => caught)
      expect(isFiledgeError(error) && error.code).toBe('ROW_INVALID')
      expect(await read(ALL_TYPES)).toEqual([])
    })

    it('does not commit when the lease was lost before the commit', async () => {
      await destination.prepare(ALL_TYPES)
      const error = await destination.write(job({ table: ALL_TYPES, hash: fakeHash('lost'), rows: TYPED_ROWS, leaseLost: true })).catch((caught) => caught)
      expect(isFiledgeError(error) && error.code).toBe('CLAIM_LOST')
      expect(await read(ALL_TYPES)).toEqual([])
    })

    it('commits an empty file as zero rows', async () => {
      await destination.prepare(ALL_TYPES)
      expect(await destination.write(job({ table: ALL_TYPES, hash: fakeHash('empty'), rows: [] }))).toEqual({ rows: 0 })
    })

    it('keeps row numbers across many batches', async () => {
      await destination.prepare(ALL_TYPES)
      const rows: Value[][] = Array.from({ length: 1_234 }, (_, i) => [`r${String(i).padStart(5, '0')}`, i, i / 2, null, i % 2 === 0, null, null, null])
      expect(await destination.write(job({ table: ALL_TYPES, hash: fakeHash('many'), rows, batchSize: 97 }))).toEqual({ rows: 1_234 })
      const stored = await read(ALL_TYPES)
      expect(stored.map((row) => Number(row._source_row_number))).toEqual(Array.from({ length: 1_234 }, (_, i) => i + 1))
      expect(project(ALL_TYPES, stored).sort(byFirstColumn)).toEqual(expected(ALL_TYPES, rows).sort(byFirstColumn))
    })

    it('reports every difference when the table has drifted from the pipeline', async () => {
      await destination.prepare(ALL_TYPES)
      const drifted: TableSpec = {
        name: ALL_TYPES.name,
        columns: [
          ...ALL_TYPES.columns.filter((column) => column.name !== 'doc' && column.name !== 'n'),
          { name: 'n', type: 'string', required: false },
          { name: 'added', type: 'integer', required: false },
        ],
      }
      const error = await destination.prepare(drifted).catch((caught) => caught)
      expect(isFiledgeError(error) && error.code).toBe('SCHEMA_DRIFT')
      expect(error.message).toMatch(/missing column "added"/)
      expect(error.message).toMatch(/extra column "doc"/)
      expect(error.message).toMatch(/column "n" is .*expected .*\(string\)/)
    })

    it('quotes hostile identifiers and stores SQL-looking values verbatim', async () => {
      const table: TableSpec = {
        name: 'we"ird table; DROP TABLE x; --',
        columns: [
          { name: 'a"b; drop table x', type: 'string', required: true },
          { name: 'naïve 列', type: 'integer', required: false },
          { name: 'select', type: 'string', required: false },
        ],
      }
      await destination.prepare(table)
      const rows: Value[][] = [
        ["'); DROP TABLE x; --", 1, 'Robert"); DROP TABLE students;--'],
        ['$1 $$ \\ ?', 2, '%s %d {}'],
      ]
      await destination.write(job({ table, hash: fakeHash('hostile'), rows }))
      expect(project(table, await read(table))).toEqual(expected(table, rows))
    })

    // Added with the Postgres destination: COPY text format has its own escaping, and any bulk path can get it wrong.
    it('stores hostile text byte for byte: tabs, newlines, backslashes, quotes, NULL markers, unicode', async () => {
      const table: TableSpec = {
        name: 'conformance_text',
        columns: [
          { name: 'id', type: 'string', required: true },
          { name: 's', type: 'string', required: false },
          { name: 'doc', type: 'json', required: false },
        ],
      }
      const values = ['tab\there', 'new\nline', 'cr\r\nlf\r', 'back\\slash\\', '\\N', '\\.', '\\t not a tab', '"double", \'single\'', '', ' padded ', 'naïve 列 🚀 e\u0301', 'a,b;c|d\u2028e', '\x7f\x1b[31m']
      const rows: Value[][] = values.map((value, i) => [`v${String(i).padStart(2, '0')}`, value, JSON.stringify({ value, list: [value] })])
      rows.push(['zz', null, null])
      await destination.prepare(table)
      await destination.write(job({ table, hash: fakeHash('text'), rows, batchSize: 5 }))
      expect(project(table, await read(table))).toEqual(expected(table, rows))
    })

    // ------------------------------------------------------------ load markers (issue 14: exactly once)

    const markersKept = (context: TestContext) => {
      if (destination.hasLoaded === undefined) {
        context.skip(`destination "${destination.name}" keeps no load markers (no hasLoaded): a worker that dies after its commit on the last allowed lapse leaves its file FAILED with its rows in the table`)
      }
    }
    const append = { kind: 'append' } as const
    const markerOf = (hash: string, pipeline = 'conformance') => destination.hasLoaded!({ pipeline, table: ALL_TYPES, writeMode: append, hash })

    it('records the load marker with the rows, and reads it back', async (context) => {
      markersKept(context)
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('marked')
      expect(await markerOf(hash)).toBeNull()
      const loadId = randomUUID()
      await destination.write(job({ table: ALL_TYPES, hash, rows: TYPED_ROWS, loadId }))
      expect(await markerOf(hash)).toMatchObject({ loadId, rows: 3 })
      // Another pipeline's marker of the same bytes is its own.
      expect(await markerOf(hash, 'another-pipeline')).toBeNull()
      // A new load of the same file (a requeue) replaces the marker.
      const reload = randomUUID()
      await destination.write(job({ table: ALL_TYPES, hash, rows: TYPED_ROWS.slice(0, 1), loadId: reload }))
      expect(await markerOf(hash)).toMatchObject({ loadId: reload, rows: 1 })
    })

    it('records the marker of an empty file', async (context) => {
      markersKept(context)
      await destination.prepare(ALL_TYPES)
      const loadId = randomUUID()
      await destination.write(job({ table: ALL_TYPES, hash: fakeHash('empty-marked'), rows: [], loadId }))
      expect(await markerOf(fakeHash('empty-marked'))).toMatchObject({ loadId, rows: 0 })
    })

    it('commits the marker in the rows’ transaction: a failed stream or a lost lease leaves neither, and the previous marker stands', async (context) => {
      markersKept(context)
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('marker-atomic')
      const boom = new Error('conformance: the source broke')
      const many: Value[][] = Array.from({ length: 30 }, (_, i) => [`r${i}`, i, null, null, null, null, null, null])
      await expect(destination.write(job({ table: ALL_TYPES, hash, rows: many, batchSize: 4, failAt: { row: 20, error: boom } }))).rejects.toBe(boom)
      expect(await markerOf(hash)).toBeNull()
      await destination.write(job({ table: ALL_TYPES, hash: fakeHash('lost-marker'), rows: many, leaseLost: true })).catch(() => undefined)
      expect(await markerOf(fakeHash('lost-marker'))).toBeNull()
      const first = randomUUID()
      await destination.write(job({ table: ALL_TYPES, hash, rows: many, loadId: first }))
      await destination.write(job({ table: ALL_TYPES, hash, rows: many, batchSize: 4, failAt: { row: 20, error: boom } })).catch(() => undefined)
      expect(await markerOf(hash)).toMatchObject({ loadId: first, rows: 30 })
      expect((await read(ALL_TYPES)).filter((row) => row._source_file_hash === hash)).toHaveLength(30)
    })

    writeModeCases(() => harness)

    // Added with the Postgres destination: two workers can write the same hash at once (a lease that expired
    // while its holder was still loading). Delete-then-insert in two overlapping transactions must not leave
    // both copies. A destination may serialize the writes or refuse one; it must never keep two copies.
    it('writing the same file twice at once leaves exactly one copy of its rows', async () => {
      await destination.prepare(ALL_TYPES)
      const hash = fakeHash('twice')
      const rows: Value[][] = Array.from({ length: 40 }, (_, i) => [`r${String(i).padStart(3, '0')}`, i, null, null, null, null, null, null])
      const outcomes = await Promise.allSettled([1, 2].map(() => destination.write(job({ table: ALL_TYPES, hash, rows, batchSize: 8, delayMs: 10 }))))
      expect(outcomes.some((outcome) => outcome.status === 'fulfilled')).toBe(true)
      const stored = (await read(ALL_TYPES)).filter((row) => row._source_file_hash === hash)
      expect(stored.map((row) => Number(row._source_row_number)).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    })
  })
}
export { testSource, type SourceHarness, type TestSourceOptions } from './source.js'
