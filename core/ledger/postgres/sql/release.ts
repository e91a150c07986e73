import type { LeaseKey } from '../../types.js'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * release: PROCESSING → PENDING, giving the attempt back.
 *
 * Used by a graceful stop: the file was not tried to the end, so it must not
 * count toward the retry cap. Fenced by the token like complete and fail;
 * returns false (writing nothing) if the lease was already lost. One statement.
 */
export async function release(db: Queryable, t: Tables, key: LeaseKey, at: string | null): Promise<boolean> {
  const result = await db.query(
    `WITH released AS (
       UPDATE ${t.files}
       SET state = 'PENDING', attempts = GREATEST(attempts - 1, 0), lease_token = NULL, lease_expires_at = NULL, updated_at = ${nowSql('$1')}
       WHERE pipeline = $2 AND hash = $3 AND lease_token = $4 AND state = 'PROCESSING'
       RETURNING updated_at
     )
     INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker)
     SELECT updated_at, $2, $3, 'file:released', 'PROCESSING', 'PENDING', $5::integer, $6::text FROM released`,
    [at, key.pipeline, key.hash, key.token, key.attempt, key.worker],
  )
  return result.rowCount === 1
}
