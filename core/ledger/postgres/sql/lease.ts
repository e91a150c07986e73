import { randomUUID } from 'node:crypto'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * Named leases, as in the SQLite store (sqlite/sql/lease.ts): one row per
 * name with its holder's token and expiry, judged by the database's clock
 * (db.ts, nowSql), because workers on many machines must agree on it.
 */

/**
 * takeLease: a fresh token if the name has no lease or its lease expired,
 * undefined while a live one holds it.
 *
 * Race-free as one statement (the store commits it synchronously, store.ts):
 * INSERT … ON CONFLICT DO UPDATE locks the conflicting row and judges the
 * WHERE on its newest version, after waiting for any other taker's
 * transaction; two takers of a name nobody leased yet meet on the primary
 * key, and the second then finds the first's live lease. RETURNING says
 * whether the lease was taken.
 */
export async function takeLease(db: Queryable, t: Tables, name: string, worker: string, ttlMs: number, at: string | null): Promise<string | undefined> {
  const now = nowSql('$1')
  const result = await db.query<{ token: string }>(
    `INSERT INTO ${t.leases} AS lease (name, token, worker, expires_at) VALUES ($2, $3, $4, ${now} + make_interval(secs => $5::double precision / 1000))
     ON CONFLICT (name) DO UPDATE SET token = excluded.token, worker = excluded.worker, expires_at = excluded.expires_at
     WHERE lease.expires_at < ${now}
     RETURNING token`,
    [at, name, randomUUID(), worker, ttlMs],
  )
  return result.rows[0]?.token
}

/**
 * renewLease: pushes the lease's expiry to the database's now + ttl; false
 * when the token is no longer current. An expired lease nobody took is
 * still its holder's: a taker replaces the token first, under the row lock.
 */
export async function renewLease(db: Queryable, t: Tables, name: string, token: string, ttlMs: number, at: string | null): Promise<boolean> {
  const result = await db.query(`UPDATE ${t.leases} SET expires_at = ${nowSql('$1')} + make_interval(secs => $4::double precision / 1000) WHERE name = $2 AND token = $3`, [
    at,
    name,
    token,
    ttlMs,
  ])
  return result.rowCount === 1
}

/** releaseLease: frees the name, only if the token is current: a newer holder's lease stays. */
export async function releaseLease(db: Queryable, t: Tables, name: string, token: string): Promise<void> {
  await db.query(`DELETE FROM ${t.leases} WHERE name = $1 AND token = $2`, [name, token])
}

/** leaseHeld: a lease on the name that has not expired, by the database's clock. */
export async function leaseHeld(db: Queryable, t: Tables, name: string, at: string | null): Promise<boolean> {
  const result = await db.query(`SELECT 1 FROM ${t.leases} WHERE name = $2 AND expires_at >= ${nowSql('$1')}`, [at, name])
  return (result.rowCount ?? 0) > 0
}

/**
 * lockLease: true while `token` is the lease's current token, and then the
 * row stays locked until the caller's transaction ends, so no taker can
 * replace the token before what the lease fences is written.
 */
export async function lockLease(db: Queryable, t: Tables, name: string, token: string): Promise<boolean> {
  const result = await db.query(`SELECT 1 FROM ${t.leases} WHERE name = $1 AND token = $2 FOR UPDATE`, [name, token])
  return result.rowCount === 1
}
