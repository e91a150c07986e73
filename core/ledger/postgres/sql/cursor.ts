import { cursorAdvanceValues, cursorEventLimit, type CursorAdvance, type CursorAdvanceInput, type CursorEvent, type CursorEventName } from '../../types.js'
import { nowSql, type Queryable, type Tables } from '../db.js'
import { lockLease } from './lease.js'

/**
 * Cursors of sources that pull, as in the SQLite store (sqlite/sql/cursor.ts):
 * the append-only history in `cursor_events` (migration 7; its triggers
 * refuse updates, deletes and truncation). A source's cursor is its newest
 * event's `to_cursor`. Reads order by (source, id) although the source is
 * fixed, so the planner walks that index (see sql/pond.ts for the numbers).
 */

interface CursorEventRow {
  id: string
  at: Date
  source: string
  event: string
  from_cursor: string | null
  to_cursor: string
  file: string | null
  hash: string | null
  records: string
  pages: number
  worker: string
}

function toCursorEvent(row: CursorEventRow): CursorEvent {
  return {
    id: Number(row.id),
    at: row.at.toISOString(),
    source: row.source,
    event: row.event as CursorEventName,
    from: row.from_cursor,
    to: row.to_cursor,
    file: row.file,
    hash: row.hash,
    records: Number(row.records),
    pages: row.pages,
    worker: row.worker,
  }
}

export async function cursorOf(db: Queryable, t: Tables, source: string): Promise<CursorEvent | undefined> {
  const result = await db.query<CursorEventRow>(`SELECT * FROM ${t.cursorEvents} WHERE source = $1 ORDER BY source DESC, id DESC LIMIT 1`, [source])
  return result.rows.length === 0 ? undefined : toCursorEvent(result.rows[0])
}

/** cursorEvents: oldest first; with a limit, the newest `limit` (LIMIT NULL is no limit). */
export async function cursorEvents(db: Queryable, t: Tables, source: string, limit: number | undefined): Promise<CursorEvent[]> {
  const result = await db.query<CursorEventRow>(`SELECT * FROM ${t.cursorEvents} WHERE source = $1 ORDER BY source DESC, id DESC LIMIT $2`, [source, cursorEventLimit(limit)])
  return result.rows.reverse().map(toCursorEvent)
}

/**
 * advanceCursor: appends `cursor:advanced` if the lease token is current and
 * the cursor is still `from`.
 *
 * Inside one transaction (store.ts): the lease row is locked first
 * (lockLease), so a taker waits until the event is in, and two holders can
 * never both pass, since a token is current for one of them at most. The
 * newest event is read after the lock: a process that advanced under an
 * earlier token committed before its lease could be taken.
 */
export async function advanceCursor(db: Queryable, t: Tables, input: CursorAdvanceInput, at: string | null): Promise<CursorAdvance> {
  const v = cursorAdvanceValues(input)
  if (!(await lockLease(db, t, v.lease, v.token))) return { status: 'lost' }
  const current = (await cursorOf(db, t, v.source))?.to ?? null
  if (current !== v.from) return { status: 'moved', current }
  const result = await db.query<CursorEventRow>(
    `INSERT INTO ${t.cursorEvents} (at, source, event, from_cursor, to_cursor, file, hash, records, pages, worker)
     VALUES (${nowSql('$1')}, $2, 'cursor:advanced', $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
    [at, v.source, v.from, v.to, v.file, v.hash, v.records, v.pages, v.worker],
  )
  return { status: 'advanced', event: toCursorEvent(result.rows[0]) }
}
