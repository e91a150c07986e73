import type { LeaseKey } from '../../types.js'
import { nowSql, prepared, type Queryable, type Tables } from '../db.js'

/**
 * fail: PROCESSING → FAILED with the error, plus its event.
 *
 * Takes the lease key, the (already redacted) error text and the retry cap.
 * Returns `lost` without writing if the token is no longer current (fencing,
 * as in complete), and `terminal` when this was the last allowed attempt:
 * later runs skip the file until it is requeued. `exhausted` raises the
 * attempts to the cap (as in the SQLite store, sqlite/sql/fail.ts). One
 * statement, like complete.
 */
export async function fail(
  db: Queryable,
  t: Tables,
  key: LeaseKey,
  error: string,
  maxAttempts: number,
  at: string | null,
  exhausted = false,
): Promise<{ lost: boolean; terminal: boolean }> {
  const attempts = exhausted ? Math.max(key.attempt, maxAttempts) : key.attempt
  const result = await db.query(
    prepared(
      `WITH failed AS (
       UPDATE ${t.files}
       SET state = 'FAILED', error = $5, attempts = $7::integer, lapses = CASE WHEN $8::boolean THEN lapses ELSE 0 END, lease_token = NULL, lease_expires_at = NULL, worker = $6, updated_at = ${nowSql('$1')}
       WHERE pipeline = $2 AND hash = $3 AND lease_token = $4 AND state = 'PROCESSING'
       RETURNING updated_at
     )
     INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker, error)
     SELECT updated_at, $2, $3, 'file:failed', 'PROCESSING', 'FAILED', $7::integer, $6, $5 FROM failed`,
      [at, key.pipeline, key.hash, key.token, error, key.worker, attempts, exhausted],
    ),
  )
  if (result.rowCount !== 1) return { lost: true, terminal: false }
  return { lost: false, terminal: attempts >= maxAttempts }
}
