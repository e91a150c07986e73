import type { Readable } from 'node:stream'
import { AsyncParallelHook, AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook, SyncWaterfallHook } from 'tapable'
import type { ResolvedConfig, ResolvedFormat, ResolvedPipeline } from './config/types.js'
import type { FileRef, LoadMarker, WriteJob, WriteResult } from './destination.js'
import type { ArchiveAction, ListOptions, ReadOptions, SourceEntry, Watching, WatchOptions } from './source.js'
import { isFiledgeError, pluginError, type FiledgeError } from './errors.js'
import type { LogEntry } from './logger.js'
import type { RawRows, RowBatch } from './rows.js'

/** A file a pipeline's source listed (or its watcher reported), before it is hashed. */
export interface FileCandidate extends SourceEntry {
  readonly pipeline: ResolvedPipeline
}

/**
 * `beforeHash` may skip the file, or vouch for its hash. A skip may say why
 * (`reason`, default `'plugin'`) and which bytes it knows the file holds (the
 * stat cache skips a settled file as `'committed'` or `'terminal'`).
 */
export type BeforeHashResult = { readonly skip: string; readonly reason?: SkipReason; readonly hash?: string } | { readonly hash: string }

/** A source hook's question about one pipeline. */
export interface SourceRequest {
  readonly pipeline: ResolvedPipeline
}

export interface ListRequest extends SourceRequest, ListOptions {}

export interface WatchRequest extends SourceRequest, WatchOptions {}

/** A path of a pipeline's source: `stat` and `locate` take one. */
export interface PathRequest extends SourceRequest {
  readonly path: string
}

export interface ReadRequest extends SourceRequest, ReadOptions {
  readonly entry: SourceEntry
}

/** What a watcher (or the core's polling) reported: handed to `watchChange` before the file is queued. */
export interface WatchChange {
  readonly pipeline: ResolvedPipeline
  readonly entry: SourceEntry
}

/** What `onCommitted` did to a committed file's copy in its source. */
export interface ArchivedFile {
  readonly pipeline: ResolvedPipeline
  readonly path: string
  readonly hash: string
  readonly action: ArchiveAction
  /** What the source did: `deleted`, `moved to archive/a.csv`, `already gone`, `left in place: …`. */
  readonly outcome: string
}

/** A file whose bytes are durably COMMITTED: its source copy may go (`onCommitted`). */
export interface ArchiveRequest extends SourceRequest {
  readonly entry: SourceEntry
  readonly hash: string
  readonly action: ArchiveAction
}

export interface ClaimRequest {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly worker: string
  /** What the source says about this copy of the bytes (locally mtime and inode), to tell a new arrival of the same bytes from the same one seen again. */
  readonly version?: string
  /** False for a second name of bytes already claimed in this run: it arrived with them, not after them. */
  readonly arrival?: boolean
  /**
   * Remember `(file.path, version) → file.hash` in the ledger's stat cache.
   * False when a `beforeHash` plugin supplied the hash, or the version cannot
   * vouch for the bytes yet (an mtime within the clock's granularity).
   */
  readonly remember?: boolean
}

/**
 * A claim on one file: held by one worker until it completes, fails, releases
 * or stops renewing it. `complete` and `fail` are fenced by the lease token:
 * they throw CLAIM_LOST if another worker has since taken the file.
 */
export interface Lease {
  readonly token: string
  /** 1 for the first attempt. A reclaim continues the attempt of the worker that died. */
  readonly attempt: number
  /** This load of the file: the destination records it in its load marker (WriteJob.loadId). */
  readonly loadId: string
  /** This load may already be in the destination: ask its marker (the `loaded` hook) before loading. */
  readonly verify: boolean
  /** Set when the lease expired too many times in a row: unless the destination has the load, fail the file terminally with this text. */
  readonly lapsed?: string
  /** Extends the lease. false: the lease is lost (another worker holds the file now). */
  heartbeat(): Promise<boolean>
  /** Whether this worker still holds the file. */
  isHeld(): Promise<boolean>
  /**
   * Marks the file COMMITTED, durably. `healed`: the destination already had
   * this load; how that came about. `code`: the stages' hash its marker says
   * the rows were produced under (null: none recorded); default the
   * pipeline's current one.
   */
  complete(rows: number, healed?: string, code?: string | null, quarantined?: { readonly rows: number; readonly sidecar: string }): Promise<void>
  /** `exhausted`: terminal whatever the attempts (the lease lapsed too often). */
  fail(error: Error, exhausted?: boolean): Promise<{ readonly terminal: boolean }>
  /** Gives the file back without counting the attempt (graceful stop). */
  release(): Promise<void>
}

/** `gone`: deleted between listing and reading; `changing`: still being written, or rewritten while it was read. */
export type SkipReason = 'committed' | 'terminal' | 'held' | 'duplicate' | 'changing' | 'gone' | 'plugin' | 'stopped'

export type ClaimOutcome =
  | {
      readonly status: 'claimed'
      readonly lease: Lease
      /** First time the ledger sees this (pipeline, hash). */
      readonly isNew: boolean
      /** Taken over from a worker whose lease expired. */
      readonly reclaimed: boolean
      /** A previous attempt failed. */
      readonly retried: boolean
      /** COMMITTED before; loaded again because its bytes arrived again (truncate pipelines). */
      readonly reopened: boolean
    }
  | { readonly status: 'skipped'; readonly reason: SkipReason; readonly isNew: boolean; readonly message: string }

export interface LoadRequest {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly format: ResolvedFormat
  /**
   * The file's bytes as a stream. The stream re-hashes what it reads and
   * errors with FILE_CHANGED at its end if the bytes are not the ones that were
   * claimed, so a file rewritten after hashing is never committed.
   */
  open(): Readable
  /**
   * The claimed bytes in a private file on local disk, when the core has
   * one: a remote file spooled while it was hashed (never gunzipped).
   * Nobody else writes it and it holds exactly the claimed bytes, so a
   * format that needs random access (a zip keeps its index at its end) may
   * open it instead of copying `open()`. Never the local source's own file:
   * that one may be rewritten after hashing, which only `open()` catches.
   */
  readonly localCopy?: string
  readonly signal: AbortSignal
  /** `filedge validate`: the file itself must be read (no replay). */
  readonly validating?: true
  /**
   * Keep each record's text (`RawBatch.texts`) and the header's
   * (`RawRows.headerText`): the pipeline quarantines bad records. A format
   * that cannot tell a record's text leaves them out.
   */
  readonly recordText?: true
}

/**
 * What `load` may answer instead of raw rows: rows already parsed and
 * coerced for this file under the same format and columns (the cache
 * replaying a file whose destination failed). They skip coercion and go
 * straight to `transform`.
 */
export interface ReplayedRows {
  readonly replayed: AsyncIterable<RowBatch>
}

/** A byte stream a source's `read` returned, as `sourceBytes` sees it. */
export interface SourceBytesContext {
  readonly pipeline: ResolvedPipeline
  readonly entry: SourceEntry
}

/** The coerced rows of a file being parsed (not replayed), as `parsedRows` sees them. */
export interface ParsedRowsContext {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly format: ResolvedFormat
}

/** A stage's output for a file, as `stageRows` is asked for it and `stageOutput` sees it: `hash` is the stage's. */
export interface StageRowsRequest {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly stage: string
  readonly hash: string
}

/** The `loaded` hook's question: does the pipeline's destination already hold this load of the file? */
export interface LoadedRequest {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly loadId: string
}

export interface TransformContext {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
}

export interface CommittedFile {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly rows: number
  readonly attempt: number
  readonly durationMs: number
  /** Set when nothing was loaded: the destination already held this load (its worker died before the ledger heard), and how. */
  readonly healed?: string
  /** Records the load set aside (quarantine), when there were any, and the sidecar holding them (absolute). */
  readonly quarantined?: number
  readonly sidecar?: string
}

export interface FailedFile {
  readonly pipeline: ResolvedPipeline
  readonly path: string
  readonly hash?: string
  readonly error: FiledgeError
  /** No attempts left: skipped by later runs until `filedge requeue`. */
  readonly terminal: boolean
}

export interface SkippedFile {
  readonly pipeline: ResolvedPipeline
  readonly path: string
  readonly hash?: string
  readonly reason: SkipReason
  readonly message: string
}

export interface ClaimedFile {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  readonly attempt: number
  readonly reclaimed: boolean
}

/** How many files of a pipeline wait for a slot in the ingest loop (listed or arrived, not started yet). */
export interface QueueDepth {
  readonly pipeline: ResolvedPipeline
  readonly waiting: number
}

export interface FileProgress {
  readonly pipeline: ResolvedPipeline
  readonly file: FileRef
  /** Rows handed to the destination so far. */
  readonly rows: number
}

export interface RunContext {
  readonly config: ResolvedConfig
  readonly worker: string
  readonly pipelines: readonly ResolvedPipeline[]
}

export interface RunSummary {
  readonly committed: number
  readonly failed: number
  readonly skipped: number
  /** Files the ledger saw for the first time. */
  readonly new: number
  /** Files taken over from an expired lease. */
  readonly reclaimed: number
  /** Files whose earlier attempt had failed. */
  readonly retried: number
  readonly rows: number
  /** Records set aside by quarantines, in the committed files. */
  readonly quarantined: number
  /** Files given back to the ledger unfinished: the run was stopping (a signal), or the destination stayed locked. */
  readonly released: number
  /** Committed files that needed no load: the destination already held them (counted in `committed` too). */
  readonly healed: number
  /** Pipelines whose source could not list (a missing bucket, wrong credentials): their files were not loaded. */
  readonly sourceErrors: number
  readonly durationMs: number
  /** Set when the run stopped before loading (schema drift, a plugin failing in beforeRun). */
  readonly aborted?: FiledgeError
  /**
   * Set when a watcher ends this config's session to start the edited one:
   * the counts so far, for plugins that flush per run; the watch goes on
   * (reporters print nothing for it).
   */
  readonly reloading?: true
}

/**
 * The hooks the core owns. Plugins tap them; nobody replaces them (the object
 * is frozen). A pipeline's source answers `list` (a run), then `watch`
 * (watch mode); each file then goes beforeHash → read (hashing) → stat →
 * claim → (loaded) → load → transform → commit → afterCommit → archive.
 * The others frame a run and feed reporters.
 */
export interface Hooks {
  readonly beforeRun: AsyncSeriesHook<[RunContext]>
  /** A pipeline's files: the source of the pipeline answers. */
  readonly list: AsyncSeriesBailHook<[ListRequest], AsyncIterable<SourceEntry> | undefined>
  /** Arrivals in a pipeline's source; undefined: nobody watches it, the core polls `list`. */
  readonly watch: AsyncSeriesBailHook<[WatchRequest], Watching | undefined>
  /** A file arrived or changed (watch mode), before it is queued. */
  readonly watchChange: SyncHook<[WatchChange]>
  /** A path's entry now; null: gone; undefined: the source cannot tell. */
  readonly stat: AsyncSeriesBailHook<[PathRequest], SourceEntry | null | undefined>
  /** The raw bytes of a listed file (hashing reads them; a cache may answer first). */
  readonly read: AsyncSeriesBailHook<[ReadRequest], Readable | undefined>
  /** The file on local disk, for readers that take a path (DuckDB's `read_csv`). */
  readonly locate: AsyncSeriesBailHook<[PathRequest], string | undefined>
  readonly beforeHash: AsyncSeriesBailHook<[FileCandidate], BeforeHashResult | undefined>
  readonly claim: AsyncSeriesBailHook<[ClaimRequest], ClaimOutcome | undefined>
  /** A file's rows: a format parses the claimed bytes (raw rows, coerced next), or a cache replays coerced ones. */
  readonly load: AsyncSeriesBailHook<[LoadRequest], RawRows | ReplayedRows | undefined>
  /**
   * Observes the bytes a source's `read` returned (hashing and loads read
   * them): a tap may wrap the stream to keep a copy (the cache keeps remote
   * files), and must pass every byte through unchanged.
   */
  readonly sourceBytes: SyncWaterfallHook<[Readable, SourceBytesContext]>
  /**
   * Observes a file's coerced rows as they are parsed (not when `load`
   * replayed them): a tap may wrap the stream to keep a copy, and must yield
   * every batch unchanged. Unlike `transform`, a tap here leaves a
   * destination free to read the file natively (it then never drains them).
   */
  readonly parsedRows: SyncWaterfallHook<[AsyncIterable<RowBatch>, ParsedRowsContext]>
  /** The output of a stage declared `cache: true` for a file, if a cache holds it under the stage's hash (the cache plugin answers). */
  readonly stageRows: AsyncSeriesBailHook<[StageRowsRequest], AsyncIterable<RowBatch> | undefined>
  /** The output of a stage declared `cache: true` as it is computed: a tap may keep a copy, and must yield every batch unchanged. */
  readonly stageOutput: SyncWaterfallHook<[AsyncIterable<RowBatch>, StageRowsRequest]>
  readonly transform: AsyncSeriesWaterfallHook<[AsyncIterable<RowBatch>, TransformContext]>
  readonly commit: AsyncSeriesBailHook<[WriteJob], WriteResult | undefined>
  /** The destination's load marker of a file, asked before loading it again after a gap; null: not there; undefined: nobody can tell. */
  readonly loaded: AsyncSeriesBailHook<[LoadedRequest], LoadMarker | null | undefined>
  readonly afterCommit: AsyncParallelHook<[CommittedFile]>
  /** `onCommitted`: delete or move the source's copy of a committed file; returns what was done. */
  readonly archive: AsyncSeriesBailHook<[ArchiveRequest], string | undefined>
  readonly fileClaimed: SyncHook<[ClaimedFile]>
  readonly fileProgress: SyncHook<[FileProgress]>
  /** The files waiting for a slot changed (the live view shows it). */
  readonly queue: SyncHook<[QueueDepth]>
  readonly fileSkipped: SyncHook<[SkippedFile]>
  readonly fileFailed: AsyncParallelHook<[FailedFile]>
  /** The ledger records it (`file:archived`); reporters show it. */
  readonly fileArchived: AsyncParallelHook<[ArchivedFile]>
  readonly afterRun: AsyncSeriesHook<[RunSummary]>
  /** Always called last, also after an aborted run: close connections here. */
  readonly close: AsyncParallelHook<[]>
  readonly log: SyncHook<[LogEntry]>
}

/**
 * The file a hook call is about, for error messages: the first argument's
 * `file.path`, `entry.path` or `path` (claim, read, stat, beforeHash…), else
 * the second argument's `file.path` (transform's context).
 */
function fileOf(args: unknown[]): string | undefined {
  for (const arg of args.slice(0, 2)) {
    if (typeof arg !== 'object' || arg === null) continue
    const { file, entry, path } = arg as { file?: { path?: unknown }; entry?: { path?: unknown }; path?: unknown }
    if (typeof file?.path === 'string') return file.path
    if (typeof entry?.path === 'string') return entry.path
    if (typeof path === 'string') return path
  }
  return undefined
}

/**
 * A stream whose errors are wrapped, as an iterator of its own rather than a
 * generator around the stream: a generator puts one more await between each
 * batch and the destination, on every file. After an error it ends.
 */
function attributed<T>(source: AsyncIterable<T>, wrap: (error: unknown) => FiledgeError): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      let iterator: AsyncIterator<T> | undefined
      let failed = false
      const fail = (error: unknown): never => {
        failed = true
        throw wrap(error)
      }
      const step = (take: () => Promise<IteratorResult<T>>): Promise<IteratorResult<T>> => {
        if (failed) return Promise.resolve({ done: true, value: undefined })
        try {
          return take().then(undefined, fail)
        } catch (error) {
          return new Promise(() => fail(error))
        }
      }
      return {
        next: () => step(() => (iterator ??= source[Symbol.asyncIterator]()).next()),
        return: (value?: unknown) => step(async () => (iterator === undefined || iterator.return === undefined ? { done: true, value: value as T } : iterator.return(value))),
      }
    },
  }
}

/** A stream of rows or entries; not a byte stream (a Readable is async-iterable too, and is handed on as it is). */
function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function' &&
    typeof (value as { pipe?: unknown }).pipe !== 'function'
  )
}

/**
 * Errors from a tap, and from the streams a tap returns (a transform's batches,
 * a format's rows), are wrapped with the tap's plugin name, the hook and the
 * file, so the user always learns who failed where.
 */
function attributeErrors(hookName: string, hook: { intercept(interceptor: object): void }): void {
  hook.intercept({
    register(tap: { name: string; type: string; fn: (...args: unknown[]) => unknown }) {
      const original = tap.fn
      const wrap = (args: unknown[]) => (error: unknown) => pluginError(tap.name, hookName, fileOf(args), error)
      const wrapResult = (args: unknown[], result: unknown): unknown => {
        // A waterfall tap that hands its input on untouched did nothing to it: the same object goes on (a transform that
        // skips a pipeline leaves its destination free to read the file natively).
        if (result === args[0]) return result
        if (isAsyncIterable(result)) return attributed(result, wrap(args))
        if (typeof result === 'object' && result !== null && isAsyncIterable((result as RawRows).batches)) {
          return { ...(result as RawRows), batches: attributed((result as RawRows).batches, wrap(args)) }
        }
        if (typeof result === 'object' && result !== null && isAsyncIterable((result as ReplayedRows).replayed)) {
          return { replayed: attributed((result as ReplayedRows).replayed, wrap(args)) }
        }
        return result
      }
      if (tap.type === 'promise') {
        tap.fn = (...args: unknown[]) => {
          let pending: unknown
          try {
            pending = original(...args)
          } catch (error) {
            return Promise.reject(wrap(args)(error))
          }
          return Promise.resolve(pending).then((result) => wrapResult(args, result), (error) => { throw wrap(args)(error) })
        }
      } else if (tap.type === 'async') {
        tap.fn = (...args: unknown[]) => {
          const callback = args.pop() as (error?: unknown, result?: unknown) => void
          try {
            original(...args, (error?: unknown, result?: unknown) =>
              error ? callback(wrap(args)(error)) : callback(undefined, wrapResult(args, result)),
            )
          } catch (error) {
            callback(wrap(args)(error))
          }
        }
      } else {
        tap.fn = (...args: unknown[]) => {
          try {
            return wrapResult(args, original(...args))
          } catch (error) {
            throw wrap(args)(error)
          }
        }
      }
      return tap
    },
  })
}

export function createHooks(): Hooks {
  const hooks: Hooks = {
    beforeRun: new AsyncSeriesHook(['run'], 'beforeRun'),
    list: new AsyncSeriesBailHook(['request'], 'list'),
    watch: new AsyncSeriesBailHook(['request'], 'watch'),
    watchChange: new SyncHook(['change'], 'watchChange'),
    stat: new AsyncSeriesBailHook(['request'], 'stat'),
    read: new AsyncSeriesBailHook(['request'], 'read'),
    locate: new AsyncSeriesBailHook(['request'], 'locate'),
    beforeHash: new AsyncSeriesBailHook(['candidate'], 'beforeHash'),
    claim: new AsyncSeriesBailHook(['request'], 'claim'),
    load: new AsyncSeriesBailHook(['request'], 'load'),
    sourceBytes: new SyncWaterfallHook(['bytes', 'context'], 'sourceBytes'),
    parsedRows: new SyncWaterfallHook(['rows', 'context'], 'parsedRows'),
    stageRows: new AsyncSeriesBailHook(['request'], 'stageRows'),
    stageOutput: new SyncWaterfallHook(['rows', 'request'], 'stageOutput'),
    transform: new AsyncSeriesWaterfallHook(['batches', 'context'], 'transform'),
    commit: new AsyncSeriesBailHook(['job'], 'commit'),
    loaded: new AsyncSeriesBailHook(['request'], 'loaded'),
    afterCommit: new AsyncParallelHook(['file'], 'afterCommit'),
    archive: new AsyncSeriesBailHook(['request'], 'archive'),
    fileClaimed: new SyncHook(['file'], 'fileClaimed'),
    fileProgress: new SyncHook(['progress'], 'fileProgress'),
    queue: new SyncHook(['depth'], 'queue'),
    fileSkipped: new SyncHook(['file'], 'fileSkipped'),
    fileFailed: new AsyncParallelHook(['file'], 'fileFailed'),
    fileArchived: new AsyncParallelHook(['file'], 'fileArchived'),
    afterRun: new AsyncSeriesHook(['summary'], 'afterRun'),
    close: new AsyncParallelHook([], 'close'),
    log: new SyncHook(['entry'], 'log'),
  }
  for (const [name, hook] of Object.entries(hooks)) {
    if (name !== 'log') attributeErrors(name, hook)
  }
  return Object.freeze(hooks)
}

export { isFiledgeError }
