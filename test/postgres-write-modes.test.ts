import { createHash, randomUUID } from 'node:crypto'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { isFiledgeError, resolveConfig, tableSpec, type ColumnInput, type Destination, type RowBatch, type Value, type WriteJob, type WriteMode } from '../core/index.js'
import { postgres } from '../plugins/postgres/index.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'

/**
 * What only Postgres has to prove about truncate and cdc: several workers
 * writing one table at once (the conformance kit writes one file at a time),
 * a text sequence in a column with a language collation, and its identifier
 * limit for the tables kept beside the table.
 */

const quiet = { debug() {}, info() {}, warn() {}, error() {} }
const hashOf = (seed: string) => createHash('sha256').update(seed).digest('hex')

describePostgres('postgres destination: write modes with several workers', () => {
  let schema: string
  let destinations: Destination[]
  beforeEach(() => {
    schema = freshSchema('filedge_dest')
    destinations = []
  })
  afterEach(async () => {
    for (const destination of destinations) await destination.close?.()
    await dropSchema(schema)
  })

  /** A worker's destination (its own pool) and the pipeline as the runner resolves it. */
  async function worker(table: string, columns: Record<string, ColumnInput>, writeMode: WriteMode) {
    const destination = postgres({ url: PG_URL, schema })
    destinations.push(destination)
    const config = resolveConfig({ pipelines: [{ name: 'p', source: 'in', destination, table, columns, writeMode }] }, { cwd: '/' })
    await destination.open?.({ config, logger: quiet })
    const pipeline = config.pipelines[0]
    const spec = tableSpec(pipeline)
    await destination.prepare(spec, pipeline.writeMode)
    const layout = pipeline.columns.map((column) => column.name)
    return {
      destination,
      job(seed: string, rows: Value[][], delayMs = 0): WriteJob {
        return {
          pipeline: 'p',
          table: spec,
          writeMode: pipeline.writeMode,
          file: { hash: hashOf(seed), path: `incoming/${seed}.csv`, size: 1, version: '0:0', modifiedAt: 0 },
          loadId: randomUUID(),
          ingestedAt: '2026-01-02T03:04:05.678000Z',
          batches: (async function* (): AsyncGenerator<RowBatch> {
            for (let start = 0; start < rows.length; start += 5) {
              if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
              const slice = rows.slice(start, start + 5).map((row) => [...row])
              yield { columns: layout, rows: slice, rowNumbers: slice.map((_, i) => start + i + 1), lines: slice.map((_, i) => start + i + 2) }
            }
          })(),
          signal: new AbortController().signal,
          assertLease: async () => undefined,
        }
      },
    }
  }

  it('two workers writing cdc files on the same keys at once: one row per key, the newest change wins', async () => {
    const columns = { id: 'integer', op: 'string', seq: 'integer', v: 'string' } satisfies Record<string, ColumnInput>
    const mode: WriteMode = { cdc: { keys: ['id'], op: 'op', sequence: 'seq', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }
    const [one, two] = [await worker('t', columns, mode), await worker('t', columns, mode)]
    // Every key is changed by both files; odd keys are newest in file a, even keys in file b.
    const rows = (file: 'a' | 'b'): Value[][] => Array.from({ length: 40 }, (_, id) => [id, 'u', (id % 2 === 1) === (file === 'a') ? 2 : 1, `${file}${id}`])
    await Promise.all([one.destination.write(one.job('a', rows('a'), 5)), two.destination.write(two.job('b', rows('b'), 5))])
    const stored = await pgQuery<{ id: string; v: string }>(`SELECT id, v FROM "${schema}".t ORDER BY id`)
    expect(stored.map((row) => [Number(row.id), row.v])).toEqual(Array.from({ length: 40 }, (_, id) => [id, `${id % 2 === 1 ? 'a' : 'b'}${id}`]))
  })

  it('two workers writing truncate files at once: the table holds exactly one of them', async () => {
    const columns = { id: 'string', n: 'integer' } satisfies Record<string, ColumnInput>
    const [one, two] = [await worker('snap', columns, 'truncate'), await worker('snap', columns, 'truncate')]
    const rows = (file: string, count: number): Value[][] => Array.from({ length: count }, (_, i) => [`${file}${i}`, i])
    await Promise.all([one.destination.write(one.job('a', rows('a', 30), 5)), two.destination.write(two.job('b', rows('b', 20), 5))])
    const stored = await pgQuery<{ id: string }>(`SELECT id FROM "${schema}".snap ORDER BY id`)
    const ids = stored.map((row) => row.id)
    expect([rows('a', 30), rows('b', 20)].map((file) => file.map((row) => row[0]).sort())).toContainEqual(ids)
  })

  it('a text sequence orders by bytes even in a column with a language collation', async () => {
    await pgQuery(`CREATE SCHEMA "${schema}"`)
    // Under und-x-icu, 'a' < 'B'; by bytes, 'B' (0x42) < 'a' (0x61).
    await pgQuery(
      `CREATE TABLE "${schema}".t (id bigint NOT NULL, seq text COLLATE "und-x-icu" NOT NULL, v text, _source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL)`,
    )
    const w = await worker('t', { id: 'integer', op: 'string', seq: 'string', v: 'string' }, { cdc: { keys: ['id'], op: 'op', sequence: 'seq', ops: { update: ['u'] } } })
    await w.destination.write(w.job('f', [[1, 'u', 'a', 'lower'], [1, 'u', 'B', 'upper'], [2, 'u', 'B', 'upper'], [2, 'u', 'a', 'lower']]))
    await w.destination.write(w.job('g', [[1, 'u', 'A', 'older than a']]))
    const stored = await pgQuery<{ id: string; v: string }>(`SELECT id, v FROM "${schema}".t ORDER BY id`)
    expect(stored.map((row) => [Number(row.id), row.v])).toEqual([
      [1, 'lower'],
      [2, 'lower'],
    ])
  })

  it('refuses a cdc table that already holds two rows for one key, and a table name too long for its tombstone table', async () => {
    await pgQuery(`CREATE SCHEMA "${schema}"`)
    await pgQuery(`CREATE TABLE "${schema}".dup (id bigint NOT NULL, op_at bigint NOT NULL, _source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL)`)
    await pgQuery(`INSERT INTO "${schema}".dup VALUES (1, 1, 'h', now(), 1), (1, 2, 'h', now(), 2)`)
    const mode: WriteMode = { cdc: { keys: ['id'], op: 'op', sequence: 'op_at', ops: { insert: ['c'] } } }
    const duplicated = await worker('dup', { id: 'integer', op: 'string', op_at: 'integer' }, mode).catch((error: unknown) => error)
    expect(isFiledgeError(duplicated) && duplicated.code).toBe('SCHEMA_DRIFT')
    expect((duplicated as Error).message).toMatch(/^table filedge_dest_\w+\.dup has several rows for one key \(id\); a cdc table holds one row per key/)

    const long = 'x'.repeat(50)
    const refused = await worker(long, { id: 'integer', op: 'string', op_at: 'integer' }, mode).catch((error: unknown) => error)
    expect(isFiledgeError(refused) && refused.code).toBe('CONFIG_INVALID')
    expect((refused as Error).message).toContain(`keeps "${long}__filedge_deleted" beside table "${long}", longer than Postgres' 63-byte identifier limit; shorten the table name to 46 bytes`)
  })
})
