import type { LeaseKey } from '../../types.js'
import { insertEvent, type LedgerDb } from '../db.js'

/**
 * release: PROCESSING → PENDING, giving the attempt back.
 *
 * Used by a graceful stop: the file was not tried to the end, so it must not
 * count toward the retry cap. Fenced by the token like complete and fail;
 * returns false (writing nothing) if the lease was already lost.
 */
export function release(ledger: LedgerDb, key: LeaseKey, now: number): boolean {
  const at = new Date(now).toISOString()
  const result = ledger
    .statement(
      `UPDATE files SET state = 'PENDING', attempts = MAX(attempts - 1, 0), lease_token = NULL, lease_expires_at = NULL, updated_at = ?
       WHERE pipeline = ? AND hash = ? AND lease_token = ? AND state = 'PROCESSING'`,
    )
    .run(at, key.pipeline, key.hash, key.token)
  if (result.changes !== 1) return false
  insertEvent(ledger, at, { pipeline: key.pipeline, hash: key.hash, event: 'file:released', from: 'PROCESSING', to: 'PENDING', attempt: key.attempt, worker: key.worker, path: null })
  return true
}
