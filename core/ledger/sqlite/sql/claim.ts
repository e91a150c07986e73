import { randomUUID } from 'node:crypto'
import { lapsedMessage, type ClaimInput, type ClaimResult } from '../../types.js'
import { insertEvent, type FileRow, type LedgerDb } from '../db.js'
import { recordStat } from './stats.js'

/**
 * claim: registers a discovered file and tries to lease it.
 *
 * Takes the file's (pipeline, hash, path, size, version), the worker, the
 * retry and lapse budgets and the lease length. Returns a lease token and the
 * load id, or why the file is not available: already COMMITTED, terminally
 * FAILED, or held by a live lease.
 *
 * Safe under concurrency: the caller runs it in one `BEGIN IMMEDIATE`
 * transaction, which takes SQLite's write lock before the first read, so no
 * other worker can change the row between the SELECT and the UPDATE below.
 * Registration is INSERT … ON CONFLICT DO NOTHING: two workers discovering
 * the same file is normal, not an error. (A single UPDATE … RETURNING could
 * take the lease too, but it cannot report the state it came from, which the
 * event history needs; under the write lock the two statements are
 * equivalent.)
 *
 * Loads and lapses. A load (`load_id`) starts afresh on the first claim, on
 * a requeue of a COMMITTED file and when a truncate file's bytes arrive again
 * (`reopenOnArrival`); retries, reclaims and releases continue it, so the
 * destination's marker of that load tells whether it already committed.
 * A lease that expired is a lapse, not a failed attempt: the worker died or
 * froze, which says nothing about the file. A reclaim continues the same
 * attempt and counts the lapse; `maxLapses` lapses in a row hand the claimer
 * a lease marked `lapsed`, and the caller either heals the file (the
 * destination has the load) or fails it terminally.
 */
export function claim(ledger: LedgerDb, input: ClaimInput, now: number): ClaimResult {
  const at = new Date(now).toISOString()
  const { pipeline, hash, path, worker } = input
  const version = input.version ?? null
  const inserted = ledger
    .statement(`INSERT INTO files (pipeline, hash, path, size, state, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, 'PENDING', 0, ?, ?) ON CONFLICT DO NOTHING`)
    .run(pipeline, hash, path, input.size, at, at)
  const isNew = inserted.changes === 1
  if (isNew) insertEvent(ledger, at, { pipeline, hash, event: 'file:discovered', from: null, to: 'PENDING', attempt: null, worker, path })

  // A file registered just now is PENDING with nothing behind it, and none of its paths is known yet: no need to read either.
  type Row = Pick<FileRow, 'state' | 'attempts' | 'lapses' | 'lease_expires_at' | 'worker' | 'load_id'>
  const row: Row = isNew
    ? { state: 'PENDING', attempts: 0, lapses: 0, lease_expires_at: null, worker: null, load_id: null }
    : (ledger.statement('SELECT state, attempts, lapses, lease_expires_at, worker, load_id FROM files WHERE pipeline = ? AND hash = ?').get(pipeline, hash) as Row)
  if (input.remember === true && input.version !== undefined) recordStat(ledger, pipeline, path, hash, { size: input.size, version: input.version })
  const seen = isNew
    ? undefined
    : (ledger.statement('SELECT version FROM file_paths WHERE pipeline = ? AND hash = ? AND path = ?').get(pipeline, hash, path) as { version: string | null } | undefined)
  const expired = row.state === 'PROCESSING' && (row.lease_expires_at ?? 0) < now
  const held = row.state === 'PROCESSING' && !expired
  if (seen === undefined) {
    ledger.statement('INSERT INTO file_paths (pipeline, hash, path, first_seen_at, version) VALUES (?, ?, ?, ?, ?)').run(pipeline, hash, path, at, version)
    if (!isNew) insertEvent(ledger, at, { pipeline, hash, event: 'file:alias', from: row.state, to: row.state, attempt: null, worker, path })
  } else if (version !== null && seen.version !== version && !held) {
    // Not while another worker holds the file: the arrival is noticed by the claim after it.
    ledger.statement('UPDATE file_paths SET version = ? WHERE pipeline = ? AND hash = ? AND path = ?').run(version, pipeline, hash, path)
  }
  // A path new to these bytes, or a known path with a new version; a row from before versions were kept says nothing.
  const arrived = !isNew && (seen === undefined || (version !== null && seen.version !== null && seen.version !== version))

  if (row.state === 'COMMITTED' && !(input.reopenOnArrival === true && arrived)) return { status: 'skipped', reason: 'committed', isNew, message: 'already committed' }
  if (row.state === 'FAILED' && row.attempts >= input.maxAttempts) {
    return { status: 'skipped', reason: 'terminal', isNew, message: `failed ${row.attempts} times (retry.attempts is ${input.maxAttempts}); run \`filedge requeue\` to try again` }
  }
  if (held) return { status: 'skipped', reason: 'held', isNew, message: `being loaded by ${row.worker ?? 'another worker'}` }

  const token = randomUUID()
  const reopened = row.state === 'COMMITTED'
  // A reclaim continues the attempt the dead worker started; anything else is a new attempt (a reopened file starts over).
  const attempt = expired ? Math.max(row.attempts, 1) : reopened ? 1 : row.attempts + 1
  const lapses = expired ? row.lapses + 1 : 0
  const fresh = row.load_id === null || reopened
  const loadId = fresh ? randomUUID() : row.load_id!
  ledger
    .statement(
      `UPDATE files SET state = 'PROCESSING', attempts = ?, lapses = ?, load_id = ?, lease_token = ?, lease_expires_at = ?, worker = ?, updated_at = ? WHERE pipeline = ? AND hash = ?`,
    )
    .run(attempt, lapses, loadId, token, now + input.ttlMs, worker, at, pipeline, hash)
  const event = expired ? 'file:reclaimed' : reopened ? 'file:reopened' : row.state === 'FAILED' ? 'file:retried' : 'file:claimed'
  const error = expired
    ? `lease of ${row.worker ?? '?'} expired (lapse ${lapses} of ${input.maxLapses})`
    : reopened
      ? `committed before; its bytes arrived again at ${path}, and the newest arrival wins`
      : null
  insertEvent(ledger, at, { pipeline, hash, event, from: row.state, to: 'PROCESSING', attempt, worker, path, error })
  const lapsed = expired ? lapsedMessage(lapses, input.maxLapses, row.worker, attempt) : undefined
  return {
    status: 'claimed',
    token,
    attempt,
    loadId,
    isNew,
    reclaimed: expired,
    retried: row.state === 'FAILED',
    reopened,
    // A load that may have committed without the ledger hearing of it: reclaimed, failed (an unknown COMMIT outcome), or released or requeued mid-way.
    verify: !fresh,
    ...(lapsed === undefined ? {} : { lapsed }),
  }
}
