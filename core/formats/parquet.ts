import type { Readable } from 'node:stream'
import { FiledgeError, fileInvalid, isFiledgeError } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import { NumberText, type RawBatch, type RawRows } from '../rows.js'
import { parseJson } from './json-value.js'

/**
 * Parquet, read with hyparquet: pure JavaScript, no native binary, loaded only
 * when a Parquet file is met. Why not DuckDB's reader: a SQLite or Postgres
 * user must not need DuckDB to load Parquet, and hyparquet with its
 * compressors (snappy, gzip, zstd, brotli, lz4) is 0.7 MB.
 *
 * Parquet keeps its index (the footer) at the end of the file, so it cannot be
 * read front to back as it streams in. The verified bytes (hash-checked, and
 * gunzipped for `.parquet.gz`) are collected in memory, then decoded one row
 * group at a time: memory holds the compressed file plus one row group.
 *
 * Values reach coercion in the same shapes JSON gives: numbers, strings,
 * booleans, nested objects and arrays; dates as `YYYY-MM-DD`, timestamps as
 * ISO-8601 UTC with their full precision (hyparquet's default would be a JS
 * Date, cut to milliseconds); 64-bit integers past 2^53 and decimals as
 * NumberText, exact. A row's "line" in messages is its 1-based row number.
 */

type Hyparquet = typeof import('hyparquet')

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

async function collect(stream: Readable): Promise<ArrayBuffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  const bytes = Buffer.concat(chunks)
  // A large concat owns its whole ArrayBuffer: hand that on instead of copying the file a second time.
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer as ArrayBuffer
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer
}

export interface ParquetRows {
  readonly fields: readonly string[]
  readonly rows: number
  /** Raw records per row group, with their 1-based row numbers as `lines`. */
  batches(options?: { limit?: number }): AsyncGenerator<RawBatch>
}

/** Opens Parquet bytes: schema and row count now, rows as they are pulled. */
export async function openParquet(stream: Readable, file: string): Promise<ParquetRows> {
  const bytes = await collect(stream)
  // A file with no content at all is an empty load, as for every format.
  if (bytes.byteLength === 0) return { fields: [], rows: 0, batches: async function* () {} }
  const [hyparquet, { compressors }] = await Promise.all([import('hyparquet') as Promise<Hyparquet>, import('hyparquet-compressors')])
  let metadata: ReturnType<Hyparquet['parquetMetadata']>
  try {
    metadata = hyparquet.parquetMetadata(bytes)
  } catch (error) {
    throw fileInvalid(file, `not a readable Parquet file (${(error as Error).message})`)
  }
  const columns = hyparquet.parquetSchema(metadata).children
  const fields = columns.map((column) => column.element.name)
  const decimalScale = columns.map((column) =>
    column.element.converted_type === 'DECIMAL' && column.children.length === 0 ? (column.element.scale ?? 0) : undefined,
  )
  const int64 = columns.map((column) => column.element.type === 'INT64' && column.children.length === 0 && column.element.converted_type !== 'DECIMAL')
  const rows = Number(metadata.num_rows)

  async function* batches(options: { limit?: number } = {}): AsyncGenerator<RawBatch> {
    const end = Math.min(rows, options.limit ?? rows)
    let rowStart = 0
    for (const group of metadata.row_groups) {
      if (rowStart >= end) break
      const rowEnd = Math.min(end, rowStart + Number(group.num_rows))
      let records: unknown[][]
      try {
        records = await new Promise<unknown[][]>((resolve, reject) => {
          hyparquet
            .parquetRead({ file: bytes, metadata, rowStart, rowEnd, compressors, parsers: PARSERS, rowFormat: 'array', onComplete: (result) => resolve(result as unknown[][]) })
            .catch(reject)
        })
      } catch (error) {
        throw fileInvalid(file, `cannot decode Parquet rows ${rowStart + 1}–${rowEnd} (${(error as Error).message})`, rowStart + 1)
      }
      const lines: number[] = new Array(records.length)
      for (let r = 0; r < records.length; r++) {
        const record = records[r]
        lines[r] = rowStart + r + 1
        for (let c = 0; c < record.length; c++) {
          const value = record[c]
          if (value === null || value === undefined) continue
          const scale = decimalScale[c]
          if (scale !== undefined && typeof value === 'number') {
            const exact = decimalText(value, scale)
            if (exact === undefined) throw fileInvalid(file, `column ${fields[c]}: a DECIMAL value with more than 15 digits cannot be read exactly by the Parquet reader`, lines[r])
            record[c] = exact
          } else if (int64[c] && typeof value === 'bigint') {
            record[c] = integer(value)
          }
        }
      }
      yield { records, lines }
      rowStart = rowEnd
    }
  }
  return { fields, rows, batches }
}

export async function loadParquet(request: LoadRequest): Promise<RawRows> {
  const file = request.file.path
  const parquet = await openParquet(request.open(), file)
  const source = parquet.batches()
  async function* batches(): AsyncGenerator<RawBatch> {
    try {
      // Row groups can hold a million rows; hand them on in batchSize slices like every format.
      for await (const batch of source) {
        for (let start = 0; start < batch.records.length; start += request.pipeline.batchSize) {
          yield { records: batch.records.slice(start, start + request.pipeline.batchSize), lines: batch.lines.slice(start, start + request.pipeline.batchSize) }
        }
      }
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
