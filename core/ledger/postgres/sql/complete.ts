import type { LeaseKey } from '../../types.js'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * complete: PROCESSING → COMMITTED with the row count, plus its event.
 *
 * Takes the lease key and the rows the destination committed. Returns false,
 * writing nothing, if the token is no longer current: a worker that lost its
 * lease can never overwrite the outcome of the worker that reclaimed the file
 * (fencing). One statement (the event insert is a CTE over the UPDATE's
 * RETURNING), so the state and its event commit together or not at all.
 */
export async function complete(db: Queryable, t: Tables, key: LeaseKey, rows: number, at: string | null): Promise<boolean> {
  const now = nowSql('$1')
  const result = await db.query(
    `WITH done AS (
       UPDATE ${t.files}
       SET state = 'COMMITTED', rows = $5, error = NULL, lease_token = NULL, lease_expires_at = NULL, worker = $6, committed_at = ${now}, updated_at = ${now}
       WHERE pipeline = $2 AND hash = $3 AND lease_token = $4 AND state = 'PROCESSING'
       RETURNING updated_at
     )
     INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker)
     SELECT updated_at, $2, $3, 'file:committed', 'PROCESSING', 'COMMITTED', $7::integer, $6 FROM done`,
    [at, key.pipeline, key.hash, key.token, rows, key.worker, key.attempt],
  )
  return result.rowCount === 1
}
