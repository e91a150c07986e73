import type { Readable } from 'node:stream'
import { DEFAULT_LIMITS, formatCount, overLimit } from '../config/limits.js'
import type { ResolvedColumn } from '../config/types.js'
import { FiledgeError, fileInvalid, isFiledgeError, showValue } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import type { RawBatch, RawRows } from '../rows.js'
import { parseJson } from './json-value.js'
import { Pending, scanInPieces } from './pending.js'

/**
 * NDJSON (one JSON object per line; `.ndjson`, `.jsonl`) and JSON arrays of
 * objects (`.json`), both streamed: a 10 GB array never sits in memory, only
 * the element being read. Values keep their JSON types (numbers stay numbers,
 * nested objects and arrays stay structured) and coercion decides: a nested
 * value fits a `json` column and fails any other with file:line and column.
 */

export interface JsonObjects {
  readonly objects: Record<string, unknown>[]
  /** Line where each object starts. */
  readonly lines: number[]
  /** With `keepText`: each object's text as the file wrote it (an NDJSON line without its surrounding spaces). */
  readonly texts?: string[]
}

const BATCH = 1_000

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (value === null) return 'null'
  return `a ${typeof value}`
}

function asObject(value: unknown, file: string, line: number, what: string): Record<string, unknown> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>
  throw fileInvalid(file, `expected ${what} to be a JSON object, found ${describe(value)}`, line)
}

function syntaxError(file: string, line: number, error: unknown): FiledgeError {
  return fileInvalid(file, `invalid JSON (${(error as Error).message})`, line)
}

function decoderFor(file: string): (chunk: Buffer | undefined) => string {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  return (chunk) => {
    try {
      return chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true })
    } catch {
      throw fileInvalid(file, 'invalid UTF-8 (JSON files must be UTF-8)')
    }
  }
}

/** One object per non-blank line. */
export async function* ndjsonObjects(stream: Readable, file: string, batchSize = BATCH, maxRecordChars = DEFAULT_LIMITS.maxRecordChars, keepText = false): AsyncGenerator<JsonObjects> {
  const decode = decoderFor(file)
  let line = 0
  let objects: Record<string, unknown>[] = []
  let lines: number[] = []
  let texts: string[] | undefined = keepText ? [] : undefined
  const pending = new Pending(maxRecordChars, () => fileInvalid(file, overLimit(`line is longer than ${formatCount(maxRecordChars)} characters`, 'maxRecordChars'), line + 1))
  const take = (text: string) => {
    line++
    // A trailing CR (CRLF files) and surrounding spaces are not part of the value.
    const trimmed = text.trim()
    if (trimmed === '') return
    let value: unknown
    try {
      value = parseJson(trimmed)
    } catch (error) {
      throw syntaxError(file, line, error)
    }
    objects.push(asObject(value, file, line, 'each line'))
    lines.push(line)
    texts?.push(trimmed)
  }
  /** Takes the lines `text` ends, and keeps the line it leaves open. Only `text` is searched, once. */
  const scan = (text: string) => {
    let start = 0
    let end = text.indexOf('\n')
    if (!pending.empty) {
      if (end < 0) {
        pending.add(text)
        return
      }
      take(pending.take(text.slice(0, end)))
      start = end + 1
      end = text.indexOf('\n', start)
    }
    for (; end >= 0; end = text.indexOf('\n', start)) {
      take(text.slice(start, end))
      start = end + 1
    }
    if (start < text.length) pending.add(start === 0 ? text : text.slice(start))
  }
  for await (const chunk of stream) {
    try {
      scanInPieces(decode(chunk as Buffer), maxRecordChars, scan)
    } catch (error) {
      // The objects before a bad line are good: hand them on first (validate checks them too), then fail.
      yield* slices({ objects, lines, texts }, batchSize)
      throw error
    }
    if (objects.length >= batchSize) {
      yield* slices({ objects, lines, texts }, batchSize)
      objects = []
      lines = []
      if (texts !== undefined) texts = []
    }
  }
  try {
    scanInPieces(decode(undefined), maxRecordChars, scan)
    if (!pending.empty) take(pending.take(''))
  } catch (error) {
    yield* slices({ objects, lines, texts }, batchSize)
    throw error
  }
  yield* slices({ objects, lines, texts }, batchSize)
}

const OPEN_BRACE = 123
const CLOSE_BRACE = 125
const OPEN_BRACKET = 91
const CLOSE_BRACKET = 93
const QUOTE = 34
const BACKSLASH = 92
const COMMA = 44
const NEWLINE = 10

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13
}

/**
 * The elements of a top-level JSON array, each an object. The scanner only
 * finds where each element ends (depth and strings); JSON.parse reads the
 * element. Each chunk is scanned once, where it arrived; an element spanning
 * chunks is kept as pieces (see Pending), so memory holds one element.
 */
type Phase = 'start' | 'next' | 'element' | 'separator' | 'end'

export async function* jsonArrayObjects(stream: Readable, file: string, batchSize = BATCH, maxRecordChars = DEFAULT_LIMITS.maxRecordChars, keepText = false): AsyncGenerator<JsonObjects> {
  const decode = decoderFor(file)
  let line = 1
  // Where the scanner is: before '[', between elements, inside one, after ']'.
  let phase = 'start' as Phase
  let elementLine = 1
  let depth = 0
  let inString = false
  // A backslash ended the previous chunk: the next chunk starts with the character it escapes.
  let carry = 0
  let objects: Record<string, unknown>[] = []
  let lines: number[] = []
  let texts: string[] | undefined = keepText ? [] : undefined
  let seen = 0

  const unexpected = (what: string) => fileInvalid(file, `invalid JSON array: ${what}`, line)
  const pending = new Pending(maxRecordChars, () => fileInvalid(file, overLimit(`array element is longer than ${formatCount(maxRecordChars)} characters`, 'maxRecordChars'), elementLine))

  const element = (text: string) => {
    let value: unknown
    try {
      value = parseJson(text)
    } catch (error) {
      throw syntaxError(file, elementLine, error)
    }
    objects.push(asObject(value, file, elementLine, 'each array element'))
    lines.push(elementLine)
    texts?.push(text)
    seen++
    phase = 'separator'
  }

  const scan = (text: string) => {
    const n = text.length
    let i = carry
    let elementStart = 0
    while (i < n) {
      const c = text.charCodeAt(i)
      if (phase === 'element') {
        if (inString) {
          if (c === BACKSLASH) {
            i += 2
            continue
          }
          if (c === QUOTE) inString = false
          else if (c === NEWLINE) line++
          i++
          continue
        }
        if (c === QUOTE) inString = true
        else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++
        else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--
        else if (c === NEWLINE) line++
        i++
        if (depth === 0) {
          element(pending.empty ? text.slice(elementStart, i) : pending.take(text.slice(0, i)))
        }
        continue
      }
      if (isSpace(c)) {
        if (c === NEWLINE) line++
        i++
        continue
      }
      switch (phase) {
        case 'start':
          if (c !== OPEN_BRACKET) throw unexpected(`expected the file to start with "[", found ${JSON.stringify(text[i])} (one object per line is NDJSON: name the file .ndjson or set format: 'ndjson')`)
          phase = 'next'
          i++
          break
        case 'next':
        case 'separator':
          if (c === CLOSE_BRACKET) {
            if (phase === 'next' && seen > 0) throw unexpected('"]" right after ","')
            phase = 'end'
            i++
          } else if (phase === 'separator') {
            if (c !== COMMA) throw unexpected(`expected "," or "]", found ${JSON.stringify(text[i])}`)
            phase = 'next'
            i++
          } else if (c === OPEN_BRACE) {
            phase = 'element'
            elementStart = i
            elementLine = line
            depth = 0
          } else if (c === COMMA) {
            throw unexpected('"," where an element was expected')
          } else {
            throw fileInvalid(file, `expected each array element to be a JSON object, found ${JSON.stringify(text.slice(i, i + 20))}`, line)
          }
          break
        case 'end':
          throw unexpected(`text after the closing "]": ${JSON.stringify(text.slice(i, i + 20))}`)
      }
    }
    carry = i - n
    // The element read so far stays, as a piece of the next one.
    if (phase === 'element') pending.add(elementStart === 0 ? text : text.slice(elementStart))
  }

  for await (const chunk of stream) {
    try {
      scanInPieces(decode(chunk as Buffer), maxRecordChars, scan)
    } catch (error) {
      yield* slices({ objects, lines, texts }, batchSize)
      throw error
    }
    if (objects.length >= batchSize) {
      yield* slices({ objects, lines, texts }, batchSize)
      objects = []
      lines = []
      if (texts !== undefined) texts = []
    }
  }
  scanInPieces(decode(undefined), maxRecordChars, scan)
  // Only spaces before the "[" (or no content at all): an empty load, as for every format.
  const last = phase as Phase
  if (last !== 'end' && last !== 'start') {
    throw fileInvalid(file, 'invalid JSON array: the file ends before its closing "]" (truncated?)', line)
  }
  if (objects.length > 0) yield* slices({ objects, lines, texts }, batchSize)
}

/** Batches of exactly `size` (the last one shorter), whatever the chunk sizes were. */
function* slices(batch: JsonObjects, size: number): Generator<JsonObjects> {
  if (batch.objects.length === 0) return
  if (batch.objects.length <= size) {
    yield batch
    return
  }
  for (let start = 0; start < batch.objects.length; start += size) {
    const part = { objects: batch.objects.slice(start, start + size), lines: batch.lines.slice(start, start + size) }
    yield batch.texts === undefined ? part : { ...part, texts: batch.texts.slice(start, start + size) }
  }
}

/** Maps objects onto the pipeline's fields: a missing key is null, an undeclared key fails the file unless unknownColumns is 'ignore'. */
function toRecords(columns: readonly ResolvedColumn[], unknownColumns: 'error' | 'ignore', file: string) {
  const fields = columns.map((column) => column.source)
  const declared = new Set(fields)
  return ({ objects, lines, texts }: JsonObjects): RawBatch => {
    const records: unknown[][] = new Array(objects.length)
    for (let r = 0; r < objects.length; r++) {
      const object = objects[r]
      if (unknownColumns === 'error') {
        for (const key in object) {
          if (!declared.has(key)) throw fileInvalid(file, `unknown field ${showValue(key)}; declare it in columns or set unknownColumns: 'ignore'`, lines[r])
        }
      }
      const record: unknown[] = new Array(fields.length)
      for (let c = 0; c < fields.length; c++) {
        const value = object[fields[c]]
        record[c] = value === undefined ? null : value
      }
      records[r] = record
    }
    return texts === undefined ? { records, lines } : { records, lines, texts }
  }
}

export type JsonKind = 'ndjson' | 'json'

export function readJsonObjects(kind: JsonKind, stream: Readable, file: string, batchSize?: number, maxRecordChars?: number, keepText?: boolean): AsyncGenerator<JsonObjects> {
  return kind === 'ndjson' ? ndjsonObjects(stream, file, batchSize, maxRecordChars, keepText) : jsonArrayObjects(stream, file, batchSize, maxRecordChars, keepText)
}

export function loadJson(kind: JsonKind, request: LoadRequest): RawRows {
  const file = request.file.path
  const { columns, unknownColumns, batchSize, limits } = request.pipeline
  const stream = request.open()
  const map = toRecords(columns, unknownColumns, file)
  async function* batches(): AsyncGenerator<RawBatch> {
    try {
      for await (const batch of readJsonObjects(kind, stream, file, batchSize, limits.maxRecordChars, request.recordText === true)) yield map(batch)
    } catch (error) {
      if (isFiledgeError(error)) throw error
      throw new FiledgeError('FILE_INVALID', `${file}: ${(error as Error).message}`, { file, cause: error })
    } finally {
      stream.destroy()
    }
  }
  // JSON objects name their fields in every record: the fields are the declared columns' sources.
  return { fields: columns.map((column) => column.source), batches: batches() }
}

/** The built-in NDJSON and JSON-array formats. */
export function jsonFormats(): Plugin {
  return {
    name: 'filedge:json',
    formats: ['ndjson', 'json'],
    apply({ hooks }) {
      hooks.load.tapPromise('filedge:json', async (request) => {
        const type = request.format.type
        return type === 'ndjson' || type === 'json' ? loadJson(type, request) : undefined
      })
    },
  }
}
