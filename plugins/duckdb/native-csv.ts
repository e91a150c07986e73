import {
  canCheckCsvStructure,
  isGzipPath,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  type CsvFormatOptions,
  type ResolvedColumn,
  type SourceLayout,
  type WriteJob,
} from '../../core/index.js'
import { duckdbType } from './types.js'

/**
 * The native path: DuckDB reads a CSV file itself (`read_csv`, every field as
 * VARCHAR) and one INSERT … SELECT checks and casts each value in SQL, adding
 * the provenance columns. Measured on the 1M-row benchmark file
 * (`npm run bench -- --only duckdb`, whole CLI runs, idle 2-core machine): 1.84–1.96× the
 * time of `read_csv` straight into a typed table of the same columns, against
 * 3.5–3.6× for parsing and appending from JS. The README breaks the
 * difference down.
 *
 * The SQL checks are filedge's coercion rules or stricter, never laxer:
 * DuckDB's own casts accept `'3.7'` into BIGINT (as 4), `'1e999'` as infinity,
 * `'0x10'` as 16 and `'2024-1-5'` as a date, so every value is first matched
 * against the rule's pattern; a row that does not match is left out of the
 * INSERT, which the row count then gives away. Where SQL is stricter
 * than the JS rules (tabs around a number, `HH:MM` timestamps without seconds,
 * a comma before the fraction) the statement fails too, and the file is
 * loaded through the JS path instead, which either accepts it or fails it with
 * file, line, column and reason. `json` columns are never native: DuckDB
 * would re-serialize the documents differently from filedge's canonical JSON.
 */

/** Why the native path does not apply to a job, or undefined when it does. */
export function nativeCsvUnsupported(job: WriteJob): string | undefined {
  const source = job.source
  if (source === undefined) return 'a transform is tapped'
  if (job.localPath === undefined) return 'the file is not on local disk'
  if (source.format.type !== 'csv') return `${source.format.type} is read by filedge`
  if (isGzipPath(job.file.path)) return "gzip is read by filedge (its gzip-bomb limit does not exist in DuckDB's reader)"
  const options = source.format.options as Omit<CsvFormatOptions, 'type'>
  if (options.header !== undefined && options.header !== true) return 'header: false or a list of names'
  if (options.encoding !== undefined && !/^utf-?8$/i.test(options.encoding)) return `encoding ${options.encoding}`
  if (!canCheckCsvStructure(options)) return 'delimiter, quote or escape cannot be checked natively'
  if (source.fields.length === 0 || source.headerLine !== 1) return 'no header on the first line'
  if (source.columns.some((column) => column.type === 'json')) return 'a json column'
  return undefined
}

const SPACES = ' *'

/** A SQL string literal for a constant the plugin builds itself (regular expressions). User values travel as parameters. */
function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`
}
function matches(field: string, pattern: string): string {
  return `regexp_full_match(${field}, ${literal(`${SPACES}${pattern}${SPACES}`)})`
}

/**
 * How one raw VARCHAR field becomes the column's value: `check` is true for
 * the values the column's rule accepts (or NULL ones), `value` casts them.
 *
 * The checks go in the WHERE clause, not in a CASE around each cast: a row
 * that fails one is left out, the inserted row count then differs from the
 * record count, and the file goes to the JS path. Measured on the 1M-row
 * benchmark file: a regular expression in a filter costs ~70 ms per column,
 * the same one in `CASE WHEN … THEN CAST(…) ELSE error(…) END` ~700 ms.
 */
/** Years 0001 to 9999, as coercion accepts them (SQL dates have no year 0). */
const YEAR = '([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])'

function columnSql(column: ResolvedColumn, field: string): { check?: string; value: string } {
  if (column.type === 'string') return { value: field }
  // An empty field is NULL for every type but string (the README's "Empty values"). DuckDB's casts
  // skip the spaces around a value themselves, so the casts need no trim().
  const value = `nullif(${field}, '')`
  const check = (rule: string) => `(${value} IS NULL OR ${rule})`
  const cast = (type: string) => `CAST(${value} AS ${type})`
  const trimmed = `trim(${field})`
  switch (column.type) {
    case 'integer':
      return { check: check(matches(field, '[+-]?[0-9]+')), value: cast('BIGINT') }
    case 'float':
      return { check: check(`${matches(field, '[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]+)?')} AND isfinite(${cast('DOUBLE')})`), value: cast('DOUBLE') }
    case 'decimal':
      return { check: check(matches(field, decimalPattern(column.precision ?? 38, column.scale ?? 9))), value: cast(duckdbType(column)) }
    case 'boolean': {
      const word = `lower(${trimmed})`
      return {
        check: check(`${word} IN ('true', 't', 'yes', 'y', '1', 'false', 'f', 'no', 'n', '0')`),
        value: `CASE WHEN ${value} IS NULL THEN NULL ELSE ${word} IN ('true', 't', 'yes', 'y', '1') END`,
      }
    }
    case 'date':
      // The cast itself fails the statement for impossible days (2023-02-29).
      return { check: check(matches(field, `${YEAR}-[0-9]{2}-[0-9]{2}`)), value: cast('DATE') }
    case 'timestamp': {
      // The subset of ISO 8601 DuckDB parses the same way filedge does; no offset means UTC.
      const pattern = `${YEAR}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?`
      const zoned = `CASE WHEN regexp_matches(${trimmed}, '(Z|[+-][0-9]{2}:[0-9]{2})$') THEN ${trimmed} ELSE ${trimmed} || '+00:00' END`
      return { check: check(matches(field, pattern)), value: `CAST(nullif(${zoned}, '+00:00') AS TIMESTAMPTZ)` }
    }
    case 'json':
      throw new Error('json columns are not loaded natively')
  }
}

/**
 * filedge's decimal rule as one regular expression: a sign, then digits with
 * an optional fraction or a fraction alone, at least one digit; leading zeros
 * free, at most precision−scale integer digits, at most `scale` fraction
 * digits plus trailing zeros (never rounded).
 */
export function decimalPattern(precision: number, scale: number): string {
  const integerDigits = precision - scale
  const fraction = scale > 0 ? `[0-9]{0,${scale}}0*` : '0*'
  const whole = integerDigits > 0 ? `0*[0-9]{1,${integerDigits}}(\\.${fraction})?` : `0+(\\.${fraction})?`
  const fractionOnly = scale > 0 ? `\\.[0-9]{1,${scale}}0*` : '\\.0+'
  return `[+-]?(${whole}|${fractionOnly})`
}

/** read_csv's default `max_line_size`, in bytes (DuckDB 1.5): a longer record is a reader error, so the file falls back to the JS path. */
const DUCKDB_MAX_LINE_SIZE = 2_000_000

export interface NativeCsvStatement {
  readonly sql: string
  readonly params: Record<string, unknown>
}

/**
 * `INSERT INTO table SELECT <casts>, hash, ingested_at, row_number FROM read_csv(…) WHERE <checks>`.
 * Fields are read by position (`f0`, `f1`, …) under names the plugin makes up,
 * so a hostile header never reaches SQL; the header itself was already checked
 * against the columns by the core. `row_number() OVER ()` is the record
 * index: DuckDB keeps the reader's order for it (insertion order is
 * preserved by default, checked at open), and a test loads a file larger than
 * DuckDB's 32 MB CSV buffer, read in parallel, to hold it to that.
 *
 * The window costs: it runs the statement on one thread (measured on the
 * benchmark file, the statement alone: 1.40–1.50 s against 1.05–1.16 s for
 * the same INSERT without it). Tried instead: number the rows afterwards with
 * an UPDATE from their row ids minus the file's first one (rows inserted in an
 * open transaction get ids from 2^55 on). That numbered the test file with
 * quoted line breaks right and saved 0.05–0.14 s, but an earlier attempt
 * measured 306,000 of its 400,000 records out of order, and DuckDB's docs
 * offer rowid as insertion order for materialized tables without saying what
 * holds inside an open transaction. Record numbers are provenance; the window
 * stays.
 */
export function nativeCsvInsert(job: WriteJob, source: SourceLayout, nullValues: readonly string[]): NativeCsvStatement {
  const options = source.format.options as Omit<CsvFormatOptions, 'type'>
  const position = new Map(source.fields.map((field, index) => [field, index]))
  const fields = source.fields.map((_, index) => `f${index}`)
  const parts = source.columns.map((column) => {
    const index = position.get(column.source)
    return index === undefined ? { value: 'NULL' } : columnSql(column, fields[index])
  })
  const select = parts.map((part) => part.value)
  const checks = parts.flatMap((part) => (part.check === undefined ? [] : [part.check]))
  const targets = [...source.columns.map((column) => column.name), ...PROVENANCE_COLUMNS.map((column) => column.name)].map(quoteIdentifier)
  const struct = `{${fields.map((field) => `'${field}': 'VARCHAR'`).join(', ')}}`
  const sql =
    `INSERT INTO ${quoteIdentifier(job.table.name)} (${targets.join(', ')}) ` +
    `SELECT ${select.join(', ')}, $hash, CAST($ingested AS TIMESTAMPTZ), rn ` +
    `FROM (SELECT row_number() OVER () AS rn, * FROM read_csv($path, header = true, columns = ${struct}, auto_detect = false, ` +
    `delim = $delimiter, quote = $quote, escape = $quote, nullstr = $nulls, allow_quoted_nulls = false, strict_mode = true, max_line_size = $maxLineSize, ` +
    `compression = 'none', encoding = 'utf-8'))` +
    (checks.length > 0 ? ` WHERE ${checks.join(' AND ')}` : '')
  return {
    sql,
    params: {
      hash: job.file.hash,
      ingested: job.ingestedAt,
      path: job.localPath,
      delimiter: options.delimiter ?? ',',
      quote: options.quote ?? '"',
      // Setting nullstr replaces DuckDB's default (the empty field), so it is listed again.
      nulls: ['', ...nullValues],
      // A record of at most maxFieldChars bytes has no field longer than that many characters: the reader refuses a
      // longer record and the file falls back to filedge's parser, which checks the limit exactly. DuckDB's own default
      // is kept above that (a longer record already falls back).
      maxLineSize: Math.min(DUCKDB_MAX_LINE_SIZE, source.limits.maxFieldChars),
    },
  }
}
