import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import type { DuckDBConnection } from '@duckdb/node-api'
import type { ExportFilter, ExportRequest, LedgerSnapshot } from '../ledger/export.js'
import { createTableSql, type QueryColumn, type QueryTable } from './tables.js'

/** Pages staged before DuckDB unpacks them into the table (64k rows), while the next ones are read. */
const BATCH_PAGES = 32

const quote = (name: string) => `"${name}"`

/** Two connections to one in-memory database: one appends what the store reads, the other unpacks it meanwhile. */
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
 * appended as one row of a staging table through DuckDB's appender, a few
 * calls per 2,048 rows; every 32 pages DuckDB unpacks the staged arrays into
 * the table (`unnest` of each array, zipped, cast to the column's type) on a
 * connection of its own, on its own threads, while the next pages are read.
 * So reading the store, which holds the JavaScript thread (better-sqlite3 is
 * synchronous), and unpacking overlap: on 960,000 files, five columns, 1.2 s
 * against 2.0 s one after the other.
 *
 * DuckDB's `sqlite_scanner` and `postgres_scanner` would read the ledger
 * themselves, but they are extensions downloaded at run time, which an
 * offline machine cannot rely on.
 *
 * Resolves once every page is read and staged, with the rows read and
 * `unpacked`, which settles once DuckDB has them all in the table: a caller
 * can read the next table meanwhile. `into` names the table made (default:
 * the ledger table's name).
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
  const unpacked = wanted.map((column) => {
    const index = columns.indexOf(column)
    if (index === -1) return `${constant(column, pinned.get(column.source)!)} AS ${quote(column.name)}`
    const json = `c${index}`
    if (column.type === 'TIMESTAMP' && snapshot.times === 'us') return `make_timestamp(unnest(from_json(${json}, '["BIGINT"]'))) AS ${quote(column.name)}`
    // ISO text read as text, then cast: DuckDB's own timestamp parser beat from_json's (0.14 s against 0.19 s a million).
    if (column.type === 'TIMESTAMP') return `CAST(unnest(from_json(${json}, '["VARCHAR"]')) AS TIMESTAMP) AS ${quote(column.name)}`
    return `unnest(from_json(${json}, '["${column.type}"]')) AS ${quote(column.name)}`
  })
  await db.append.run(createTableSql(table, wanted, into))
  const request: ExportRequest = { table: table.name, columns: columns.map((column) => column.source), where }
  if (snapshot.copy !== undefined) return loadParts(db, snapshot, request, columns, wanted, pinned, into)

  let unpacking: Promise<void> = Promise.resolve()
  let batch = 0
  let loaded = 0
  const stage = async (pages: readonly (readonly (string | Uint8Array)[])[]) => {
    const staging = `filedge_staging_${into}_${batch++}`
    // Pages as bytes are staged as BLOBs and read as text by DuckDB (`decode` checks the UTF-8).
    const bytes = typeof pages[0][0] !== 'string'
    await db.append.run(`CREATE TABLE ${staging} (${columns.map((_, index) => `c${index} ${bytes ? 'BLOB' : 'VARCHAR'}`).join(', ')})`)
    const appender = await db.append.createAppender(staging)
    try {
      for (const page of pages) {
        for (const json of page) {
          if (typeof json === 'string') appender.appendVarchar(json)
          else appender.appendBlob(json)
        }
        appender.endRow()
      }
      appender.flushSync()
    } finally {
      appender.closeSync()
    }
    // In order, one batch at a time; a failure is kept for the await below.
    const from = bytes ? `(SELECT ${columns.map((_, index) => `decode(c${index}) AS c${index}`).join(', ')} FROM ${staging})` : staging
    // One call: each step of the chain waits for the JavaScript thread to hand it on (see the read loop).
    unpacking = unpacking.then(async () => void (await db.unpack.run(`INSERT INTO ${into} SELECT ${unpacked.join(', ')} FROM ${from}; DROP TABLE ${staging}`)))
    unpacking.catch(() => undefined)
  }
  try {
    let pages: (readonly (string | Uint8Array)[])[] = []
    for await (const page of snapshot.read(request)) {
      pages.push(page.columns)
      loaded += page.rows
      if (pages.length === BATCH_PAGES) {
        await stage(pages)
        pages = []
      }
      // A synchronous store (SQLite) reads page after page without the event loop turning, and DuckDB's finished
      // unpacking is only handed the next batch when it does: a turn per page keeps it busy (on 960,000 files it had
      // been left 0.7 s of unpacking after the last page).
      await new Promise((resolve) => setImmediate(resolve))
    }
    if (pages.length > 0) await stage(pages)
  } catch (error) {
    // Nothing is left running on the database when a read fails.
    await unpacking.catch(() => undefined)
    throw error
  }
  return { rows: loaded, unpacked: unpacking }
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
