import { createHash, randomUUID } from 'node:crypto'
import { expect, it, type TestContext } from 'vitest'
import {
  cdcTombstoneTable,
  claimLost,
  isFiledgeError,
  resolveConfig,
  rowInvalid,
  tableSpec,
  truncateLogTable,
  WRITE_MODES,
  type ColumnInput,
  type Destination,
  type ResolvedWriteMode,
  type RowBatch,
  type TableSpec,
  type Value,
  type WriteJob,
  type WriteMode,
  type WriteModeName,
} from '../../core/index.js'

/**
 * Write-mode cases of the conformance kit. Each one runs only when the
 * destination declares the mode in `capabilities.writeModes` (and is
 * reported as skipped otherwise). Jobs are built by hand, as the runner would
 * build them, so a destination is checked without a CLI or a ledger.
 */

export interface WriteModeHarness {
  readonly destination: Destination
  rows(table: string): Promise<Record<string, unknown>[]>
}

const INGESTED_AT = '2026-01-02T03:04:05.678000Z'

function hashOf(seed: string): string {
  return createHash('sha256').update(seed).digest('hex')
}

interface FileSpec {
  readonly seed: string
  readonly rows: Value[][]
  readonly batchSize?: number
  /** Throw this error once `row` rows were handed over. */
  readonly failAt?: { row: number; error: Error }
  readonly leaseLost?: boolean
  readonly ingestedAt?: string
  /** The load this write is (a retry of one load carries the same id). Default: a new load. */
  readonly loadId?: string
}

/** A pipeline as the runner resolves it, for the destination under test. */
function pipelineFor(destination: Destination, table: string, columns: Record<string, ColumnInput>, writeMode: WriteMode) {
  const config = resolveConfig({ pipelines: [{ name: 'conformance', source: 'in', destination, table, columns, writeMode }] }, { cwd: '/' })
  const pipeline = config.pipelines[0]
  const layout = pipeline.columns.map((column) => column.name)
  return { table: tableSpec(pipeline), writeMode: pipeline.writeMode, layout }
}

function jobOf(pipeline: { table: TableSpec; writeMode: ResolvedWriteMode; layout: readonly string[] }, file: FileSpec): WriteJob {
  const hash = hashOf(file.seed)
  const path = `incoming/${file.seed}.csv`
  const size = file.batchSize ?? 2
  const columns = pipeline.layout
  // Rows are copied: a destination may extend them in place (cdc staging adds the line).
  const rows = file.rows.map((row) => [...row])
  const batches: AsyncIterable<RowBatch> = (async function* () {
    for (let start = 0; start < rows.length; start += size) {
      const slice = rows.slice(start, start + size)
      if (file.failAt !== undefined && file.failAt.row < start + slice.length) {
        const head = slice.slice(0, Math.max(0, file.failAt.row - start))
        if (head.length > 0) yield { columns, rows: head, rowNumbers: head.map((_, i) => start + i + 1), lines: head.map((_, i) => start + i + 2) }
        throw file.failAt.error
      }
      // Line = record number + 1, as a CSV file with a header reports it.
      yield { columns, rows: slice, rowNumbers: slice.map((_, i) => start + i + 1), lines: slice.map((_, i) => start + i + 2) }
    }
  })()
  return {
    pipeline: 'conformance',
    table: pipeline.table,
    writeMode: pipeline.writeMode,
    file: { hash, path, size: 1, version: '0:0', modifiedAt: 0 },
    loadId: file.loadId ?? randomUUID(),
    ingestedAt: file.ingestedAt ?? INGESTED_AT,
    batches,
    signal: new AbortController().signal,
    async assertLease() {
      if (file.leaseLost) throw claimLost(path, 'conformance: lease taken over')
    },
  }
}

const text = (value: unknown) => (value === null || value === undefined ? null : typeof value === 'object' && !(value instanceof Date) ? JSON.stringify(value) : String(value))
const int = (value: unknown) => (value === null || value === undefined ? null : Number(value))
const instant = (value: unknown) => (value === null || value === undefined ? null : value instanceof Date ? value.getTime() : Date.parse(String(value)))

async function expectError(promise: Promise<unknown>, code: string, message?: RegExp): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(isFiledgeError(error), `expected a FiledgeError ${code}, got ${String(error)}`).toBe(true)
  expect((error as { code: string }).code).toBe(code)
  if (message !== undefined) expect((error as Error).message).toMatch(message)
  return error as Error
}

export function writeModeCases(current: () => WriteModeHarness): void {
  const declared = (context: TestContext, mode: WriteModeName) => {
    const destination = current().destination
    if (!destination.capabilities.writeModes.includes(mode)) {
      context.skip(`destination "${destination.name}" does not declare the ${mode} write mode (capabilities.writeModes: ${destination.capabilities.writeModes.join(', ')})`)
    }
  }

  const markers = (context: TestContext) => {
    const destination = current().destination
    if (destination.hasLoaded === undefined) context.skip(`destination "${destination.name}" keeps no load markers (no hasLoaded)`)
  }

  it('declares its write modes, append among them', () => {
    const modes = current().destination.capabilities.writeModes
    expect(modes).toContain('append')
    for (const mode of modes) expect(WRITE_MODES).toContain(mode)
  })

  // ---------------------------------------------------------------- truncate

  const SNAPSHOT = { id: { type: 'string', required: true }, n: 'integer' } satisfies Record<string, ColumnInput>
  const snapshot = (writeMode: WriteMode = 'truncate') => {
    const { destination } = current()
    return pipelineFor(destination, 'conformance_snapshot', SNAPSHOT, writeMode)
  }
  const snapshotRows = async () =>
    (await current().rows('conformance_snapshot'))
      .map((row) => ({ id: text(row.id), n: int(row.n), hash: text(row._source_file_hash), row: int(row._source_row_number) }))
      .sort((a, b) => String(a.id).localeCompare(String(b.id)))
  const A = { seed: 'snapshot-a', rows: [['a1', 1], ['a2', 2], ['a3', 3]] as Value[][] }
  const B = { seed: 'snapshot-b', rows: [['b1', 10], ['b2', null]] as Value[][] }
  const contentsOf = (file: { seed: string; rows: Value[][] }) => file.rows.map((row, i) => ({ id: row[0], n: row[1], hash: hashOf(file.seed), row: i + 1 }))

  it('truncate: a file replaces the table, with its own provenance', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    expect(await current().destination.write(jobOf(pipeline, A))).toEqual({ rows: 3 })
    expect(await snapshotRows()).toEqual(contentsOf(A))
    expect(await current().destination.write(jobOf(pipeline, B))).toEqual({ rows: 2 })
    expect(await snapshotRows()).toEqual(contentsOf(B))
  })

  it('truncate: prepare is repeatable', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
  })

  it('truncate: an empty file fails and leaves the table as it was, unless allowEmpty', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.write(jobOf(pipeline, A))
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'empty', rows: [] })), 'FILE_INVALID', /incoming\/empty\.csv: no rows.*allowEmpty: true/)
    expect(await snapshotRows()).toEqual(contentsOf(A))

    const allowing = snapshot({ truncate: { allowEmpty: true } })
    await current().destination.prepare(allowing.table, allowing.writeMode)
    expect(await current().destination.write(jobOf(allowing, { seed: 'empty', rows: [] }))).toEqual({ rows: 0 })
    expect(await snapshotRows()).toEqual([])
  })

  it('truncate: a stream that fails midway, or a lost lease, leaves the previous contents', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.write(jobOf(pipeline, A))
    const many: Value[][] = Array.from({ length: 40 }, (_, i) => [`m${i}`, i])
    const boom = new Error('conformance: the source broke')
    await expect(current().destination.write(jobOf(pipeline, { seed: 'broken', rows: many, batchSize: 7, failAt: { row: 30, error: boom } }))).rejects.toBe(boom)
    expect(await snapshotRows()).toEqual(contentsOf(A))
    const bad = rowInvalid('incoming/bad.csv', 5, 'n', 'x', 'cannot coerce "x" to integer')
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'bad', rows: many, batchSize: 3, failAt: { row: 4, error: bad } })), 'ROW_INVALID')
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'lost', rows: many, leaseLost: true })), 'CLAIM_LOST')
    expect(await snapshotRows()).toEqual(contentsOf(A))
  })

  it('truncate: the same file twice gives the same table', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.write(jobOf(pipeline, A))
    await current().destination.write(jobOf(pipeline, A))
    expect(await snapshotRows()).toEqual(contentsOf(A))
  })

  // The crash this guards against: a worker commits file A and dies before the ledger hears of it; B is
  // applied; A's lease expires and another worker reclaims it, with the same load. Applying A again would
  // bring old contents back.
  it('truncate: a load applied before and replaced since is not applied again', async (context) => {
    declared(context, 'truncate')
    markers(context)
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    const load = randomUUID()
    await current().destination.write(jobOf(pipeline, { ...A, loadId: load }))
    await current().destination.write(jobOf(pipeline, B))
    expect(await current().destination.write(jobOf(pipeline, { ...A, loadId: load }))).toEqual({ rows: 3 })
    expect(await snapshotRows()).toEqual(contentsOf(B))
    const log = (await current().rows(truncateLogTable('conformance_snapshot')))
      .map((row) => ({ applied: int(row.applied), hash: text(row.file_hash), path: text(row.file_path), rows: int(row.rows), at: instant(row.ingested_at) }))
      .sort((a, b) => a.applied! - b.applied!)
    expect(log).toEqual([
      { applied: 1, hash: hashOf(A.seed), path: 'incoming/snapshot-a.csv', rows: 3, at: Date.parse(INGESTED_AT) },
      { applied: 2, hash: hashOf(B.seed), path: 'incoming/snapshot-b.csv', rows: 2, at: Date.parse(INGESTED_AT) },
    ])
    const marker = await current().destination.hasLoaded!({ pipeline: 'conformance', table: pipeline.table, writeMode: pipeline.writeMode, hash: hashOf(A.seed) })
    expect(marker).toMatchObject({ loadId: load, rows: 3 })
    expect(marker?.note).toMatch(/incoming\/snapshot-a\.csv was applied to conformance_snapshot \(load 1, 3 rows\) and incoming\/snapshot-b\.csv \(load 2\) has replaced it since/)
  })

  // Issue 14: snapshots A, B, then A again (the same bytes as the first): the newest arrival must win.
  it('truncate: A, B, then A again as a new load: the table holds A', async (context) => {
    declared(context, 'truncate')
    const pipeline = snapshot()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.write(jobOf(pipeline, A))
    await current().destination.write(jobOf(pipeline, B))
    expect(await current().destination.write(jobOf(pipeline, A))).toEqual({ rows: 3 })
    expect(await snapshotRows()).toEqual(contentsOf(A))
    const log = (await current().rows(truncateLogTable('conformance_snapshot'))).map((row) => [int(row.applied), text(row.file_hash)]).sort((a, b) => a[0]! as number - (b[0]! as number))
    expect(log).toEqual([
      [2, hashOf(B.seed)],
      [3, hashOf(A.seed)],
    ])
  })

  // --------------------------------------------------------------------- cdc

  const OPS = { insert: ['c', 'i'], update: ['u'], delete: ['d'] }
  const CUSTOMERS = {
    customer_id: 'integer',
    op: 'string',
    updated_at: 'timestamp',
    name: { type: 'string', required: true },
    tier: 'integer',
  } satisfies Record<string, ColumnInput>
  const customers = () => pipelineFor(current().destination, 'conformance_customers', CUSTOMERS, { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: OPS } })
  const at = (hour: number, minute = 0) => `2024-05-01T${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}:00.000000Z`
  const customerRows = async () =>
    (await current().rows('conformance_customers'))
      .map((row) => ({ id: int(row.customer_id), at: instant(row.updated_at), name: text(row.name), tier: int(row.tier), hash: text(row._source_file_hash), row: int(row._source_row_number) }))
      .sort((a, b) => a.id! - b.id!)
  const tombstones = async () =>
    (await current().rows(cdcTombstoneTable('conformance_customers')))
      .map((row) => ({ id: int(row.customer_id), at: instant(row.updated_at), hash: text(row._source_file_hash), row: int(row._source_row_number) }))
      .sort((a, b) => a.id! - b.id!)
  const prepared = async () => {
    const pipeline = customers()
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    return pipeline
  }

  it('cdc: the table has the change columns but not the op column', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    expect(pipeline.table.columns.map((column) => column.name)).toEqual(['customer_id', 'updated_at', 'name', 'tier'])
    await current().destination.write(jobOf(pipeline, { seed: 'one', rows: [[1, 'c', at(10), 'Ann', 1]] }))
    const [row] = await current().rows('conformance_customers')
    expect(Object.keys(row).sort()).toEqual(['_ingested_at', '_source_file_hash', '_source_row_number', 'customer_id', 'name', 'tier', 'updated_at'])
  })

  it('cdc: insert → update → delete of one key in one file leaves no row and a tombstone; other keys get their last version', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    const rows: Value[][] = [
      [1, 'c', at(10), 'Ann', 1],
      [2, 'i', at(10), 'Bob', 1],
      [1, 'u', at(11), 'Ann B.', 2],
      [2, 'u', at(12), 'Bob B.', 2],
      [1, 'd', at(12), null, null],
      [3, 'u', at(9), 'Cy', 3],
    ]
    expect(await current().destination.write(jobOf(pipeline, { seed: 'changes', rows }))).toEqual({ rows: 6 })
    const hash = hashOf('changes')
    // Provenance names the change that produced the current version: file and record.
    expect(await customerRows()).toEqual([
      { id: 2, at: Date.parse(at(12)), name: 'Bob B.', tier: 2, hash, row: 4 },
      { id: 3, at: Date.parse(at(9)), name: 'Cy', tier: 3, hash, row: 6 },
    ])
    expect(await tombstones()).toEqual([{ id: 1, at: Date.parse(at(12)), hash, row: 5 }])
  })

  it('cdc: collapses by sequence, not by position in the file', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    await current().destination.write(
      jobOf(pipeline, {
        seed: 'unordered',
        rows: [
          [1, 'u', at(12), 'latest', 3],
          [1, 'c', at(10), 'first', 1],
          [1, 'u', at(11), 'middle', 2],
          [2, 'd', at(8), null, null],
          [2, 'c', at(7), 'gone', 1],
        ],
      }),
    )
    expect(await customerRows()).toEqual([{ id: 1, at: Date.parse(at(12)), name: 'latest', tier: 3, hash: hashOf('unordered'), row: 1 }])
    expect((await tombstones()).map((row) => row.id)).toEqual([2])
  })

  it('cdc: applying the same file twice gives the same table', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    const file = { seed: 'twice', rows: [[1, 'c', at(10), 'Ann', 1], [2, 'c', at(10), 'Bob', 1], [2, 'd', at(11), null, null], [3, 'u', at(10), 'Cy', null]] as Value[][] }
    // Everything as stored, _ingested_at included: the second application changes nothing at all.
    const stored = async () => ({
      rows: (await current().rows('conformance_customers')).sort((a, b) => int(a.customer_id)! - int(b.customer_id)!),
      tombstones: await current().rows(cdcTombstoneTable('conformance_customers')),
    })
    await current().destination.write(jobOf(pipeline, file))
    const once = await stored()
    expect(once.rows).toHaveLength(2)
    expect(await current().destination.write(jobOf(pipeline, { ...file, ingestedAt: '2026-02-03T00:00:00.000000Z' }))).toEqual({ rows: 4 })
    expect(await stored()).toEqual(once)
  })

  it('cdc: an older file arriving after a newer one overwrites nothing and resurrects nothing', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    const newer = {
      seed: 'newer',
      rows: [
        [1, 'u', at(20), 'new', 2],
        [2, 'd', at(20), null, null],
        [4, 'c', at(20), 'kept', 1],
      ] as Value[][],
    }
    const older = {
      seed: 'older',
      rows: [
        [1, 'u', at(10), 'old', 1],
        [2, 'c', at(10), 'zombie', 1],
        [4, 'd', at(10), null, null],
        [5, 'c', at(10), 'fresh', 1],
        [1, 'u', at(20), 'same sequence as applied', 9],
      ] as Value[][],
    }
    await current().destination.write(jobOf(pipeline, newer))
    // The last change for key 1 in the older file has the sequence the table holds: not newer, so skipped.
    expect(await current().destination.write(jobOf(pipeline, older))).toEqual({ rows: 5 })
    expect(await customerRows()).toEqual([
      { id: 1, at: Date.parse(at(20)), name: 'new', tier: 2, hash: hashOf('newer'), row: 1 },
      { id: 4, at: Date.parse(at(20)), name: 'kept', tier: 1, hash: hashOf('newer'), row: 3 },
      { id: 5, at: Date.parse(at(10)), name: 'fresh', tier: 1, hash: hashOf('older'), row: 4 },
    ])
    expect(await tombstones()).toEqual([{ id: 2, at: Date.parse(at(20)), hash: hashOf('newer'), row: 2 }])
    // A newer insert brings a deleted key back, and clears its tombstone.
    await current().destination.write(jobOf(pipeline, { seed: 'back', rows: [[2, 'i', at(21), 'back', 1]] }))
    expect((await customerRows()).map((row) => [row.id, row.name])).toEqual([[1, 'new'], [2, 'back'], [4, 'kept'], [5, 'fresh']])
    expect(await tombstones()).toEqual([])
  })

  it('cdc: two changes of one key with one sequence fail the file, naming both lines; nothing is applied', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    await current().destination.write(jobOf(pipeline, { seed: 'base', rows: [[9, 'c', at(1), 'base', 1]] }))
    const rows: Value[][] = [
      [1, 'c', at(10), 'Ann', 1],
      [2, 'c', at(10), 'Bob', 1],
      [9, 'd', at(5), null, null],
      [2, 'u', at(11), 'Bob B.', 1],
      [1, 'u', at(10), 'Ann again', 2],
      [3, 'x', at(10), 'Cy', 1],
    ]
    // Record 5 is line 6; record 1 is line 2. The unknown op after it is a later problem.
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'dup', rows })), 'ROW_INVALID', /^incoming\/dup\.csv:6 column updated_at: same updated_at .* as line 2 for key customer_id=/)
    expect((await customerRows()).map((row) => row.id)).toEqual([9])
    expect(await tombstones()).toEqual([])
  })

  it('cdc: an unknown op value fails the file naming its line; nothing is applied', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    const rows: Value[][] = [
      [1, 'c', at(10), 'Ann', 1],
      [2, 'C', at(10), 'Bob', 1],
      // A later problem: the first one is reported.
      [1, 'u', at(10), 'Ann again', 1],
    ]
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'op', rows })), 'ROW_INVALID', /^incoming\/op\.csv:3 column op: unknown op "C"; expected one of "c" \(insert\), "i" \(insert\), "u" \(update\), "d" \(delete\)/)
    expect(await customerRows()).toEqual([])
  })

  // Coercion refuses a missing key first (keys are required); a transform could still produce one.
  it('cdc: a change without its key fails the file naming line and column', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    const rows: Value[][] = [
      [1, 'c', at(10), 'Ann', 1],
      [null, 'c', at(10), 'Nobody', 1],
    ]
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'nokey', rows })), 'ROW_INVALID', /^incoming\/nokey\.csv:3 column customer_id: required value is missing/)
    expect(await customerRows()).toEqual([])
  })

  it('cdc: an insert or update must carry the required columns; a delete need not', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    await expectError(
      current().destination.write(jobOf(pipeline, { seed: 'noname', rows: [[1, 'd', at(9), null, null], [2, 'u', at(10), null, 1]] })),
      'ROW_INVALID',
      /^incoming\/noname\.csv:3 column name: required value is missing \(an update carries the whole row/,
    )
    expect(await current().destination.write(jobOf(pipeline, { seed: 'delete-only', rows: [[1, 'd', at(9), null, null]] }))).toEqual({ rows: 1 })
    expect((await tombstones()).map((row) => row.id)).toEqual([1])
  })

  it('cdc: a stream that fails midway, or a lost lease, applies nothing', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    await current().destination.write(jobOf(pipeline, { seed: 'base', rows: [[1, 'c', at(1), 'base', 1], [2, 'c', at(1), 'base', 1]] }))
    const before = await customerRows()
    const many: Value[][] = Array.from({ length: 40 }, (_, i) => [i % 5, i % 3 === 0 ? 'd' : 'u', at(2, i), `v${i}`, i])
    const boom = new Error('conformance: the source broke')
    await expect(current().destination.write(jobOf(pipeline, { seed: 'broken', rows: many, batchSize: 7, failAt: { row: 30, error: boom } }))).rejects.toBe(boom)
    await expectError(current().destination.write(jobOf(pipeline, { seed: 'lost', rows: many, leaseLost: true })), 'CLAIM_LOST')
    expect(await customerRows()).toEqual(before)
    expect(await tombstones()).toEqual([])
  })

  it('cdc: an empty change file changes nothing', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    await current().destination.write(jobOf(pipeline, { seed: 'base', rows: [[1, 'c', at(1), 'base', 1]] }))
    expect(await current().destination.write(jobOf(pipeline, { seed: 'nothing', rows: [] }))).toEqual({ rows: 0 })
    expect((await customerRows()).map((row) => row.name)).toEqual(['base'])
  })

  it('cdc: composite keys', async (context) => {
    declared(context, 'cdc')
    const pipeline = pipelineFor(current().destination, 'conformance_stock', { region: 'string', sku: 'string', op: 'string', version: 'integer', qty: 'integer' }, {
      cdc: { keys: ['region', 'sku'], op: 'op', sequence: 'version', ops: OPS },
    })
    await current().destination.prepare(pipeline.table, pipeline.writeMode)
    await current().destination.write(
      jobOf(pipeline, {
        seed: 'stock',
        rows: [
          ['eu', 'a', 'c', 1, 10],
          ['us', 'a', 'c', 1, 20],
          ['eu', 'b', 'c', 1, 30],
          ['eu', 'a', 'u', 2, 11],
          ['us', 'a', 'd', 2, null],
        ] as Value[][],
      }),
    )
    const stock = (await current().rows('conformance_stock')).map((row) => [text(row.region), text(row.sku), int(row.qty)]).sort((a, b) => String(a).localeCompare(String(b)))
    expect(stock).toEqual([
      ['eu', 'a', 11],
      ['eu', 'b', 30],
    ])
    const error = await expectError(
      current().destination.write(jobOf(pipeline, { seed: 'stock-dup', rows: [['eu', 'b', 'u', 7, 1], ['eu', 'b', 'u', 7, 2]] })),
      'ROW_INVALID',
      /:3 column version: same version "7" as line 2 for key region="eu", sku="b"/,
    )
    expect(error.message).toContain('incoming/stock-dup.csv')
  })

  /** One key per case: the changes in file order, and the value the table must end with. */
  const orderCases: Record<string, { type: ColumnInput; changes: [Value, string][]; last: string }[]> = {
    integer: [
      { type: 'integer', changes: [[9, 'nine'], [10, 'ten']], last: 'ten' },
      { type: 'integer', changes: [[-9, 'minus nine'], [-10, 'minus ten']], last: 'minus nine' },
      { type: 'integer', changes: [[2n ** 60n + 1n, 'big+1'], [2n ** 60n, 'big']], last: 'big+1' },
    ],
    decimal: [
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['9.50', 'a'], ['10.25', 'b']], last: 'b' },
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['-10.50', 'a'], ['-9.25', 'b']], last: 'b' },
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['0.00', 'a'], ['-0.50', 'b']], last: 'a' },
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['100.00', 'a'], ['99.99', 'b']], last: 'a' },
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['-100.00', 'a'], ['-99.99', 'b']], last: 'b' },
      { type: { type: 'decimal', precision: 12, scale: 2 }, changes: [['0.10', 'a'], ['0.09', 'b']], last: 'a' },
    ],
    float: [
      { type: 'float', changes: [[9.5, 'a'], [10.25, 'b']], last: 'b' },
      { type: 'float', changes: [[-1e-7, 'a'], [-2e-7, 'b']], last: 'a' },
    ],
    timestamp: [
      { type: 'timestamp', changes: [['2024-05-01T09:00:00.000001Z', 'a'], ['2024-05-01T09:00:00.000000Z', 'b']], last: 'a' },
      { type: 'timestamp', changes: [['0999-12-31T23:59:59.000000Z', 'a'], ['1000-01-01T00:00:00.000000Z', 'b']], last: 'b' },
    ],
    date: [{ type: 'date', changes: [['2024-12-31', 'a'], ['2024-02-01', 'b']], last: 'a' }],
    // Byte order, the same on every destination (a language collation would put "B" after "a").
    string: [
      { type: 'string', changes: [['a', 'lower'], ['B', 'upper']], last: 'lower' },
      { type: 'string', changes: [['2024-05-01#10', 'ten'], ['2024-05-01#9', 'nine']], last: 'nine' },
    ],
  }

  for (const [type, cases] of Object.entries(orderCases)) {
    it(`cdc: a ${type} sequence orders changes by its type, within a file and across files`, async (context) => {
      declared(context, 'cdc')
      const pipeline = pipelineFor(current().destination, `conformance_seq_${type}`, { k: 'integer', op: 'string', seq: cases[0].type, v: 'string' }, { cdc: { keys: ['k'], op: 'op', sequence: 'seq', ops: OPS } })
      await current().destination.prepare(pipeline.table, pipeline.writeMode)
      const values = async () => new Map((await current().rows(pipeline.table.name)).map((row) => [int(row.k), text(row.v)]))
      // Within one file.
      await current().destination.write(jobOf(pipeline, { seed: `${type}-within`, rows: cases.flatMap((c, k) => c.changes.map(([seq, v]) => [k, 'u', seq, v])) }))
      expect(await values()).toEqual(new Map(cases.map((c, k) => [k, c.last])))
      // Across files: each change alone, in file order, into keys of their own.
      const offset = cases.length
      for (const [index, { changes }] of cases.entries()) {
        for (const [n, [seq, v]] of changes.entries()) {
          await current().destination.write(jobOf(pipeline, { seed: `${type}-${index}-${n}`, rows: [[offset + index, 'u', seq, v]] }))
        }
      }
      const table = await values()
      expect(cases.map((_, index) => table.get(offset + index))).toEqual(cases.map((c) => c.last))
    })
  }

  it('cdc: files applied in any order end in the same table, the last change per key by sequence', async (context) => {
    declared(context, 'cdc')
    const pipeline = await prepared()
    // Deterministic changes: 600 over 60 keys in three files; each key's sequences are distinct across files.
    let seed = 42
    // mulberry32: small, and exact in JavaScript numbers (a multiplicative LCG in doubles loses bits and cycles early).
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
    const files: Value[][][] = [[], [], []]
    const all: { key: number; seq: number; op: string; name: string; file: number; row: number }[] = []
    const used = new Set<string>()
    for (let i = 0; i < 600; i++) {
      const key = Math.floor(random() * 60)
      let minute = Math.floor(random() * 600)
      while (used.has(`${key}/${minute}`)) minute = (minute + 1) % 600
      used.add(`${key}/${minute}`)
      const op = ['c', 'u', 'u', 'd'][Math.floor(random() * 4)]
      const file = Math.floor(random() * 3)
      const name = `k${key}@${minute}`
      files[file].push([key, op, at(Math.floor(minute / 60), minute % 60), op === 'd' ? null : name, minute])
      all.push({ key, seq: minute, op, name, file, row: files[file].length })
    }
    for (const index of [2, 0, 1]) await current().destination.write(jobOf(pipeline, { seed: `random-${index}`, rows: files[index], batchSize: 37 }))
    const last = new Map<number, (typeof all)[number]>()
    for (const change of all) if ((last.get(change.key)?.seq ?? -1) < change.seq) last.set(change.key, change)
    const expected = [...last.values()]
      .filter((change) => change.op !== 'd')
      .map((change) => ({ id: change.key, at: Date.parse(at(Math.floor(change.seq / 60), change.seq % 60)), name: change.name, tier: change.seq, hash: hashOf(`random-${change.file}`), row: change.row }))
      .sort((a, b) => a.id - b.id)
    expect(await customerRows()).toEqual(expected)
    expect((await tombstones()).map((row) => row.id)).toEqual([...last.values()].filter((change) => change.op === 'd').map((change) => change.key).sort((a, b) => a - b))
  })
}
