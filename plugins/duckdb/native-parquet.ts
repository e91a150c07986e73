import { isGzipPath, PROVENANCE_COLUMNS, quoteIdentifier, type ResolvedColumn, type WriteJob } from '../../core/index.js'
import { duckdbType } from './types.js'

/**
 * The native Parquet path: DuckDB reads a Parquet file itself
 * (`read_parquet`, in parallel, by row group) and one INSERT … SELECT casts
 * each column, adding the provenance columns, with the record number from
 * the reader's own `file_row_number`: no window, so nothing serializes the
 * statement (CSV has no such column, see native-csv.ts).
 *
 * It applies only where DuckDB's value is the value filedge's Parquet reader
 * and coercion would produce, column by column, from the file's own types
 * (`DESCRIBE` of the reader, and `parquet_schema` for what DESCRIBE hides):
 * text into string, integers into integer, float or a decimal wide enough,
 * floating point into float (finite), BOOLEAN, DATE and TIMESTAMP (ms, µs,
 * with or without UTC adjustment, both read as UTC instants, as the JS
 * reader does) into their own types, DECIMAL of at most 15 digits (the JS
 * reader's exact limit) into a decimal that holds it without rounding. Any
 * other pairing (strings into numbers, nanosecond or INT96 timestamps,
 * nested columns, json columns, BLOB) leaves the file to filedge's reader,
 * which either loads it or fails it with file, row and reason. Values that
 * pass the types but not a rule (a date outside years 1–9999, a float that
 * is NaN or infinite) are left out by the WHERE clause: the inserted row
 * count then differs from the file's, and the file goes to the JS path too.
 */

/** Why the native Parquet path does not apply to a job (before looking inside the file), or undefined. */
export function nativeParquetUnsupported(job: WriteJob): string | undefined {
  const source = job.source
  if (source === undefined) return 'a transform is tapped'
  if (job.localPath === undefined) return 'the file is not on local disk'
  if (source.format.type !== 'parquet') return `${source.format.type} is not Parquet`
  if (isGzipPath(job.file.path)) return 'a gzipped Parquet file is read by filedge'
  if (source.fields.length === 0) return 'the file has no columns'
  if (source.columns.some((column) => column.type === 'json')) return 'a json column'
  return undefined
}

/** A top-level column of the file as DuckDB's reader types it. */
export interface ParquetField {
  readonly name: string
  /** DuckDB's type name, as DESCRIBE prints it (`BIGINT`, `DECIMAL(9,2)`, `TIMESTAMP WITH TIME ZONE`). */
  readonly type: string
}

/** Decimal digits each integer type can need. Signed only: unsigned Parquet integers are left to the JS reader. */
const INTEGER_DIGITS: Record<string, number> = { TINYINT: 3, SMALLINT: 5, INTEGER: 10, BIGINT: 19 }
/** Exact in filedge's Parquet reader, which recovers a DECIMAL's digits from a double. */
const JS_DECIMAL_DIGITS = 15
const IN_YEARS = (value: string) => `year(${value}) BETWEEN 1 AND 9999`

/**
 * How field `field` of type `type` becomes `column`'s value: `value` casts, `check` (optional) must hold for the
 * row to be inserted. Undefined when the pairing is not one the JS reader gives the same value for.
 */
function columnSql(column: ResolvedColumn, type: string, field: string): { check?: string; value: string } | undefined {
  const decimal = /^DECIMAL\((\d+),(\d+)\)$/.exec(type)
  const integer = Object.hasOwn(INTEGER_DIGITS, type)
  switch (column.type) {
    case 'string':
      return type === 'VARCHAR' ? { value: field } : undefined
    case 'integer':
      return integer ? { value: `CAST(${field} AS BIGINT)` } : undefined
    case 'float':
      if (type === 'DOUBLE' || type === 'FLOAT') return { value: `CAST(${field} AS DOUBLE)`, check: `(${field} IS NULL OR isfinite(${field}))` }
      return integer ? { value: `CAST(${field} AS DOUBLE)` } : undefined
    case 'decimal': {
      const precision = column.precision ?? 38
      const scale = column.scale ?? 9
      const target = duckdbType(column)
      if (integer) return INTEGER_DIGITS[type]! <= precision - scale ? { value: `CAST(${field} AS ${target})` } : undefined
      if (decimal === null) return undefined
      const [p, s] = [Number(decimal[1]), Number(decimal[2])]
      // Never rounded (a wider scale), never overflowing (more integer digits), and exact on the JS side too.
      return p <= JS_DECIMAL_DIGITS && s <= scale && p - s <= precision - scale ? { value: `CAST(${field} AS ${target})` } : undefined
    }
    case 'boolean':
      return type === 'BOOLEAN' ? { value: field } : undefined
    case 'date':
      return type === 'DATE' ? { value: field, check: `(${field} IS NULL OR ${IN_YEARS(field)})` } : undefined
    case 'timestamp': {
      if (type === 'TIMESTAMP WITH TIME ZONE') return { value: field, check: `(${field} IS NULL OR ${IN_YEARS(`timezone('UTC', ${field})`)})` }
      // Without UTC adjustment the JS reader reads the instant as UTC: so does timezone('UTC', …), whatever the session's zone.
      if (type === 'TIMESTAMP' || type === 'TIMESTAMP_MS' || type === 'TIMESTAMP_S') {
        const utc = `timezone('UTC', CAST(${field} AS TIMESTAMP))`
        return { value: utc, check: `(${field} IS NULL OR ${IN_YEARS(`CAST(${field} AS TIMESTAMP)`)})` }
      }
      return undefined
    }
    case 'json':
      return undefined
  }
}

export interface NativeParquetStatement {
  readonly sql: string
  readonly params: Record<string, unknown>
}

/**
 * `INSERT INTO table SELECT <casts>, hash, ingested_at, file_row_number + 1 FROM read_parquet(…) AS p(f0, f1, …) WHERE <checks>`,
 * or the reason the file's types rule it out. Fields are renamed by position, so no name from the file reaches SQL;
 * `fields` must be the file's columns as filedge's reader named them, in order (checked by the caller).
 */
export function nativeParquetInsert(job: WriteJob, fields: readonly ParquetField[]): NativeParquetStatement | string {
  const source = job.source!
  const position = new Map(source.fields.map((field, index) => [field, index]))
  const names = fields.map((_, index) => `f${index}`)
  const parts: { check?: string; value: string }[] = []
  for (const column of source.columns) {
    const index = position.get(column.source)
    if (index === undefined) {
      parts.push({ value: 'NULL' })
      continue
    }
    const part = columnSql(column, fields[index]!.type, names[index]!)
    if (part === undefined) return `column ${column.name} is ${column.type}, the file's field is ${fields[index]!.type}`
    parts.push(part)
  }
  const checks = parts.flatMap((part) => (part.check === undefined ? [] : [part.check]))
  const targets = [...source.columns.map((column) => column.name), ...PROVENANCE_COLUMNS.map((column) => column.name)].map(quoteIdentifier)
  const sql =
    `INSERT INTO ${quoteIdentifier(job.table.name)} (${targets.join(', ')}) ` +
    `SELECT ${parts.map((part) => part.value).join(', ')}, $hash, CAST($ingested AS TIMESTAMPTZ), file_row_number + 1 ` +
    `FROM read_parquet($path, file_row_number = true) AS p(${names.join(', ')})` +
    (checks.length > 0 ? ` WHERE ${checks.join(' AND ')}` : '')
  return { sql, params: { hash: job.file.hash, ingested: job.ingestedAt, path: job.localPath } }
}
