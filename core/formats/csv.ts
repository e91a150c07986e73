import type { Readable } from 'node:stream'
import { formatCount, overLimit } from '../config/limits.js'
import type { CsvFormatOptions } from '../config/types.js'
import { FiledgeError, fileInvalid, isFiledgeError, showName } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import type { RawBatch, RawRows } from '../rows.js'
import { CsvParser, CsvSyntaxError } from './csv-parser.js'

/** Where a buffer stops being valid UTF-8 (structurally), to name the line of the bad bytes. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0
  while (i < bytes.length) {
    const b = bytes[i]
    let need: number
    if (b < 0x80) need = 0
    else if (b >= 0xc2 && b <= 0xdf) need = 1
    else if (b >= 0xe0 && b <= 0xef) need = 2
    else if (b >= 0xf0 && b <= 0xf4) need = 3
    else return i
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length || (bytes[i + k] & 0xc0) !== 0x80) return i
    }
    i += need + 1
  }
  return bytes.length
}

function csvOptions(request: LoadRequest): CsvFormatOptions {
  return { type: 'csv', ...(request.format.options as Omit<CsvFormatOptions, 'type'>) }
}

/**
 * Streams a CSV file into raw batches. The header is read before returning, so
 * the core can check fields against columns before any row moves.
 */
export async function loadCsv(request: LoadRequest, stream: Readable = request.open()): Promise<RawRows> {
  const options = csvOptions(request)
  const file = request.file.path
  const encoding = options.encoding ?? 'utf-8'
  const decoder = new TextDecoder(encoding, { fatal: true })
  const { limits } = request.pipeline
  const parser = new CsvParser({
    delimiter: options.delimiter ?? ',',
    quote: options.quote ?? '"',
    escape: options.escape,
    nullValues: options.nullValues,
    maxFieldChars: limits.maxFieldChars,
    maxFields: limits.maxColumns,
    keepText: request.recordText === true,
  })
  const keepText = request.recordText === true
  const batchSize = request.pipeline.batchSize
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let done = false

  // Known once the header is read: names the column a syntax error is in. A small file is parsed whole
  // while its header is read, so an error there finds the header still first in the parser's records.
  let fields: readonly string[] | undefined
  const fail = (error: unknown): never => {
    stream.destroy()
    if (error instanceof CsvSyntaxError) {
      const names = fields ?? (options.header === false || Array.isArray(options.header) ? undefined : parser.records[0])
      const name = error.field === undefined ? undefined : (names?.[error.field - 1] ?? undefined)
      if (name === undefined || name === null) throw fileInvalid(file, error.message, error.line)
      const column = showName(name)
      throw new FiledgeError('FILE_INVALID', `${file}:${error.line} column ${column}: ${error.message}`, { file, line: error.line, column })
    }
    if (isFiledgeError(error)) throw error
    throw new FiledgeError('FILE_INVALID', `${file}: ${(error as Error).message}`, { file, cause: error })
  }

  const decode = (chunk: Buffer, last: boolean): string => {
    try {
      return decoder.decode(chunk, { stream: !last })
    } catch {
      if (encoding.toLowerCase().replace('-', '') === 'utf8') {
        const at = firstInvalidUtf8(chunk)
        try {
          parser.write(new TextDecoder('utf-8').decode(chunk.subarray(0, at)))
        } catch {
          // The valid prefix only serves to count lines; its own errors are not the point here.
        }
        throw new CsvSyntaxError(`invalid UTF-8 (byte 0x${chunk[at]?.toString(16).padStart(2, '0') ?? '??'}); set format.encoding if the file is not UTF-8`, parser.currentLine, parser.currentField)
      }
      throw new CsvSyntaxError(`bytes that are not valid ${encoding}`, parser.currentLine)
    }
  }

  /** Feeds chunks until at least `want` records are parsed or the input ends. */
  const pump = async (want: number): Promise<void> => {
    while (!done && parser.records.length < want) {
      const next = await chunks.next()
      if (next.done) {
        done = true
        parser.write(decode(Buffer.alloc(0), true))
        parser.end()
      } else {
        parser.write(decode(next.value, false))
      }
    }
  }

  let headerLine: number | undefined
  let headerText: string | undefined
  try {
    if (options.header === false || Array.isArray(options.header)) {
      fields = Array.isArray(options.header) ? options.header : request.pipeline.columns.map((column) => column.source)
    } else {
      await pump(1)
      const header = parser.records.shift()
      headerLine = parser.lines.shift()
      headerText = parser.texts.shift()
      fields = (header ?? []).map((field) => field ?? '')
      if (fields.length > limits.maxColumns) {
        throw fileInvalid(file, overLimit(`the header has ${formatCount(fields.length)} fields, more than ${formatCount(limits.maxColumns)}`, 'maxColumns'), headerLine)
      }
    }
  } catch (error) {
    fail(error)
  }

  async function* batches(): AsyncGenerator<RawBatch> {
    try {
      while (!done || parser.records.length > 0) {
        await pump(batchSize)
        if (parser.records.length === 0) break
        let records = parser.records
        let lines = parser.lines
        let texts = parser.texts
        if (records.length > batchSize) {
          parser.records = records.slice(batchSize)
          parser.lines = lines.slice(batchSize)
          records = records.slice(0, batchSize)
          lines = lines.slice(0, batchSize)
          if (keepText) {
            parser.texts = texts.slice(batchSize)
            texts = texts.slice(0, batchSize)
          }
        } else {
          parser.records = []
          parser.lines = []
          if (keepText) parser.texts = []
        }
        yield keepText ? { records, lines, texts } : { records, lines }
      }
    } catch (error) {
      fail(error)
    } finally {
      if (!done) stream.destroy()
    }
  }

  return { fields: fields ?? [], headerLine, ...(keepText ? { headerText: () => headerText } : {}), batches: batches() }
}

/** The built-in CSV format, tapping `load` like any format plugin. */
export function csvFormat(): Plugin {
  return {
    name: 'filedge:csv',
    formats: ['csv'],
    apply({ hooks }) {
      hooks.load.tapPromise('filedge:csv', async (request) => (request.format.type === 'csv' ? loadCsv(request) : undefined))
    },
  }
}
