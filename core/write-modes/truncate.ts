import type { WriteJob } from '../destination.js'
import { fileInvalid } from '../errors.js'
import type { TableColumn } from '../rows.js'

/**
 * Truncate: each file replaces the table's contents, in one transaction.
 *
 * The load log. Idempotency by hash is what lets a crash anywhere heal, and
 * for truncate it needs a memory: a worker that dies between its destination
 * commit and the ledger update leaves its file to be reclaimed later — maybe
 * after a newer file replaced the table. Replaying the old file then would
 * put old contents back. So each destination keeps `<table>__filedge_loads`,
 * one row per file applied, numbered in order; a file applied before and
 * replaced since is not applied again (it was loaded; its rows were
 * superseded, which is what truncate means). The log is also the table's
 * audit trail: which file its contents came from, and when.
 *
 * What it does not decide is which of two files is older: it knows the order
 * they were applied in, not the order they were produced in. A run applies
 * the files it finds one at a time in path order; a snapshot dropped later
 * than a newer one still replaces it (README, "Write mode: truncate").
 */

export function truncateLogTable(table: string): string {
  return `${table}__filedge_loads`
}

/** Columns of the load log, in order; `applied` numbers loads 1, 2, 3… and is unique, as is `file_hash`. */
export const TRUNCATE_LOG_COLUMNS: readonly TableColumn[] = Object.freeze([
  { name: 'applied', type: 'integer', required: true },
  { name: 'file_hash', type: 'string', required: true },
  { name: 'file_path', type: 'string', required: true },
  { name: 'rows', type: 'integer', required: true },
  { name: 'ingested_at', type: 'timestamp', required: true },
])

/** A row of the load log as a destination read it. */
export interface TruncateLoad {
  readonly applied: number
  readonly fileHash: string
  readonly filePath: string
  readonly rows: number
}

/**
 * Given the log's entry for this file (if any) and its latest entry, whether
 * the file was applied before and a later file has replaced it since. A file
 * that is the latest load is applied again (same bytes, same contents).
 */
export function supersededBy(mine: TruncateLoad | undefined, latest: TruncateLoad | undefined): TruncateLoad | undefined {
  if (mine === undefined || latest === undefined || latest.applied <= mine.applied) return undefined
  return latest
}

export function supersededMessage(job: WriteJob, mine: TruncateLoad, by: TruncateLoad): string {
  return `${job.file.path}: not applied again to ${job.table.name}: it was applied before (load ${mine.applied}, ${mine.rows} rows) and ${by.filePath} (load ${by.applied}) has replaced it since`
}

/** An empty or header-only file in a truncate pipeline that does not allow it. */
export function emptyTruncate(job: WriteJob) {
  return fileInvalid(
    job.file.path,
    `no rows: applying it would empty table ${job.table.name}; an empty export is more often a broken producer than a real "no rows". If it is real, set writeMode: { truncate: { allowEmpty: true } }`,
  )
}
