import { randomUUID } from 'node:crypto'
import type { LedgerDb } from '../db.js'

/**
 * Named leases: who may do, now, a thing only one process may do at a time
 * (`pond:<pond>` runs a pond, `fetch:<source>` fetches a source). One row
 * per name in `leases` (migration 8; ponds had a table of their own before),
 * with its holder's token and expiry in ms since the epoch, judged by the
 * store's clock as file leases are. Leases write no events: what the holder
 * does is recorded by itself (pond runs, cursor advances).
 */

/**
 * takeLease: a fresh token if the name has no lease or its lease expired,
 * undefined while a live one holds it (whoever's, this worker's included: a
 * token, not a worker, is what holds a name).
 *
 * Race-free as one statement: a writing statement takes SQLite's write lock
 * before it reads (like BEGIN IMMEDIATE), so between two processes the
 * second's upsert sees the first's row and its expiry, and its DO UPDATE
 * applies only when that lease expired. RETURNING says whether it applied.
 */
export function takeLease(ledger: LedgerDb, name: string, worker: string, ttlMs: number, now: number): string | undefined {
  const taken = ledger
    .statement(
      `INSERT INTO leases (name, token, worker, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET token = excluded.token, worker = excluded.worker, expires_at = excluded.expires_at
       WHERE leases.expires_at < ?
       RETURNING token`,
    )
    .get(name, randomUUID(), worker, now + ttlMs, now) as { token: string } | undefined
  return taken?.token
}

/**
 * renewLease: pushes the lease's expiry to now + ttl; false when the token is
 * no longer current. As with file heartbeats, an expired lease nobody took
 * is still its holder's: a taker replaces the token first.
 */
export function renewLease(ledger: LedgerDb, name: string, token: string, ttlMs: number, now: number): boolean {
  return ledger.statement('UPDATE leases SET expires_at = ? WHERE name = ? AND token = ?').run(now + ttlMs, name, token).changes === 1
}

/** releaseLease: frees the name, only if the token is current: a newer holder's lease stays. */
export function releaseLease(ledger: LedgerDb, name: string, token: string): void {
  ledger.statement('DELETE FROM leases WHERE name = ? AND token = ?').run(name, token)
}

/** leaseHeld: a lease on the name that has not expired. */
export function leaseHeld(ledger: LedgerDb, name: string, now: number): boolean {
  return ledger.statement('SELECT 1 FROM leases WHERE name = ? AND expires_at >= ?').get(name, now) !== undefined
}

/** True while `token` is the current token of the lease `name` (expired or not: fencing is by token, see renewLease). */
export function holdsLease(ledger: LedgerDb, name: string, token: string): boolean {
  return ledger.statement('SELECT 1 FROM leases WHERE name = ? AND token = ?').get(name, token) !== undefined
}
