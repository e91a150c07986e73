import type pg from 'pg'
import { checkExport, EXPORT_PAGE_ROWS, filterSql, type ExportPage, type ExportRequest, type ExportTable, type LedgerSnapshot } from '../../export.js'
import type { Tables } from '../db.js'

/**
 * snapshot: a read-only view of the ledger for bulk reads (core/ledger/export.ts).
 *
 * One connection of the pool, in a REPEATABLE READ, READ ONLY transaction:
 * every page of every table is read from the one snapshot its first
 * statement took, while workers go on writing. `now` is the server's clock
 * in that statement (leases are judged by it). Released by `close`.
 *
 * Pages are keyset-paginated on each table's key, and built by the server:
 * one `json_agg` per column, so a page crosses the wire as a few values
 * instead of rows of fields converted one by one. The aggregates of one page
 * read its rows in one pass, so their arrays line up; the page's last key is
 * taken by an ordered aggregate of its own. The next page is asked for as
 * soon as a page arrives, so the server builds it while this one is loaded.
 */
export async function postgresSnapshot(pool: pg.Pool, t: Tables, at: string | null): Promise<LedgerSnapshot> {
  const client = await pool.connect()
  const lost = () => undefined
  client.on('error', lost)
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    // Times go out in UTC (`…+00:00`), whatever the server's or the role's time zone.
    await client.query("SET LOCAL TimeZone = 'UTC'")
    const { rows } = await client.query<{ now: number }>(`SELECT extract(epoch FROM COALESCE($1::timestamptz, statement_timestamp())) * 1000 AS now`, [at])
    return {
      now: Number(rows[0].now),
      read: (request) => pages(client, t, request),
      async close() {
        await client.query('COMMIT').catch(() => undefined)
        client.off('error', lost)
        client.release()
      },
    }
  } catch (error) {
    client.off('error', lost)
    client.release(true)
    throw error
  }
}

/** The key each table is read in order of (its primary key). */
const KEYS: Record<ExportTable, readonly string[]> = {
  files: ['pipeline', 'hash'],
  file_paths: ['pipeline', 'hash', 'path'],
  events: ['id'],
  pond_events: ['id'],
}

async function* pages(client: pg.PoolClient, t: Tables, request: ExportRequest): AsyncGenerator<ExportPage> {
  const columns = checkExport(request)
  const table = { files: t.files, file_paths: t.paths, events: t.events, pond_events: t.pondEvents }[request.table]
  const values: unknown[] = []
  const param = (value: unknown) => `$${values.push(value)}`
  const where = (request.where ?? []).map((filter) =>
    filterSql(request.table, filter, {
      column: (column) => `"${column.name}"`,
      values: (column, list) => `= ANY(${param(list)}::${column.kind === 'text' ? 'text' : 'float8'}[])`,
      bound: (column, ms) => (column.kind === 'time' ? `to_timestamp(${param(ms)}::float8 / 1000)` : `${param(ms)}::float8`),
    }),
  )
  // Times go out as json_agg writes timestamptz: ISO 8601, in UTC (see the snapshot).
  const selected = columns.map((column, index) => `"${column.name}" AS v${index}`).join(', ')
  // As text: pg would parse json into JavaScript values, which is what pages avoid.
  const aggregated = columns.map((_, index) => `json_agg(v${index})::text AS c${index}`).join(', ')
  const keys = KEYS[request.table]
  const keyList = keys.map((key) => `"${key}"`).join(', ')
  const descending = keys.map((_, index) => `k${index} DESC`).join(', ')
  const lastKeys = keys.map((_, index) => `(array_agg(k${index} ORDER BY ${descending}))[1] AS last${index}`).join(', ')
  const keyed = keys.map((key, index) => `"${key}" AS k${index}`).join(', ')
  const page = (last: unknown[] | undefined): Promise<pg.QueryResult<Record<string, unknown>>> => {
    const pageValues = [...values]
    const condition = [...(last === undefined ? [] : [`(${keyList}) > (${last.map((value) => `$${pageValues.push(value)}`).join(', ')})`]), ...where]
    const query = client.query<Record<string, unknown>>(
      `SELECT count(*) AS n, ${lastKeys}, ${aggregated}
       FROM (SELECT ${keyed}, ${selected} FROM ${table} ${condition.length > 0 ? `WHERE ${condition.join(' AND ')}` : ''} ORDER BY ${keyList} LIMIT ${EXPORT_PAGE_ROWS}) s`,
      pageValues,
    )
    // Asked for before the page before it is handed on (see below): its failure is seen when it is awaited.
    query.catch(() => undefined)
    return query
  }
  let next: ReturnType<typeof page> | undefined = page(undefined)
  while (next !== undefined) {
    const row: Record<string, unknown> = (await next).rows[0]
    const rows = Number(row.n)
    if (rows === 0) return
    // The next page is on its way while this one is loaded: the server builds it meanwhile.
    next = rows < EXPORT_PAGE_ROWS ? undefined : page(keys.map((_, index) => row[`last${index}`]))
    yield { rows, columns: columns.map((_, index) => row[`c${index}`] as string) }
  }
}
