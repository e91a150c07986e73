import { insertEvent, type FileRow, type LedgerDb } from '../db.js'

/**
 * requeue: FAILED or COMMITTED → PENDING with attempts and lapses reset, plus
 * its event. A COMMITTED file is requeued to be loaded again: its next claim
 * starts a new load. A FAILED one continues its load, so the next claim asks
 * the destination first (a load whose outcome was unknown may have committed).
 *
 * Takes (pipeline, hash) pairs. A file in PROCESSING whose lease is live is
 * refused (a worker is on it); PENDING is left as is. Returns the rows it
 * changed and the ones it refused with why. The caller runs it in one
 * IMMEDIATE transaction, so a file cannot be claimed halfway through.
 */
export function requeue(
  ledger: LedgerDb,
  files: readonly { pipeline: string; hash: string }[],
  worker: string,
  now: number,
): { requeued: FileRow[]; refused: { row: FileRow; reason: string }[] } {
  const at = new Date(now).toISOString()
  const requeued: FileRow[] = []
  const refused: { row: FileRow; reason: string }[] = []
  for (const { pipeline, hash } of files) {
    const row = ledger.statement('SELECT * FROM files WHERE pipeline = ? AND hash = ?').get(pipeline, hash) as FileRow | undefined
    if (row === undefined) continue
    if (row.state === 'PENDING') {
      refused.push({ row, reason: 'already pending' })
      continue
    }
    if (row.state === 'PROCESSING' && (row.lease_expires_at ?? 0) >= now) {
      refused.push({ row, reason: `being loaded by ${row.worker ?? 'another worker'}` })
      continue
    }
    ledger
      .statement(
        `UPDATE files SET state = 'PENDING', attempts = 0, lapses = 0, load_id = CASE WHEN state = 'COMMITTED' THEN NULL ELSE load_id END, error = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ?
         WHERE pipeline = ? AND hash = ?`,
      )
      .run(at, pipeline, hash)
    insertEvent(ledger, at, { pipeline, hash, event: 'file:requeued', from: row.state, to: 'PENDING', attempt: row.attempts, worker, path: null })
    requeued.push({ ...row, state: 'PENDING', attempts: 0, lapses: 0, load_id: row.state === 'COMMITTED' ? null : row.load_id, error: null, updated_at: at })
  }
  return { requeued, refused }
}
