import { formatCount, overLimit } from '../config/limits.js'
import type { FixedField, FixedFormatOptions } from '../config/types.js'
import { FiledgeError, fileInvalid, isFiledgeError, showName, showValue } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import type { RawBatch, RawRows } from '../rows.js'
import { firstInvalidUtf8 } from './csv.js'
import { Pending, scanInPieces } from './pending.js'

/**
 * Fixed-width text: `{ type: 'fixed', layout: [{ name, start, width }] }`.
 * Every line holds its fields at the same character positions.
 *
 * - `start` is 1-based, `width` counts characters: a layout reads as the
 *   spec sheet prints it ("amount, positions 31–40" is `{ start: 31,
 *   width: 10 }`). Characters are Unicode code points, not bytes and not
 *   UTF-16 units: `é` is one whether the file is Latin-1 or UTF-8.
 * - Values lose their trailing spaces (the padding) and keep their leading
 *   ones (they may be data; every type but `string` ignores them anyway). A
 *   field of spaces only is NULL: fixed width has no way to write an empty
 *   string apart from a missing value.
 * - Fields may overlap (a date at 1–8 and its year at 1–4) and leave gaps
 *   (filler); characters past the last field are ignored. A line shorter
 *   than the layout needs fails its file with the line and the field that
 *   does not fit: a truncated line must not load with its last fields NULL.
 * - Lines end at LF, CRLF or CR. Empty lines and lines of spaces only are
 *   skipped; `header: true` skips the first line.
 */

const LINE_BREAK = /\r\n?|\n/g
const SURROGATE = /[\uD800-\uDFFF]/

interface Slot {
  readonly name: string
  /** 0-based code point offsets. */
  readonly begin: number
  readonly end: number
}

/** `line` without its trailing spaces; null for nothing left. */
function padded(value: string): string | null {
  let end = value.length
  while (end > 0 && value.charCodeAt(end - 1) === 32) end--
  return end === 0 ? null : end === value.length ? value : value.slice(0, end)
}

/** UTF-16 offsets of the first `count` code points of `line`, and of the end of the last one. */
function codePointOffsets(line: string, count: number): number[] {
  const offsets: number[] = []
  let i = 0
  while (offsets.length <= count && i <= line.length) {
    offsets.push(i)
    const c = line.charCodeAt(i)
    i += c >= 0xd800 && c <= 0xdbff && (line.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1
  }
  return offsets
}

function codePoints(text: string): number {
  let count = 0
  for (const _ of text) count++
  return count
}

export function readFixed(request: LoadRequest): RawRows {
  const options = request.format.options as Omit<FixedFormatOptions, 'type'>
  const file = request.file.path
  const { limits, batchSize } = request.pipeline
  const encoding = options.encoding ?? 'utf-8'
  const utf8 = /^utf-?8$/i.test(encoding)
  const layout: readonly FixedField[] = options.layout
  const slots: Slot[] = layout.map((field) => ({ name: field.name, begin: field.start - 1, end: field.start - 1 + field.width }))
  const needs = Math.max(...slots.map((slot) => slot.end))
  const stream = request.open()
  const keepText = request.recordText === true
  let headerText: string | undefined

  async function* batches(): AsyncGenerator<RawBatch> {
    const decoder = new TextDecoder(encoding, { fatal: true })
    let line = 0
    const records: unknown[][] = []
    const lines: number[] = []
    const texts: string[] = []
    const batch = (): RawBatch => {
      const taken = { records: records.splice(0, batchSize), lines: lines.splice(0, batchSize) }
      return keepText ? { ...taken, texts: texts.splice(0, batchSize) } : taken
    }
    // The current chunk holds characters outside the BMP (surrogate pairs) or NULs: its lines need the slow checks.
    let wide = false
    let nul = false
    let skipLf = false
    const pending = new Pending(limits.maxRecordChars, () => fileInvalid(file, overLimit(`line is longer than ${formatCount(limits.maxRecordChars)} characters`, 'maxRecordChars'), line + 1))

    const take = (text: string, joined: boolean) => {
      line++
      if (line === 1 && options.header === true) {
        if (keepText) headerText = text
        return
      }
      if (text.length === 0 || (text.charCodeAt(0) === 32 && padded(text) === null)) return
      if ((joined || nul) && text.includes('\0')) {
        const hint = utf8 ? " (a UTF-16 file? set format.encoding: 'utf-16le')" : ''
        throw fileInvalid(file, `NUL character at position ${codePoints(text.slice(0, text.indexOf('\0'))) + 1}${hint}`, line)
      }
      const offsets = (joined || wide) && SURROGATE.test(text) ? codePointOffsets(text, needs) : undefined
      const length = offsets === undefined ? text.length : offsets.length - 1
      if (length < needs) {
        const short = slots.find((slot) => slot.end > length)!
        const total = offsets === undefined ? text.length : codePoints(text)
        throw fileInvalid(file, `line is ${formatCount(total)} characters, the layout needs ${formatCount(needs)} (field ${showValue(short.name)} at ${short.begin + 1}–${short.end})`, line)
      }
      const record: unknown[] = new Array(slots.length)
      for (let f = 0; f < slots.length; f++) {
        const { begin, end } = slots[f]
        record[f] = padded(offsets === undefined ? text.slice(begin, end) : text.slice(offsets[begin], offsets[end]))
      }
      records.push(record)
      lines.push(line)
      if (keepText) texts.push(text)
    }

    const scan = (text: string) => {
      let start = 0
      if (skipLf) {
        skipLf = false
        if (text.charCodeAt(0) === 10) start = 1
      }
      LINE_BREAK.lastIndex = start
      for (let found = LINE_BREAK.exec(text); found !== null; found = LINE_BREAK.exec(text)) {
        const piece = text.slice(start, found.index)
        const joined = !pending.empty
        take(joined ? pending.take(piece) : piece, joined)
        start = found.index + found[0].length
        // A CR ending the text may be the first half of a CRLF split across reads.
        if (found[0] === '\r' && start === text.length) skipLf = true
      }
      if (start < text.length) pending.add(start === 0 ? text : text.slice(start))
    }

    const feed = (text: string) => {
      wide = SURROGATE.test(text)
      nul = text.includes('\0')
      scanInPieces(text, limits.maxRecordChars, scan)
    }

    /** Bytes the encoding refuses: the lines before them are read, then the file fails at the line (and field) they are in. */
    const badBytes = (chunk: Buffer | undefined): FiledgeError => {
      if (!utf8 || chunk === undefined) return fileInvalid(file, `bytes that are not valid ${encoding}; set format.encoding to the file's encoding`, line + 1)
      const at = firstInvalidUtf8(chunk)
      feed(new TextDecoder('utf-8').decode(chunk.subarray(0, at)))
      const reason = `invalid UTF-8 (byte 0x${chunk[at]?.toString(16).padStart(2, '0') ?? '??'}); set format.encoding if the file is not UTF-8`
      const position = codePoints(pending.text)
      const slot = slots.find((candidate) => position >= candidate.begin && position < candidate.end)
      if (slot === undefined) return fileInvalid(file, reason, line + 1)
      const column = showName(slot.name)
      return new FiledgeError('FILE_INVALID', `${file}:${line + 1} column ${column}: ${reason}`, { file, line: line + 1, column })
    }

    const decode = (chunk: Buffer | undefined): string => {
      try {
        return chunk === undefined ? decoder.decode() : decoder.decode(chunk, { stream: true })
      } catch {
        throw badBytes(chunk)
      }
    }

    try {
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          feed(decode(chunk))
          while (records.length >= batchSize) yield batch()
        }
        feed(decode(undefined))
        if (!pending.empty) take(pending.take(''), true)
      } catch (error) {
        // The lines before a bad one are good: hand them on first (validate checks them too), then fail.
        while (records.length > 0) yield batch()
        throw error
      }
      while (records.length > 0) yield batch()
    } catch (error) {
      if (isFiledgeError(error)) throw error
      throw new FiledgeError('FILE_INVALID', `${file}: ${(error as Error).message}`, { file, cause: error })
    } finally {
      stream.destroy()
    }
  }

  // The layout names the fields; a header line, if any, is skipped, not read.
  return { fields: layout.map((field) => field.name), ...(keepText ? { headerText: () => headerText } : {}), batches: batches() }
}

/** The built-in fixed-width format. */
export function fixedFormat(): Plugin {
  return {
    name: 'filedge:fixed',
    formats: ['fixed'],
    apply({ hooks }) {
      hooks.load.tapPromise('filedge:fixed', async (request) => (request.format.type === 'fixed' ? readFixed(request) : undefined))
    },
  }
}
