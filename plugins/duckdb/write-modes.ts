import { createHash } from 'node:crypto'
import {
  alreadyApplied,
  cdcPlan,
  cdcStageSpec,
  cdcTombstoneTable,
  emptyTruncate,
  LOAD_MARKER_ADDED_COLUMNS,
  LOAD_MARKER_COLUMNS,
  LOAD_MARKER_TABLE,
  markerValues,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  truncateLogTable,
  TRUNCATE_LOG_COLUMNS,
  withLines,
  type CdcDialect,
  type LoadMarker,
  type Logger,
  type RowBatch,
  type SqlStatement,
  type TableColumn,
  type TableSpec,
  type WriteJob,
  type WriteResult,
} from '../../core/index.js'
import type { DuckDBConnectionLike } from './index.js'
import { duckdbType } from './types.js'

/**
 * Truncate and cdc for the DuckDB destination, around its two loaders (the
 * native `read_csv` INSERT and the Appender): each mode says which table the
 * loader fills and with which batches, what runs before it and what after,
 * inside the file's transaction.
 *
 * CDC stages through either loader. The native one does not know lines, so
 * when a check fails on a natively staged file, `after` answers undefined and
 * the file is staged again through filedge's parser, whose stage has the
 * lines for the message (the same fallback the native path uses for every
 * error). No index on the keys: an ART index slows every bulk insert, and the
 * statements join the staged changes to the table by hash join.
 */
export interface ModeWrite {
  readonly target: TableSpec
  readonly batches: AsyncIterable<RowBatch>
  /** A result here means there is nothing to write (a truncate file replaced since it was applied). */
  before(): Promise<WriteResult | undefined>
  /** Undefined: the native stage cannot say where a problem is; stage again with lines. */
  after(rows: number, lines: boolean): Promise<WriteResult | undefined>
}

const q = quoteIdentifier

const dialect: CdcDialect = {
  placeholder: (n) => `$p${n}`,
  deleteMatching: (target, source, keys, condition) => `DELETE FROM ${target} USING ${source} a WHERE ${condition} AND ${keys.map((key) => `${target}.${key} = a.${key}`).join(' AND ')}`,
  createTempAs: (name, select) => `CREATE TEMP TABLE ${name} AS ${select}`,
}

function named(values: readonly unknown[]): Record<string, unknown> {
  return Object.fromEntries(values.map((value, index) => [`p${index + 1}`, typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : value]))
}

async function run(db: DuckDBConnectionLike, statement: SqlStatement): Promise<void> {
  await db.run(statement.sql, named(statement.values))
}
async function first(db: DuckDBConnectionLike, statement: SqlStatement): Promise<Record<string, unknown> | undefined> {
  return (await db.runAndReadAll(statement.sql, named(statement.values))).getRowObjectsJS()[0]
}

function tempName(kind: string, table: string): string {
  return `_filedge_${kind}_${createHash('sha256').update(table).digest('hex').slice(0, 12)}`
}

function definitions(columns: readonly TableColumn[]): string {
  return columns.map((column) => `${q(column.name)} ${duckdbType(column)}${column.required ? ' NOT NULL' : ''}`).join(', ')
}

/** The load log of a truncate table; no key constraints (DuckDB checks them eagerly, and a file's entry is deleted and re-inserted in one transaction). */
export function truncateLogDdl(table: string): string {
  return `CREATE TABLE IF NOT EXISTS ${q(truncateLogTable(table))} (${definitions(TRUNCATE_LOG_COLUMNS)})`
}

/** The load marker table (core/load-marker.ts); no key constraint, as for the load log: a file's marker is deleted and re-inserted in one transaction. */
export function markerDdl(): string[] {
  // A marker table from an earlier filedge gets the columns added since (nullable: its old markers have none).
  const added = LOAD_MARKER_ADDED_COLUMNS.map((column) => `ALTER TABLE ${q(LOAD_MARKER_TABLE)} ADD COLUMN IF NOT EXISTS ${definitions([column])}`)
  return [`CREATE TABLE IF NOT EXISTS ${q(LOAD_MARKER_TABLE)} (${definitions(LOAD_MARKER_COLUMNS)})`, ...added]
}

/** Records this load in the marker table, in the caller's transaction. */
export async function writeMarker(db: DuckDBConnectionLike, job: WriteJob, rows: number): Promise<void> {
  const [pipeline, hash, loadId, table, count, at, code] = markerValues(job, rows)
  await db.run(`DELETE FROM ${q(LOAD_MARKER_TABLE)} WHERE pipeline = $pipeline AND file_hash = $hash`, { pipeline, hash })
  await db.run(
    `INSERT INTO ${q(LOAD_MARKER_TABLE)} (${LOAD_MARKER_COLUMNS.map((column) => q(column.name)).join(', ')}) VALUES ($pipeline, $hash, $load, $table, $rows, CAST($at AS TIMESTAMPTZ), CAST($code AS VARCHAR))`,
    { pipeline, hash, load: loadId, table, rows: BigInt(count), at, code },
  )
}

export async function readMarker(db: DuckDBConnectionLike, pipeline: string, hash: string): Promise<LoadMarker | null> {
  const [row] = (await db.runAndReadAll(`SELECT load_id, rows, code FROM ${q(LOAD_MARKER_TABLE)} WHERE pipeline = $pipeline AND file_hash = $hash`, { pipeline, hash })).getRowObjectsJS()
  return row === undefined ? null : { loadId: String(row.load_id), rows: Number(row.rows), code: row.code === null || row.code === undefined ? null : String(row.code) }
}

export function modeWrite(db: DuckDBConnectionLike, job: WriteJob, logger: Logger | undefined): ModeWrite {
  const mode = job.writeMode
  const table = q(job.table.name)
  switch (mode.kind) {
    case 'append':
      return {
        target: job.table,
        batches: job.batches,
        async before() {
          await db.run(`DELETE FROM ${table} WHERE ${q('_source_file_hash')} = $hash`, { hash: job.file.hash })
          return undefined
        },
        after: async (rows) => ({ rows }),
      }
    case 'truncate': {
      const log = q(truncateLogTable(job.table.name))
      return {
        target: job.table,
        batches: job.batches,
        async before() {
          // This very load already committed (the ledger did not hear of it): applying it again could put back contents a newer file replaced.
          const marker = await readMarker(db, job.pipeline, job.file.hash)
          if (marker !== null && marker.loadId === job.loadId) {
            logger?.warn(alreadyApplied(job, marker.rows))
            return { rows: marker.rows }
          }
          await db.run(`DELETE FROM ${table}`)
          return undefined
        },
        async after(rows) {
          if (rows === 0 && !mode.allowEmpty) throw emptyTruncate(job)
          await db.run(`DELETE FROM ${log} WHERE file_hash = $hash`, { hash: job.file.hash })
          await db.run(
            `INSERT INTO ${log} (applied, file_hash, file_path, rows, ingested_at) SELECT coalesce(max(applied), 0) + 1, $hash, $path, $rows, CAST($at AS TIMESTAMPTZ) FROM ${log}`,
            { hash: job.file.hash, path: job.file.path, rows: BigInt(rows), at: job.ingestedAt },
          )
          return { rows }
        },
      }
    }
    case 'cdc': {
      const stage = cdcStageSpec(tempName('stage', job.table.name), mode)
      const changes = q(tempName('changes', job.table.name))
      const plan = cdcPlan(mode, job.table, { target: table, tombstones: q(cdcTombstoneTable(job.table.name)), stage: q(stage.name), changes }, dialect)
      return {
        target: stage,
        batches: withLines(job.batches),
        async before() {
          const columns = [...stage.columns, ...PROVENANCE_COLUMNS].map((column) => ({ ...column, required: false }))
          await db.run(`CREATE TEMP TABLE ${q(stage.name)} (${definitions(columns)})`)
          return undefined
        },
        async after(rows, lines) {
          const problem = plan.problem({ row: await first(db, plan.rowProblem), duplicate: await first(db, plan.duplicate) }, job.file.path)
          if (problem !== undefined) {
            if (!problem.exact && !lines) return undefined
            throw problem.error
          }
          await run(db, plan.collapse)
          const counts = plan.counts((await first(db, plan.count))!)
          for (const statement of plan.apply) await run(db, statement)
          await db.run(`DROP TABLE ${q(stage.name)}`)
          await db.run(`DROP TABLE ${changes}`)
          if (counts.applied < counts.keys) logger?.info(`${job.file.path}: ${rows} changes to ${counts.keys} keys; applied ${counts.applied} (${counts.deletes} deletes), ${counts.keys - counts.applied} not newer than ${job.table.name}`)
          return { rows }
        },
      }
    }
  }
}
