import { createHash } from 'node:crypto'
import {
  alreadyApplied,
  cdcPlan,
  cdcStageSpec,
  cdcTombstoneTable,
  emptyTruncate,
  LOAD_MARKER_COLUMNS,
  LOAD_MARKER_TABLE,
  markerValues,
  quoteIdentifier,
  truncateLogTable,
  withLines,
  type CdcDialect,
  type LoadMarker,
  type Logger,
  type RowBatch,
  type SqlStatement,
  type TableSpec,
  type WriteJob,
  type WriteResult,
} from '../../core/index.js'
import type { PgClient } from './index.js'

/**
 * Truncate and cdc for the Postgres destination, around its COPY: each mode
 * says which table COPY fills (by its SQL name) and with which batches, what
 * runs before it and what after, inside the file's transaction.
 *
 * Locks. Append files lock (table, hash); files of the other modes depend on
 * each other, so they lock the table (`lockTable`): two workers' truncate
 * files, or cdc files touching the same keys, are applied one after the
 * other. Truncate takes it first thing, before its DELETE, whose snapshot must
 * see the previous file's rows; cdc stages its changes first (workers stage in
 * parallel) and takes it only to collapse and apply. Under READ COMMITTED
 * every statement after the wait sees what the other worker committed.
 *
 * Truncate deletes instead of TRUNCATE: TRUNCATE would hold an ACCESS
 * EXCLUSIVE lock for the whole load, so every reader of the table would wait
 * for it; with DELETE readers see the old contents until COMMIT. Autovacuum
 * reclaims the deleted rows.
 */
export interface ModeWrite {
  /** SQL name of the table COPY fills. */
  readonly into: string
  readonly target: TableSpec
  readonly batches: AsyncIterable<RowBatch>
  /** A result here means there is nothing to write (a truncate file replaced since it was applied). */
  before(): Promise<WriteResult | undefined>
  after(rows: number): Promise<WriteResult>
}

const q = quoteIdentifier

const dialect: CdcDialect = {
  placeholder: (n) => `$${n}`,
  // Text sequences compare by bytes, as on the other destinations, not by the database's collation.
  sequenceOrder: (expression, column) => (column.type === 'string' ? `${expression} COLLATE "C"` : expression),
  deleteMatching: (target, source, keys, condition) => `DELETE FROM ${target} AS t USING ${source} a WHERE ${condition} AND ${keys.map((key) => `t.${key} = a.${key}`).join(' AND ')}`,
  createTempAs: (name, select) => `CREATE TEMP TABLE ${name} ON COMMIT DROP AS ${select}`,
}

const HASH = q('_source_file_hash')

/**
 * The index that finds a file's rows for the DELETE before each load: on
 * `hashtext(_source_file_hash)`, an int4, not on the 64-character text
 * itself. Every row of a COPY inserts one index entry, and a 4-byte key makes
 * that entry cheaper to place, to log and to keep on a page. Measured on the
 * 1M-row benchmark file, the server reading the COPY data from its own disk:
 * the load took about 2 s more with an index on the text than with none,
 * 0.5–1 s more with this one. Two files whose hashes share a hashtext value
 * only cost the DELETE a recheck of the other's rows.
 */
export function fileHashIndexDdl(target: string): string {
  return `CREATE INDEX ON ${target} (hashtext(${HASH}))`
}

/**
 * Deletes one file's rows ($1: its hash). Both conditions, so that either
 * index serves it: this version's on hashtext, or the one on the text itself
 * that tables created by earlier versions have.
 */
export function deleteFileRows(target: string): string {
  return `DELETE FROM ${target} WHERE ${HASH} = $1 AND hashtext(${HASH}) = hashtext($1)`
}

export function tempName(kind: string, table: string): string {
  return `_filedge_${kind}_${createHash('sha256').update(table).digest('hex').slice(0, 12)}`
}

/** Records this load in the marker table (`"schema".filedge_loads`), in the caller's transaction. */
export async function writeMarker(client: PgClient, markers: string, job: WriteJob, rows: number): Promise<void> {
  const names = LOAD_MARKER_COLUMNS.map((column) => q(column.name))
  await client.query(
    `INSERT INTO ${markers} (${names.join(', ')}) VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7)
     ON CONFLICT (${names[0]}, ${names[1]}) DO UPDATE SET ${names
       .slice(2)
       .map((name) => `${name} = excluded.${name}`)
       .join(', ')}`,
    markerValues(job, rows),
  )
}

export async function readMarker(client: PgClient, markers: string, pipeline: string, hash: string): Promise<LoadMarker | null> {
  const { rows } = await client.query(`SELECT load_id, rows, code FROM ${markers} WHERE pipeline = $1 AND file_hash = $2`, [pipeline, hash])
  return rows.length === 0 ? null : { loadId: String(rows[0].load_id), rows: Number(rows[0].rows), code: (rows[0].code as string | null) ?? null }
}

async function first(client: PgClient, statement: SqlStatement): Promise<Record<string, unknown> | undefined> {
  return (await client.query(statement.sql, statement.values)).rows[0]
}

export interface PostgresModeContext {
  readonly client: PgClient
  /** `"schema"."table"` */
  qualified(table: string): string
  /** Waits for the table's advisory lock, held until the transaction ends (index.ts: how long, and what then). */
  lockTable(target: string): Promise<void>
  /** CREATE TEMP TABLE … for a spec (its columns and the provenance columns, all nullable). */
  stageDdl(spec: TableSpec): string
  /** The load marker table, schema-qualified. */
  readonly markers: string
  logger: Logger | undefined
}

export function modeWrite(context: PostgresModeContext, job: WriteJob): ModeWrite {
  const { client } = context
  const mode = job.writeMode
  const target = context.qualified(job.table.name)
  switch (mode.kind) {
    case 'append':
      return {
        into: target,
        target: job.table,
        batches: job.batches,
        async before() {
          await client.query(deleteFileRows(target), [job.file.hash])
          return undefined
        },
        after: async (rows) => ({ rows }),
      }
    case 'truncate': {
      const log = context.qualified(truncateLogTable(job.table.name))
      return {
        into: target,
        target: job.table,
        batches: job.batches,
        async before() {
          await context.lockTable(target)
          // This very load already committed (the ledger did not hear of it): applying it again could put back contents a newer file replaced.
          const marker = await readMarker(client, context.markers, job.pipeline, job.file.hash)
          if (marker !== null && marker.loadId === job.loadId) {
            context.logger?.warn(alreadyApplied(job, marker.rows))
            return { rows: marker.rows }
          }
          await client.query(`DELETE FROM ${target}`)
          return undefined
        },
        async after(rows) {
          if (rows === 0 && !mode.allowEmpty) throw emptyTruncate(job)
          await client.query(`DELETE FROM ${log} WHERE file_hash = $1`, [job.file.hash])
          await client.query(
            `INSERT INTO ${log} (applied, file_hash, file_path, rows, ingested_at) SELECT coalesce(max(applied), 0) + 1, $1, $2, $3, $4::timestamptz FROM ${log}`,
            [job.file.hash, job.file.path, rows, job.ingestedAt],
          )
          return { rows }
        },
      }
    }
    case 'cdc': {
      const stage = cdcStageSpec(tempName('stage', target), mode)
      const changes = q(tempName('changes', target))
      const plan = cdcPlan(mode, job.table, { target, tombstones: context.qualified(cdcTombstoneTable(job.table.name)), stage: q(stage.name), changes }, dialect)
      return {
        into: q(stage.name),
        target: stage,
        batches: withLines(job.batches),
        async before() {
          await client.query(context.stageDdl(stage))
          return undefined
        },
        async after(rows) {
          // A temporary table has no statistics until analyzed; the planner needs them to choose between index lookups and a hash join.
          await client.query(`ANALYZE ${q(stage.name)}`)
          const problem = plan.problem({ row: await first(client, plan.rowProblem), duplicate: await first(client, plan.duplicate) }, job.file.path)
          if (problem !== undefined) throw problem.error
          await context.lockTable(target)
          await client.query(plan.collapse.sql, plan.collapse.values)
          const counts = plan.counts((await first(client, plan.count))!)
          for (const statement of plan.apply) await client.query(statement.sql, statement.values)
          if (counts.applied < counts.keys) {
            context.logger?.info(`${job.file.path}: ${rows} changes to ${counts.keys} keys; applied ${counts.applied} (${counts.deletes} deletes), ${counts.keys - counts.applied} not newer than ${job.table.name}`)
          }
          return { rows }
        },
      }
    }
  }
}
