import type { Readable } from 'node:stream'
import type { ResolvedConfig } from './config/types.js'
import type { LedgerStore } from './ledger/types.js'
import type { Logger } from './logger.js'

/**
 * One file a source holds, as its listing sees it. The core hashes the bytes
 * (SHA-256 is the file's identity); nothing here needs to be a content hash.
 */
export interface SourceEntry {
  /**
   * Names the file in the ledger, in events and in messages. Stable across
   * runs and unique across sources: the local source gives the path relative
   * to the project root (`incoming/a.csv`); remote sources name their store
   * (`s3://bucket/in/a.csv`, `sftp://host/drop/a.csv`). Never a secret.
   */
  readonly path: string
  readonly size: number
  /**
   * What the store says about this copy of the bytes, opaque to the core: a
   * rewrite or a new file at the path changes it. Locally mtime and inode;
   * an ETag or a generation remotely. Keys the stat cache with `path`, and
   * tells a new arrival of known bytes from the same arrival seen again.
   */
  readonly version: string
  /** Last modification, in ms since the epoch. */
  readonly modifiedAt: number
}

export interface SourceCapabilities {
  /**
   * A version names exactly one content (an ETag, a generation number), and
   * `read` refuses (FILE_CHANGED) to give another version's bytes. The stat
   * cache then trusts a version at once, and the core does not `stat` a file
   * after reading it. Without it (an mtime), a file hashed within 2 s of its
   * last modification is hashed again by the next run: a same-size rewrite
   * inside the clock's granularity would keep the version.
   */
  readonly exactVersions?: boolean
}

export interface SourceContext {
  readonly config: ResolvedConfig
  readonly logger: Logger
  /**
   * The include patterns to use when the source's own options name none:
   * every extension of the pipeline's format (of every format filedge knows
   * when the pipeline detects it per file). Match with `sourceMatcher`.
   */
  readonly defaultInclude: readonly string[]
  /** The names of the pipelines this source serves (one, unless a source object is shared). Set by runs. */
  readonly pipelines?: readonly string[]
  /**
   * The run's ledger and this process's worker id, for a source that keeps
   * state of its own there: the fetch source's cursor and the lease that
   * lets one process fetch at a time. A source must not touch file records.
   * Set by runs and `filedge fetch`; a source that needs them says so when
   * they are missing.
   */
  readonly ledger?: LedgerStore
  readonly worker?: string
}

/**
 * Where a file came from before it was a file, as `filedge lineage` shows it:
 * the fetch source names the API pages behind each file it wrote.
 */
export interface FileOrigin {
  /** One line, safe to print: `GET https://api.example.com/v1/orders · pages 1–3 · 250 records`. */
  readonly summary: string
  /** The same for machines (`filedge lineage --json`): what the source recorded, secrets left out. */
  readonly details: Readonly<Record<string, unknown>>
}

export interface ListOptions {
  /** Aborted when the run stops: end the listing early. */
  readonly signal: AbortSignal
  /** Hears what the listing leaves out and why (a link out of the directory). */
  warn(message: string): void
}

export interface WatchOptions {
  /** Aborted when watching stops (then `close` is called too). */
  readonly signal: AbortSignal
  /** How long a file's size must stay the same before it counts as written (`watch.settle`). */
  readonly settleMs: number
  /** A file arrived or changed: its entry as the store has it now. Calling it twice for one version is harmless. */
  onEntry(entry: SourceEntry): void
  warn(message: string): void
}

export interface Watching {
  close(): Promise<void>
}

export interface ReadOptions {
  readonly signal: AbortSignal
}

/** What `onCommitted` asks of a committed file's copy in the source. */
export type ArchiveAction = { readonly kind: 'delete' } | { readonly kind: 'move'; readonly to: string }

/**
 * A source is a small object built by a factory (`s3({ bucket })`), one per
 * pipeline, the way a destination is. The core adapts it into a plugin that
 * taps the source hooks (`list`, `watch`, `stat`, `read`, `locate`,
 * `archive`). Contract (checked by `filedge/testing`'s `testSource`):
 * - `list` yields every file of the pipeline, once each, paginating a
 *   remote store as it goes; what it yields must be readable by `read`.
 * - `read` gives the bytes of the entry. A source that can tell the store
 *   holds another version now (an ETag that differs) throws FILE_CHANGED
 *   (`fileChanged`); a file that is gone throws FILE_GONE (`fileGone`). Both
 *   skip the file for this run: it is not failed.
 * - `stat` (optional) gives a path's entry now, or undefined if it is gone.
 *   The core asks it after hashing, so bytes read from a file still being
 *   written (its version moved) are not claimed, and for paths a watcher
 *   reports. Stores whose objects appear whole (S3) need not have it.
 * - `watch` (optional) reports arrivals; without it the core polls `list`.
 * - `localPath` (optional) names the file on local disk: a destination that
 *   reads files itself (DuckDB's `read_csv`) reads it there. Remote files
 *   over 1 MiB are spooled to local disk while they are hashed, so they are
 *   downloaded once and have a local path too.
 * - `archive` (optional) deletes or moves a committed file (`onCommitted`).
 *   It acts only if the path still holds `entry.version` (never removes
 *   bytes that arrived since), is idempotent (a file already gone is done),
 *   and returns what it did, for the ledger's event.
 * - `describeFile` (optional) says where a listed file came from, for
 *   `filedge lineage`; it is called without `connect`, so it reads only what
 *   the source keeps locally (under `root`, the project root).
 * Errors never carry secrets: name the source with `describe()`.
 */
export interface Source {
  /** Short name for messages and the plugin's name: `local`, `s3`, `sftp`… */
  readonly name: string
  readonly capabilities?: SourceCapabilities
  /** Where it reads, safe to print: `s3://bucket/in/`, `sftp://user@host:22/drop`. */
  describe(): string
  /**
   * Called on first use, before listing: connect, check credentials. A
   * failure fails this source's pipelines (their listings report it), not
   * the run, and the next use (a watcher's next poll) calls it again.
   */
  connect?(ctx: SourceContext): Promise<void>
  list(options: ListOptions): AsyncIterable<SourceEntry>
  watch?(options: WatchOptions): Promise<Watching>
  stat?(path: string): Promise<SourceEntry | undefined>
  read(entry: SourceEntry, options: ReadOptions): Promise<Readable>
  localPath?(path: string): string | undefined
  archive?(entry: SourceEntry, action: ArchiveAction): Promise<string>
  describeFile?(path: string, context: { readonly root: string }): Promise<FileOrigin | undefined>
  /**
   * Whether the source answers, for `filedge healthcheck`: a cheap probe (a
   * stat of the directory, a one-key listing, a stat over SFTP), connecting
   * first if `connect` has not. It reads no file and changes nothing; what it
   * opens, `close` ends. A failure throws saying what is wrong, never a secret.
   */
  healthcheck?(ctx: SourceContext): Promise<void>
  close?(): Promise<void>
}

/** Types only: gives a source object its type without changing it. */
export function defineSource<S extends Source>(source: S): S {
  return source
}
