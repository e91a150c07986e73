import { insertEvent, type LedgerDb } from '../db.js'

/**
 * replayed: records in a COMMITTED file's history that its quarantined
 * records were written out as a new input file (`file:replayed`, with the
 * new file's path, and its hash in the text), so the new file's lineage
 * leads back here. No state changes. Returns false, writing nothing, unless
 * the file is COMMITTED by the load that set the records aside: a sidecar
 * of a load that failed, or that a later load replaced, is not replayed.
 */
export function replayed(ledger: LedgerDb, pipeline: string, hash: string, loadId: string, path: string, worker: string, what: string, now: number): boolean {
  const at = new Date(now).toISOString()
  const current = ledger.statement(`SELECT 1 FROM files WHERE pipeline = ? AND hash = ? AND state = 'COMMITTED' AND load_id = ?`).get(pipeline, hash, loadId) !== undefined
  if (current) insertEvent(ledger, at, { pipeline, hash, event: 'file:replayed', from: 'COMMITTED', to: 'COMMITTED', attempt: null, worker, path, error: what })
  return current
}

/** The file:replayed events whose new file is at `path`. */
export function replaysTo(ledger: LedgerDb, path: string) {
  return ledger.statement(`SELECT * FROM events WHERE event = 'file:replayed' AND path = ? ORDER BY id`).all(path)
}
