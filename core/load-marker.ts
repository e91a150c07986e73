import type { LoadMarker, WriteJob } from './destination.js'
import type { TableColumn } from './rows.js'
import type { TruncateLoad } from './write-modes/truncate.js'

/**
 * The load marker: one row per (pipeline, file hash) in a table each built-in
 * destination keeps beside its tables, written in the transaction that
 * commits the file's rows (README, "Exactly once"). It is the destination's
 * own record of which load of a file it holds, what the ledger asks before
 * loading a file again after a crash, a lapse, a failure whose COMMIT outcome
 * was unknown, or a requeue. The ledger is then a cache of this truth.
 *
 * Why a table of its own rather than the provenance columns: a file with no
 * rows leaves no provenance, a truncate file's rows are deleted by the next
 * one, and a cdc file's rows are partly overwritten by later changes; the
 * marker survives all three and costs one small write per file.
 */
export const LOAD_MARKER_TABLE = 'filedge_loads'

/** Columns of the marker table, in order. (pipeline, file_hash) is unique: the marker of a file's latest load. */
export const LOAD_MARKER_COLUMNS: readonly TableColumn[] = Object.freeze([
  { name: 'pipeline', type: 'string', required: true },
  { name: 'file_hash', type: 'string', required: true },
  { name: 'load_id', type: 'string', required: true },
  { name: 'table_name', type: 'string', required: true },
  { name: 'rows', type: 'integer', required: true },
  { name: 'loaded_at', type: 'timestamp', required: true },
  // The stages' hash the rows were produced under; null without stages. Added later: markers written before have none.
  { name: 'code', type: 'string', required: false },
])

/** The values of a marker row for a job, in LOAD_MARKER_COLUMNS order. */
export function markerValues(job: WriteJob, rows: number): [string, string, string, string, number, string, string | null] {
  return [job.pipeline, job.file.hash, job.loadId, job.table.name, rows, job.ingestedAt, job.code ?? null]
}

/** The marker table's columns added after it was first created, for destinations to add to an existing table. */
export const LOAD_MARKER_ADDED_COLUMNS: readonly TableColumn[] = Object.freeze(LOAD_MARKER_COLUMNS.filter((column) => column.name === 'code'))

/**
 * The marker of a truncate file, with what happened to its contents since:
 * the note says when a newer file has replaced it (so a reclaim that finds
 * the load already committed tells the user why the table holds other rows).
 * `loads` are the load log's entries for `hash` and its latest one.
 */
export function truncateMarker(marker: LoadMarker, hash: string, loads: readonly TruncateLoad[], table: string): LoadMarker {
  const mine = loads.find((load) => load.fileHash === hash)
  const latest = loads.find((load) => load.fileHash !== hash)
  if (mine === undefined || latest === undefined || latest.applied <= mine.applied) return marker
  return { ...marker, note: `${mine.filePath} was applied to ${table} (load ${mine.applied}, ${mine.rows} rows) and ${latest.filePath} (load ${latest.applied}) has replaced it since` }
}
