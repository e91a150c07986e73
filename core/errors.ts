import { redact } from './secrets.js'

/**
 * Stable error codes. Tests and scripts match on `code`, never on prose, so a
 * message can be improved without breaking anyone.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'USAGE'
  | 'SCHEMA_DRIFT'
  | 'ROW_INVALID'
  | 'FILE_INVALID'
  /** More bad rows than the pipeline's quarantine allows: the file failed whole. */
  | 'QUARANTINE_LIMIT'
  /** A protected column's or a quarantine's key is missing or not a 32-byte key. */
  | 'KEY_INVALID'
  /** An encrypted value that no key given opens, or that does not authenticate. */
  | 'DECRYPT_FAILED'
  | 'FILE_CHANGED'
  | 'FILE_GONE'
  | 'CLAIM_LOST'
  | 'LEASE_LAPSED'
  | 'STOPPED'
  | 'PLUGIN_ERROR'
  | 'DESTINATION_LOCKED'
  | 'NOT_FOUND'
  | 'INTERNAL'

export interface ErrorDetails {
  plugin?: string
  hook?: string
  /** Path of the source file, relative to the project root. */
  file?: string
  line?: number
  column?: string
  value?: unknown
  cause?: unknown
}

/**
 * The one error type filedge throws. Everything a user or a tool needs to act
 * on is a field; `message` is the human rendering of those fields.
 * Messages pass through `redact`, so a secret that reached an error (a URL
 * with a password in a driver message, an `env()` value) is never printed.
 */
export class FiledgeError extends Error {
  readonly code: ErrorCode
  plugin?: string
  hook?: string
  file?: string
  line?: number
  column?: string
  value?: unknown

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(redact(message), details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'FiledgeError'
    this.code = code
    this.plugin = details.plugin
    this.hook = details.hook
    this.file = details.file
    this.line = details.line
    this.column = details.column
    this.value = details.value
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      plugin: this.plugin,
      hook: this.hook,
      file: this.file,
      line: this.line,
      column: this.column,
    }
  }
}

/** Duck-typed so that two copies of filedge in one process (a config importing a different build) still agree. */
export function isFiledgeError(error: unknown): error is FiledgeError {
  return error instanceof Error && (error as { name?: string }).name === 'FiledgeError' && typeof (error as { code?: unknown }).code === 'string'
}

/**
 * Anything copied from a file into a message goes through showValue,
 * showName or showList, which cut it: a 5 MB header field once made a 5 MB
 * error, stored twice in the append-only ledger.
 */
const MAX_VALUE_CHARS = 80
const MAX_LISTED = 10

/** Renders a value for a message: JSON-quoted, control characters escaped, long values cut. */
export function showValue(value: unknown): string {
  if (value === null || value === undefined) return 'null'
  let text = typeof value === 'string' ? value : typeof value === 'bigint' ? value.toString() : JSON.stringify(value) ?? String(value)
  let cut = false
  if (text.length > MAX_VALUE_CHARS) {
    text = text.slice(0, MAX_VALUE_CHARS)
    cut = true
  }
  const shown = typeof value === 'string' ? JSON.stringify(text) : text
  return cut ? `${shown}… (${typeof value === 'string' ? value.length : 'long'} chars)` : shown
}

/** Text from a file shown as is, unquoted (a column name from a header, a number's digits); long text cut. */
export function showName(text: string): string {
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}… (${text.length} chars)` : text
}

/** Names from a file as a quoted list: each cut, and at most ten of them, then how many more. */
export function showList(names: readonly string[]): string {
  const shown = names.slice(0, MAX_LISTED).map(showValue).join(', ')
  return names.length > MAX_LISTED ? `${shown}, … (${names.length - MAX_LISTED} more)` : shown
}

function where(file: string, line?: number): string {
  return line === undefined ? file : `${file}:${line}`
}

export function configInvalid(message: string, cause?: unknown): FiledgeError {
  return new FiledgeError('CONFIG_INVALID', message, { cause })
}

export function usageError(message: string): FiledgeError {
  return new FiledgeError('USAGE', message)
}

/** `incoming/orders.csv:3 column order_date: cannot coerce "not-a-date" to date` */
export function rowInvalid(file: string, line: number, column: string, value: unknown, reason: string): FiledgeError {
  return new FiledgeError('ROW_INVALID', `${where(file, line)} column ${column}: ${reason}`, { file, line, column, value })
}

/** A problem with the file as a whole or with a record's structure (no single column to blame). */
export function fileInvalid(file: string, reason: string, line?: number, cause?: unknown): FiledgeError {
  return new FiledgeError('FILE_INVALID', `${where(file, line)}: ${reason}`, { file, line, cause })
}

export function fileChanged(file: string, reason: string): FiledgeError {
  return new FiledgeError('FILE_CHANGED', `${file}: ${reason}`, { file })
}

/** The source no longer has the file (deleted between listing and reading): the file is skipped, not failed. */
export function fileGone(file: string, reason: string): FiledgeError {
  return new FiledgeError('FILE_GONE', `${file}: ${reason}`, { file })
}

export function claimLost(file: string, reason: string): FiledgeError {
  return new FiledgeError('CLAIM_LOST', `${file}: lease lost (${reason}); this worker's outcome was discarded`, { file })
}

/** The file's lease expired too many times in a row (its workers kept dying or freezing while loading it). */
export function leaseLapsed(file: string, reason: string): FiledgeError {
  return new FiledgeError('LEASE_LAPSED', `${file}: ${reason}`, { file })
}

/** The run is stopping (a signal): the file was not committed and its lease goes back to the ledger. */
export function stopped(file: string): FiledgeError {
  return new FiledgeError('STOPPED', `${file}: the run stopped before it committed; released for the next run`, { file })
}

export function schemaDrift(table: string, diff: string[]): FiledgeError {
  return new FiledgeError('SCHEMA_DRIFT', `table ${table} does not match the pipeline's columns:\n  ${diff.join('\n  ')}`)
}

/** A single-writer destination (a DuckDB file) held by another process: fails fast instead of waiting. */
export function destinationLocked(target: string, reason: string): FiledgeError {
  return new FiledgeError('DESTINATION_LOCKED', `${target} is locked: ${reason}`)
}

export function notFound(message: string): FiledgeError {
  return new FiledgeError('NOT_FOUND', message)
}

/**
 * Wraps whatever a plugin threw with the plugin, the hook and the file, so the
 * user sees who failed where. Row and file errors keep their own code and
 * message (they already say file and line); they only gain the plugin name.
 */
export function pluginError(plugin: string, hook: string, file: string | undefined, error: unknown): FiledgeError {
  if (isFiledgeError(error)) {
    error.plugin ??= plugin
    error.hook ??= hook
    error.file ??= file
    return error
  }
  const reason = error instanceof Error ? error.message : String(error)
  const on = file === undefined ? '' : ` for ${file}`
  return new FiledgeError('PLUGIN_ERROR', `plugin "${plugin}" failed in ${hook}${on}: ${reason}`, {
    plugin,
    hook,
    file,
    cause: error,
  })
}

/**
 * The longest message a failure is recorded and reported with. Values copied
 * from input are cut where they enter a message (`showValue`); this is the
 * backstop for the rest (a driver quoting a whole value, a plugin's error),
 * so the append-only ledger never stores megabytes of a file's content.
 */
export const MAX_MESSAGE_CHARS = 4096

/** `text` cut to at most MAX_MESSAGE_CHARS, saying how long it was; cutting it again changes nothing. */
export function capMessage(text: string): string {
  if (text.length <= MAX_MESSAGE_CHARS) return text
  const tail = `… (message cut: ${text.length} characters in all)`
  let end = MAX_MESSAGE_CHARS - tail.length
  // Not between the two halves of a surrogate pair.
  const last = text.charCodeAt(end - 1)
  if (last >= 0xd800 && last <= 0xdbff) end--
  return `${text.slice(0, end)}${tail}`
}

/** A file's failure as it is recorded and reported: its message capped (the ledger and the reporters then carry the same text). */
export function capped(error: FiledgeError): FiledgeError {
  if (error.message.length > MAX_MESSAGE_CHARS) error.message = capMessage(error.message)
  return error
}

/** Short, one-line rendering for ledgers and summaries, capped at MAX_MESSAGE_CHARS. */
export function describeError(error: unknown): string {
  return capMessage(redact(error instanceof Error ? error.message : String(error)))
}
