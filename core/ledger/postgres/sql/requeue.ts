import { fileColumns, nowSql, type FileRow, type Queryable, type Tables } from '../db.js'

/**
 * requeue: FAILED or COMMITTED → PENDING with attempts and lapses reset, plus
 * its event. A COMMITTED file starts a new load; a FAILED one continues its
 * load (as in the SQLite store, sqlite/sql/requeue.ts).
 *
 * Takes (pipeline, hash) pairs. A file in PROCESSING whose lease is live is
 * refused (a worker is on it); PENDING is left as is. Returns the rows it
 * changed and the ones it refused with why. The caller runs it in one
 * transaction; each row is locked (FOR UPDATE, waiting: an operator's requeue
 * should not be skipped over) before it is judged, so a file cannot be
 * claimed halfway through. Files are locked in (pipeline, hash) order, so two
 * concurrent requeues cannot deadlock.
 */
export async function requeue(
  tx: Queryable,
  t: Tables,
  files: readonly { pipeline: string; hash: string }[],
  worker: string,
  at: string | null,
): Promise<{ requeued: FileRow[]; refused: { row: FileRow; reason: string }[] }> {
  const now = nowSql('$1')
  const requeued: FileRow[] = []
  const refused: { row: FileRow; reason: string }[] = []
  const ordered = [...files].sort((a, b) => (a.pipeline === b.pipeline ? (a.hash < b.hash ? -1 : 1) : a.pipeline < b.pipeline ? -1 : 1))
  for (const { pipeline, hash } of ordered) {
    const found = await tx.query<FileRow & { live: boolean }>(
      `SELECT ${fileColumns(t, 'f')}, COALESCE(f.lease_expires_at >= ${now}, false) AS live
       FROM ${t.files} f WHERE f.pipeline = $2 AND f.hash = $3 FOR UPDATE`,
      [at, pipeline, hash],
    )
    const row = found.rows[0]
    if (row === undefined) continue
    if (row.state === 'PENDING') {
      refused.push({ row, reason: 'already pending' })
      continue
    }
    if (row.state === 'PROCESSING' && row.live) {
      refused.push({ row, reason: `being loaded by ${row.worker ?? 'another worker'}` })
      continue
    }
    const updated = await tx.query<{ updated_at: Date }>(
      `WITH requeued AS (
         UPDATE ${t.files} SET state = 'PENDING', attempts = 0, lapses = 0, load_id = CASE WHEN state = 'COMMITTED' THEN NULL ELSE load_id END, error = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = ${now}
         WHERE pipeline = $2 AND hash = $3
         RETURNING updated_at
       ), logged AS (
         INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, attempt, worker)
         SELECT updated_at, $2, $3, 'file:requeued', $4::text, 'PENDING', $5::integer, $6::text FROM requeued
       )
       SELECT updated_at FROM requeued`,
      [at, pipeline, hash, row.state, row.attempts, worker],
    )
    requeued.push({ ...row, state: 'PENDING', attempts: 0, lapses: 0, load_id: row.state === 'COMMITTED' ? null : row.load_id, error: null, lease_expires_at: null, updated_at: updated.rows[0].updated_at })
  }
  return { requeued, refused }
}
