import { insertEvent, type LedgerDb } from '../db.js'

/**
 * archived: records what `onCommitted` did to a COMMITTED file's copy in its
 * source (`file:archived`, with the path and what was done), in the file's
 * history. No state changes, so nothing is fenced: the file stays COMMITTED
 * whatever happens to the source's copy. Returns false, writing nothing, if
 * the file is not COMMITTED (requeued meanwhile).
 */
export function archived(ledger: LedgerDb, pipeline: string, hash: string, path: string, worker: string, what: string, now: number): boolean {
  const at = new Date(now).toISOString()
  const committed = ledger.statement(`SELECT 1 FROM files WHERE pipeline = ? AND hash = ? AND state = 'COMMITTED'`).get(pipeline, hash) !== undefined
  if (committed) insertEvent(ledger, at, { pipeline, hash, event: 'file:archived', from: 'COMMITTED', to: 'COMMITTED', attempt: null, worker, path, error: what })
  return committed
}
