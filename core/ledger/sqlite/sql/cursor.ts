import { cursorAdvanceValues, cursorEventLimit, type CursorAdvance, type CursorAdvanceInput, type CursorEvent, type CursorEventName } from '../../types.js'
import type { LedgerDb } from '../db.js'
import { holdsLease } from './lease.js'

/**
 * Cursors of sources that pull (plugins/fetch): the append-only history in
 * `cursor_events` (migration 8; its triggers refuse updates and deletes). A
 * source's cursor is its newest event's `to_cursor`.
 */

interface CursorEventRow {
  id: number
  at: string
  source: string
  event: string
  from_cursor: string | null
  to_cursor: string
  file: string | null
  hash: string | null
  records: number
  pages: number
  worker: string
}

function toCursorEvent(row: CursorEventRow): CursorEvent {
  return {
    id: row.id,
    at: row.at,
    source: row.source,
    event: row.event as CursorEventName,
    from: row.from_cursor,
    to: row.to_cursor,
    file: row.file,
    hash: row.hash,
    records: row.records,
    pages: row.pages,
    worker: row.worker,
  }
}

/** cursorOf: the source's newest event, one seek down the (source, id) index. */
export function cursorOf(ledger: LedgerDb, source: string): CursorEvent | undefined {
  const row = ledger.statement('SELECT * FROM cursor_events WHERE source = ? ORDER BY id DESC LIMIT 1').get(source) as CursorEventRow | undefined
  return row === undefined ? undefined : toCursorEvent(row)
}

/** cursorEvents: oldest first; with a limit, the newest `limit` (LIMIT -1 is no limit). */
export function cursorEvents(ledger: LedgerDb, source: string, limit: number | undefined): CursorEvent[] {
  const rows = ledger.statement('SELECT * FROM cursor_events WHERE source = ? ORDER BY id DESC LIMIT ?').all(source, cursorEventLimit(limit) ?? -1) as CursorEventRow[]
  return rows.reverse().map(toCursorEvent)
}

/**
 * advanceCursor: appends `cursor:advanced` if the lease token is current and
 * the cursor is still `from` (a compare-and-set on the newest event).
 *
 * Run in BEGIN IMMEDIATE (store.ts): the write lock is taken before the two
 * checks, so no other process can take the lease or append an event between
 * them and the insert.
 */
export function advanceCursor(ledger: LedgerDb, input: CursorAdvanceInput, now: number): CursorAdvance {
  const v = cursorAdvanceValues(input)
  if (!holdsLease(ledger, v.lease, v.token)) return { status: 'lost' }
  const current = cursorOf(ledger, v.source)?.to ?? null
  if (current !== v.from) return { status: 'moved', current }
  const row = ledger
    .statement(
      `INSERT INTO cursor_events (at, source, event, from_cursor, to_cursor, file, hash, records, pages, worker)
       VALUES (?, ?, 'cursor:advanced', ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    )
    .get(new Date(now).toISOString(), v.source, v.from, v.to, v.file, v.hash, v.records, v.pages, v.worker) as CursorEventRow
  return { status: 'advanced', event: toCursorEvent(row) }
}
