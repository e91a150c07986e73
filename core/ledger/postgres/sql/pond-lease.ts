import { randomUUID } from 'node:crypto'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * Pond leases, as in the SQLite store (sqlite/sql/pond-lease.ts): one row per
 * pond with its holder's token and expiry, judged by the database's clock
 * (db.ts, nowSql), because workers on many machines must agree on it.
 */

/**
 * takePondLease: a fresh token if the pond has no lease or its lease expired,
 * undefined while a live one holds it.
 *
 * Race-free as one statement (the store commits it synchronously, store.ts):
 * INSERT … ON CONFLICT DO UPDATE locks the conflicting row and judges the
 * WHERE on its newest version, after waiting for any other taker's
 * transaction; two takers of a pond nobody leased yet meet on the primary
 * key, and the second then finds the first's live lease. RETURNING says
 * whether the lease was taken.
 */
export async function takePondLease(db: Queryable, t: Tables, pond: string, worker: string, ttlMs: number, at: string | null): Promise<string | undefined> {
  const now = nowSql('$1')
  const result = await db.query<{ token: string }>(
    `INSERT INTO ${t.pondLeases} AS lease (pond, token, worker, expires_at) VALUES ($2, $3, $4, ${now} + make_interval(secs => $5::double precision / 1000))
     ON CONFLICT (pond) DO UPDATE SET token = excluded.token, worker = excluded.worker, expires_at = excluded.expires_at
     WHERE lease.expires_at < ${now}
     RETURNING token`,
    [at, pond, randomUUID(), worker, ttlMs],
  )
  return result.rows[0]?.token
}

/**
 * renewPondLease: pushes the lease's expiry to the database's now + ttl;
 * false when the token is no longer current. An expired lease nobody took is
 * still its holder's: a taker replaces the token first, under the row lock.
 */
export async function renewPondLease(db: Queryable, t: Tables, pond: string, token: string, ttlMs: number, at: string | null): Promise<boolean> {
  const result = await db.query(`UPDATE ${t.pondLeases} SET expires_at = ${nowSql('$1')} + make_interval(secs => $4::double precision / 1000) WHERE pond = $2 AND token = $3`, [
    at,
    pond,
    token,
    ttlMs,
  ])
  return result.rowCount === 1
}

/** releasePondLease: frees the pond, only if the token is current: a newer holder's lease stays. */
export async function releasePondLease(db: Queryable, t: Tables, pond: string, token: string): Promise<void> {
  await db.query(`DELETE FROM ${t.pondLeases} WHERE pond = $1 AND token = $2`, [pond, token])
}

/** pondLeaseHeld: a lease on the pond that has not expired, by the database's clock. */
export async function pondLeaseHeld(db: Queryable, t: Tables, pond: string, at: string | null): Promise<boolean> {
  const result = await db.query(`SELECT 1 FROM ${t.pondLeases} WHERE pond = $2 AND expires_at >= ${nowSql('$1')}`, [at, pond])
  return (result.rowCount ?? 0) > 0
}
