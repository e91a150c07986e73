import { pondEventLimit, pondEventValues, type PondEvent, type PondEventFilter, type PondEventInput, type PondEventName, type PondTrigger } from '../../types.js'
import { nowSql, type Queryable, type Tables } from '../db.js'

/**
 * Pond events, as in the SQLite store (sqlite/sql/pond.ts): the append-only
 * history of pond runs and of their ripples. Rows are only ever inserted (the
 * table's triggers refuse the rest, migration 6).
 *
 * Reads of a pond's newest events order by (pond, id) although the pond is
 * fixed: ordered by id alone, the planner walked the primary key backwards
 * and filtered by pond, which reads the whole table when the pond has no
 * match. Measured in pondOutcomes over 400,000 events of 20 ponds: 40 ms
 * that way (the NULL that ends its walk read every row), 0.5 ms this way.
 */

interface PondEventRow {
  id: string
  at: Date
  pond: string
  version: string
  run_id: string
  event: string
  ripple: string | null
  outlet: string
  trigger: string
  freshness: Date
  input_version: string | null
  data_version: string | null
  error: string | null
  duration_ms: string | null
  rows: string | null
  worker: string
}

function toPondEvent(row: PondEventRow): PondEvent {
  return {
    id: Number(row.id),
    at: row.at.toISOString(),
    pond: row.pond,
    version: row.version,
    runId: row.run_id,
    event: row.event as PondEventName,
    ripple: row.ripple,
    outlet: row.outlet,
    trigger: row.trigger as PondTrigger,
    freshness: row.freshness.toISOString(),
    inputVersion: row.input_version,
    dataVersion: row.data_version,
    error: row.error,
    durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
    rows: row.rows === null ? null : Number(row.rows),
    worker: row.worker,
  }
}

/** recordPond: appends one event, stamped with the database's clock, and returns it as stored. One INSERT: nothing to race. */
export async function recordPond(db: Queryable, t: Tables, input: PondEventInput, at: string | null): Promise<PondEvent> {
  const v = pondEventValues(input)
  const result = await db.query<PondEventRow>(
    `INSERT INTO ${t.pondEvents} (at, pond, version, run_id, event, ripple, outlet, trigger, freshness, input_version, data_version, error, duration_ms, rows, worker)
     VALUES (${nowSql('$1')}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING *`,
    [at, v.pond, v.version, v.runId, v.event, v.ripple, v.outlet, v.trigger, v.freshness, v.inputVersion, v.dataVersion, v.error, v.durationMs, v.rows, v.worker],
  )
  return toPondEvent(result.rows[0])
}

/**
 * pondEvents: a pond's or a run's events (or all), oldest first; with a
 * limit, the newest `limit` of them. The WHERE clause names only the filters
 * given, so the planner sees which index applies (`$1 IS NULL OR pond = $1`
 * hides it).
 */
export async function pondEvents(db: Queryable, t: Tables, filter: PondEventFilter): Promise<PondEvent[]> {
  const where: string[] = []
  const values: unknown[] = [pondEventLimit(filter)]
  if (filter.pond !== undefined) {
    values.push(filter.pond)
    where.push(`pond = $${values.length}`)
  }
  if (filter.runId !== undefined) {
    values.push(filter.runId)
    where.push(`run_id = $${values.length}`)
  }
  // LIMIT NULL is no limit.
  const result = await db.query<PondEventRow>(
    `SELECT * FROM ${t.pondEvents} ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
     ORDER BY ${filter.pond === undefined ? '' : 'pond DESC, '}id DESC LIMIT $1`,
    values,
  )
  return result.rows.reverse().map(toPondEvent)
}

/**
 * pondOutcomes: per pond, by pond, its latest pond:started, succeeded,
 * passed, failed or blocked event. The same walk of the (pond, id) index as
 * the SQLite store's (a loose index scan, then each pond's events newest
 * first until an outcome): over 400,000 events of 20 ponds, 0.5 ms against
 * 150–230 ms for `DISTINCT ON (pond) … ORDER BY pond, id DESC`, which reads
 * every event.
 */
export async function pondOutcomes(db: Queryable, t: Tables): Promise<PondEvent[]> {
  const result = await db.query<PondEventRow>(
    `WITH RECURSIVE ponds (pond) AS (
       SELECT min(pond) FROM ${t.pondEvents}
       UNION ALL
       SELECT (SELECT min(e.pond) FROM ${t.pondEvents} e WHERE e.pond > ponds.pond) FROM ponds WHERE ponds.pond IS NOT NULL
     )
     SELECT latest.* FROM ponds CROSS JOIN LATERAL (
       SELECT * FROM ${t.pondEvents} e
       WHERE e.pond = ponds.pond AND e.event IN ('pond:started', 'pond:succeeded', 'pond:passed', 'pond:failed', 'pond:blocked')
       ORDER BY e.pond DESC, e.id DESC LIMIT 1
     ) latest
     WHERE ponds.pond IS NOT NULL
     ORDER BY latest.pond`,
  )
  return result.rows.map(toPondEvent)
}

/** lastPondSuccess: a pond's latest pond:succeeded or pond:passed, read newest first along the (pond, id) index. */
export async function lastPondSuccess(db: Queryable, t: Tables, pond: string): Promise<PondEvent | undefined> {
  const result = await db.query<PondEventRow>(
    `SELECT * FROM ${t.pondEvents} WHERE pond = $1 AND event IN ('pond:succeeded', 'pond:passed') ORDER BY pond DESC, id DESC LIMIT 1`,
    [pond],
  )
  return result.rows.length === 0 ? undefined : toPondEvent(result.rows[0])
}
