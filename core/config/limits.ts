import { constants } from 'node:buffer'
import type { LimitsConfig, ResolvedLimits, Size } from './types.js'

/**
 * How much one file may make filedge hold or produce. A hostile or broken
 * file (a 150 MB line, a gzip bomb, a Parquet row group of a billion values)
 * must fail alone with a message naming the limit, not take the worker's heap
 * down with every other file in flight.
 *
 * Text limits count characters, not bytes: what a parser holds is decoded
 * text, whose size in memory follows its characters (one or two bytes each),
 * whatever encoding the file was in. Counting characters is also free (a
 * string's length), where counting UTF-8 bytes would cost a pass over every
 * quoted CSV field. Binary limits (gzip, Parquet) count bytes.
 *
 * Defaults load every real file we know of and keep a worker with Node's
 * default heap alive; each was chosen as its comment says.
 */

const KI = 1024
const MI = KI * KI
const GI = KI * MI

export const DEFAULT_LIMITS: ResolvedLimits = Object.freeze({
  // As before limits were configurable: a 10 MiB field loads, an unterminated quote stops at 64 Mi.
  maxFieldChars: 64 * MI,
  // The same bound for a whole NDJSON line or JSON array element: its text and the parsed value stay in the low hundreds of MB.
  maxRecordChars: 64 * MI,
  // Excel's column limit: anything that passed through a spreadsheet fits.
  maxColumns: 16_384,
  // Real CSV and JSON compress 5–20×; a gzip bomb 1000× and more.
  gzipMaxRatio: 200,
  // A small file of very repetitive data may exceed the ratio; up to this much output it is not refused for it.
  gzipRatioGraceBytes: 256 * MI,
  // A Parquet file is held in memory (its index is at the end): twice Delta Lake's 1 GiB target file size, half Node's Buffer limit.
  parquetMaxFileBytes: 2 * GI,
  // One decoded row group, estimated before decoding (see parquet.ts). pyarrow's default group, 1Mi rows, of 30 numeric
  // columns is 1.4 GiB by the estimate; a group at the limit decodes in under 2 GiB of heap, so one fits Node's default
  // 4 GB heap with room for the rest of the worker. A smaller heap wants about half of it here.
  parquetMaxRowGroupBytes: 2 * GI,
  // Shared strings are read whole before a sheet (cells refer to them by number). Held as strings they take 1.6–2.2 bytes
  // of heap per byte of their XML (measured: see xlsx-workbook.ts), so a table at the limit holds under 600 MB, and one
  // fits Node's default 4 GB heap beside the rest of the worker; a 1M-row sheet with five columns of distinct
  // 20-character text has about 170 MiB of them.
  xlsxMaxSharedStringsBytes: 256 * MI,
})

export const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as (keyof ResolvedLimits)[]

const UNITS = { B: 1, KiB: KI, MiB: MI, GiB: GI, TiB: KI * GI } as const

export const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s?(B|KiB|MiB|GiB|TiB)$/

/** `'64MiB'` → 67108864; a bare number is bytes. Assumes the value passed schema validation. */
export function toBytes(size: Size): number {
  if (typeof size === 'number') return size
  const match = SIZE_PATTERN.exec(size)
  if (match === null) throw new Error(`not a size: ${size}`)
  return Math.round(Number(match[1]) * UNITS[match[2] as keyof typeof UNITS])
}

/** Top-level limits, then the pipeline's own, key by key over the defaults. Problems go to `problems` with their key path. */
export function resolveLimits(layers: readonly { readonly at: string; readonly limits: LimitsConfig | undefined }[], problems: string[]): ResolvedLimits {
  if (layers.every((layer) => layer.limits === undefined)) return DEFAULT_LIMITS
  const resolved: Record<string, number> = { ...DEFAULT_LIMITS }
  for (const { at, limits } of layers) {
    if (limits === undefined) continue
    for (const [key, value] of Object.entries(limits)) {
      if (value === undefined) continue
      resolved[key] = key.endsWith('Bytes') ? toBytes(value as Size) : (value as number)
      if (key === 'parquetMaxFileBytes' && resolved[key] > constants.MAX_LENGTH) {
        problems.push(`${at}.${key}: at most ${formatBytes(constants.MAX_LENGTH)}, the largest buffer Node can hold a Parquet file in`)
      }
    }
  }
  return Object.freeze(resolved as unknown as ResolvedLimits)
}

/** Exact, as the config would say it: `67108864` → `64 MiB`, `1000` → `1,000 bytes`. */
export function formatBytes(bytes: number): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    if (bytes >= UNITS[unit] && bytes % UNITS[unit] === 0) return `${bytes / UNITS[unit]} ${unit}`
  }
  return `${formatCount(bytes)} bytes`
}

/** A size measured, not configured: `1.2 GiB`, `517 bytes`. */
export function formatApprox(bytes: number): string {
  for (const [unit, size] of [['GiB', GI], ['MiB', MI], ['KiB', KI]] as const) {
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`
  }
  return `${bytes} bytes`
}

/** `67108864` → `67,108,864`. */
export function formatCount(count: number): string {
  return count.toLocaleString('en-US')
}

/**
 * The reason a file failed a limit: what went past it, then the key that
 * raises it. `record is longer than 67,108,864 characters; raise limits.maxRecordChars if the file is genuine`
 */
export function overLimit(what: string, key: keyof ResolvedLimits): string {
  return `${what}; raise limits.${key} if the file is genuine`
}
