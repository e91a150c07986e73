/**
 * Text from outside filedge (file names from a drop folder, values, messages
 * that quote them) made safe for a terminal. A file may be named
 * `a.csv\n✓ orders FORGED.csv 999 rows` or carry `ESC ]0;…` in its name: printed
 * raw, the first forges a reporter line and the second rewrites the terminal.
 *
 * Every control character is shown as an escape: `\n`, `\r`, `\t`, `\x1b`,
 * `\x7f`, the C1 controls as `\x9b`…, and the Unicode line separators and
 * bidirectional overrides (which reorder what a line shows) as `\u202e`….
 * Backslashes are left alone: a name with a literal `\n` in it reads the same
 * as one with a newline, which can confuse a reader but cannot forge a line or
 * move the cursor, and doubling every backslash would garble Windows paths and
 * patterns in messages.
 *
 * The escaping happens on display only: the ledger, the JSON output and the
 * errors' fields keep the real names.
 */

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g
const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

function escape(char: string): string {
  const named = NAMED[char]
  if (named !== undefined) return named
  const code = char.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}

export interface PrintableOptions {
  /**
   * Keep line breaks. Only for text filedge itself composes as several lines
   * (a config's list of problems, a drift diff, a stack) and prints whole;
   * anything that may carry a file name (a file's error, a log line, a path)
   * is escaped in full, so a name can never start a line of its own.
   */
  readonly lineBreaks?: boolean
}

/** `text` with its control characters escaped (see the module comment). */
export function printable(text: string, options: PrintableOptions = {}): string {
  return text.replace(options.lineBreaks === true ? CONTROL_BUT_NEWLINE : CONTROL, escape)
}
