import { coercerFor } from '../columns/coerce.js'
import type { ColumnType } from '../config/types.js'
import { NumberText, UnreadableValue } from '../rows.js'

/**
 * Proposes a column type per field from sampled values, by the coercion rules
 * themselves: a type is proposed only if filedge's own coercer accepts every
 * sampled value, so a pasted `columns` block loads the sample as it is.
 *
 * Tiers: `high` — every value fits and nothing is missing; `low` — the type
 * fits but the sample is thin (nulls seen, only nulls, nested values stored as
 * JSON text); `ambiguous` — the values fit more than one reading, or fit no
 * type but string while most of them look like something else (non-ISO
 * dates, a few odd values among numbers). Every non-high tier has a note.
 */

export type Tier = 'high' | 'low' | 'ambiguous'

export interface ColumnGuess {
  readonly name: string
  readonly type: ColumnType
  readonly precision?: number
  readonly scale?: number
  readonly tier: Tier
  readonly note?: string
  /** Sampled records where the field is null, empty or absent. */
  readonly nulls: number
  readonly rows: number
}

const NON_ISO_DATE = /^(\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}[/.]\d{1,2}[/.]\d{1,2}|\d{4}-\d{1,2}-\d{1,2})$/
const EXPONENT = /[eE]/

const count = (value: number) => new Intl.NumberFormat('en-US').format(value)

function fits(type: ColumnType, values: readonly unknown[], extra: { precision?: number; scale?: number } = {}): number {
  const coerce = coercerFor({ type, ...extra })
  let fit = 0
  for (const value of values) {
    try {
      coerce(value)
      fit++
    } catch {
      // Not this type; counted by what does not fit.
    }
  }
  return fit
}

function numberText(value: unknown): string {
  if (value instanceof NumberText) return value.text
  return typeof value === 'string' ? value.trim() : String(value)
}

/**
 * decimal(p, s) when every value is written with the same number of fraction
 * digits and some are padded with zeros (129.90, 15.00): a writer formatting
 * to a fixed scale, which is what money looks like. Otherwise float.
 */
function fixedScale(values: readonly unknown[]): { precision: number; scale: number } | undefined {
  let scale: number | undefined
  let integerDigits = 1
  let padded = false
  for (const value of values) {
    const text = numberText(value).replace(/^[+-]/, '')
    if (EXPONENT.test(text)) return undefined
    const [integer, fraction = ''] = text.split('.')
    if (scale === undefined) scale = fraction.length
    else if (fraction.length !== scale) return undefined
    if (fraction.endsWith('0')) padded = true
    integerDigits = Math.max(integerDigits, integer.replace(/^0+/, '').length)
  }
  if (scale === undefined || scale === 0 || scale > 9 || !padded) return undefined
  // Room to grow: 18 digits unless the sample already needs more.
  return { precision: Math.min(38, Math.max(18, integerDigits + scale + 2)), scale }
}

function exampleOf(values: readonly unknown[], accept: (value: unknown) => boolean): string {
  const found = values.find((value) => !accept(value))
  return found === undefined ? '' : ` (e.g. ${JSON.stringify(found instanceof NumberText ? found.text : found)})`
}

function isNested(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !(value instanceof NumberText)
}

function guess(name: string, column: readonly unknown[], quiet = false): ColumnGuess {
  // Values the file holds but no type accepts (an Excel #N/A): the type is read from the others, and the note says these fail.
  const unreadable = column.filter((value): value is UnreadableValue => value instanceof UnreadableValue)
  if (unreadable.length > 0) {
    const others = guess(name, column.filter((value) => !(value instanceof UnreadableValue)), quiet)
    const note = `${count(unreadable.length)} of ${count(column.length)} values fail any type (${unreadable[0].reason})${others.note === undefined ? '' : `; ${others.note}`}`
    return { ...others, rows: column.length, tier: 'ambiguous', note }
  }
  const rows = column.length
  const values = column.filter((value) => value !== null && value !== undefined && value !== '')
  // A protected column's values are never shown, not even as an example of what does not fit.
  const example = (values: readonly unknown[], accept: (value: unknown) => boolean) => (quiet ? '' : exampleOf(values, accept))
  const nulls = rows - values.length
  const base = { name, nulls, rows }
  const nullNote = nulls > 0 ? `nulls in ${count(nulls)} of ${count(rows)} rows (not required)` : undefined
  const low = (type: ColumnType, note: string, extra: object = {}): ColumnGuess => ({ ...base, type, ...extra, tier: 'low', note })
  const settled = (type: ColumnType, extra: object = {}): ColumnGuess => (nullNote ? low(type, nullNote, extra) : { ...base, type, ...extra, tier: 'high' })

  if (values.length === 0) return low('string', rows === 0 ? 'no rows in the sample' : `only nulls in ${count(rows)} rows; typed as string`)

  const nested = values.filter(isNested).length
  if (nested === values.length) return low('json', `nested objects/arrays: stored as JSON text${nullNote ? `; ${nullNote}` : ''}`)
  if (nested > 0) {
    return { ...base, type: 'json', tier: 'ambiguous', note: `mixed values: ${count(nested)} nested objects/arrays and ${count(values.length - nested)} plain values; json keeps both as JSON text` }
  }

  const all = values.length
  const integers = fits('integer', values)
  if (integers === all) {
    const zeroOne = values.every((value) => ['0', '1'].includes(numberText(value)))
    if (zeroOne) return { ...base, type: 'integer', tier: 'ambiguous', note: 'only 0 and 1 seen: integer, or boolean?' }
    return settled('integer')
  }
  if (values.every((value) => /^[+-]?\d+$/.test(numberText(value))) && fits('decimal', values, { precision: 38, scale: 0 }) === all) {
    return { ...base, type: 'decimal', precision: 38, scale: 0, tier: 'ambiguous', note: 'integers beyond the 64-bit range: decimal(38,0) keeps them exact (float would round them)' }
  }
  if (fits('boolean', values) === all) return settled('boolean')
  const floats = fits('float', values)
  if (floats === all) {
    const decimal = fixedScale(values)
    return decimal ? settled('decimal', decimal) : settled('float')
  }
  if (fits('date', values) === all) return settled('date')
  if (fits('timestamp', values) === all) return settled('timestamp')

  // Nothing narrower than string fits every value: say why, when the values suggest something else.
  const text = values.filter((value): value is string => typeof value === 'string')
  const nonIso = text.filter((value) => NON_ISO_DATE.test(value.trim()) && fits('date', [value]) === 0).length
  if (nonIso > 0 && nonIso + fits('date', values) >= all / 2) {
    return { ...base, type: 'string', tier: 'ambiguous', note: `non-ISO dates${example(values, (value) => typeof value !== 'string' || !NON_ISO_DATE.test(value.trim()) || fits('date', [value]) === 1)}: filedge reads dates only as YYYY-MM-DD; typed as string` }
  }
  const closest = (
    [
      ['integer', integers],
      ['float', floats],
      ['date', fits('date', values)],
      ['timestamp', fits('timestamp', values)],
    ] as const
  ).reduce((best, next) => (next[1] > best[1] ? next : best))
  if (closest[1] >= all / 2) {
    const odd = all - closest[1]
    return {
      ...base,
      type: 'string',
      tier: 'ambiguous',
      note: `mixed values: ${count(closest[1])} of ${count(all)} are ${closest[0]}, ${count(odd)} not${example(values, (value) => fits(closest[0], [value]) === 1)}; typed as string (nullValues in the format options can turn placeholders into nulls)`,
    }
  }
  return settled('string')
}

export function inferColumns(fields: readonly string[], records: readonly (readonly unknown[])[], options: { readonly withheld?: ReadonlySet<string> } = {}): ColumnGuess[] {
  return fields.map((name, index) => guess(name, records.map((record) => record[index]), options.withheld?.has(name) === true))
}

/** How a pipeline protects a field, for the block `inspect --pipeline` prints: kept, so that pasting it back keeps the protection. */
export interface FieldProtection {
  readonly kind: 'encrypt' | 'hash'
  /** The environment variable holding the key. */
  readonly variable: string
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** A ready-to-paste `columns: { … }` block, one column per line, notes as comments. */
export function columnsBlock(guesses: readonly ColumnGuess[], protections: ReadonlyMap<string, FieldProtection> = new Map()): string {
  const lines = guesses.map((column) => {
    const key = IDENTIFIER.test(column.name) ? column.name : JSON.stringify(column.name)
    const protection = protections.get(column.name)
    const protect = protection === undefined ? '' : `, ${protection.kind}: { key: env('${protection.variable}') }`
    const decimal = column.type === 'decimal' ? `, precision: ${column.precision}, scale: ${column.scale}` : ''
    const value = decimal === '' && protect === '' ? `'${column.type}'` : `{ type: '${column.type}'${decimal}${protect} }`
    const comment = column.tier === 'high' ? '' : ` // ${column.tier}: ${column.note}`
    return `  ${key}: ${value},${comment}`
  })
  return `columns: {\n${lines.join('\n')}\n},`
}
