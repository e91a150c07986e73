import type { WriteJob } from '../destination.js'
import { fileInvalid } from '../errors.js'
import type { TableColumn } from '../rows.js'

/**
 * Truncate: each file replaces the table's contents, in one transaction.
 *
 * The load log, `<table>__filedge_loads`: one row per file applied, numbered
 * in order — the table's audit trail (which file its contents came from, and
 * when). Crash recovery is the load marker's job (core/load-marker.ts): a
 * worker that dies between its destination commit and the ledger update
 * leaves its file to be reclaimed later, maybe after a newer file replaced
 * the table; the marker says that load already committed, so it is not
 * applied again (that would put old contents back). A new load of the same
 * bytes — the file arrived again, or was requeued — is applied: the newest
 * arrival wins.
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
 * Written when a truncate `write` finds its own load already in the marker
 * (two workers on one load, a reclaim racing the ledger): the file is not
 * applied again.
 */
export function alreadyApplied(job: WriteJob, rows: number): string {
  return `${job.file.path}: this load of it was already applied to ${job.table.name} (${rows} rows); not applied again`
}

/** An empty or header-only file in a truncate pipeline that does not allow it. */
export function emptyTruncate(job: WriteJob) {
  return fileInvalid(
    job.file.path,
    `no rows: applying it would empty table ${job.table.name}; an empty export is more often a broken producer than a real "no rows". If it is real, set writeMode: { truncate: { allowEmpty: true } }`,
  )
}
