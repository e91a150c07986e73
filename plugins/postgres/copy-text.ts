import { rowInvalid, type RowBatch, type TableColumn } from '../../core/index.js'

/**
 * Rows as COPY text format (PostgreSQL docs, "COPY … File Formats → Text
 * Format"): one line per row, columns separated by a tab, NULL as `\N`.
 * Inside a value a backslash, tab, newline and carriage return must be
 * escaped (`\\`, `\t`, `\n`, `\r`); everything else, including quotes and any
 * Unicode, goes through as its UTF-8 bytes. Escaping every backslash also
 * makes a value of `\N` or `\.` plain text, never a NULL or an end-of-data
 * marker.
 *
 * Text rather than CSV: its escaping is a per-character replacement with no
 * quoting decision, and values without special characters (nearly all of
 * them) are copied as they are.
 */

const NEEDS_ESCAPE = /[\\\t\n\r\0]/
const ESCAPABLE = /[\\\t\n\r]/g
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

/** A text value as COPY text, or undefined if Postgres cannot store it (a NUL character). */
export function escapeCopyText(text: string): string | undefined {
  if (!NEEDS_ESCAPE.test(text)) return text
  if (text.includes('\0')) return undefined
  return text.replace(ESCAPABLE, (special) => ESCAPES[special])
}

/**
 * Encodes a batch, each row followed by its provenance: `suffix` is
 * `<hash>\t<ingested at>\t` and the row number ends the line. Values that
 * Postgres would refuse for reasons the coercion cannot know (a NUL in text,
 * `\u0000` in jsonb) fail here, with the row's file, line and column.
 */
export function encodeBatch(batch: RowBatch, columns: readonly TableColumn[], suffix: string, file: string): string {
  const { rows, rowNumbers } = batch
  const width = columns.length
  let out = ''
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]
    for (let c = 0; c < width; c++) {
      const value = row[c]
      if (value === null || value === undefined) {
        out += '\\N\t'
      } else if (typeof value === 'string') {
        const escaped = escapeCopyText(value)
        if (escaped === undefined) throw rowInvalid(file, batch.lines[r], columns[c].name, value, 'contains a NUL character, which Postgres text cannot store')
        if (columns[c].type === 'json' && value.includes('\\u0000')) {
          throw rowInvalid(file, batch.lines[r], columns[c].name, value, 'contains \\u0000, which Postgres jsonb cannot store')
        }
        out += escaped + '\t'
      } else if (typeof value === 'boolean') {
        out += value ? 't\t' : 'f\t'
      } else {
        // numbers (JavaScript's shortest round-trip form, which float8 reads back exactly) and bigints
        out += `${value}\t`
      }
    }
    out += `${suffix}${rowNumbers[r]}\n`
  }
  return out
}
