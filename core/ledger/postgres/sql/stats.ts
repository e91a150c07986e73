import type { HeldStat, SettledStat } from '../../types.js'
import { nowSql, prepared, type Queryable, type Tables } from '../db.js'

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

/**
 * knownStats: of these paths, the stat cache entries whose file is settled,
 * or held by a lease that is live by the database's clock. Read-only, one
 * round trip for a batch of files a worker is about to read: the files
 * another worker committed or took since this worker's run began are then
 * skipped without reading or claiming them. What the claim would have said
 * (committed, terminal, held) is what this says, so nothing is skipped that a
 * claim would have loaded; an entry whose version or size no longer matches
 * the listed file is ignored by the caller, as with `settledStats`.
 */
export async function knownStats(db: Queryable, t: Tables, pipeline: string, paths: readonly string[], maxAttempts: number, at: string | null): Promise<(SettledStat | HeldStat)[]> {
  const result = await db.query<{ path: string; size: string; version: string; hash: string; state: 'COMMITTED' | 'FAILED' | 'PROCESSING'; attempts: number; worker: string | null }>(
    prepared(
      `SELECT s.path, s.size, s.version, s.hash, f.state, f.attempts, f.worker
       FROM ${t.stats} s JOIN ${t.files} f ON f.pipeline = s.pipeline AND f.hash = s.hash
       WHERE s.pipeline = $1 AND s.path = ANY($2::text[])
         AND (f.state = 'COMMITTED' OR (f.state = 'FAILED' AND f.attempts >= $3) OR (f.state = 'PROCESSING' AND f.lease_expires_at >= ${nowSql('$4')}))`,
      [pipeline, [...paths], maxAttempts, at],
    ),
  )
  return result.rows.map((row) =>
    row.state === 'PROCESSING'
      ? { path: row.path, size: Number(row.size), version: row.version, hash: row.hash, state: row.state, worker: row.worker }
      : { path: row.path, size: Number(row.size), version: row.version, hash: row.hash, state: row.state, attempts: row.attempts },
  )
}
