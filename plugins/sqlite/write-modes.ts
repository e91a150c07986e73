import { createHash } from 'node:crypto'
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3'
import {
  alreadyApplied,
  cdcPlan,
  cdcStageSpec,
  cdcTombstoneTable,
  emptyTruncate,
  FiledgeError,
  LOAD_MARKER_COLUMNS,
  LOAD_MARKER_TABLE,
  markerValues,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  truncateLogTable,
  TRUNCATE_LOG_COLUMNS,
  withLines,
  type CdcDialect,
  type ColumnType,
  type LoadMarker,
  type Logger,
  type ResolvedCdc,
  type RowBatch,
  type SqlStatement,
  type TableColumn,
  type TableSpec,
  type WriteJob,
  type WriteResult,
} from '../../core/index.js'
import type { Inserter } from './insert.js'

/**
 * Truncate and cdc for the SQLite destination. Each runs in a transaction of
 * its own (never grouped with other files: their files apply one at a time,
 * in order) around a plain insert loop: the mode says which table the loop
 * fills and with which batches, what runs before it and what after it. The
 * append path in index.ts keeps its own loop, tuned for throughput; this one
 * shares its prepared INSERT statements.
 */
interface ModeWrite {
  readonly target: TableSpec
  readonly batches: AsyncIterable<RowBatch>
  /** A result here means there is nothing to write (a truncate file replaced since it was applied). */
  before(): WriteResult | undefined
  after(rows: number): Promise<WriteResult>
}

/**
 * better-sqlite3 runs each statement synchronously. Between the cdc
 * statements the event loop gets a turn, so the lease heartbeat runs; the
 * longest single statement, the collapse, took 15 s for 5M changes.
 */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

type ColumnTypes = Record<ColumnType, string>

const q = quoteIdentifier

/**
 * A decimal sequence as text that sorts like the number. SQLite stores
 * decimals as exact text ("129.90", at the column's scale, no leading zeros),
 * which sorts "10.00" before "9.00". The key is a length letter and the
 * digits; for a negative number, '-' (below every letter), a reversed length
 * letter and the digits mapped 0→j … 9→a, so larger magnitudes sort lower.
 */
function decimalOrder(value: string): string {
  const magnitude = `ltrim(${value}, '-')`
  const integerDigits = `(CASE WHEN instr(${magnitude}, '.') > 0 THEN instr(${magnitude}, '.') - 1 ELSE length(${magnitude}) END)`
  const digits = `replace(${magnitude}, '.', '')`
  let reversed = digits
  for (let digit = 0; digit <= 9; digit++) reversed = `replace(${reversed}, '${digit}', '${String.fromCharCode(106 - digit)}')`
  return `(CASE WHEN substr(${value}, 1, 1) = '-' THEN '-' || char(100 - ${integerDigits}) || ${reversed} ELSE char(64 + ${integerDigits}) || ${digits} END)`
}

const dialect: CdcDialect = {
  placeholder: () => '?',
  sequenceOrder: (expression, column) => (column.type === 'decimal' ? decimalOrder(expression) : expression),
  // Row values against the target's unique key index: SQLite looks each key up instead of scanning the table.
  deleteMatching: (target, source, keys, condition) =>
    `DELETE FROM ${target} WHERE (${keys.join(', ')}) IN (SELECT ${keys.map((key) => `a.${key}`).join(', ')} FROM ${source} a WHERE ${condition})`,
  createTempAs: (name, select) => `CREATE TEMP TABLE ${name} AS ${select}`,
}

/** Temporary tables are per connection; a name per target keeps two cdc tables' statements apart in the statement cache. */
function tempName(kind: string, table: string): string {
  return `_filedge_${kind}_${createHash('sha256').update(table).digest('hex').slice(0, 12)}`
}

export function keyIndexName(table: string): string {
  return `${table}__filedge_keys`
}

export function definitions(columns: readonly TableColumn[], types: ColumnTypes): string {
  return columns.map((column) => `${q(column.name)} ${types[column.type]}${column.required ? ' NOT NULL' : ''}`).join(', ')
}

/** DDL a write mode needs beside the table, each statement idempotent (IF NOT EXISTS), and the objects it creates. */
export function sideObjects(table: TableSpec, mode: ResolvedCdc | { kind: 'truncate' }, types: ColumnTypes): { names: string[]; ddl: string[] } {
  if (mode.kind === 'truncate') {
    const log = truncateLogTable(table.name)
    return {
      names: [log],
      ddl: [`CREATE TABLE IF NOT EXISTS ${q(log)} (${definitions(TRUNCATE_LOG_COLUMNS, types)}, PRIMARY KEY (${q('file_hash')}), UNIQUE (${q('applied')})) STRICT`],
    }
  }
  const tombstones = cdcTombstoneTable(table.name)
  const keys = mode.keys.map(q).join(', ')
  return {
    names: [keyIndexName(table.name), `${tombstones}__keys`],
    ddl: [
      `CREATE UNIQUE INDEX IF NOT EXISTS ${q(keyIndexName(table.name))} ON ${q(table.name)} (${keys})`,
      `CREATE UNIQUE INDEX IF NOT EXISTS ${q(`${tombstones}__keys`)} ON ${q(tombstones)} (${keys})`,
    ],
  }
}

const markerWrites = new WeakMap<SqliteDatabase, Statement>()

/** Records this load in the marker table, in the caller's transaction (core/load-marker.ts). */
export function writeMarker(db: SqliteDatabase, job: WriteJob, rows: number): void {
  let statement = markerWrites.get(db)
  if (statement === undefined) {
    const names = LOAD_MARKER_COLUMNS.map((column) => q(column.name))
    const updates = names.slice(2).map((name) => `${name} = excluded.${name}`)
    statement = db.prepare(
      `INSERT INTO ${q(LOAD_MARKER_TABLE)} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')}) ON CONFLICT (${names[0]}, ${names[1]}) DO UPDATE SET ${updates.join(', ')}`,
    )
    markerWrites.set(db, statement)
  }
  statement.run(...markerValues(job, rows))
}

export function readMarker(db: SqliteDatabase, pipeline: string, hash: string): LoadMarker | null {
  const row = db.prepare(`SELECT load_id, rows, code FROM ${q(LOAD_MARKER_TABLE)} WHERE pipeline = ? AND file_hash = ?`).get(pipeline, hash) as { load_id: string; rows: number; code: string | null } | undefined
  return row === undefined ? null : { loadId: row.load_id, rows: row.rows, code: row.code }
}

function run(db: SqliteDatabase, statement: SqlStatement): void {
  db.prepare(statement.sql).run(...statement.values)
}
function get(db: SqliteDatabase, statement: SqlStatement): Record<string, unknown> | undefined {
  return db.prepare(statement.sql).get(...statement.values) as Record<string, unknown> | undefined
}

export interface SqliteShared {
  /** BEGIN IMMEDIATE without blocking the event loop while another process writes. */
  begin(db: SqliteDatabase, signal: AbortSignal): Promise<void>
  /** The destination's multi-row INSERTs into a table's columns and the provenance columns. */
  readonly inserter: Inserter
  readonly types: ColumnTypes
  readonly logger: Logger | undefined
}

/** Writes a truncate or cdc file in one transaction. */
export async function writeMode(db: SqliteDatabase, job: WriteJob, shared: SqliteShared): Promise<WriteResult> {
  const mode = modeWrite(db, job, shared.types, shared.logger)
  await shared.begin(db, job.signal)
  try {
    const done = mode.before()
    if (done !== undefined) {
      db.exec('ROLLBACK')
      return done
    }
    const rows = await shared.inserter.insert(mode.target, mode.batches, { hash: job.file.hash, ingestedAt: job.ingestedAt })
    const result = await mode.after(rows)
    writeMarker(db, job, result.rows)
    await job.assertLease()
    db.exec('COMMIT')
    return result
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw error
  }
}

function modeWrite(db: SqliteDatabase, job: WriteJob, types: ColumnTypes, logger: Logger | undefined): ModeWrite {
  const mode = job.writeMode
  const table = q(job.table.name)
  switch (mode.kind) {
    case 'append':
      throw new FiledgeError('INTERNAL', 'append files are written by the destination itself')
    case 'truncate': {
      const log = q(truncateLogTable(job.table.name))
      return {
        target: job.table,
        batches: job.batches,
        before() {
          // This very load already committed (the ledger did not hear of it): applying it again could put back contents a newer file replaced.
          const marker = readMarker(db, job.pipeline, job.file.hash)
          if (marker !== null && marker.loadId === job.loadId) {
            logger?.warn(alreadyApplied(job, marker.rows))
            return { rows: marker.rows }
          }
          db.exec(`DELETE FROM ${table}`)
          return undefined
        },
        async after(rows) {
          if (rows === 0 && !mode.allowEmpty) throw emptyTruncate(job)
          db.prepare(`DELETE FROM ${log} WHERE file_hash = ?`).run(job.file.hash)
          db.prepare(`INSERT INTO ${log} (applied, file_hash, file_path, rows, ingested_at) SELECT coalesce(max(applied), 0) + 1, ?, ?, ?, ? FROM ${log}`).run(
            job.file.hash,
            job.file.path,
            rows,
            job.ingestedAt,
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
        before() {
          const columns = [...stage.columns, ...PROVENANCE_COLUMNS].map((column) => ({ ...column, required: false }))
          db.exec(`CREATE TEMP TABLE ${q(stage.name)} (${definitions(columns, types)}) STRICT`)
          return undefined
        },
        async after(rows) {
          await turn()
          const row = get(db, plan.rowProblem)
          await turn()
          const problem = plan.problem({ row, duplicate: get(db, plan.duplicate) }, job.file.path)
          if (problem !== undefined) throw problem.error
          await turn()
          run(db, plan.collapse)
          const counts = plan.counts(get(db, plan.count)!)
          for (const statement of plan.apply) {
            await turn()
            run(db, statement)
          }
          db.exec(`DROP TABLE temp.${q(stage.name)}; DROP TABLE temp.${changes}`)
          if (counts.applied < counts.keys) logger?.info(`${job.file.path}: ${rows} changes to ${counts.keys} keys; applied ${counts.applied} (${counts.deletes} deletes), ${counts.keys - counts.applied} not newer than ${job.table.name}`)
          return { rows }
        },
      }
    }
  }
}
