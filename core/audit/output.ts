import type { DuckDBTimestampTZValue, DuckDBTimestampValue } from '@duckdb/node-api'
import { duckdb } from './duckdb.js'
import type { QueryResult } from './duck.js'

/**
 * How a query's values are printed. Text (the human table, CSV) uses
 * DuckDB's own rendering of each value, as its shell does
 * (`2026-01-01 10:00:00.123+00`, `01:00:00.5` for an interval). JSON keeps
 * what JSON can hold: numbers as numbers (a 64-bit integer beyond 2^53 as a
 * string, so no digit is lost), booleans, lists and structs as arrays and
 * objects, times as ISO 8601 in UTC with their microseconds (`Z`), anything else
 * as DuckDB's text.
 */

/** DuckDB's text of a value; NULL is null. */
export function textOf(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value)
}

/** Times are UTC (the ledger's, and the session's time zone): `2026-01-01 10:00:00.123456+00` or without the offset → `2026-01-01T10:00:00.123456Z`. */
function isoOf(value: DuckDBTimestampValue | DuckDBTimestampTZValue): string {
  return `${String(value).replace(' ', 'T').replace(/\+00(:00)?$/, '')}Z`
}

export function jsonOf(value: unknown): unknown {
  if (value === null || value === undefined) return null
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : String(value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') return value
  if (value instanceof duckdb.DuckDBTimestampTZValue || value instanceof duckdb.DuckDBTimestampValue) return isoOf(value)
  if (value instanceof duckdb.DuckDBDecimalValue) return Number(String(value))
  if (value instanceof duckdb.DuckDBListValue || value instanceof duckdb.DuckDBArrayValue) return value.items.map(jsonOf)
  if (value instanceof duckdb.DuckDBStructValue) return Object.fromEntries(Object.entries(value.entries).map(([key, entry]) => [key, jsonOf(entry)]))
  return String(value)
}

/** An array of objects, one per row, keyed by column name (a repeated name keeps its last value, as JSON objects do). */
export function toJson(result: QueryResult): unknown[] {
  const names = result.columns.map((column) => column.name)
  return result.rows.map((row) => Object.fromEntries(row.map((value, index) => [names[index], jsonOf(value)])))
}

/** RFC 4180: a header line, CRLF line ends, fields quoted when they hold a comma, a quote or a line break; NULL is an empty field. */
export function toCsv(result: QueryResult): string {
  const field = (text: string | null) => (text === null ? '' : /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text)
  const lines = [result.columns.map((column) => field(column.name)).join(',')]
  for (const row of result.rows) lines.push(row.map((value) => field(textOf(value))).join(','))
  return `${lines.join('\r\n')}\r\n`
}
