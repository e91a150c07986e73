import type { Writable } from 'node:stream'
import { printable } from '../printable.js'
import { redact } from '../secrets.js'

export interface CliIo {
  readonly stdout: Writable
  readonly stderr: Writable
  readonly isTTY: boolean
  readonly cwd: string
}

/**
 * Human output. Callers escape each name and message they interpolate
 * (`printable`); the pass here keeps the lines they composed and escapes any
 * other control character that slipped through, so nothing printed can move
 * the cursor or retitle the terminal.
 */
export function print(stream: Writable, text: string): void {
  stream.write(`${printable(redact(text), { lineBreaks: true })}\n`)
}

/** Machine output: JSON as JSON.stringify writes it (control characters are escaped by JSON itself), secrets redacted. */
export function printJson(stream: Writable, value: unknown, replacer?: (key: string, value: unknown) => unknown): void {
  stream.write(`${redact(JSON.stringify(value, replacer, 2))}\n`)
}

/** Left-aligned columns for small human tables. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n')
}
