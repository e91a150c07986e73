import type { LedgerDb, FileRow } from '../db.js'

/**
 * status: per pipeline, how many files are in each state (FAILED split by
 * attempts so the caller can tell terminal from retryable), expired leases,
 * committed rows; and the most recent failures. Read-only.
 */
export function countStates(ledger: LedgerDb, now: number) {
  return ledger
    .statement(
      `SELECT pipeline, state, attempts, COUNT(*) AS files, COALESCE(SUM(rows), 0) AS rows, COALESCE(SUM(quarantined), 0) AS quarantined,
              SUM(CASE WHEN state = 'PROCESSING' AND lease_expires_at < ? THEN 1 ELSE 0 END) AS expired
       FROM files GROUP BY pipeline, state, attempts ORDER BY pipeline`,
    )
    .all(now) as { pipeline: string; state: string; attempts: number; files: number; rows: number; quarantined: number; expired: number }[]
}

export function recentFailures(ledger: LedgerDb, limit: number): FileRow[] {
  return ledger.statement(`SELECT * FROM files WHERE state = 'FAILED' ORDER BY updated_at DESC LIMIT ?`).all(limit) as FileRow[]
}
