import { nowSql, type Queryable, type Tables } from '../db.js'
import type { EventRow } from './find.js'

/**
 * replayed: records that a COMMITTED file's quarantined records were written
 * out as a new input file, as the SQLite store does (sqlite/sql/replayed.ts).
 * One statement: the event is inserted only while the file is COMMITTED by
 * the load that set the records aside.
 */
export async function replayed(db: Queryable, t: Tables, pipeline: string, hash: string, loadId: string, path: string, worker: string, what: string, at: string | null): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, worker, path, error)
     SELECT ${nowSql('$1')}, pipeline, hash, 'file:replayed', 'COMMITTED', 'COMMITTED', $5, $6, $7 FROM ${t.files}
     WHERE pipeline = $2 AND hash = $3 AND state = 'COMMITTED' AND load_id = $4`,
    [at, pipeline, hash, loadId, worker, path, what],
  )
  return result.rowCount === 1
}

/** The file:replayed events whose new file is at `path`. */
export async function replaysTo(db: Queryable, t: Tables, path: string): Promise<EventRow[]> {
  const result = await db.query<EventRow>(`SELECT * FROM ${t.events} WHERE event = 'file:replayed' AND path = $1 ORDER BY id`, [path])
  return result.rows
}
