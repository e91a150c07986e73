import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * archived: records what `onCommitted` did to a COMMITTED file's copy in its
 * source, as the SQLite store does (sqlite/sql/archived.ts). One statement:
 * the event is inserted only while the file is COMMITTED.
 */
export async function archived(db: Queryable, t: Tables, pipeline: string, hash: string, path: string, worker: string, what: string, at: string | null): Promise<boolean> {
  const result = await db.query(
    `INSERT INTO ${t.events} (at, pipeline, hash, event, from_state, to_state, worker, path, error)
     SELECT ${nowSql('$1')}, pipeline, hash, 'file:archived', 'COMMITTED', 'COMMITTED', $4, $5, $6 FROM ${t.files}
     WHERE pipeline = $2 AND hash = $3 AND state = 'COMMITTED'`,
    [at, pipeline, hash, worker, path, what],
  )
  return result.rowCount === 1
}
