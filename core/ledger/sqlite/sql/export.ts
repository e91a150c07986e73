import Database from 'better-sqlite3'
import { checkExport, checkTop, EXPORT_PAGE_ROWS, filterSql, TOP_EXTRA, topOfRows, type ExportColumn, type ExportFilter, type ExportPage, type ExportRequest, type ExportTable, type FilterSql, type LedgerSnapshot, type TopRequest } from '../../export.js'

/**
 * snapshot: a read-only view of the ledger for bulk reads (core/ledger/export.ts).
 *
 * A connection of its own, opened read-only, in one read transaction: in WAL
 * mode that is a consistent snapshot of every table, taken at its first read,
 * and it blocks no writer (a long read only holds back checkpoints). Closed
 * by `close`.
 *
 * Pages are keyset-paginated on rowid (`events.id` is the rowid), each built
 * by SQLite: one `json_group_array` per column over the page's rows, which
 * it reads in one pass, so the arrays line up. Times are the ISO-8601 text
 * the ledger stores, but for lease expiries (ms since the epoch), written
 * out as ISO here.
 */
export function sqliteSnapshot(file: string, now: number): LedgerSnapshot {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  db.exec('BEGIN')
  // The snapshot is taken at the first read of the transaction: now, not at the first page.
  db.prepare('SELECT count(*) FROM sqlite_schema').get()
  return {
    now,
    times: 'iso',
    read: (request) => pages(db, request),
    top: async (request) => top(db, request),
    async close() {
      if (!db.open) return
      db.exec('COMMIT')
      db.close()
    },
  }
}

const inMs = (table: string, column: ExportColumn) => table === 'files' && column.name === 'lease_expires_at'

function valueOf(table: string, column: ExportColumn): string {
  const name = `"${column.name}"`
  return inMs(table, column) ? `strftime('%Y-%m-%dT%H:%M:%fZ', ${name} / 1000.0, 'unixepoch')` : name
}

/** A bound as the column stores it: ISO text compares as time (every time is written by toISOString: one width, UTC). */
function boundOf(table: string, column: ExportColumn, ms: number, side: 'min' | 'max'): number | string {
  if (column.kind !== 'time' || inMs(table, column)) return ms
  // Stored times have ms precision: widening a µs bound to the ms around it keeps every row it keeps.
  return new Date(side === 'min' ? Math.floor(ms) : Math.ceil(ms)).toISOString()
}

/** Filters as SQLite SQL, their values pushed onto `values`. */
function filterSqlFor(table: ExportTable, values: unknown[]): FilterSql {
  return {
    column: (column) => `"${column.name}"`,
    values: (_, list) => {
      values.push(...list)
      // One value as `= ?`: a partial index on the column's value (events_failed) serves `=`, not `IN`.
      return list.length === 1 ? '= ?' : `IN (${list.map(() => '?').join(', ')})`
    },
    bound: (column, ms, side) => {
      values.push(boundOf(table, column, ms, side))
      return '?'
    },
    difference: (a, b) => (a.kind === 'time' ? `(${msOf(table, a)} - ${msOf(table, b)})` : `("${a.name}" - "${b.name}")`),
    number: (value) => {
      values.push(value)
      return '?'
    },
    // One parameter however many: a statement takes at most 32,766.
    ids: (ids) => {
      values.push(JSON.stringify(ids.map(Number)))
      return 'rowid IN (SELECT value FROM json_each(?))'
    },
  }
}

/** A time column in ms since the epoch (a float: within a few µs of the stored ms). */
function msOf(table: string, column: ExportColumn): string {
  return inMs(table, column) ? `"${column.name}"` : `((julianday("${column.name}") - 2440587.5) * 86400000.0)`
}

/** See LedgerSnapshot.top: one scan, keeping the first rows in the key's order (SQLite's sorter with a limit), then the rows by rowid (topOfRows). */
function top(db: Database.Database, request: TopRequest): ExportFilter | null {
  const { column, minus } = checkTop(request)
  const values: unknown[] = []
  const sql = filterSqlFor(request.table, values)
  const where = request.where.map((filter) => filterSql(request.table, filter, sql))
  // An instant is ordered as stored (ISO text orders as time) and read back exactly; a duration as ms.
  const key = minus === undefined ? `"${column.name}"` : sql.difference(column, minus)
  const rows = db
    .prepare(`SELECT rowid, ${key} FROM "${request.table}" ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${key} IS NULL, ${key} ${request.descending ? 'DESC' : 'ASC'} LIMIT ?`)
    .raw()
    .all(...values, request.count + TOP_EXTRA) as [number, string | number | null][]
  return topOfRows(
    request,
    column,
    rows.map(([id, value]) => ({ id: String(id), key: value === null ? null : typeof value === 'string' ? Date.parse(value) : value })),
  )
}

/** The query of a page of `request`'s rows: those after rowid `?` (its first parameter), then `values`. */
export function pageQuery(request: ExportRequest): { readonly sql: string; readonly values: readonly unknown[] } {
  const columns = checkExport(request)
  const values: unknown[] = []
  const sql = filterSqlFor(request.table, values)
  const where = (request.where ?? []).map((filter) => filterSql(request.table, filter, sql))
  const selected = columns.map((column, index) => `${valueOf(request.table, column)} AS v${index}`).join(', ')
  // As bytes (a BLOB): the JSON goes from SQLite to DuckDB as UTF-8 all the way, never a JavaScript string (decoding
  // and encoding it again took 0.1–0.2 s of 960,000 files' five columns).
  const aggregates = columns.map((_, index) => `CAST(json_group_array(v${index}) AS BLOB)`).join(', ')
  return {
    sql: `SELECT max(k), count(*), ${aggregates} FROM (SELECT rowid AS k, ${selected} FROM "${request.table}" WHERE ${['rowid > ?', ...where].join(' AND ')} ORDER BY rowid LIMIT ${EXPORT_PAGE_ROWS})`,
    values,
  }
}

async function* pages(db: Database.Database, request: ExportRequest): AsyncGenerator<ExportPage> {
  const { sql, values } = pageQuery(request)
  const statement = db.prepare(sql).raw()
  for (let last = Number.MIN_SAFE_INTEGER; ; ) {
    const row = statement.get(last, ...values) as unknown[]
    const rows = row[1] as number
    if (rows === 0) return
    last = row[0] as number
    yield { rows, columns: row.slice(2) as Uint8Array[] }
    if (rows < EXPORT_PAGE_ROWS) return
  }
}
