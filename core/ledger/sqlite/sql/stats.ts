import type { FileStat, SettledStat } from '../../types.js'
import type { LedgerDb } from '../db.js'

/**
 * recordStat: remembers that `path`, at this version and size, had the bytes `hash`.
 *
 * Called inside the claim transaction, so the entry and the file it points at
 * are written together. One row per path (upsert): a path rewritten with new
 * bytes replaces its entry. Writes no event: the stat cache is not a
 * transition, and history stays about the file.
 */
export function recordStat(ledger: LedgerDb, pipeline: string, path: string, hash: string, stat: FileStat): void {
  ledger
    .statement(
      `INSERT INTO file_stats (pipeline, path, size, version, hash) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (pipeline, path) DO UPDATE SET size = excluded.size, version = excluded.version, hash = excluded.hash`,
    )
    .run(pipeline, path, stat.size, stat.version, hash)
}

/**
 * settledStats: a pipeline's stat cache entries whose file is settled
 * (COMMITTED, or FAILED with `maxAttempts` used). Read-only, one query per
 * run and pipeline; the state is read here, at the start of the run, so a
 * file requeued later in the run is picked up by the next one.
 */
export function settledStats(ledger: LedgerDb, pipeline: string, maxAttempts: number): SettledStat[] {
  return ledger
    .statement(
      `SELECT s.path, s.size, s.version, s.hash, f.state, f.attempts
       FROM file_stats s JOIN files f ON f.pipeline = s.pipeline AND f.hash = s.hash
       WHERE s.pipeline = ? AND (f.state = 'COMMITTED' OR (f.state = 'FAILED' AND f.attempts >= ?))`,
    )
    .all(pipeline, maxAttempts) as SettledStat[]
}
