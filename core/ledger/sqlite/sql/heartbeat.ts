import type { LeaseKey } from '../../types.js'
import type { LedgerDb } from '../db.js'

/**
 * heartbeat: pushes a held lease's expiry to now + ttl.
 *
 * Takes the lease key; returns false when the token is no longer current (the
 * file was reclaimed by another worker), which tells the loader to abort.
 * Fenced by the token in the WHERE clause. An expired lease that nobody has
 * reclaimed yet is still ours: renewing it is safe because a reclaim replaces
 * the token first. Heartbeats write no event: they are not transitions.
 */
export function heartbeat(ledger: LedgerDb, key: LeaseKey, ttlMs: number, now: number): boolean {
  const result = ledger
    .statement(`UPDATE files SET lease_expires_at = ? WHERE pipeline = ? AND hash = ? AND lease_token = ? AND state = 'PROCESSING'`)
    .run(now + ttlMs, key.pipeline, key.hash, key.token)
  return result.changes === 1
}

/** holds: whether the lease token is still current. Read-only. */
export function holds(ledger: LedgerDb, key: LeaseKey): boolean {
  return ledger.statement(`SELECT 1 FROM files WHERE pipeline = ? AND hash = ? AND lease_token = ? AND state = 'PROCESSING'`).get(key.pipeline, key.hash, key.token) !== undefined
}
