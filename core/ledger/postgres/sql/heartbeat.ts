import type { LeaseKey } from '../../types.js'
import { nowSql, prepared, type Queryable, type Tables } from '../db.js'

/**
 * heartbeat: pushes a held lease's expiry to the database's now + ttl.
 *
 * Takes the lease key; returns false when the token is no longer current (the
 * file was reclaimed by another worker), which tells the loader to abort.
 * One autocommitted UPDATE fenced by the token in its WHERE clause. An expired
 * lease nobody has reclaimed yet is still ours: renewing it is safe because a
 * reclaim replaces the token first, under the row lock. Heartbeats write no
 * event: they are not transitions.
 */
export async function heartbeat(db: Queryable, t: Tables, key: LeaseKey, ttlMs: number, at: string | null): Promise<boolean> {
  const result = await db.query(
    prepared(
      `UPDATE ${t.files} SET lease_expires_at = ${nowSql('$1')} + make_interval(secs => $5::double precision / 1000)
       WHERE pipeline = $2 AND hash = $3 AND lease_token = $4 AND state = 'PROCESSING'`,
      [at, key.pipeline, key.hash, key.token, ttlMs],
    ),
  )
  return result.rowCount === 1
}

/** holds: whether the lease token is still current. Read-only. */
export async function holds(db: Queryable, t: Tables, key: LeaseKey): Promise<boolean> {
  const result = await db.query(prepared(`SELECT 1 FROM ${t.files} WHERE pipeline = $1 AND hash = $2 AND lease_token = $3 AND state = 'PROCESSING'`, [key.pipeline, key.hash, key.token]))
  return result.rowCount === 1
}
