import type { SettledStat } from '../../types.js'
import type { Queryable, Tables } from '../db.js'

/**
 * settledStats: a pipeline's stat cache entries whose file is settled
 * (COMMITTED, or FAILED with `maxAttempts` used). Read-only, one round trip
 * per run and pipeline. Entries are written by claim (sql/claim.ts), in the
 * statement that registers the file, so an entry never points at a file the
 * ledger does not have. Same rules as the SQLite store (sqlite/sql/stats.ts).
 */
export async function settledStats(db: Queryable, t: Tables, pipeline: string, maxAttempts: number): Promise<SettledStat[]> {
  const result = await db.query<{ path: string; size: string; version: string; hash: string; state: 'COMMITTED' | 'FAILED'; attempts: number }>(
    `SELECT s.path, s.size, s.version, s.hash, f.state, f.attempts
     FROM ${t.stats} s JOIN ${t.files} f ON f.pipeline = s.pipeline AND f.hash = s.hash
     WHERE s.pipeline = $1 AND (f.state = 'COMMITTED' OR (f.state = 'FAILED' AND f.attempts >= $2))`,
    [pipeline, maxAttempts],
  )
  return result.rows.map((row) => ({ path: row.path, size: Number(row.size), version: row.version, hash: row.hash, state: row.state, attempts: row.attempts }))
}
