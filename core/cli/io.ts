import type { Writable } from 'node:stream'
import { redact } from '../secrets.js'

export interface CliIo {
  readonly stdout: Writable
  readonly stderr: Writable
  readonly isTTY: boolean
  readonly cwd: string
}

export function print(stream: Writable, text: string): void {
  stream.write(`${redact(text)}\n`)
}

/** Left-aligned columns for small human tables. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n')
}
