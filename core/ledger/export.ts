/**
 * Bulk, read-only reads of the ledger's tables, for what looks at the whole
 * ledger at once (`filedge query`, the audit page) rather than at one file.
 * Both stores implement them over their own tables, with no schema of their
 * own: a snapshot is a consistent view (one read transaction) read in pages
 * of columns, so a million files never sit in memory as a million objects.
 *
 * A page holds each column as the text of a JSON array. Both databases
 * build that themselves (`json_group_array`, `json_agg`), and DuckDB reads
 * it the same way (core/audit/load.ts), so no value is touched one by one
 * in JavaScript on its way from the ledger to a query. Measured on 960,000
 * committed files, five columns (path, pipeline, rows and two times): 2.2 s
 * as JSON arrays, against 3.0–3.9 s parsed into JavaScript arrays and
 * written into DuckDB's vectors value by value (each string a call into
 * native code).
 */

import { FiledgeError } from '../errors.js'

/** How a column's values arrive in a page: text as strings, integers as numbers, times as the snapshot's `times` says. */
export type ExportKind = 'text' | 'integer' | 'time'

export interface ExportColumn {
  readonly name: string
  readonly kind: ExportKind
}

const text = (name: string): ExportColumn => ({ name, kind: 'text' })
const integer = (name: string): ExportColumn => ({ name, kind: 'integer' })
const time = (name: string): ExportColumn => ({ name, kind: 'time' })

/**
 * The tables a snapshot reads and their columns, as the ledger names them
 * (both stores have them all). Not exported: lease tokens (they fence
 * writes and are nobody's business), the stat cache and the codes table.
 */
export const EXPORT_TABLES = {
  files: [
    text('pipeline'),
    text('hash'),
    text('path'),
    integer('size'),
    text('state'),
    integer('attempts'),
    integer('lapses'),
    text('load_id'),
    integer('rows'),
    text('error'),
    text('worker'),
    time('lease_expires_at'),
    time('created_at'),
    time('updated_at'),
    time('committed_at'),
    text('code'),
    integer('quarantined'),
    text('sidecar'),
  ],
  file_paths: [text('pipeline'), text('hash'), text('path'), time('first_seen_at'), text('version')],
  events: [integer('id'), time('at'), text('pipeline'), text('hash'), text('event'), text('from_state'), text('to_state'), integer('attempt'), text('worker'), text('path'), text('error'), integer('quarantined')],
  pond_events: [
    integer('id'),
    time('at'),
    text('pond'),
    text('version'),
    text('run_id'),
    text('event'),
    text('ripple'),
    text('outlet'),
    text('trigger'),
    time('freshness'),
    text('input_version'),
    text('data_version'),
    text('error'),
    integer('duration_ms'),
    integer('rows'),
    text('worker'),
  ],
} as const satisfies Record<string, readonly ExportColumn[]>

export type ExportTable = keyof typeof EXPORT_TABLES

/**
 * Rows to read: `in` keeps rows whose column holds one of the values; a
 * bound keeps rows whose integer or time column is within it (inclusive;
 * times as ms since the epoch); with `minus`, the bound is on the column
 * less another of its kind (two integers, or two times: a duration in ms);
 * `any` keeps rows that one of its filters keeps; `ids`, the rows a store
 * named by its own row ids (`top`), within the snapshot that named them.
 * NULL matches nothing, as in SQL.
 */
export type ExportFilter =
  | { readonly column: string; readonly in: readonly (string | number)[] }
  | { readonly column: string; readonly minus?: string; readonly min: number }
  | { readonly column: string; readonly minus?: string; readonly max: number }
  | { readonly any: readonly ExportFilter[] }
  | { readonly ids: readonly string[] }

/**
 * The rows a query's `ORDER BY <key> LIMIT <count>` can reach, asked of the
 * store before it reads them (`LedgerSnapshot.top`): the key is `column`, or
 * `column - minus` (as in ExportFilter); rows are those `where` keeps.
 */
export interface TopRequest {
  readonly table: ExportTable
  readonly column: string
  readonly minus?: string
  readonly descending: boolean
  readonly count: number
  readonly where: readonly ExportFilter[]
}

/** How a store writes a filter's parts in its SQL. */
export interface FilterSql {
  /** A (checked) column, quoted. */
  column(column: ExportColumn): string
  /** ` IN (…)` or its like: the values as parameters. */
  values(column: ExportColumn, values: readonly (string | number)[]): string
  /** A bound on the column as the store compares it (times: ms since the epoch). */
  bound(column: ExportColumn, value: number, side: 'min' | 'max'): string
  /** `a - b` as a number: integers as they are, times as ms. */
  difference(a: ExportColumn, b: ExportColumn): string
  /** A number, as a parameter. */
  number(value: number): string
  /** The rows of these row ids. */
  ids(ids: readonly string[]): string
}

/** A filter as SQL, for a store. */
export function filterSql(table: ExportTable, filter: ExportFilter, sql: FilterSql): string {
  if ('any' in filter) return `(${filter.any.map((inner) => filterSql(table, inner, sql)).join(' OR ')})`
  if ('ids' in filter) return sql.ids(filter.ids)
  const column = exportColumn(table, filter.column)
  if ('in' in filter) return `${sql.column(column)} ${sql.values(column, filter.in)}`
  const side = 'min' in filter ? 'min' : 'max'
  const value = side === 'min' ? (filter as { min: number }).min : (filter as { max: number }).max
  const operator = side === 'min' ? '>=' : '<='
  if (filter.minus !== undefined) return `${sql.difference(column, exportColumn(table, filter.minus))} ${operator} ${sql.number(value)}`
  return `${sql.column(column)} ${operator} ${sql.bound(column, value, side)}`
}

export interface ExportRequest {
  readonly table: ExportTable
  /** In the order the page's columns are wanted. */
  readonly columns: readonly string[]
  /** All must hold. */
  readonly where?: readonly ExportFilter[]
}

/**
 * `columns[i]` is the JSON text of an array of the request's `columns[i]`
 * values, one per row (`["orders","orders"]`, `[3,null]`), in no particular
 * order, the same for every column: as a string, or as its UTF-8 bytes
 * (what SQLite hands over without decoding it into a JavaScript string, and
 * DuckDB takes without encoding it back).
 */
export interface ExportPage {
  readonly rows: number
  readonly columns: readonly (string | Uint8Array)[]
}

/** A CSV file of a table's rows a store wrote (`LedgerSnapshot.copy`). */
export interface ExportPart {
  readonly file: string
  readonly rows: number
}

export interface LedgerSnapshot {
  /** The store's clock when the snapshot was taken, ms since the epoch (Postgres: the server's, as leases are judged). */
  readonly now: number
  /**
   * How times are written in pages, whichever each database writes fastest:
   * `iso`, ISO-8601 strings in UTC (SQLite stores them so); `us`, integers
   * of µs since the epoch (Postgres: a number costs half of formatting a
   * timestamptz as text, 0.21 s against 0.43 s per million).
   */
  readonly times: 'iso' | 'us'
  read(request: ExportRequest): AsyncIterable<ExportPage>
  /**
   * The same rows as `read`, written by the store itself as CSV files into
   * `dir` (which the caller made and removes): yields each file once it is
   * whole, with its row count. RFC 4180, UTF-8, no header, the request's
   * columns in order, times as `times` says; NULL is an empty field
   * unquoted, an empty string `""`. Only a store that can write CSV itself
   * faster than it builds pages has it (Postgres 14 and later, by COPY):
   * on 960,000 files, five columns, DuckDB read the CSV in about half the
   * time the pages took.
   */
  readonly copy?: (request: ExportRequest, dir: string) => AsyncIterable<ExportPart>
  /**
   * A filter that keeps, of the rows `where` keeps, at least every row an
   * `ORDER BY key LIMIT count` (NULLs last) can return: those up to the
   * `count`-th in that order and every row tied with it. null when it would
   * keep them all (fewer than `count` rows have a key). `filedge query`
   * reads 10 files of a million for "the slowest 10".
   */
  readonly top?: (request: TopRequest) => Promise<ExportFilter | null>
  /** Ends the read transaction. */
  close(): Promise<void>
}

/**
 * Rows per page: DuckDB's vector size. DuckDB unpacks a page's arrays
 * fastest at that size (1M paths: 0.24 s in arrays of 2,048, 0.44 s in
 * arrays of 65,536), and a query per page costs SQLite little.
 */
export const EXPORT_PAGE_ROWS = 2048

export function exportColumn(table: ExportTable, name: string): ExportColumn {
  const column = (EXPORT_TABLES[table] as readonly ExportColumn[]).find((candidate) => candidate.name === name)
  if (column === undefined) throw new FiledgeError('INTERNAL', `ledger export: ${table} has no column ${JSON.stringify(name)}`)
  return column
}

/**
 * Checks a request against the tables above, once for both stores: the
 * names it holds are spliced into SQL, so only the known ones pass.
 */
export function checkExport(request: ExportRequest): ExportColumn[] {
  checkTable(request.table)
  if (request.columns.length === 0) throw new FiledgeError('INTERNAL', `ledger export: no columns asked of ${request.table}`)
  checkFilters(request.table, request.where ?? [])
  return request.columns.map((name) => exportColumn(request.table, name))
}

/** Checks a top request as checkExport does a read; returns its key's columns. */
export function checkTop(request: TopRequest): { readonly column: ExportColumn; readonly minus?: ExportColumn } {
  checkTable(request.table)
  if (!Number.isSafeInteger(request.count) || request.count < 1) throw new FiledgeError('INTERNAL', `ledger export: a top of ${request.count} rows`)
  checkFilters(request.table, [...request.where, { column: request.column, ...(request.minus === undefined ? {} : { minus: request.minus }), min: 0 }])
  const column = exportColumn(request.table, request.column)
  return request.minus === undefined ? { column } : { column, minus: exportColumn(request.table, request.minus) }
}

/**
 * The bound at the `count`-th row's key (ms for times and durations): every
 * row that sorts before it or ties with it. Widened to whole ms for times (a
 * store's instant may carry µs), and by 1 ms more for a duration, which a
 * store computes in floating point.
 */
export function topBound(request: TopRequest, column: ExportColumn, key: number): ExportFilter {
  const minus = request.minus === undefined ? {} : { minus: request.minus }
  const time = column.kind === 'time'
  const slack = time && request.minus !== undefined ? 1 : 0
  if (request.descending) return { column: column.name, ...minus, min: (time ? Math.floor(key) : key) - slack }
  return { column: column.name, ...minus, max: (time ? Math.ceil(key) : key) + slack }
}

/**
 * Rows asked for past `count` (LedgerSnapshot.top), for the ties of the
 * last: beyond them a bound on the key keeps the rest. A scan costs the same
 * whether it keeps 110 rows or 10,010 (Postgres, 960,000 files: 0.64–0.77 s
 * either way); the synthetic ledger's durations, whole seconds, tie 239 ways
 * at the tenth slowest.
 */
export const TOP_EXTRA = 10_000

/**
 * What `top` keeps, from the first `count + TOP_EXTRA` rows (`fetched`) of
 * the rows `where` keeps in the key's order, NULLs last, each with its row
 * id and its key as a number (times in ms, a float: two keys may come out
 * equal that are not, one more row kept, never swapped): those rows up to
 * the `count`-th and its ties, by id; a bound on the key when more ties may
 * follow than were fetched; null to keep every row.
 */
export function topOfRows(request: TopRequest, column: ExportColumn, fetched: readonly { readonly id: string; readonly key: number | null }[]): ExportFilter | null {
  const all = fetched.length < request.count + TOP_EXTRA
  if (fetched.length === 0) return null
  if (fetched.length < request.count) return { ids: fetched.map((row) => row.id) }
  const boundary = fetched[request.count - 1].key
  // Fewer than `count` rows with a key: the query reads every row without one, in an order of its own.
  if (boundary === null) return all ? { ids: fetched.map((row) => row.id) } : null
  const kept = fetched.filter((row) => row.key !== null && (request.descending ? row.key >= boundary : row.key <= boundary))
  if (kept.length < fetched.length || all) return { ids: kept.map((row) => row.id) }
  return topBound(request, column, boundary)
}

function checkTable(table: ExportTable): void {
  if (!Object.hasOwn(EXPORT_TABLES, table)) throw new FiledgeError('INTERNAL', `ledger export: no table ${JSON.stringify(table)}`)
}

function checkFilters(table: ExportTable, where: readonly ExportFilter[]): void {
  const check = (filter: ExportFilter): void => {
    if ('any' in filter) {
      if (filter.any.length === 0) throw new FiledgeError('INTERNAL', `ledger export: an empty "any" filter on ${table}`)
      return filter.any.forEach(check)
    }
    if ('ids' in filter) {
      if (filter.ids.length === 0) throw new FiledgeError('INTERNAL', `ledger export: no row ids for ${table}`)
      return
    }
    const column = exportColumn(table, filter.column)
    if ('in' in filter ? filter.in.length === 0 : column.kind === 'text') throw new FiledgeError('INTERNAL', `ledger export: unusable filter on ${table}.${column.name}`)
    if ('minus' in filter && filter.minus !== undefined && exportColumn(table, filter.minus).kind !== column.kind) {
      throw new FiledgeError('INTERNAL', `ledger export: ${table}.${column.name} - ${filter.minus}: not two columns of one kind`)
    }
  }
  where.forEach(check)
}

/** The snapshot of a ledger that does not exist yet (a SQLite file no run has created): every table empty. */
export function emptySnapshot(now = Date.now()): LedgerSnapshot {
  return {
    now,
    times: 'iso',
    async *read() {
      return
    },
    async close() {},
  }
}
