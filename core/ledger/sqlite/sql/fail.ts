import type { LeaseKey } from '../../types.js'
import { insertEvent, type LedgerDb } from '../db.js'

/**
 * fail: PROCESSING → FAILED with the error, plus its event.
 *
 * Takes the lease key, the (already redacted) error text and the retry cap.
 * Returns `lost` without writing if the token is no longer current (fencing,
 * as in complete), and `terminal` when this was the last allowed attempt:
 * later runs skip the file until it is requeued. `exhausted` (the lease
 * expired too many times in a row) makes it terminal whatever its attempts:
 * they are raised to `maxAttempts`, so every reader of the ledger (claims,
 * the stat cache, status) judges it terminal by the one rule it knows.
 * An outcome ends a run of lapses: they are reset.
 */
export function fail(ledger: LedgerDb, key: LeaseKey, error: string, maxAttempts: number, now: number, exhausted = false): { lost: boolean; terminal: boolean } {
  const at = new Date(now).toISOString()
  const attempts = exhausted ? Math.max(key.attempt, maxAttempts) : key.attempt
  const result = ledger
    .statement(
      `UPDATE files SET state = 'FAILED', error = ?, attempts = ?, lapses = CASE WHEN ? THEN lapses ELSE 0 END, lease_token = NULL, lease_expires_at = NULL, worker = ?, updated_at = ?
       WHERE pipeline = ? AND hash = ? AND lease_token = ? AND state = 'PROCESSING'`,
    )
    .run(error, attempts, exhausted ? 1 : 0, key.worker, at, key.pipeline, key.hash, key.token)
  if (result.changes !== 1) return { lost: true, terminal: false }
  insertEvent(ledger, at, { pipeline: key.pipeline, hash: key.hash, event: 'file:failed', from: 'PROCESSING', to: 'FAILED', attempt: attempts, worker: key.worker, path: null, error })
  return { lost: false, terminal: attempts >= maxAttempts }
}
