import { randomUUID } from 'node:crypto'
import { lapsedMessage, type ClaimInput, type ClaimResult, type FileState } from '../../types.js'
import { nowSql, prepared, type Queryable, type Tables } from '../db.js'

/**
 * claim: registers a discovered file and tries to lease it.
 *
 * Takes the file's (pipeline, hash, path, size, version), the worker, the
 * retry and lapse budgets and the lease length. Returns a lease token and the
 * load id, or why the file is not available: already COMMITTED, terminally
 * FAILED, or held (a live lease, or another worker's statement on the row at
 * this instant). Loads, lapses and arrivals follow the SQLite store's rules
 * (sqlite/sql/claim.ts).
 *
 * Two autocommitted statements, each one round trip:
 * 1. register: INSERT … ON CONFLICT DO NOTHING for the file and for the path
 *    it was seen at, with their `file:discovered` / `file:alias` events, and
 *    the path's stat cache entry (sql/stats.ts) when the input asks to remember it;
 *    it returns the version the path held these bytes at before, if any.
 *    Two workers discovering the same file is normal, not an error.
 * 2. lease: SELECT … FOR UPDATE SKIP LOCKED on the file row, then, from what
 *    that locked row says, the lease UPDATE (PENDING, FAILED with attempts
 *    left, PROCESSING whose lease expired by the database's clock, or
 *    COMMITTED bytes that arrived again in a `reopenOnArrival` pipeline) with
 *    its event, and the path's new version unless the file is held, all in
 *    one statement. A row another worker has locked right now is skipped, not
 *    waited for: it is being claimed or finished, so it is held.
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
  const version = input.version ?? null
  const registered = await db.query<{ is_new: boolean; path_new: boolean; prior_version: string | null }>(
    prepared(
      `WITH inserted AS (
       INSERT INTO ${t.files} (pipeline, hash, path, size, state, attempts, created_at, updated_at)
       VALUES ($2, $3, $4, $5, 'PENDING', 0, ${now}, ${now})
       ON CONFLICT DO NOTHING
       RETURNING created_at
     ), discovered AS (
       INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, worker, path)
       SELECT created_at, $2, $3, 'file:discovered', NULL, 'PENDING', $6::text, $4 FROM inserted
     ), prior AS (
       SELECT version FROM ${t.paths} WHERE pipeline = $2 AND hash = $3 AND path = $4
     ), seen AS (
       INSERT INTO ${t.paths} (pipeline, hash, path, first_seen_at, version) VALUES ($2, $3, $4, ${now}, $8::text)
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
       INSERT INTO ${t.stats} (pipeline, path, size, version, hash)
       SELECT $2, $4, $5, $8::text, $3 WHERE $7::boolean AND $8::text IS NOT NULL
       ON CONFLICT (pipeline, path) DO UPDATE SET size = excluded.size, version = excluded.version, hash = excluded.hash
     )
     SELECT EXISTS (SELECT 1 FROM inserted) AS is_new, EXISTS (SELECT 1 FROM seen) AS path_new, (SELECT version FROM prior) AS prior_version`,
      [at, pipeline, hash, path, input.size, worker, input.remember === true, version],
    ),
  )
  const { is_new: isNew, path_new: pathNew, prior_version: prior } = registered.rows[0]
  // A path new to these bytes, or a known path with a new version; a row from before versions were kept says nothing.
  const arrived = !isNew && (pathNew || (version !== null && prior !== null && prior !== version))

  const token = randomUUID()
  const freshLoad = randomUUID()
  const leased = await db.query<{
    state: FileState
    attempts: number
    worker: string | null
    outcome: 'committed' | 'terminal' | 'held' | 'leased'
    attempt: number | null
    lapses: number | null
    load_id: string | null
  }>(
    prepared(
      `WITH current AS (
       SELECT pipeline, hash, state, attempts, lapses, load_id, worker, COALESCE(state = 'PROCESSING' AND lease_expires_at < ${now}, false) AS expired
       FROM ${t.files} WHERE pipeline = $2 AND hash = $3
       FOR UPDATE SKIP LOCKED
     ), decided AS (
       SELECT current.*, CASE
           WHEN state = 'COMMITTED' AND NOT $11::boolean THEN 'committed'
           WHEN state = 'FAILED' AND attempts >= $4::integer THEN 'terminal'
           WHEN state = 'PROCESSING' AND NOT expired THEN 'held'
           ELSE 'leased'
         END AS outcome
       FROM current
     ), lease AS (
       UPDATE ${t.files} f
       SET state = 'PROCESSING',
           -- A reclaim continues the dead worker's attempt; a reopened file starts over.
           attempts = CASE WHEN d.expired THEN GREATEST(d.attempts, 1) WHEN d.state = 'COMMITTED' THEN 1 ELSE d.attempts + 1 END,
           lapses = CASE WHEN d.expired THEN d.lapses + 1 ELSE 0 END,
           load_id = CASE WHEN d.load_id IS NULL OR d.state = 'COMMITTED' THEN $10::text ELSE d.load_id END,
           lease_token = $5::text, lease_expires_at = ${now} + make_interval(secs => $6::double precision / 1000), worker = $7::text, updated_at = ${now}
       FROM decided d WHERE d.outcome = 'leased' AND f.pipeline = d.pipeline AND f.hash = d.hash
       RETURNING f.updated_at, f.attempts, f.lapses, f.load_id, d.state AS from_state, d.expired, d.worker AS previous
     ), versioned AS (
       -- Not while another worker holds the file: the arrival is noticed by the claim after it.
       UPDATE ${t.paths} p SET version = $12::text
       FROM decided d
       WHERE d.outcome <> 'held' AND $12::text IS NOT NULL AND p.pipeline = $2 AND p.hash = $3 AND p.path = $8 AND p.version IS DISTINCT FROM $12::text
     ), logged AS (
       INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker, path, error)
       SELECT updated_at, $2, $3,
              CASE from_state WHEN 'PROCESSING' THEN 'file:reclaimed' WHEN 'COMMITTED' THEN 'file:reopened' WHEN 'FAILED' THEN 'file:retried' ELSE 'file:claimed' END,
              from_state, 'PROCESSING', attempts, $7::text, $8::text,
              CASE WHEN expired THEN format('lease of %s expired (lapse %s of %s)', COALESCE(previous, '?'), lapses, $9::integer)
                   WHEN from_state = 'COMMITTED' THEN format('committed before; its bytes arrived again at %s, and the newest arrival wins', $8::text) END
       FROM lease
     )
     SELECT d.state, d.attempts, d.worker, d.outcome, l.attempts AS attempt, l.lapses, l.load_id
     FROM decided d LEFT JOIN lease l ON true`,
      [at, pipeline, hash, input.maxAttempts, token, input.ttlMs, worker, path, input.maxLapses, freshLoad, input.reopenOnArrival === true && arrived, version],
    ),
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
    case 'leased': {
      const reclaimed = row.state === 'PROCESSING'
      const attempt = row.attempt!
      const lapsed = reclaimed ? lapsedMessage(row.lapses!, input.maxLapses, row.worker, attempt) : undefined
      return {
        status: 'claimed',
        token,
        attempt,
        loadId: row.load_id!,
        isNew,
        reclaimed,
        retried: row.state === 'FAILED',
        reopened: row.state === 'COMMITTED',
        verify: row.load_id !== freshLoad,
        ...(lapsed === undefined ? {} : { lapsed }),
      }
    }
  }
}
