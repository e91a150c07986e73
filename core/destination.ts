import type { ResolvedColumn, ResolvedConfig, ResolvedFormat, ResolvedLimits, ResolvedWriteMode, WriteModeName } from './config/types.js'
import type { Logger } from './logger.js'
import type { RowBatch, TableSpec } from './rows.js'

/** The file being written, as the ledger knows it. */
export interface FileRef {
  /** Lowercase hex SHA-256 of the file's bytes: its identity. */
  readonly hash: string
  /** As the source names it: relative to the project root for local files (`incoming/a.csv`), `s3://bucket/key` for S3. */
  readonly path: string
  readonly size: number
  /** The source's version of the bytes (see SourceEntry.version). */
  readonly version: string
  /** Last modification in the source, ms since the epoch. */
  readonly modifiedAt: number
}

export interface WriteJob {
  readonly pipeline: string
  /** The destination table: for cdc, the change columns without the op column (see ResolvedCdc). */
  readonly table: TableSpec
  /**
   * How the file's rows land (README, "Write modes"):
   * - `append`: delete this hash's rows, insert the file's rows.
   * - `truncate`: replace the table's contents with the file's rows; a file
   *   with no rows fails (FILE_INVALID) unless `allowEmpty`; a file that was
   *   applied before and then replaced by a later one is not applied again.
   * - `cdc`: the batches are changes laid out as `changeColumns`; collapse
   *   them to the last change per key by sequence, skip those not newer than
   *   what the table holds for the key (rows and tombstones), apply the rest.
   * All in one transaction, as for append.
   */
  readonly writeMode: ResolvedWriteMode
  readonly file: FileRef
  /**
   * This load of the file, as the ledger names it. Record it in the load
   * marker `(pipeline, file.hash) → (loadId, rows)` inside the transaction
   * that commits the rows (see `Destination.hasLoaded`). Retries and reclaims
   * of one load carry the same id; a reload on purpose (requeue of a
   * committed file, a truncate file arriving again) carries a new one.
   */
  readonly loadId: string
  /** The pipeline's stages' hash these rows were produced under (absent without stages): the load marker records it. */
  readonly code?: string
  /** ISO-8601 UTC, one value for every row of this file. */
  readonly ingestedAt: string
  /** Rows, already coerced and transformed. Pull them inside the transaction. */
  readonly batches: AsyncIterable<RowBatch>
  /**
   * How the file was read, for a destination that can read it itself
   * (DuckDB's `read_csv`, a `COPY`). Set only when nothing stands between
   * coercion and the destination (no `transform` tap), so reading `file`
   * with this format and these columns yields exactly the rows `batches`
   * would. A destination that uses it instead of `batches` keeps filedge's
   * semantics or falls back to `batches`: it loads the claimed bytes (checks
   * hash and size), applies the README's coercion rules exactly, and numbers
   * rows by record. The header has already been checked against the columns.
   */
  readonly source?: SourceLayout
  /**
   * The claimed file on local disk, when there is one: the local source's
   * file, or a remote file spooled while it was hashed. For a destination
   * that reads files itself; verify with `readClaimedBytes(job)`.
   */
  readonly localPath?: string
  /**
   * Throws CLAIM_LOST if this worker no longer holds the file. Call it inside
   * the transaction, after the last row and right before committing, so a
   * worker that lost its lease never commits.
   */
  assertLease(): Promise<void>
  /** Aborted when the lease is lost or the run is stopping. */
  readonly signal: AbortSignal
}

export interface SourceLayout {
  readonly format: ResolvedFormat
  /** The file's field names as the format read them, in file order. */
  readonly fields: readonly string[]
  /** Line of the header, when the format has one. */
  readonly headerLine?: number
  /** The pipeline's columns, with the field each one reads (`source`). */
  readonly columns: readonly ResolvedColumn[]
  readonly unknownColumns: 'error' | 'ignore'
  /** The pipeline's limits: a native reader refuses what the format would, or leaves the file to the format. */
  readonly limits: ResolvedLimits
}

export interface WriteResult {
  readonly rows: number
}

/** What a destination's load marker says about a file: which load of it committed, with how many rows. */
export interface LoadMarker {
  readonly loadId: string
  readonly rows: number
  /** The stages' hash the load's rows were produced under (null: no stages, or a marker written before filedge recorded it). */
  readonly code?: string | null
  /** Anything the user should hear about it, e.g. that a newer truncate file has replaced it since. */
  readonly note?: string
}

export interface LoadQuery {
  readonly pipeline: string
  readonly table: TableSpec
  readonly writeMode: ResolvedWriteMode
  readonly hash: string
}

export interface DestinationCapabilities {
  /** A file's rows commit or roll back together. */
  readonly transactions: boolean
  /** The write modes `write` implements; a pipeline asking for another one is refused when the config is resolved. */
  readonly writeModes: readonly WriteModeName[]
  /**
   * Files in flight per pipeline this destination works best with, used when
   * the config sets no `concurrency` (default 4). The SQLite destination asks
   * for more: files waiting behind each other share one fsync (group commit).
   */
  readonly concurrency?: number
}

export interface DestinationContext {
  readonly config: ResolvedConfig
  readonly logger: Logger
}

/**
 * A destination is a small object built by a factory (`sqlite({ path })`).
 * Contract (checked by `filedge/testing`'s `testDestination`):
 * - `prepare` creates the table with the declared columns plus the provenance
 *   columns, or, if it exists, throws SCHEMA_DRIFT listing every difference.
 * - `write` is atomic and idempotent per file hash: in append mode it removes
 *   any rows of `job.file.hash` and inserts the file's rows in one
 *   transaction; the other modes are described on `WriteJob.writeMode`.
 * - Exactly once (optional, strongly advised): `write` records the load
 *   marker `(job.pipeline, job.file.hash, job.loadId, rows)` in the same
 *   transaction as the rows, and `hasLoaded` reads it back. The ledger is a
 *   separate system: a worker that dies after the destination's COMMIT and
 *   before the ledger's leaves the ledger behind the truth. Before loading a
 *   file again after such a gap (a reclaim, a retry, a requeue, a lease that
 *   expired too often), filedge asks `hasLoaded`, and a marker of the same
 *   load makes the file COMMITTED without loading it again. A truncate
 *   `write` whose marker already holds `job.loadId` must not apply the file
 *   again (a newer file may have replaced it since). A destination without
 *   `hasLoaded` still never doubles rows (`write` is idempotent), but a file
 *   whose worker died after the commit on its last allowed lapse ends FAILED
 *   with its rows in the table.
 */
export interface Destination {
  /** Short name for messages and the plugin name: `sqlite`, `duckdb`… */
  readonly name: string
  readonly capabilities: DestinationCapabilities
  /** Where it writes, safe to print (no secrets). */
  describe(): string
  /** Called once per run before any table is prepared. Relative paths resolve against `ctx.config.root`. */
  open?(ctx: DestinationContext): Promise<void>
  /**
   * Creates or checks `table`, and whatever `writeMode` needs beside it (the
   * built-in destinations: a unique index on the cdc keys and the
   * `<table>__filedge_deleted` tombstones; the `<table>__filedge_loads` log
   * for truncate). `writeMode` is absent when a caller prepares for append.
   */
  prepare(table: TableSpec, writeMode?: ResolvedWriteMode): Promise<void>
  write(job: WriteJob): Promise<WriteResult>
  /**
   * The load marker of `(pipeline, hash)`, or null if this destination holds
   * no load of it. Reads committed state only (never a transaction still
   * open), and is safe to call while other files are being written.
   */
  hasLoaded?(query: LoadQuery): Promise<LoadMarker | null>
  /**
   * Whether the destination answers, for `filedge healthcheck`: a cheap probe
   * (`SELECT 1`, a look at the database file), with or without `open`, on a
   * short-lived connection of its own unless one is open. It creates and
   * changes nothing, and waits for no lock: a single-writer file held by
   * another process throws DESTINATION_LOCKED (`destinationLocked`), which
   * the healthcheck reports as busy, not down. Anything else it throws is
   * the destination being down; say what, never a secret.
   */
  healthcheck?(ctx: DestinationContext): Promise<void>
  close?(): Promise<void>
  /**
   * SQL next to the tables, for plugins that build on them (ponds): `task`
   * gets the destination's own connection, one task at a time between file
   * writes (a task's transaction never interleaves with a file's). Only
   * between `open` and `close`. `dialect` says which SQL it speaks.
   */
  readonly dialect?: 'duckdb'
  session?<T>(task: (db: SqlSession) => Promise<T>): Promise<T>
}

/** A connection a destination lends (`Destination.session`). Values are named parameters (`$name`), never spliced into the text. */
export interface SqlSession {
  run(sql: string, values?: Record<string, unknown>): Promise<void>
  /** Rows as objects, column → JS value (integers as bigint where DuckDB gives them so). */
  all(sql: string, values?: Record<string, unknown>): Promise<Record<string, unknown>[]>
}
