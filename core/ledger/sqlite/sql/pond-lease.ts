import { randomUUID } from 'node:crypto'
import type { LedgerDb } from '../db.js'

/**
 * Pond leases: who may run a pond now. One row per pond in `pond_leases`
 * (the one pond table that is updated), with its holder's token and expiry
 * in ms since the epoch, judged by the store's clock as file leases are.
 * Leases write no events: the runner records the run itself (sql/pond.ts).
 */

/**
 * takePondLease: a fresh token if the pond has no lease or its lease expired,
 * undefined while a live one holds it (whoever's, this worker's included: a
 * token, not a worker, is what holds a pond).
 *
 * Race-free as one statement: a writing statement takes SQLite's write lock
 * before it reads (like BEGIN IMMEDIATE), so between two processes the
 * second's upsert sees the first's row and its expiry, and its DO UPDATE
 * applies only when that lease expired. RETURNING says whether it applied.
 */
export function takePondLease(ledger: LedgerDb, pond: string, worker: string, ttlMs: number, now: number): string | undefined {
  const taken = ledger
    .statement(
      `INSERT INTO pond_leases (pond, token, worker, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (pond) DO UPDATE SET token = excluded.token, worker = excluded.worker, expires_at = excluded.expires_at
       WHERE pond_leases.expires_at < ?
       RETURNING token`,
    )
    .get(pond, randomUUID(), worker, now + ttlMs, now) as { token: string } | undefined
  return taken?.token
}

/**
 * renewPondLease: pushes the lease's expiry to now + ttl; false when the token
 * is no longer current. As with file heartbeats, an expired lease nobody took
 * is still its holder's: a taker replaces the token first.
 */
export function renewPondLease(ledger: LedgerDb, pond: string, token: string, ttlMs: number, now: number): boolean {
  return ledger.statement('UPDATE pond_leases SET expires_at = ? WHERE pond = ? AND token = ?').run(now + ttlMs, pond, token).changes === 1
}

/** releasePondLease: frees the pond, only if the token is current: a newer holder's lease stays. */
export function releasePondLease(ledger: LedgerDb, pond: string, token: string): void {
  ledger.statement('DELETE FROM pond_leases WHERE pond = ? AND token = ?').run(pond, token)
}

/** pondLeaseHeld: a lease on the pond that has not expired. */
export function pondLeaseHeld(ledger: LedgerDb, pond: string, now: number): boolean {
  return ledger.statement('SELECT 1 FROM pond_leases WHERE pond = ? AND expires_at >= ?').get(pond, now) !== undefined
}
