import { randomUUID } from 'node:crypto'
import type { ClaimInput, ClaimResult, FileState } from '../../types.js'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * claim: registers a discovered file and tries to lease it.
 *
 * Takes the file's (pipeline, hash, path, size), the worker, the retry cap and
 * the lease length. Returns a lease token, or why the file is not available:
 * already COMMITTED, terminally FAILED, or held (a live lease, or another
 * worker's statement on the row at this instant).
 *
 * Two autocommitted statements, each one round trip:
 * 1. register: INSERT … ON CONFLICT DO NOTHING for the file and for the path
 *    it was seen at, with their `file:discovered` / `file:alias` events, and
 *    the path's stat cache entry (sql/stats.ts) when the input has a stat.
 *    Two workers discovering the same file is normal, not an error.
 * 2. lease: SELECT … FOR UPDATE SKIP LOCKED on the file row, then, from what
 *    that locked row says, either the lease UPDATE (PENDING, retryable FAILED,
 *    or PROCESSING whose lease expired by the database's clock) or the
 *    terminal FAILED UPDATE (a lease that expired on the last allowed
 *    attempt), each with its event, all in one statement. A row another
 *    worker has locked right now is skipped, not waited for: it is being
 *    claimed or finished, so it is held.
 * Safe under concurrency because every decision is made on the locked row in
 * the statement that writes it, and the lease token fences every later write.
 *
 * Why not one transaction with a statement per step (as the SQLite store
 * does under its write lock): a transaction stays open across round trips,
 * and a worker's event loop is busy parsing CSV between them. With two
 * workers discovering files in the same order, the second queued on the
 * first's uncommitted registration of every file: 2 workers took 15 s for
 * 200 files that 1 worker loaded in 7 s. As single statements the row locks
 * last microseconds and never wait on a JavaScript event loop.
 *
 * Same states, attempts and events as the SQLite store (sqlite/sql/claim.ts).
 */
export async function claim(db: Queryable, t: Tables, input: ClaimInput, at: string | null): Promise<ClaimResult> {
  const now = nowSql('$1')
  const { pipeline, hash, path, worker } = input
  const registered = await db.query<{ is_new: boolean }>(
    `WITH inserted AS (
       INSERT INTO ${t.files} (pipeline, hash, path, size, state, attempts, created_at, updated_at)
       VALUES ($2, $3, $4, $5, 'PENDING', 0, ${now}, ${now})
       ON CONFLICT DO NOTHING
       RETURNING created_at
     ), discovered AS (
       INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, worker, path)
       SELECT created_at, $2, $3, 'file:discovered', NULL, 'PENDING', $6::text, $4 FROM inserted
     ), seen AS (
       INSERT INTO ${t.paths} (pipeline, hash, path, first_seen_at) VALUES ($2, $3, $4, ${now})
       ON CONFLICT DO NOTHING
       RETURNING pipeline, hash
     ), aliased AS (
       -- The file row may be another worker's insert that committed after this
       -- statement's snapshot (ON CONFLICT waited for it): then it reads as PENDING.
       INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, worker, path)
       SELECT ${now}, seen.pipeline, seen.hash, 'file:alias', COALESCE(f.state, 'PENDING'), COALESCE(f.state, 'PENDING'), $6::text, $4
       FROM seen LEFT JOIN ${t.files} f ON f.pipeline = seen.pipeline AND f.hash = seen.hash
       WHERE NOT EXISTS (SELECT 1 FROM inserted)
     ), stat AS (
       INSERT INTO ${t.stats} (pipeline, path, size, mtime_ms, ino, dev, hash)
       SELECT $2, $4, $5, $7::double precision, $8::double precision, $9::double precision, $3 WHERE $7::double precision IS NOT NULL
       ON CONFLICT (pipeline, path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms, ino = excluded.ino, dev = excluded.dev, hash = excluded.hash
     )
     SELECT EXISTS (SELECT 1 FROM inserted) AS is_new`,
    [at, pipeline, hash, path, input.size, worker, input.stat?.mtimeMs ?? null, input.stat?.ino ?? null, input.stat?.dev ?? null],
  )
  const isNew = registered.rows[0].is_new

  const token = randomUUID()
  const leased = await db.query<{ state: FileState; attempts: number; worker: string | null; outcome: 'committed' | 'terminal' | 'held' | 'lapsed' | 'leased'; error: string | null }>(
    `WITH current AS (
       SELECT pipeline, hash, state, attempts, worker, COALESCE(state = 'PROCESSING' AND lease_expires_at < ${now}, false) AS expired
       FROM ${t.files} WHERE pipeline = $2 AND hash = $3
       FOR UPDATE SKIP LOCKED
     ), decided AS (
       SELECT current.*, CASE
           WHEN state = 'COMMITTED' THEN 'committed'
           WHEN state = 'FAILED' AND attempts >= $4::integer THEN 'terminal'
           WHEN state = 'PROCESSING' AND NOT expired THEN 'held'
           -- The worker died on the last allowed attempt: the file is terminal, like any other failure.
           WHEN expired AND attempts >= $4::integer THEN 'lapsed'
           ELSE 'leased'
         END AS outcome
       FROM current
     ), lease AS (
       UPDATE ${t.files} f
       SET state = 'PROCESSING', attempts = d.attempts + 1, lease_token = $5::text,
           lease_expires_at = ${now} + make_interval(secs => $6::double precision / 1000), worker = $7::text, updated_at = ${now}
       FROM decided d WHERE d.outcome = 'leased' AND f.pipeline = d.pipeline AND f.hash = d.hash
       RETURNING f.updated_at, f.attempts, d.state AS from_state, d.expired, d.worker AS previous
     ), lapse AS (
       UPDATE ${t.files} f
       SET state = 'FAILED', lease_token = NULL, lease_expires_at = NULL, updated_at = ${now},
           error = format('lease expired: worker %s stopped during attempt %s of %s', COALESCE(d.worker, '?'), d.attempts, $4::integer)
       FROM decided d WHERE d.outcome = 'lapsed' AND f.pipeline = d.pipeline AND f.hash = d.hash
       RETURNING f.updated_at, f.attempts, f.error
     ), logged AS (
       INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker, path, error)
       SELECT updated_at, $2, $3,
              CASE from_state WHEN 'PROCESSING' THEN 'file:reclaimed' WHEN 'FAILED' THEN 'file:retried' ELSE 'file:claimed' END,
              from_state, 'PROCESSING', attempts, $7::text, $8::text,
              CASE WHEN expired THEN format('lease of %s expired', COALESCE(previous, '?')) END
       FROM lease
       UNION ALL
       SELECT updated_at, $2, $3, 'file:failed', 'PROCESSING', 'FAILED', attempts, $7::text, $8::text, error FROM lapse
     )
     SELECT d.state, d.attempts, d.worker, d.outcome, (SELECT error FROM lapse) AS error FROM decided d`,
    [at, pipeline, hash, input.maxAttempts, token, input.ttlMs, worker, path],
  )
  const row = leased.rows[0]
  if (row === undefined) return { status: 'skipped', reason: 'held', isNew, message: 'another worker is claiming or finishing it right now' }
  switch (row.outcome) {
    case 'committed':
      return { status: 'skipped', reason: 'committed', isNew, message: 'already committed' }
    case 'terminal':
      return { status: 'skipped', reason: 'terminal', isNew, message: `failed ${row.attempts} times (retry.attempts is ${input.maxAttempts}); run \`filedge requeue\` to try again` }
    case 'held':
      return { status: 'skipped', reason: 'held', isNew, message: `being loaded by ${row.worker ?? 'another worker'}` }
    case 'lapsed':
      return { status: 'skipped', reason: 'terminal', isNew, message: row.error ?? 'lease expired on the last allowed attempt' }
    case 'leased':
      return { status: 'claimed', token, attempt: row.attempts + 1, isNew, reclaimed: row.state === 'PROCESSING', retried: row.state === 'FAILED' }
  }
}
