import type { LeaseKey, Quarantined } from '../../types.js'
import { nowSql, prepared, type Queryable, type Tables } from '../db.js'

/**
 * complete: PROCESSING → COMMITTED with the row count, plus its event:
 * `file:committed`, or `file:healed` (with how) when the destination already
 * held this load and nothing was loaded again. The caller commits it
 * synchronously (store.ts).
 *
 * Takes the lease key and the rows the destination committed. Returns false,
 * writing nothing, if the token is no longer current: a worker that lost its
 * lease can never overwrite the outcome of the worker that reclaimed the file
 * (fencing). One statement (the event insert is a CTE over the UPDATE's
 * RETURNING), so the state and its event commit together or not at all.
 */
export async function complete(db: Queryable, t: Tables, key: LeaseKey, rows: number, at: string | null, healed?: string, code?: string, quarantined?: Quarantined): Promise<boolean> {
  const now = nowSql('$1')
  const result = await db.query(
    prepared(
      `WITH done AS (
       UPDATE ${t.files}
       SET state = 'COMMITTED', rows = $5, lapses = 0, error = NULL, lease_token = NULL, lease_expires_at = NULL, worker = $6, committed_at = ${now}, updated_at = ${now}, code = $9,
         quarantined = $10::bigint, sidecar = $11::text
       WHERE pipeline = $2 AND hash = $3 AND lease_token = $4 AND state = 'PROCESSING'
       RETURNING updated_at
     )
     INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker, error, quarantined)
     SELECT updated_at, $2, $3, CASE WHEN $8::text IS NULL THEN 'file:committed' ELSE 'file:healed' END, 'PROCESSING', 'COMMITTED', $7::integer, $6, $8::text, $10::bigint FROM done`,
      [at, key.pipeline, key.hash, key.token, rows, key.worker, key.attempt, healed ?? null, code ?? null, quarantined?.rows ?? null, quarantined?.sidecar ?? null],
    ),
  )
  return result.rowCount === 1
}
