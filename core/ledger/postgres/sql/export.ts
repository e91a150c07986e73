import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import type pg from 'pg'
import { checkExport, checkTop, EXPORT_PAGE_ROWS, filterSql, TOP_EXTRA, topOfRows, type ExportColumn, type ExportFilter, type ExportPage, type ExportPart, type ExportRequest, type ExportTable, type LedgerSnapshot, type TopRequest } from '../../export.js'
import type { Tables } from '../db.js'

/**
 * snapshot: a read-only view of the ledger for bulk reads (core/ledger/export.ts).
 *
 * One connection of the pool, in a REPEATABLE READ, READ ONLY transaction:
 * every page of every table is read from the one snapshot its first
 * statement took, while workers go on writing. `now` is the server's clock
 * in that statement (leases are judged by it). Released by `close`.
 *
 * Pages are built by the server, one aggregate per column over the page's
 * rows (read in one pass, so the arrays line up), so a page crosses the wire
 * as a few values instead of rows of fields converted one by one. Pages are
 * asked for ahead, so the server builds them while earlier ones are loaded,
 * on two connections sharing the snapshot (`pg_export_snapshot`), so two
 * server processes build them.
 *
 * A page is a range of the table's blocks (`ctid`), which Postgres 14 and
 * later scan directly (TID Range Scan): no sort, no index, the table read
 * once in its physical order. Measured on 1,000,000 files (pipeline and rows
 * of the committed ones): 2,048-row pages in key order took 6.2 s, because
 * every page walked the primary key into scattered heap pages and sorted
 * its keys for the next one. Tuples this snapshot sees were all written
 * before it began, within the blocks the table had then, so reading up to
 * the table's size taken inside the snapshot (and a last open-ended range)
 * reads them all. Before 14 the pages follow the primary key instead.
 */
export async function postgresSnapshot(pool: pg.Pool, t: Tables, at: string | null): Promise<LedgerSnapshot> {
  const client = await pool.connect()
  const helpers: pg.PoolClient[] = []
  const lost = () => undefined
  client.on('error', lost)
  const release = async () => {
    for (const helper of [client, ...helpers]) {
      await helper.query('COMMIT').catch(() => undefined)
      helper.off('error', lost)
      helper.release()
    }
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
    // Parallel scans whenever a table is big enough for them (min_parallel_table_scan_size): a COPY's filter values are
    // settings the planner cannot see, so it expects most rows to pass and keeps the scan to one process. The failure
    // events of 3,000,000: 0.89–1.37 s in one process, 0.62–0.72 s with two workers; the committed files alike.
    await client.query('SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0')
    const { rows } = await client.query<{ now: number; version: number }>(
      `SELECT extract(epoch FROM COALESCE($1::timestamptz, statement_timestamp())) * 1000 AS now, current_setting('server_version_num')::int AS version`,
      [at],
    )
    const byBlocks = rows[0].version >= 140_000
    // A second connection reads the same snapshot (exported, then set in its transaction): the server builds two pages at once.
    const id = byBlocks ? (await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows[0].id : undefined
    let joining: Promise<pg.PoolClient[]> | undefined
    const readers = () =>
      (joining ??= (async () => {
        const helper = await pool.connect()
        helper.on('error', lost)
        helpers.push(helper)
        await helper.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        await helper.query(`SET TRANSACTION SNAPSHOT '${id!.replace(/'/g, "''")}'`)
        return [client, helper]
      })())
    return {
      now: Number(rows[0].now),
      times: 'us',
      read: (request) => (byBlocks ? blockPages(readers, t, request) : keyPages(client, t, request)),
      ...(byBlocks ? { copy: (request: ExportRequest, dir: string) => copyParts(client, t, request, dir) } : {}),
      top: (request) => top(client, t, request),
      close: release,
    }
  } catch (error) {
    await release().catch(() => undefined)
    throw error
  }
}

/** Blocks a page covers: at 30–40 ledger rows a block, about 8,000 rows. */
const PAGE_BLOCKS = 256

/** The key each table is read in order of (its primary key), before Postgres 14. */
const KEYS: Record<ExportTable, readonly string[]> = {
  files: ['pipeline', 'hash'],
  file_paths: ['pipeline', 'hash', 'path'],
  events: ['id'],
  pond_events: ['id'],
}

/** A value a COPY reads from a setting of its transaction (COPY takes no parameters): set by `set_config`, itself a parameter. */
interface Setting {
  readonly name: string
  readonly value: unknown
  readonly type: 'text[]' | 'float8[]' | 'float8' | 'tid[]'
}

/**
 * The SQL parts a page query is made of: the table, its filters (with their values) and the aggregates.
 * `values` are the query's parameters; for a COPY, which takes none, the filters read `settings` instead.
 */
function parts(t: Tables, request: ExportRequest) {
  const columns = checkExport(request)
  const table = tableOf(t, request.table)
  const values: unknown[] = []
  const settings: Setting[] = []
  const placeholder = {
    query: (value: unknown, type: Setting['type']) => `$${values.push(value)}::${type}`,
    // A scalar subquery is evaluated once per statement (an InitPlan), not once per row; cast again outside it, or
    // `= ANY((SELECT …))` reads it as ANY over the subquery's rows.
    copy: (value: unknown, type: Setting['type']) => {
      const name = `filedge.export_${settings.push({ name: `filedge.export_${settings.length + 1}`, value, type })}`
      return `(SELECT current_setting('${name}')::${type})::${type}`
    },
  }
  const conditions = (mode: keyof typeof placeholder) => filtersSql(request.table, request.where ?? [], placeholder[mode])
  const where = conditions('query')
  const copyWhere = conditions('copy')
  // Times as µs since the epoch: date_part is float8 seconds, within 0.25 µs of the time until 2100, so rounded it is
  // the time exactly; extract is numeric, exact and half as fast again.
  const selected = columns.map((column, index) => `${column.kind === 'time' ? `round(date_part('epoch', "${column.name}") * 1000000)::bigint` : `"${column.name}"`} AS v${index}`).join(', ')
  // Text through json_agg, which escapes it; numbers need no escaping, and joined as text they cost half of json_agg
  // (0.38 s against 0.44 s for a million integers). As text either way: pg would parse
  // json into JavaScript values, which is what pages avoid.
  const aggregated = columns
    .map((column, index) => (column.kind === 'text' ? `json_agg(v${index})::text` : `'[' || coalesce(string_agg(coalesce(v${index}::text, 'null'), ','), '') || ']'`) + ` AS c${index}`)
    .join(', ')
  const page = (row: Record<string, unknown>): ExportPage => ({ rows: Number(row.n), columns: columns.map((_, index) => row[`c${index}`] as string) })
  return { table, values, where, copyWhere, settings, selected, aggregated, page }
}

/** Filters as Postgres SQL, their values through `placeholder`. */
function filtersSql(table: ExportTable, where: readonly ExportFilter[], placeholder: (value: unknown, type: Setting['type']) => string): string[] {
  return where.map((filter) =>
    filterSql(table, filter, {
      column: (column) => `"${column.name}"`,
      values: (column, list) => `= ANY(${placeholder(list, column.kind === 'text' ? 'text[]' : 'float8[]')})`,
      bound: (column, ms) => (column.kind === 'time' ? `to_timestamp(${placeholder(ms, 'float8')} / 1000)` : placeholder(ms, 'float8')),
      difference: (a, b) => differenceSql(a, b),
      number: (value) => placeholder(value, 'float8'),
      // A TID Scan: the rows are fetched by their place, not looked for.
      ids: (ids) => `ctid = ANY(${placeholder(ids, 'tid[]')})`,
    }),
  )
}

/** `a - b` as a number: times as ms (float8, to the µs). The same expression in a filter and in `top`, so a bound at a row's key keeps it. */
function differenceSql(a: ExportColumn, b: ExportColumn): string {
  return a.kind === 'time' ? `(date_part('epoch', "${a.name}" - "${b.name}") * 1000)` : `("${a.name}" - "${b.name}")`
}

/**
 * See LedgerSnapshot.top: one scan of the table on the server, which keeps
 * the first rows in the key's order as it goes (a top-N heapsort: Postgres
 * cannot heapsort `FETCH … WITH TIES`, it sorted all 960,000 rows to disk),
 * and the rows by their place (`ctid`), which the read then fetches by a
 * TID scan rather than scanning again (topOfRows).
 */
async function top(client: pg.PoolClient, t: Tables, request: TopRequest): Promise<ExportFilter | null> {
  const { column, minus } = checkTop(request)
  const table = tableOf(t, request.table)
  const values: unknown[] = []
  const where = filtersSql(request.table, request.where, (value, type) => `$${values.push(value)}::${type}`)
  // Ordered by the key itself (an interval orders exactly), compared as a number: a float, which may make two keys
  // equal that are not (one more row read), never swap them.
  const key = minus === undefined ? `"${column.name}"` : `("${column.name}" - "${minus.name}")`
  const number = column.kind === 'time' ? `date_part('epoch', ${key}) * 1000` : key
  const { rows } = await client.query<{ id: string; key: number | string | null }>(
    `SELECT ctid::text AS id, ${number} AS key FROM ${table} ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${key} ${request.descending ? 'DESC' : 'ASC'} NULLS LAST LIMIT ${request.count + TOP_EXTRA}`,
    values,
  )
  return topOfRows(request, column, rows.map((row) => ({ id: row.id, key: row.key === null ? null : Number(row.key) })))
}

/** Whether a request names its rows by their place (top's `ids`). */
function byIds(request: ExportRequest): boolean {
  return (request.where ?? []).some((filter) => 'ids' in filter)
}

function tableOf(t: Tables, name: ExportTable): string {
  return { files: t.files, file_paths: t.paths, events: t.events, pond_events: t.pondEvents }[name]
}

/** Runs `query` for each page in turn, the next one sent as soon as one arrives; yields the pages with rows. */
async function* pipelined(next: (previous: Record<string, unknown> | undefined) => Promise<pg.QueryResult<Record<string, unknown>>> | undefined, page: (row: Record<string, unknown>) => ExportPage): AsyncGenerator<ExportPage> {
  let pending = next(undefined)
  while (pending !== undefined) {
    const row = (await pending).rows[0]
    pending = next(row)
    // Asked for before this page is handed on: its failure is seen when it is awaited.
    pending?.catch(() => undefined)
    if (Number(row.n) > 0) yield page(row)
  }
}

async function* blockPages(readers: () => Promise<pg.PoolClient[]>, t: Tables, request: ExportRequest): AsyncGenerator<ExportPage> {
  const { table, values, where, selected, aggregated, page } = parts(t, request)
  const clients = await readers()
  const { rows } = await clients[0].query<{ blocks: string }>(`SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int AS blocks`, [table])
  const blocks = Number(rows[0].blocks)
  const from = `$${values.length + 1}::tid`
  const to = `$${values.length + 2}::tid`
  const bounded = `SELECT count(*) AS n, ${aggregated} FROM (SELECT ${selected} FROM ${table} WHERE ${['ctid >= ' + from, 'ctid < ' + to, ...where].join(' AND ')}) s`
  // Past the blocks counted: nothing this snapshot sees can be there, but the read does not rely on it.
  const rest = `SELECT count(*) AS n, ${aggregated} FROM (SELECT ${selected} FROM ${table} WHERE ${['ctid >= ' + from, ...where].join(' AND ')}) s`
  const ranges: [number, number | undefined][] = []
  if (byIds(request)) ranges.push([0, undefined])
  else for (let block = 0; block <= blocks; block += PAGE_BLOCKS) ranges.push([block, block + PAGE_BLOCKS > blocks ? undefined : block + PAGE_BLOCKS])
  // Two pages in flight per connection, taken in turn; handed on in range order as they arrive.
  const inFlight: Promise<pg.QueryResult<Record<string, unknown>>>[] = []
  let next = 0
  const launch = () => {
    if (next >= ranges.length) return
    const [start, end] = ranges[next]
    const client = clients[next++ % clients.length]
    const query = end === undefined ? client.query<Record<string, unknown>>(rest, [...values, `(${start},0)`]) : client.query<Record<string, unknown>>(bounded, [...values, `(${start},0)`, `(${end},0)`])
    // Its failure is seen when it is awaited, below.
    query.catch(() => undefined)
    inFlight.push(query)
  }
  for (let i = 0; i < clients.length * 2; i++) launch()
  while (inFlight.length > 0) {
    const row = (await inFlight.shift()!).rows[0]
    launch()
    if (Number(row.n) > 0) yield page(row)
  }
}

async function* keyPages(client: pg.PoolClient, t: Tables, request: ExportRequest): AsyncGenerator<ExportPage> {
  const { table, values, where, selected, aggregated, page } = parts(t, request)
  const keys = KEYS[request.table]
  const keyList = keys.map((key) => `"${key}"`).join(', ')
  const descending = keys.map((_, index) => `k${index} DESC`).join(', ')
  const lastKeys = keys.map((_, index) => `(array_agg(k${index} ORDER BY ${descending}))[1] AS last${index}`).join(', ')
  const keyed = keys.map((key, index) => `"${key}" AS k${index}`).join(', ')
  yield* pipelined((previous) => {
    if (previous !== undefined && Number(previous.n) < EXPORT_PAGE_ROWS) return undefined
    const pageValues = [...values]
    const after = previous === undefined ? [] : [`(${keyList}) > (${keys.map((_, index) => `$${pageValues.push(previous[`last${index}`])}`).join(', ')})`]
    const condition = [...after, ...where]
    return client.query<Record<string, unknown>>(
      `SELECT count(*) AS n, ${lastKeys}, ${aggregated}
       FROM (SELECT ${keyed}, ${selected} FROM ${table} ${condition.length > 0 ? `WHERE ${condition.join(' AND ')}` : ''} ORDER BY ${keyList} LIMIT ${EXPORT_PAGE_ROWS}) s`,
      pageValues,
    )
  }, page)
}

/**
 * Bytes of CSV a part holds, about: small enough that DuckDB reads one while
 * the server writes the next, and that the last one, read after the server
 * is done, is short.
 */
const PART_BYTES = 4 << 20

/**
 * The rows as CSV parts (LedgerSnapshot.copy): one COPY statement, its
 * output cut into files at record boundaries as it arrives. One statement,
 * not ranges of blocks on two connections: the server scans the table once,
 * with its parallel workers when it plans them, and TID range scans cost
 * twice the server's CPU of one plain scan (960,000 committed files'
 * pipeline and rows: 1.41–1.44 s in ranges, 0.66 s in one statement).
 */
async function* copyParts(client: pg.PoolClient, t: Tables, request: ExportRequest, dir: string): AsyncGenerator<ExportPart> {
  const { table, copyWhere, settings, selected } = parts(t, request)
  for (const setting of settings) await client.query(`SELECT set_config($1, $2::${setting.type}::text, true)`, [setting.name, setting.value])
  const { to } = (await import('pg-copy-streams')) as { to: (sql: string) => NodeJS.ReadableStream }
  const stream = client.query(to(`COPY (SELECT ${selected} FROM ${table}${copyWhere.length > 0 ? ` WHERE ${copyWhere.join(' AND ')}` : ''}) TO STDOUT (FORMAT csv, ENCODING 'UTF8')`) as never) as unknown as NodeJS.ReadableStream
  const records = csvRecords()
  let chunks: Buffer[] = []
  let bytes = 0
  let index = 0
  const write = async (data: Buffer, rows: number): Promise<ExportPart> => {
    const file = path.join(dir, `${request.table}-${index++}.csv`)
    await writeFile(file, data)
    return { file, rows }
  }
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    records.scan(chunk, bytes)
    chunks.push(chunk)
    bytes += chunk.length
    if (bytes < PART_BYTES || records.lastEnd === 0) continue
    // Up to the end of the last whole record: the rest starts the next part.
    const all = Buffer.concat(chunks, bytes)
    const cut = records.lastEnd
    const part = await write(all.subarray(0, cut), records.take())
    chunks = cut < bytes ? [all.subarray(cut)] : []
    bytes -= cut
    records.rebase(cut)
    yield part
  }
  if (records.open()) throw new Error(`ledger export: the COPY of ${request.table} ended inside a quoted field`)
  if (bytes > 0) yield await write(Buffer.concat(chunks, bytes), records.take())
}

/**
 * Where the CSV records of a stream end, fed chunk by chunk (RFC 4180: a
 * line break outside quotes ends one; a quote inside quotes is doubled,
 * which leaves and enters them again): the offset just past the last record
 * that ended, and how many ended since the last `take`.
 */
export function csvRecords() {
  let quoted = false
  let ended = 0
  let lastEnd = 0
  return {
    get lastEnd() {
      return lastEnd
    },
    scan(chunk: Buffer, offset: number) {
      // Quotes are rare in the ledger's text: between two, line breaks are found by indexOf.
      let at = 0
      while (at <= chunk.length) {
        const quote = chunk.indexOf(34, at)
        const stop = quote === -1 ? chunk.length : quote
        if (!quoted) {
          for (let line = chunk.indexOf(10, at); line !== -1 && line < stop; line = chunk.indexOf(10, line + 1)) {
            ended++
            lastEnd = offset + line + 1
          }
        }
        if (quote === -1) return
        quoted = !quoted
        at = quote + 1
      }
    },
    take() {
      const rows = ended
      ended = 0
      return rows
    },
    rebase(cut: number) {
      lastEnd -= cut
    },
    open: () => quoted,
  }
}
