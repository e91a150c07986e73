import type { ColumnType, ResolvedColumn } from '../config/types.js'
import { FiledgeError, fileInvalid, rowInvalid, showList, showName, showValue } from '../errors.js'
import { parseJson, stringifyJson } from '../formats/json-value.js'
import { NumberText, UnreadableValue, type RawBatch, type RawRows, type RowBatch, type Value } from '../rows.js'

/**
 * Coercion: raw field values (text from CSV, JSON values from JSON formats)
 * into typed values. Strict by design: a value that does not match its
 * column's type exactly fails the file; nothing is rounded, truncated or
 * guessed. The README's coercion table documents these rules.
 */

/** Thrown by a coercer; turned into ROW_INVALID with file, line and column by the caller. */
class Reject {
  constructor(readonly reason: string) {}
}

/** Whether a coercer refused a value (its `reason` says why), rather than failing otherwise. */
export function isRejection(error: unknown): error is { readonly reason: string } {
  return error instanceof Reject
}

type Coercer = (raw: unknown) => Value

const INT_PATTERN = /^[+-]?\d+$/
const FLOAT_PATTERN = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/
const DECIMAL_PATTERN = /^([+-]?)(\d*)(?:\.(\d*))?$/
const DATE_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/
const TIMESTAMP_PATTERN = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

const TRUE_WORDS = new Set(['true', 't', 'yes', 'y', '1'])
const FALSE_WORDS = new Set(['false', 'f', 'no', 'n', '0'])

// Fast paths: most values in real files are plain ASCII numbers and dates. A
// char-code scan decides those without a regular expression or a trim; any
// other text takes the general path below, so the rules stay in one place.

/** `[+-]?\d+` with at most 15 digits: exactly representable, Number() is exact. */
function isShortInteger(text: string): boolean {
  const n = text.length
  let i = 0
  if (n === 0) return false
  const first = text.charCodeAt(0)
  if (first === 43 || first === 45) i = 1
  if (n - i === 0 || n - i > 15) return false
  for (; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c < 48 || c > 57) return false
  }
  return true
}

/** `[+-]?\d+(\.\d+)?`: a subset of FLOAT_PATTERN. */
function isPlainDecimal(text: string): boolean {
  const n = text.length
  let i = 0
  if (n === 0) return false
  const first = text.charCodeAt(0)
  if (first === 43 || first === 45) i = 1
  let digits = 0
  for (; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 46) break
    if (c < 48 || c > 57) return false
    digits++
  }
  if (digits === 0) return false
  if (i === n) return true
  if (i === n - 1) return false
  for (i++; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c < 48 || c > 57) return false
  }
  return true
}

function digitAt(text: string, at: number): number {
  const c = text.charCodeAt(at) - 48
  return c >= 0 && c <= 9 ? c : -1
}

/** `YYYY-MM-DD` read by char codes: the date as y*10000+m*100+d, or -1 when the text is not in that shape. */
function plainDate(text: string): number {
  if (text.length !== 10 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return -1
  let value = 0
  for (const at of DATE_DIGITS) {
    const digit = digitAt(text, at)
    if (digit < 0) return -1
    value = value * 10 + digit
  }
  return value
}
const DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]

function typeOfRaw(raw: unknown): string {
  if (raw instanceof NumberText) return `the number ${showName(raw.text)}`
  if (Array.isArray(raw)) return 'an array'
  if (typeof raw === 'object') return 'an object'
  return `a ${typeof raw}`
}

/** A value a format could not read (an Excel error cell) fails every type, for the reason the format gave. */
function refuse(raw: unknown, type: ColumnType, hint = ''): Reject {
  return raw instanceof UnreadableValue ? new Reject(raw.reason) : new Reject(`cannot coerce ${typeOfRaw(raw)} to ${type}${hint}`)
}

function expectText(raw: unknown, type: ColumnType): string {
  if (typeof raw === 'string') return raw.trim()
  throw refuse(raw, type)
}

function coerceString(raw: unknown): Value {
  if (typeof raw === 'string') return raw
  if (typeof raw === 'number' || typeof raw === 'boolean' || typeof raw === 'bigint') return String(raw)
  if (raw instanceof NumberText) return raw.text
  throw refuse(raw, 'string', ' (declare the column as json)')
}

function coerceInteger(raw: unknown): Value {
  if (typeof raw === 'string' && isShortInteger(raw)) return Number(raw)
  if (typeof raw === 'number') {
    if (!Number.isInteger(raw)) throw new Reject(`${raw} is not an integer`)
    if (!Number.isSafeInteger(raw)) throw new Reject(`${raw} is beyond 2^53 and lost precision when parsed; write it as a string`)
    return raw
  }
  if (typeof raw === 'bigint') return coerceInteger(raw.toString())
  if (raw instanceof NumberText && !INT_PATTERN.test(raw.text)) throw new Reject(`${showName(raw.text)} is not an integer`)
  const text = raw instanceof NumberText ? raw.text : expectText(raw, 'integer')
  if (!INT_PATTERN.test(text)) throw new Reject(`cannot coerce ${showValue(text)} to integer`)
  const value = Number(text)
  if (Number.isSafeInteger(value)) return value
  const big = BigInt(text)
  if (big < INT64_MIN || big > INT64_MAX) throw new Reject(`${showName(text)} is out of the 64-bit integer range`)
  return big
}

function coerceFloat(raw: unknown): Value {
  if (typeof raw === 'string' && raw.length < 300 && isPlainDecimal(raw)) return Number(raw)
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) throw new Reject(`${raw} is out of the float range`)
    return raw
  }
  const text = raw instanceof NumberText ? raw.text : expectText(raw, 'float')
  if (!FLOAT_PATTERN.test(text)) throw new Reject(`cannot coerce ${showValue(text)} to float`)
  const value = Number(text)
  if (!Number.isFinite(value)) throw new Reject(`${showName(text)} is out of the float range`)
  return value
}

function decimalCoercer(precision: number, scale: number): Coercer {
  const maxIntegerDigits = precision - scale
  return (raw) => {
    const text = typeof raw === 'number' ? String(raw) : raw instanceof NumberText ? raw.text : expectText(raw, 'decimal')
    const match = DECIMAL_PATTERN.exec(text)
    if (match === null || (match[2] === '' && (match[3] ?? '') === '')) throw new Reject(`cannot coerce ${showValue(text)} to decimal`)
    const integer = match[2].replace(/^0+(?=\d)/, '') || '0'
    const fraction = (match[3] ?? '').replace(/0+$/, '')
    if (fraction.length > scale) throw new Reject(`${showName(text)} has more than ${scale} digits after the point (decimal(${precision},${scale})); it is not rounded`)
    if ((integer === '0' ? 0 : integer.length) > maxIntegerDigits) throw new Reject(`${showName(text)} does not fit decimal(${precision},${scale})`)
    const negative = match[1] === '-' && /[1-9]/.test(integer + fraction)
    // Written at the declared scale, as the database would show it: 129.9 in decimal(12,2) is "129.90".
    return `${negative ? '-' : ''}${integer}${scale === 0 ? '' : `.${fraction.padEnd(scale, '0')}`}`
  }
}

function coerceBoolean(raw: unknown): Value {
  if (typeof raw === 'boolean') return raw
  if (raw === 1 || raw === 0) return raw === 1
  const text = expectText(raw, 'boolean').toLowerCase()
  if (TRUE_WORDS.has(text)) return true
  if (FALSE_WORDS.has(text)) return false
  throw new Reject(`cannot coerce ${showValue(text)} to boolean`)
}

/** Year 1 to 9999: SQL dates have no year 0 (Postgres refuses it), and the text form has four digits. */
function validDate(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false
  const days = month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
  return day <= days
}

function coerceDate(raw: unknown): Value {
  if (typeof raw === 'string') {
    const date = plainDate(raw)
    if (date >= 0 && validDate(Math.floor(date / 10_000), Math.floor(date / 100) % 100, date % 100)) return raw
  }
  const text = expectText(raw, 'date')
  const match = DATE_PATTERN.exec(text)
  if (match === null || !validDate(Number(match[1]), Number(match[2]), Number(match[3]))) {
    throw new Reject(`cannot coerce ${showValue(text)} to date (expected YYYY-MM-DD)`)
  }
  return text
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0')
}

/** Timestamps become UTC instants: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. A value without an offset is taken as UTC. */
function coerceTimestamp(raw: unknown): Value {
  const text = expectText(raw, 'timestamp')
  const match = TIMESTAMP_PATTERN.exec(text)
  const fail = () => new Reject(`cannot coerce ${showValue(text)} to timestamp (expected ISO 8601, e.g. 2024-05-01T13:45:00Z)`)
  if (match === null) throw fail()
  const [, y, mo, d, h, mi, s = '00', fractionText = '', zone = 'Z'] = match
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = Number(s)
  if (!validDate(year, month, day) || hour > 23 || minute > 59 || second > 59) throw fail()
  if (fractionText.length > 6 && /[1-9]/.test(fractionText.slice(6))) throw new Reject(`${showValue(text)} is more precise than microseconds`)
  let offsetMinutes = 0
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1
    const digits = zone.slice(1).replace(':', '')
    const offsetHours = Number(digits.slice(0, 2))
    const offsetMins = digits.length > 2 ? Number(digits.slice(2)) : 0
    if (offsetHours > 23 || offsetMins > 59) throw fail()
    offsetMinutes = sign * (offsetHours * 60 + offsetMins)
  }
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0–99 to 1900–1999.
  const instant = new Date(0)
  instant.setUTCFullYear(year, month - 1, day)
  instant.setUTCHours(hour, minute - offsetMinutes, second, 0)
  const micros = (fractionText + '000000').slice(0, 6)
  if (instant.getUTCFullYear() < 1 || instant.getUTCFullYear() > 9999) throw new Reject(`${showValue(text)} is outside years 1 to 9999 in UTC`)
  return (
    `${pad(instant.getUTCFullYear(), 4)}-${pad(instant.getUTCMonth() + 1, 2)}-${pad(instant.getUTCDate(), 2)}` +
    `T${pad(instant.getUTCHours(), 2)}:${pad(instant.getUTCMinutes(), 2)}:${pad(instant.getUTCSeconds(), 2)}.${micros}Z`
  )
}

function coerceJson(raw: unknown): Value {
  if (raw instanceof NumberText) return raw.text
  if (raw instanceof UnreadableValue) throw refuse(raw, 'json')
  if (typeof raw !== 'string') return stringifyJson(raw)
  try {
    return stringifyJson(parseJson(raw))
  } catch {
    throw new Reject(`cannot coerce ${JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}…` : raw)} to json (not valid JSON)`)
  }
}

/**
 * Every type but `string` trims its text, so a value of spaces only is empty
 * there, like `''`: NULL, or "required value is missing". Without this it
 * failed as `cannot coerce "" to integer`, a message about a value the file
 * does not contain.
 */
function isBlank(value: unknown): boolean {
  if (typeof value !== 'string') return false
  if (value === '') return true
  const first = value.charCodeAt(0)
  // Printable ASCII first: not blank, without the trim.
  return !(first > 32 && first < 127) && value.trim() === ''
}

export function coercerFor(column: Pick<ResolvedColumn, 'type' | 'precision' | 'scale'>): Coercer {
  switch (column.type) {
    case 'string':
      return coerceString
    case 'integer':
      return coerceInteger
    case 'float':
      return coerceFloat
    case 'decimal':
      return decimalCoercer(column.precision ?? 38, column.scale ?? 9)
    case 'boolean':
      return coerceBoolean
    case 'date':
      return coerceDate
    case 'timestamp':
      return coerceTimestamp
    case 'json':
      return coerceJson
  }
}

/** Formats an ISO instant the way timestamp columns store it (microsecond precision, UTC). */
export function isoInstant(date: Date): string {
  return `${date.toISOString().slice(0, -1)}000Z`
}

/**
 * A record whose field count differs from the header's. Fields are
 * positional, so a short record has no value for the header's last fields:
 * the first of them is named as the column. A long one has fields no header
 * names, which is no column at all.
 */
function raggedRecord(file: string, line: number, fields: readonly string[], found: number): FiledgeError {
  const expected = `expected ${fields.length} fields, found ${found}`
  if (found > fields.length) return fileInvalid(file, `${expected} (field ${fields.length + 1} has no name in the header)`, line)
  const column = showName(fields[found])
  return new FiledgeError('FILE_INVALID', `${file}:${line} column ${column}: ${expected} (no value for ${showList(fields.slice(found))})`, { file, line, column })
}

/**
 * Maps a file's fields onto the pipeline's columns (checking the header once)
 * and returns a generator of typed batches. Work per value is one function
 * call; all checks that can be done per file are done here, once.
 */
export interface CoerceOptions {
  readonly file: string
  readonly unknownColumns: 'error' | 'ignore'
  /**
   * Called with each bad value (ROW_INVALID) and each record with the wrong
   * number of fields (FILE_INVALID); the row is dropped and coercion goes on.
   * Without it the first one is thrown, failing the file.
   */
  readonly onInvalid?: (error: FiledgeError) => void
  /**
   * Quarantine: called once per bad record (bad values, the wrong number of
   * fields, or a problem `rowCheck` found) with every problem it has and its
   * text, when the format kept it; the record is dropped and coercion goes
   * on. Takes precedence over `onInvalid`. May throw to fail the file.
   */
  readonly onReject?: (record: RejectedRecord) => void
  /** Problems of a row whose values all coerced (a cdc change with an unknown op), found while the record is at hand. */
  readonly rowCheck?: (row: Value[], line: number) => readonly FiledgeError[] | undefined
}

/** A record coercion set aside. */
export interface RejectedRecord {
  readonly line: number
  /** Its 1-based record number in the file. */
  readonly record: number
  readonly errors: readonly FiledgeError[]
  /** The record as the file wrote it (RawBatch.texts), when the format keeps it. */
  readonly text?: string
}

/** Why a protected column's value failed, without the value (the reasons of the coercers quote it). */
function withheld(type: ColumnType): string {
  return `not a valid ${type} (the value is not shown: the column is protected)`
}

export function coerceRows(raw: RawRows, columns: readonly ResolvedColumn[], options: CoerceOptions): AsyncGenerator<RowBatch> {
  const { file } = options
  const headerLine = raw.headerLine
  // A file with no header and no records (0 bytes, or only blank lines) is an empty load, not a file missing its columns.
  if (raw.fields.length === 0) {
    return (async function* () {
      for await (const batch of raw.batches) {
        if (batch.records.length > 0) throw fileInvalid(file, 'records without a header', batch.lines[0])
      }
    })()
  }
  const fieldIndex = new Map<string, number>()
  raw.fields.forEach((field, index) => {
    if (fieldIndex.has(field)) throw fileInvalid(file, `duplicate field ${showValue(field)} in the header (fields ${fieldIndex.get(field)! + 1} and ${index + 1})`, headerLine)
    fieldIndex.set(field, index)
  })
  const declared = new Set(columns.map((column) => column.source))
  const missing = columns.filter((column) => column.required && !fieldIndex.has(column.source))
  if (missing.length > 0) {
    throw fileInvalid(file, `missing required column${missing.length > 1 ? 's' : ''} ${missing.map((column) => JSON.stringify(column.source)).join(', ')} (fields: ${showList(raw.fields)})`, headerLine)
  }
  if (options.unknownColumns === 'error') {
    const unknown = raw.fields.filter((field) => !declared.has(field))
    if (unknown.length > 0) {
      throw fileInvalid(file, `unknown field${unknown.length > 1 ? 's' : ''} ${showList(unknown)}; declare ${unknown.length > 1 ? 'them' : 'it'} in columns or set unknownColumns: 'ignore'`, headerLine)
    }
  }

  const width = columns.length
  const fieldCount = raw.fields.length
  const sourceIndex = columns.map((column) => fieldIndex.get(column.source) ?? -1)
  const coercers = columns.map(coercerFor)
  const stringColumn = columns.map((column) => column.type === 'string')
  const required = columns.map((column) => column.required)
  const names = columns.map((column) => column.name)
  const sourceNames = columns.map((column) => (column.source === column.name ? column.name : `${column.source} (→ ${column.name})`))

  const protectedColumn = columns.map((column) => column.protect !== undefined)
  const types = columns.map((column) => column.type)
  const { onReject, rowCheck } = options
  // Quarantine: a bad record's problems are gathered, then it is handed over whole.
  let problems: FiledgeError[] = []
  // validate (every bad value reported, its row dropped) or quarantine, instead of the first bad value failing the file.
  const report = onReject !== undefined ? (error: FiledgeError) => void problems.push(error) : options.onInvalid

  const reject = (line: number, record: number, text: string | undefined) => {
    const errors = problems
    problems = []
    onReject!({ line, record, errors, ...(text === undefined ? {} : { text }) })
  }

  async function* generate(): AsyncGenerator<RowBatch> {
    let rowNumber = 0
    for await (const batch of raw.batches as AsyncIterable<RawBatch>) {
      const { records, lines, texts } = batch
      const count = records.length
      const rows: Value[][] = new Array(count)
      const rowNumbers: number[] = new Array(count)
      const keptLines: number[] = report ? new Array(count) : lines
      let kept = 0
      for (let r = 0; r < count; r++) {
        const record = records[r]
        rowNumber++
        if (record.length !== fieldCount) {
          const error = raggedRecord(file, lines[r], raw.fields, record.length)
          if (report === undefined) throw error
          report(error)
          if (onReject !== undefined) reject(lines[r], rowNumber, texts?.[r])
          continue
        }
        const row: Value[] = new Array(width)
        let bad = false
        for (let c = 0; c < width; c++) {
          const index = sourceIndex[c]
          let value = index < 0 ? null : record[index]
          if (value === null || value === undefined || (!stringColumn[c] && isBlank(value))) {
            if (required[c]) {
              const error = rowInvalid(file, lines[r], sourceNames[c], value ?? null, 'required value is missing')
              if (report === undefined) throw error
              report(error)
              bad = true
            }
            row[c] = null
            continue
          }
          try {
            value = coercers[c](value)
          } catch (error) {
            if (!(error instanceof Reject)) throw error
            // A protected column's value stays out of the message, the ledger and validate's output.
            const invalid = protectedColumn[c] ? rowInvalid(file, lines[r], sourceNames[c], undefined, withheld(types[c])) : rowInvalid(file, lines[r], sourceNames[c], value, error.reason)
            if (report === undefined) throw invalid
            report(invalid)
            bad = true
          }
          row[c] = value as Value
        }
        if (!bad && rowCheck !== undefined) {
          const found = rowCheck(row, lines[r])
          if (found !== undefined && found.length > 0) {
            if (report === undefined) throw found[0]
            for (const error of found) report(error)
            bad = true
          }
        }
        if (bad) {
          if (onReject !== undefined) reject(lines[r], rowNumber, texts?.[r])
          continue
        }
        rows[kept] = row
        rowNumbers[kept] = rowNumber
        if (report) keptLines[kept] = lines[r]
        kept++
      }
      if (kept === count) yield { columns: names, rows, rowNumbers, lines }
      else yield { columns: names, rows: rows.slice(0, kept), rowNumbers: rowNumbers.slice(0, kept), lines: keptLines.slice(0, kept) }
    }
  }
  return generate()
}
