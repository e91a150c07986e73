import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import type { DuckDBConnection, DuckDBPreparedStatement } from '@duckdb/node-api'
import type { ExportFilter, ExportRequest, LedgerSnapshot } from '../ledger/export.js'
import { createTableSql, type QueryColumn, type QueryTable } from './tables.js'

/** Pages bound to one INSERT (64k rows), while the next ones are read. */
const BATCH_PAGES = 32

const quote = (name: string) => `"${name}"`

/** Two connections to one in-memory database: one creates the tables, the other unpacks what the store reads into them meanwhile. */
export interface LoadConnections {
  readonly append: DuckDBConnection
  readonly unpack: DuckDBConnection
  /** A folder DuckDB may read, for a store that writes CSV (loadParts). */
  readonly dir: string
}

/** A pinned value as SQL: text quoted (quotes doubled), numbers as they are, times from their ms. */
function constant(column: QueryColumn, value: string | number): string {
  if (typeof value === 'string') return `CAST('${value.replace(/'/g, "''")}' AS ${column.type})`
  if (column.type === 'TIMESTAMP') return `make_timestamp(CAST(${Math.round(value * 1000)} AS BIGINT))`
  return `CAST(${value} AS ${column.type})`
}

/**
 * Creates `table` with `wanted` columns in the in-memory database and fills
 * it from the snapshot. Each page (a JSON array per column, export.ts) is
 * bound, array by array, to one prepared `INSERT … SELECT` that DuckDB runs
 * on a connection of its own, on its own threads (`unnest` of each array,
 * zipped, cast to the column's type), while the next pages are read. So
 * reading the store, which holds the JavaScript thread (better-sqlite3 is
 * synchronous), and unpacking overlap: on 960,000 files, five columns, 1.2 s
 * against 2.0 s one after the other.
 *
 * Pages used to be staged first, as rows of a table written by DuckDB's
 * appender and unpacked 32 pages at a time: writing the arrays into a table
 * cost more than unpacking them. The audit page's 140,000 listed files,
 * twelve columns (35 MB of JSON): 0.50–0.62 s of CPU staged and unpacked,
 * 0.22–0.26 s bound to the INSERT page by page.
 *
 * DuckDB's `sqlite_scanner` and `postgres_scanner` would read the ledger
 * themselves, but they are extensions downloaded at run time, which an
 * offline machine cannot rely on.
 *
 * Resolves once every page is read, with the rows read and `unpacked`, which
 * settles once DuckDB has them all in the table: a caller can read the next
 * table meanwhile. `into` names the table made (default: the ledger table's
 * name).
 */
export async function loadTable(
  db: LoadConnections,
  snapshot: LedgerSnapshot,
  table: QueryTable,
  wanted: readonly QueryColumn[],
  where: readonly ExportFilter[] = [],
  into: string = table.name,
): Promise<{ readonly rows: number; readonly unpacked: Promise<void> }> {
  // A column the store keeps to one value (`state = 'COMMITTED'`) is that value in every row: it is not read but
  // written as a constant, one column fewer to read over a million rows.
  const pinned = new Map<string, string | number>()
  for (const filter of where) if ('in' in filter && filter.in.length === 1) pinned.set(filter.column, filter.in[0])
  const read = wanted.filter((column) => !pinned.has(column.source))
  // A table read for its row count alone still reads one column.
  const columns = read.length > 0 ? read : wanted.slice(0, 1)
  // Each column's values, from the JSON text `json(index)` of the page's `index`-th array.
  const selected = (json: (index: number) => string) =>
    wanted.map((column) => {
      const index = columns.indexOf(column)
      if (index === -1) return `${constant(column, pinned.get(column.source)!)} AS ${quote(column.name)}`
      const array = json(index)
      if (column.type === 'TIMESTAMP' && snapshot.times === 'us') return `make_timestamp(unnest(from_json(${array}, '["BIGINT"]'))) AS ${quote(column.name)}`
      // ISO text read as text, then cast: DuckDB's own timestamp parser beat from_json's (0.14 s against 0.19 s a million).
      if (column.type === 'TIMESTAMP') return `CAST(unnest(from_json(${array}, '["VARCHAR"]')) AS TIMESTAMP) AS ${quote(column.name)}`
      return `unnest(from_json(${array}, '["${column.type}"]')) AS ${quote(column.name)}`
    })
  await db.append.run(createTableSql(table, wanted, into))
  const request: ExportRequest = { table: table.name, columns: columns.map((column) => column.source), where }
  if (snapshot.copy !== undefined) return loadParts(db, snapshot, request, columns, wanted, pinned, into)

  // One statement per batch size: BATCH_PAGES, and what the last batch holds.
  const inserts = new Map<number, Promise<DuckDBPreparedStatement>>()
  let unpacking: Promise<void> = Promise.resolve()
  let loaded = 0
  let pages: (readonly (string | Uint8Array)[])[] = []
  const unpack = () => {
    const batch = pages
    pages = []
    // Bytes are bound as BLOBs and read as text by DuckDB (`decode` checks the UTF-8); a store's pages are all text or all bytes.
    const bytes = typeof batch[0][0] !== 'string'
    const width = columns.length
    const param = (page: number, index: number) => (bytes ? `CAST($${page * width + index + 1} AS BLOB)` : `CAST($${page * width + index + 1} AS VARCHAR)`)
    const rows = batch.map((_, page) => `(${columns.map((_, index) => param(page, index)).join(', ')})`)
    const names = columns.map((_, index) => `c${index}`)
    let statement = inserts.get(batch.length)
    if (statement === undefined) {
      statement = db.unpack.prepare(`INSERT INTO ${into} SELECT ${selected((index) => (bytes ? `decode(c${index})` : `c${index}`)).join(', ')} FROM (VALUES ${rows.join(', ')}) AS pages (${names.join(', ')})`)
      inserts.set(batch.length, statement)
    }
    const insert = statement
    // In order, one batch at a time (a statement holds one set of bindings); a failure is kept for the await below.
    unpacking = unpacking.then(async () => {
      const prepared = await insert
      batch.forEach((page, row) => page.forEach((array, index) => (typeof array === 'string' ? prepared.bindVarchar(row * width + index + 1, array) : prepared.bindBlob(row * width + index + 1, array))))
      await prepared.run()
    })
    unpacking.catch(() => undefined)
  }
  const finished = async () => {
    await unpacking
    for (const statement of inserts.values()) (await statement).destroySync()
  }
  try {
    for await (const page of snapshot.read(request)) {
      pages.push(page.columns)
      loaded += page.rows
      if (pages.length === BATCH_PAGES) unpack()
      // A synchronous store (SQLite) reads page after page without the event loop turning, and DuckDB's finished
      // unpacking is only handed the next page when it does: a turn per page keeps it busy (on 960,000 files it had
      // been left 0.7 s of unpacking after the last page).
      await new Promise((resolve) => setImmediate(resolve))
    }
    if (pages.length > 0) unpack()
  } catch (error) {
    // Nothing is left running on the database when a read fails.
    await finished().catch(() => undefined)
    throw error
  }
  const done = finished()
  done.catch(() => undefined)
  return { rows: loaded, unpacked: done }
}

/** Quoted as a SQL string literal. */
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`

/**
 * A ledger field of up to this many bytes is read (an error message is the
 * longest field a ledger holds); DuckDB's default is 2 MB.
 */
const MAX_FIELD_BYTES = 16 * 1024 * 1024

/**
 * loadTable for a store that writes CSV itself (`snapshot.copy`): into a
 * private temporary folder, each file read by DuckDB's `read_csv` (in
 * parallel, on its own threads) on the unpacking connection as soon as it is
 * whole, while the store writes the next, then removed.
 */
async function loadParts(
  db: LoadConnections,
  snapshot: LedgerSnapshot,
  request: ExportRequest,
  columns: readonly QueryColumn[],
  wanted: readonly QueryColumn[],
  pinned: ReadonlyMap<string, string | number>,
  into: string,
): Promise<{ readonly rows: number; readonly unpacked: Promise<void> }> {
  const us = snapshot.times === 'us'
  const csvType = (column: QueryColumn) => (column.type === 'VARCHAR' || (column.type === 'TIMESTAMP' && !us) ? 'VARCHAR' : 'BIGINT')
  const csvColumns = `{${columns.map((column, index) => `'c${index}': '${csvType(column)}'`).join(', ')}}`
  const selected = wanted.map((column) => {
    const index = columns.indexOf(column)
    if (index === -1) return `${constant(column, pinned.get(column.source)!)} AS ${quote(column.name)}`
    if (column.type === 'TIMESTAMP' && us) return `make_timestamp(c${index}) AS ${quote(column.name)}`
    return `CAST(c${index} AS ${column.type}) AS ${quote(column.name)}`
  })
  // NULL is an empty field, "" an empty string (allow_quoted_nulls); a field that breaks the format fails the read (strict_mode).
  const options = `header = false, auto_detect = false, columns = ${csvColumns}, delim = ',', quote = '"', escape = '"', allow_quoted_nulls = false, strict_mode = true, max_line_size = ${MAX_FIELD_BYTES}`
  // mkdtemp makes the folder readable by its owner alone: the ledger's rows are nobody else's.
  const dir = await mkdtemp(path.join(db.dir, `${into}-`))
  const removed = () => rm(dir, { recursive: true, force: true })
  let unpacking: Promise<void> = Promise.resolve()
  let loaded = 0
  try {
    for await (const part of snapshot.copy!(request, dir)) {
      loaded += part.rows
      unpacking = unpacking.then(async () => {
        await db.unpack.run(`INSERT INTO ${into} SELECT ${selected.join(', ')} FROM read_csv(${literal(part.file)}, ${options})`)
        await rm(part.file, { force: true })
      })
      unpacking.catch(() => undefined)
    }
  } catch (error) {
    await unpacking.catch(() => undefined)
    await removed()
    throw error
  }
  const unpacked = unpacking.finally(removed)
  unpacked.catch(() => undefined)
  return { rows: loaded, unpacked }
}
