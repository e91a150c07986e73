import { existsSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'

/**
 * The promises filedge makes, written as checks over the real databases a run
 * left behind. Each check returns a list of problems (empty when the promise
 * holds), so a failing test prints every violation at once, in words.
 *
 * Shared by the concurrency, crash-loop and lease suites: they differ in how
 * they attack a run, not in what "correct" means afterwards.
 */

export interface LedgerFileRow {
  readonly pipeline: string
  readonly hash: string
  readonly path: string
  readonly state: string
  readonly attempts: number
  readonly lease_token: string | null
  readonly lease_expires_at: number | null
  readonly worker: string | null
  readonly rows: number | null
  readonly error: string | null
}

export interface LedgerEventRow {
  readonly id: number
  readonly pipeline: string
  readonly hash: string
  readonly event: string
  readonly from_state: string | null
  readonly to_state: string | null
  readonly attempt: number | null
  readonly worker: string | null
  readonly path: string | null
  readonly error: string | null
}

export interface LedgerSnapshot {
  readonly files: readonly LedgerFileRow[]
  /** Every event, in id order. */
  readonly events: readonly LedgerEventRow[]
  readonly paths: readonly { readonly pipeline: string; readonly hash: string; readonly path: string }[]
}

/** Per file hash in a destination table: how many rows, and whether their row numbers are exactly 1..n. */
export interface HashRows {
  readonly rows: number
  readonly distinctRowNumbers: number
  readonly minRowNumber: number
  readonly maxRowNumber: number
  /** Sum of an integer column, when asked for: a cheap content checksum. */
  readonly sum: number | null
}

function readonly<T>(file: string, read: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return read(db)
  } finally {
    db.close()
  }
}

/** A run killed before it opened its ledger leaves none: that is an empty ledger, not an error. */
export function readLedger(dir: string, ledger = '.filedge/ledger.db'): LedgerSnapshot {
  if (!existsSync(path.join(dir, ledger))) return { files: [], events: [], paths: [] }
  return readonly(path.join(dir, ledger), (db) => ({
    files: db.prepare('SELECT pipeline, hash, path, state, attempts, lease_token, lease_expires_at, worker, rows, error FROM files ORDER BY path').all() as LedgerFileRow[],
    events: db.prepare('SELECT id, pipeline, hash, event, from_state, to_state, attempt, worker, path, error FROM events ORDER BY id').all() as LedgerEventRow[],
    paths: db.prepare('SELECT pipeline, hash, path FROM file_paths ORDER BY path').all() as { pipeline: string; hash: string; path: string }[],
  }))
}

/** Rows per `_source_file_hash` in one destination table (an absent database or table has none). */
export function rowsByHash(dir: string, table: string, sumColumn?: string, database = 'warehouse.db'): Map<string, HashRows> {
  const quoted = (name: string) => `"${name.replace(/"/g, '""')}"`
  // A run killed before its destination opened leaves no database (the crash loop's early kills).
  if (!existsSync(path.join(dir, database))) return new Map()
  return readonly(path.join(dir, database), (db) => {
    const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table)
    if (exists === undefined) return new Map()
    const sum = sumColumn === undefined ? 'NULL' : `SUM(${quoted(sumColumn)})`
    const rows = db
      .prepare(
        `SELECT _source_file_hash AS hash, COUNT(*) AS rows, COUNT(DISTINCT _source_row_number) AS distinctRowNumbers,
                MIN(_source_row_number) AS minRowNumber, MAX(_source_row_number) AS maxRowNumber, ${sum} AS sum
         FROM ${quoted(table)} GROUP BY _source_file_hash`,
      )
      .all() as (HashRows & { hash: string })[]
    return new Map(rows.map(({ hash, ...counts }) => [hash, counts]))
  })
}

/**
 * The events table explains every file: its events, in order, are a valid
 * path through the state machine, attempts count up one per claim, only the
 * holder of the current lease completes or fails it, and the last event ends
 * in the state (and attempts) the files table shows.
 *
 *   discovered  ∅ → PENDING               (first event, only once)
 *   alias       S → S                     (same bytes seen under another name)
 *   claimed     PENDING → PROCESSING      attempt + 1
 *   retried     FAILED → PROCESSING       attempt + 1
 *   reclaimed   PROCESSING → PROCESSING   the same attempt (the previous lease expired: a lapse)
 *   reopened    COMMITTED → PROCESSING    attempt 1 (a truncate file's bytes arrived again)
 *   committed   PROCESSING → COMMITTED    by the holder
 *   healed      PROCESSING → COMMITTED    by the holder (the destination already had the load)
 *   failed      PROCESSING → FAILED       by the holder; after too many lapses in a row
 *                                         ("lease expired N times in a row") the attempts
 *                                         are raised to the cap
 *   released    PROCESSING → PENDING      by the holder, attempt given back
 *   requeued    FAILED|COMMITTED|PROCESSING → PENDING, attempts reset
 */
export function historyProblems(snapshot: LedgerSnapshot): string[] {
  const problems: string[] = []
  const byFile = new Map<string, LedgerEventRow[]>()
  for (const event of snapshot.events) {
    const key = `${event.pipeline}\0${event.hash}`
    const list = byFile.get(key) ?? []
    list.push(event)
    byFile.set(key, list)
  }
  const known = new Set(snapshot.files.map((file) => `${file.pipeline}\0${file.hash}`))
  for (const key of byFile.keys()) {
    if (!known.has(key)) problems.push(`events for a file the ledger does not know: ${key.replace('\0', ' ')}`)
  }

  for (const file of snapshot.files) {
    const name = `${file.path} (${file.hash.slice(0, 10)})`
    const events = byFile.get(`${file.pipeline}\0${file.hash}`) ?? []
    const problem = (event: LedgerEventRow, text: string) => problems.push(`${name} event #${event.id} ${event.event}: ${text}`)
    let state: string | null = null
    let attempts = 0
    let holder: string | null = null
    events.forEach((event, index) => {
      if (event.from_state !== state) problem(event, `starts from ${event.from_state}, but the file was ${state}`)
      const to = (expected: string) => {
        if (event.to_state !== expected) problem(event, `ends in ${event.to_state}, expected ${expected}`)
      }
      const from = (...allowed: (string | null)[]) => {
        if (!allowed.includes(event.from_state)) problem(event, `cannot start from ${event.from_state}`)
      }
      const claim = (expected = attempts + 1) => {
        to('PROCESSING')
        if (event.attempt !== expected) problem(event, `attempt ${event.attempt}, expected ${expected}`)
        attempts = event.attempt ?? attempts
        holder = event.worker
      }
      const byHolder = () => {
        if (event.attempt !== attempts) problem(event, `attempt ${event.attempt}, but the current attempt is ${attempts}`)
        if (event.worker !== holder) problem(event, `written by ${event.worker}, but the lease was held by ${holder}`)
      }
      switch (event.event) {
        case 'file:discovered':
          if (index !== 0) problem(event, 'is not the first event')
          from(null)
          to('PENDING')
          break
        case 'file:alias':
          if (event.to_state !== event.from_state) problem(event, 'changes the state')
          break
        case 'file:claimed':
          from('PENDING')
          claim()
          break
        case 'file:retried':
          from('FAILED')
          claim()
          break
        case 'file:reclaimed':
          from('PROCESSING')
          claim(attempts)
          break
        case 'file:reopened':
          from('COMMITTED')
          claim(1)
          break
        case 'file:committed':
        case 'file:healed':
          from('PROCESSING')
          to('COMMITTED')
          byHolder()
          holder = null
          break
        case 'file:failed':
          from('PROCESSING')
          to('FAILED')
          if (/^lease expired \d+ times in a row/.test(event.error ?? '')) {
            if (event.worker !== holder) problem(event, `written by ${event.worker}, but the lease was held by ${holder}`)
            if ((event.attempt ?? 0) < attempts) problem(event, `attempt ${event.attempt}, below the current attempt ${attempts}`)
            attempts = event.attempt ?? attempts
          } else {
            byHolder()
          }
          holder = null
          break
        case 'file:released':
          from('PROCESSING')
          to('PENDING')
          byHolder()
          attempts = Math.max(attempts - 1, 0)
          holder = null
          break
        case 'file:replayed':
          // Its quarantined records were written out as a new file: no state change.
          from('COMMITTED')
          to('COMMITTED')
          break
        case 'file:requeued':
          from('FAILED', 'COMMITTED', 'PROCESSING')
          to('PENDING')
          attempts = 0
          holder = null
          break
        default:
          problem(event, 'is not a known event')
      }
      state = event.to_state
    })
    if (events.length === 0) problems.push(`${name}: no events`)
    if (state !== file.state) problems.push(`${name}: events end in ${state}, but the file is ${file.state}`)
    if (attempts !== file.attempts) problems.push(`${name}: events count ${attempts} attempts, the file says ${file.attempts}`)
    if (file.state === 'PROCESSING' && (file.lease_token === null || file.worker !== holder)) {
      problems.push(`${name}: PROCESSING without a lease held by the last claimer (${holder})`)
    }
    if (file.state !== 'PROCESSING' && file.lease_token !== null) problems.push(`${name}: ${file.state} but still has a lease token`)
  }
  return problems
}

/**
 * All or nothing, never twice: every file hash in the destination has exactly
 * its file's rows, numbered 1..n once each; a COMMITTED file has all its rows
 * and the ledger agrees on the count; a FAILED file has none; a file still
 * PENDING or PROCESSING (a crash before the ledger heard) has all or none.
 *
 * `expected` maps each hash to its row count (and optional checksum); a hash
 * in the destination that `expected` does not know is itself a problem.
 */
export function rowProblems(
  snapshot: LedgerSnapshot,
  destination: ReadonlyMap<string, HashRows>,
  expected: ReadonlyMap<string, { readonly rows: number; readonly sum?: number }>,
): string[] {
  const problems: string[] = []
  const ledger = new Map(snapshot.files.map((file) => [file.hash, file]))
  for (const [hash, found] of destination) {
    const name = ledger.get(hash)?.path ?? hash.slice(0, 10)
    const want = expected.get(hash)
    if (want === undefined) {
      problems.push(`${name}: ${found.rows} rows of a hash no source file has`)
      continue
    }
    if (!ledger.has(hash)) problems.push(`${name}: rows in the destination for a hash the ledger never claimed`)
    if (found.rows !== want.rows) problems.push(`${name}: ${found.rows} rows in the destination, the file has ${want.rows}`)
    if (found.distinctRowNumbers !== found.rows || found.minRowNumber !== 1 || found.maxRowNumber !== found.rows) {
      problems.push(`${name}: row numbers are not 1..${found.rows} once each (${found.distinctRowNumbers} distinct, ${found.minRowNumber}..${found.maxRowNumber})`)
    }
    if (want.sum !== undefined && found.sum !== want.sum) problems.push(`${name}: checksum ${found.sum}, expected ${want.sum}`)
  }
  for (const file of snapshot.files) {
    const found = destination.get(file.hash)?.rows ?? 0
    const want = expected.get(file.hash)?.rows
    if (file.state === 'COMMITTED') {
      if (want !== undefined && want > 0 && found !== want) problems.push(`${file.path}: COMMITTED with ${found} rows in the destination, the file has ${want}`)
      if (want !== undefined && file.rows !== want) problems.push(`${file.path}: the ledger records ${file.rows} rows, the file has ${want}`)
    }
    if (file.state === 'FAILED' && found !== 0) problems.push(`${file.path}: FAILED, yet ${found} of its rows are in the destination`)
  }
  return problems
}

/** Deterministic pseudo-random numbers (mulberry32): a failing round can be replayed from its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
