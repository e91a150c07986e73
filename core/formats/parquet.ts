import type { Readable } from 'node:stream'
import type { RowGroup } from 'hyparquet'
import { DEFAULT_LIMITS, formatApprox, formatBytes, formatCount, overLimit } from '../config/limits.js'
import type { ResolvedLimits } from '../config/types.js'
import { FiledgeError, fileInvalid, isFiledgeError } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import { NumberText, type RawBatch, type RawRows } from '../rows.js'
import { parseJson } from './json-value.js'
import { isGzipPath } from './registry.js'

/**
 * Parquet, read with hyparquet: pure JavaScript, no native binary, loaded only
 * when a Parquet file is met. Why not DuckDB's reader: a SQLite or Postgres
 * user must not need DuckDB to load Parquet, and hyparquet with its
 * compressors (snappy, gzip, zstd, brotli, lz4) is 0.7 MB.
 *
 * Parquet keeps its index (the footer) at the end of the file, so it cannot be
 * read front to back as it streams in. The verified bytes (hash-checked, and
 * gunzipped for `.parquet.gz`) are collected in memory, then decoded one row
 * group at a time: memory holds the file (at most limits.parquetMaxFileBytes)
 * plus one decoded row group (estimated before decoding, at most
 * limits.parquetMaxRowGroupBytes).
 *
 * Values reach coercion in the same shapes JSON gives: numbers, strings,
 * booleans, nested objects and arrays; dates as `YYYY-MM-DD`, timestamps as
 * ISO-8601 UTC with their full precision (hyparquet's default would be a JS
 * Date, cut to milliseconds); 64-bit integers past 2^53 and decimals as
 * NumberText, exact. A row's "line" in messages is its 1-based row number.
 */

type Hyparquet = typeof import('hyparquet')
type ParquetHeader = (typeof import('hyparquet/src/column.js'))['parquetHeader']

/** Rows per batch when the caller does not say (inspect). */
const BATCH = 2_000

const pad = (value: number, width: number) => String(value).padStart(width, '0')

function isoDate(days: number): string {
  const date = new Date(days * 86_400_000)
  const year = date.getUTCFullYear()
  return `${year < 0 ? '-' : ''}${pad(Math.abs(year), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}`
}

/** An instant in `unit`s since the epoch, as `YYYY-MM-DDTHH:MM:SS.fffffffffZ` with as many fraction digits as the unit has. */
function isoInstant(value: bigint, digits: 3 | 6 | 9): string {
  const perSecond = 10n ** BigInt(digits)
  let seconds = value / perSecond
  let fraction = value % perSecond
  if (fraction < 0n) {
    fraction += perSecond
    seconds -= 1n
  }
  const date = new Date(Number(seconds) * 1000)
  const day = isoDate(Math.floor(Number(seconds) / 86_400))
  return `${day}T${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${pad(date.getUTCSeconds(), 2)}.${fraction.toString().padStart(digits, '0')}Z`
}

const nullable =
  <T, R>(parse: (value: T) => R) =>
  (value: T | null | undefined): R | null | undefined =>
    value === null || value === undefined ? (value as null | undefined) : parse(value)

const PARSERS = {
  dateFromDays: nullable((days: number) => isoDate(days)),
  timestampFromMilliseconds: nullable((value: bigint) => isoInstant(BigInt(value), 3)),
  timestampFromMicroseconds: nullable((value: bigint) => isoInstant(BigInt(value), 6)),
  timestampFromNanoseconds: nullable((value: bigint) => isoInstant(BigInt(value), 9)),
  jsonFromBytes: nullable((bytes: Uint8Array) => parseJson(new TextDecoder().decode(bytes))),
}

/** hyparquet turns DECIMAL into `unscaled × 10^-scale` as a double; the unscaled integer is recovered exactly while it fits 2^52. */
function decimalText(value: number, scale: number): NumberText | undefined {
  const unscaled = Math.round(value * 10 ** scale)
  if (!Number.isSafeInteger(unscaled) || Math.abs(unscaled) > 2 ** 52) return undefined
  const digits = String(Math.abs(unscaled)).padStart(scale + 1, '0')
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`
  return new NumberText(`${unscaled < 0 ? '-' : ''}${text}`)
}

/** bigint from INT64 columns: a plain number while exact, NumberText beyond. */
function integer(value: bigint): number | NumberText {
  const number = Number(value)
  return Number.isSafeInteger(number) ? number : new NumberText(value.toString())
}

async function collect(stream: Readable, file: string, maxBytes: number): Promise<ArrayBuffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    size += (chunk as Buffer).length
    // A .parquet.gz is only known to be too large as it inflates: stop there, not after holding all of it.
    if (size > maxBytes) throw tooLarge(file, maxBytes)
    chunks.push(chunk as Buffer)
  }
  const bytes = Buffer.concat(chunks)
  // A large concat owns its whole ArrayBuffer: hand that on instead of copying the file a second time.
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer as ArrayBuffer
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
}

function tooLarge(file: string, maxBytes: number) {
  return fileInvalid(file, overLimit(`the Parquet data is larger than ${formatBytes(maxBytes)}, and a Parquet file is held in memory while it loads`, 'parquetMaxFileBytes'))
}

/**
 * A row group's heap once decoded, estimated as 2 bytes per uncompressed page
 * byte plus 32 per value: a value is a slot in hyparquet's column array and a
 * slot in a batch's record, pointing at a boxed number, BigInt or string, and
 * a string passes through a byte view of its page on the way. The least heap
 * that decoded whole groups (2M rows of BIGINT, VARCHAR, DOUBLE, BOOLEAN; the
 * same as constants; 1M rows with 32-character strings; 300k rows with nulls,
 * lists and 200-character strings) was 0.61, 0.80, 0.93 and 0.76 of this estimate.
 */
const HEAP_BYTES_PER_PAGE_BYTE = 2
const HEAP_BYTES_PER_VALUE = 32

/**
 * What decoding a row group will hold, from its page headers, before any page
 * is decompressed. Not from the footer's sizes: a run-length-encoded page
 * says "20 million times 1" in a few bytes (a 517-byte file, 109 bytes
 * "uncompressed" in its footer, needs gigabytes decoded), and hyparquet sizes
 * its arrays by each page header's value count, so the headers are what to
 * believe.
 */
function rowGroupCost(bytes: ArrayBuffer, group: RowGroup, parquetHeader: ParquetHeader): { values: number; uncompressed: number } {
  let values = 0
  let uncompressed = 0
  for (const chunk of group.columns) {
    const meta = chunk.meta_data
    if (meta === undefined) throw new Error('a column chunk without metadata')
    const start = Number(meta.dictionary_page_offset || meta.data_page_offset)
    const length = Number(meta.total_compressed_size)
    if (!(start >= 0 && length >= 0 && start + length <= bytes.byteLength)) throw new Error('a column chunk outside the file')
    const reader = { view: new DataView(bytes, start, length), offset: 0 }
    while (reader.offset < length - 1) {
      const header = parquetHeader(reader)
      if (!(header.compressed_page_size >= 0)) throw new Error('a page with a negative size')
      uncompressed += header.uncompressed_page_size
      values += header.data_page_header?.num_values ?? header.data_page_header_v2?.num_values ?? header.dictionary_page_header?.num_values ?? 0
      reader.offset += header.compressed_page_size
    }
  }
  return { values, uncompressed }
}

/** One column of a row group as hyparquet decoded it, one array per page, read front to back as batches are cut. */
class DecodedColumn {
  private readonly pages: (ArrayLike<unknown> | undefined)[] = []
  private page = 0
  private offset = 0

  push(page: ArrayLike<unknown>): void {
    this.pages.push(page)
  }

  /**
   * Writes the next `records.length` values into field `c` of the records,
   * through `convert` when given. Returns the index of the first record whose
   * value `convert` refused (INVALID), or -1. Pages read are let go.
   */
  fill(records: unknown[][], c: number, convert: Convert | undefined): number {
    const count = records.length
    let r = 0
    while (r < count && this.page < this.pages.length) {
      const values = this.pages[this.page]!
      const take = Math.min(count - r, values.length - this.offset)
      for (let k = 0; k < take; k++) {
        let value = values[this.offset + k]
        if (convert !== undefined && value !== null && value !== undefined) {
          value = convert(value)
          if (value === INVALID) return r + k
        }
        records[r + k][c] = value
      }
      r += take
      this.offset += take
      if (this.offset === values.length) {
        this.pages[this.page++] = undefined
        this.offset = 0
      }
    }
    return -1
  }
}

const INVALID = Symbol('invalid')
type Convert = (value: unknown) => unknown

export interface ParquetRows {
  readonly fields: readonly string[]
  readonly rows: number
  /** Raw records in batches of at most `size`, with their 1-based row numbers as `lines`. */
  batches(options?: { limit?: number; size?: number }): AsyncGenerator<RawBatch>
}

/**
 * Opens Parquet bytes: schema and row count now, rows as they are pulled.
 * Every limit is checked here, before a single row is decoded: the file's
 * size, its column count, and what each row group will take once decoded.
 */
export async function openParquet(stream: Readable, file: string, limits: ResolvedLimits = DEFAULT_LIMITS): Promise<ParquetRows> {
  const bytes = await collect(stream, file, limits.parquetMaxFileBytes)
  // A file with no content at all is an empty load, as for every format.
  if (bytes.byteLength === 0) return { fields: [], rows: 0, batches: async function* () {} }
  const [hyparquet, { compressors }, { parquetHeader }] = await Promise.all([
    import('hyparquet') as Promise<Hyparquet>,
    import('hyparquet-compressors'),
    // Not part of hyparquet's index, but exported (`hyparquet/src/*.js`) and typed: the page header reader its decoder uses.
    import('hyparquet/src/column.js'),
  ])
  let metadata: ReturnType<Hyparquet['parquetMetadata']>
  try {
    metadata = hyparquet.parquetMetadata(bytes)
  } catch (error) {
    throw fileInvalid(file, `not a readable Parquet file (${(error as Error).message})`)
  }
  const columns = hyparquet.parquetSchema(metadata).children
  if (columns.length > limits.maxColumns) {
    throw fileInvalid(file, overLimit(`the file has ${formatCount(columns.length)} columns, more than ${formatCount(limits.maxColumns)}`, 'maxColumns'))
  }
  const fields = columns.map((column) => column.element.name)
  const converts = columns.map((column): Convert | undefined => {
    const element = column.element
    if (column.children.length > 0) return undefined
    if (element.converted_type === 'DECIMAL') {
      const scale = element.scale ?? 0
      return (value) => (typeof value === 'number' ? (decimalText(value, scale) ?? INVALID) : value)
    }
    if (element.type === 'INT64') return (value) => (typeof value === 'bigint' ? integer(value) : value)
    return undefined
  })
  const rows = Number(metadata.num_rows)

  let groupStart = 0
  const groups = metadata.row_groups.map((group, index) => {
    const rowStart = groupStart
    const rowEnd = (groupStart += Number(group.num_rows))
    const span = `row group ${index + 1} (rows ${formatCount(rowStart + 1)}–${formatCount(rowEnd)})`
    let cost
    try {
      cost = rowGroupCost(bytes, group, parquetHeader)
    } catch (error) {
      throw fileInvalid(file, `cannot read the page headers of ${span} (${(error as Error).message})`)
    }
    const estimate = cost.uncompressed * HEAP_BYTES_PER_PAGE_BYTE + cost.values * HEAP_BYTES_PER_VALUE
    if (estimate > limits.parquetMaxRowGroupBytes) {
      const what = `${span} would take about ${formatApprox(estimate)} of memory decoded (${formatCount(cost.values)} values, ${formatApprox(cost.uncompressed)} uncompressed), more than ${formatBytes(limits.parquetMaxRowGroupBytes)}`
      throw fileInvalid(file, overLimit(what, 'parquetMaxRowGroupBytes'))
    }
    return { rowStart, rowEnd }
  })

  /**
   * A row group is decoded into hyparquet's column arrays and cut into
   * batches from them, never turned into all its row arrays at once: loading
   * 2M rows of four columns in one group needed a 357 MB heap that way and
   * 202 MB this way (the smallest --max-old-space-size that loaded it).
   */
  async function* batches(options: { limit?: number; size?: number } = {}): AsyncGenerator<RawBatch> {
    const end = Math.min(rows, options.limit ?? rows)
    const size = options.size ?? BATCH
    for (const group of groups) {
      if (group.rowStart >= end) break
      const rowEnd = Math.min(end, group.rowEnd)
      const decoded = fields.map(() => new DecodedColumn())
      const byName = new Map(fields.map((field, c) => [field, decoded[c]]))
      try {
        await hyparquet.parquetRead({
          file: bytes,
          metadata,
          rowStart: group.rowStart,
          rowEnd,
          compressors,
          parsers: PARSERS,
          onChunk: (chunk) => byName.get(chunk.columnName)?.push(chunk.columnData),
        })
      } catch (error) {
        throw fileInvalid(file, `cannot decode Parquet rows ${group.rowStart + 1}–${rowEnd} (${(error as Error).message})`, group.rowStart + 1)
      }
      for (let from = group.rowStart; from < rowEnd; from += size) {
        const count = Math.min(size, rowEnd - from)
        const records: unknown[][] = new Array(count)
        const lines: number[] = new Array(count)
        for (let r = 0; r < count; r++) {
          records[r] = new Array(fields.length)
          lines[r] = from + r + 1
        }
        // Column by column, so each column's conversion is chosen once; a refused value is reported at the first row it is in.
        let bad: { row: number; column: number } | undefined
        for (let c = 0; c < fields.length; c++) {
          const row = decoded[c].fill(records, c, converts[c])
          if (row >= 0 && (bad === undefined || row < bad.row)) bad = { row, column: c }
        }
        if (bad !== undefined) {
          throw fileInvalid(file, `column ${fields[bad.column]}: a DECIMAL value with more than 15 digits cannot be read exactly by the Parquet reader`, lines[bad.row])
        }
        yield { records, lines }
      }
    }
  }
  return { fields, rows, batches }
}

export async function loadParquet(request: LoadRequest): Promise<RawRows> {
  const file = request.file.path
  const { limits, batchSize } = request.pipeline
  // A plain file's size is known before a byte is read; a .parquet.gz is measured as it inflates (in collect).
  if (!isGzipPath(file) && request.file.size > limits.parquetMaxFileBytes) throw tooLarge(file, limits.parquetMaxFileBytes)
  const parquet = await openParquet(request.open(), file, limits)
  const source = parquet.batches({ size: batchSize })
  async function* batches(): AsyncGenerator<RawBatch> {
    try {
      yield* source
    } catch (error) {
      if (isFiledgeError(error)) throw error
      throw new FiledgeError('FILE_INVALID', `${file}: ${(error as Error).message}`, { file, cause: error })
    }
  }
  return { fields: parquet.fields, batches: batches() }
}

/** The built-in Parquet format. */
export function parquetFormat(): Plugin {
  return {
    name: 'filedge:parquet',
    formats: ['parquet'],
    apply({ hooks }) {
      hooks.load.tapPromise('filedge:parquet', async (request) => (request.format.type === 'parquet' ? loadParquet(request) : undefined))
    },
  }
}
