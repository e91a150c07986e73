import { randomUUID } from 'node:crypto'
import type { ClaimInput, ClaimResult } from '../../types.js'
import { insertEvent, type FileRow, type LedgerDb } from '../db.js'
import { recordStat } from './stats.js'

/**
 * claim: registers a discovered file and tries to lease it.
 *
 * Takes the file's (pipeline, hash, path, size), the worker, the retry cap and
 * the lease length. Returns a lease token, or why the file is not available:
 * already COMMITTED, terminally FAILED, or held by a live lease.
 *
 * Safe under concurrency: the caller runs it in one `BEGIN IMMEDIATE`
 * transaction, which takes SQLite's write lock before the first read, so no
 * other worker can change the row between the SELECT and the UPDATE below.
 * Registration is INSERT … ON CONFLICT DO NOTHING: two workers discovering
 * the same file is normal, not an error. (A single UPDATE … RETURNING could
 * take the lease too, but it cannot report the state it came from, which the
 * event history needs; under the write lock the two statements are
 * equivalent.)
 */
export function claim(ledger: LedgerDb, input: ClaimInput, now: number): ClaimResult {
  const at = new Date(now).toISOString()
  const { pipeline, hash, path, worker } = input
  const inserted = ledger
    .statement(`INSERT INTO files (pipeline, hash, path, size, state, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?) ON CONFLICT DO NOTHING`)
    .run(pipeline, hash, path, input.size, at, at)
  const isNew = inserted.changes === 1
  if (isNew) insertEvent(ledger, at, { pipeline, hash, event: 'file:discovered', from: null, to: 'PENDING', attempt: null, worker, path })

  const row = ledger.statement('SELECT state, attempts, lease_expires_at, worker FROM files WHERE pipeline = ? AND hash = ?').get(pipeline, hash) as Pick<
    FileRow,
    'state' | 'attempts' | 'lease_expires_at' | 'worker'
  >
  if (input.stat !== undefined) recordStat(ledger, pipeline, path, hash, input.stat)
  const aliased = ledger.statement('INSERT INTO file_paths (pipeline, hash, path, first_seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING').run(pipeline, hash, path, at)
  if (aliased.changes === 1 && !isNew) {
    insertEvent(ledger, at, { pipeline, hash, event: 'file:alias', from: row.state, to: row.state, attempt: null, worker, path })
  }

  if (row.state === 'COMMITTED') return { status: 'skipped', reason: 'committed', isNew, message: 'already committed' }
  if (row.state === 'FAILED' && row.attempts >= input.maxAttempts) {
    return { status: 'skipped', reason: 'terminal', isNew, message: `failed ${row.attempts} times (retry.attempts is ${input.maxAttempts}); run \`filedge requeue\` to try again` }
  }
  const expired = row.state === 'PROCESSING' && (row.lease_expires_at ?? 0) < now
  if (row.state === 'PROCESSING' && !expired) {
    return { status: 'skipped', reason: 'held', isNew, message: `being loaded by ${row.worker ?? 'another worker'}` }
  }
  if (expired && row.attempts >= input.maxAttempts) {
    // The worker died on the last allowed attempt: the file is terminal, like any other failure.
    const error = `lease expired: worker ${row.worker ?? '?'} stopped during attempt ${row.attempts} of ${input.maxAttempts}`
    ledger
      .statement(`UPDATE files SET state = 'FAILED', error = ?, lease_token = NULL, lease_expires_at = NULL, updated_at = ? WHERE pipeline = ? AND hash = ?`)
      .run(error, at, pipeline, hash)
    insertEvent(ledger, at, { pipeline, hash, event: 'file:failed', from: 'PROCESSING', to: 'FAILED', attempt: row.attempts, worker, path, error })
    return { status: 'skipped', reason: 'terminal', isNew, message: error }
  }

  const token = randomUUID()
  const attempt = row.attempts + 1
  ledger
    .statement(`UPDATE files SET state = 'PROCESSING', attempts = ?, lease_token = ?, lease_expires_at = ?, worker = ?, updated_at = ? WHERE pipeline = ? AND hash = ?`)
    .run(attempt, token, now + input.ttlMs, worker, at, pipeline, hash)
  const event = expired ? 'file:reclaimed' : row.state === 'FAILED' ? 'file:retried' : 'file:claimed'
  const error = expired ? `lease of ${row.worker ?? '?'} expired` : null
  insertEvent(ledger, at, { pipeline, hash, event, from: row.state, to: 'PROCESSING', attempt, worker, path, error })
  return { status: 'claimed', token, attempt, isNew, reclaimed: expired, retried: row.state === 'FAILED' }
}
