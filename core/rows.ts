import type { ColumnType } from './config/types.js'

/**
 * A typed value after coercion. Dates are `YYYY-MM-DD` strings, timestamps
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ` strings (UTC), decimals exact strings, json
 * canonical JSON text, integers numbers (bigint beyond 2^53).
 */
export type Value = string | number | bigint | boolean | null

/**
 * Rows move in batches of parallel arrays: cheap to build, cheap to hand to a
 * prepared statement, and each row keeps where it came from.
 */
export interface RowBatch {
  /** Column names, in the pipeline's declared order (same array for every batch of a file). */
  readonly columns: readonly string[]
  /** One array per row, aligned with `columns`. */
  readonly rows: Value[][]
  /** 1-based record number of each row within its file (the header is not a record). */
  readonly rowNumbers: number[]
  /** Physical line where each row starts, for messages (`file:line`). */
  readonly lines: number[]
  /**
   * The same values by column (one array per column, aligned with `columns`),
   * when the batch was produced that way (a replay from the cache): a
   * destination that binds values one by one may read them instead of
   * `rows`, which is then never built. Gone (undefined) once `rows` has been
   * read, since a row may then have been changed in place. Count rows with
   * `batchSize(batch)`: reading `rows` builds them.
   */
  readonly vectors?: readonly ArrayLike<Value>[]
  /**
   * The batch as a replay holds it (see `StoredBatch`), for a destination that
   * binds values one by one: what it reads through them is never copied into
   * arrays first. `vectors` and `rowNumbers` are made from them when first
   * read. Gone (undefined) once `rows` has been read, as `vectors` is.
   */
  readonly stored?: StoredBatch
}

/** How many rows a batch holds, without making a replayed batch's record numbers. */
export function batchSize(batch: RowBatch): number {
  return batch.stored?.count ?? batch.rowNumbers.length
}

/** A replayed batch as the cache keeps it. */
export interface StoredBatch {
  /** Rows in the batch. */
  readonly count: number
  /** When the batch's record numbers run on one by one from this one (a replay's usually do); else `rowNumbers` holds them. */
  readonly firstRowNumber: number | undefined
  /** By column, aligned with `RowBatch.columns`. */
  readonly columns: readonly StoredColumn[]
}

/**
 * A column of a replayed batch as the cache keeps it: `values`, the values
 * themselves; `words`, value `i` is `words[index[i]]` (a string or null).
 */
export type StoredColumn = { readonly kind: 'values'; readonly values: ArrayLike<Value> } | { readonly kind: 'words'; readonly words: readonly (string | null)[]; readonly index: Uint16Array }

/**
 * A number as its source wrote it, for values a JS number would not hold
 * exactly: `12345678901234567890` (past 2^53), `0.1234567890123456789`, and
 * forms whose spelling matters to coercion (`3.0` is not an integer, `1e3`
 * is not a decimal). JSON and Parquet formats yield it; coercion reads `text`.
 */
export class NumberText {
  constructor(readonly text: string) {}
}

/**
 * A value a format found in the file but cannot hand on as data: an Excel
 * cell holding an error (`#N/A`), a formula that was never calculated. Every
 * column type rejects it with `reason`, so it fails its file as
 * `file:line column name: reason` like any bad value, and `validate` lists
 * each one. `text` is what the file holds, shown as the failing value.
 */
export class UnreadableValue {
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {}
}

/** What a format yields: raw field values (strings from CSV, JSON values from JSON formats), not yet coerced. */
export interface RawBatch {
  readonly records: unknown[][]
  readonly lines: number[]
  /**
   * Each record as the file wrote it (a CSV record's line or lines without
   * the line break, an NDJSON line, a JSON array's element), when the load
   * asked for it (`LoadRequest.recordText`) and the format can tell: a
   * quarantined record is kept as it was, so that a replay is faithful.
   */
  readonly texts?: string[]
}

export interface RawRows {
  /** Field names, in record order. */
  readonly fields: readonly string[]
  /** Line of the header, if the format has one (for messages about fields). */
  readonly headerLine?: number
  /**
   * The header as the file wrote it, with `recordText`, once the format has
   * read it (a replay writes it back above the fixed records); undefined for
   * a file without one. A function: a format may read its header only as
   * its first batch is asked for.
   */
  readonly headerText?: () => string | undefined
  readonly batches: AsyncIterable<RawBatch>
  /**
   * Releases what the format holds for the file beyond its stream (an open
   * zip, a spooled copy), whether or not `batches` was read to its end: a
   * generator never started never runs its `finally`. Whoever asked for the
   * rows calls it once the file is done; calling it twice is harmless.
   */
  close?(): void
}

export interface TableColumn {
  readonly name: string
  readonly type: ColumnType
  readonly required: boolean
  readonly precision?: number
  readonly scale?: number
}

export interface TableSpec {
  readonly name: string
  readonly columns: readonly TableColumn[]
}

/**
 * Provenance columns on every destination row. Appended after the declared
 * columns, in this order.
 */
export const PROVENANCE_COLUMNS: readonly TableColumn[] = Object.freeze([
  { name: '_source_file_hash', type: 'string', required: true },
  { name: '_ingested_at', type: 'timestamp', required: true },
  { name: '_source_row_number', type: 'integer', required: true },
])

/**
 * Lets go of rows that will not be read (kept rows a stage cut does not need,
 * rows a plugin replayed for a file whose stages were all cached): started
 * and stopped, so whatever their source opened for them (a cache entry's
 * file) is closed. An async generator that was never started runs no
 * `finally` when it is stopped. Rows read to their end are left as they are.
 */
export async function letGo(rows: AsyncIterable<unknown>): Promise<void> {
  const iterator = rows[Symbol.asyncIterator]()
  // Rows that fail to start or to stop were going unread anyway: nothing to report for them.
  await iterator.next().catch(() => undefined)
  await Promise.resolve(iterator.return?.()).catch(() => undefined)
}
