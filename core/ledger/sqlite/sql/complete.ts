import type { LeaseKey, Quarantined } from '../../types.js'
import { insertEvent, type LedgerDb } from '../db.js'

/**
 * complete: PROCESSING → COMMITTED with the row count, plus its event:
 * `file:committed`, or `file:healed` (with how) when the destination already
 * held this load and nothing was loaded again.
 *
 * Takes the lease key and the rows the destination committed, and what the
 * load set aside (quarantine), kept on the file and in its event. Returns false,
 * writing nothing, if the token is no longer current: a worker that lost its
 * lease can never overwrite the outcome of the worker that reclaimed the file
 * (fencing). Runs in one IMMEDIATE transaction with the event insert.
 */
export function complete(ledger: LedgerDb, key: LeaseKey, rows: number, now: number, healed?: string, code?: string, quarantined?: Quarantined): boolean {
  const at = new Date(now).toISOString()
  const result = ledger
    .statement(
      `UPDATE files SET state = 'COMMITTED', rows = ?, lapses = 0, error = NULL, lease_token = NULL, lease_expires_at = NULL, worker = ?, committed_at = ?, updated_at = ?, code = ?,
         quarantined = ?, sidecar = ?
       WHERE pipeline = ? AND hash = ? AND lease_token = ? AND state = 'PROCESSING'`,
    )
    .run(rows, key.worker, at, at, code ?? null, quarantined?.rows ?? null, quarantined?.sidecar ?? null, key.pipeline, key.hash, key.token)
  if (result.changes !== 1) return false
  insertEvent(ledger, at, {
    pipeline: key.pipeline,
    hash: key.hash,
    event: healed === undefined ? 'file:committed' : 'file:healed',
    from: 'PROCESSING',
    to: 'COMMITTED',
    attempt: key.attempt,
    worker: key.worker,
    path: null,
    error: healed ?? null,
    quarantined: quarantined?.rows ?? null,
  })
  return true
}
