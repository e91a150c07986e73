/**
 * The audit ledger, independent of where it is stored (SQLite for one
 * machine, Postgres for many). One record per (pipeline, content hash) with
 * its current state, plus an append-only history of events.
 */

import { FiledgeError } from '../errors.js'
import type { LedgerSnapshot } from './export.js'

export const FILE_STATES = ['PENDING', 'PROCESSING', 'COMMITTED', 'FAILED'] as const
export type FileState = (typeof FILE_STATES)[number]

/** Event names, `area:outcome`. Every state change writes exactly one of these. */
export type LedgerEventName =
  | 'file:discovered'
  | 'file:alias'
  | 'file:claimed'
  | 'file:reclaimed'
  | 'file:retried'
  | 'file:committed'
  | 'file:failed'
  | 'file:released'
  | 'file:requeued'
  | 'file:healed'
  | 'file:reopened'
  /** Quarantined records of the file were written out as a new input file (`filedge quarantine replay`; no state change). */
  | 'file:replayed'
  /** What `onCommitted` did to the source's copy of a COMMITTED file (no state change). */
  | 'file:archived'

export interface LedgerFile {
  readonly pipeline: string
  readonly hash: string
  /** The path the file was first seen at; `paths` has every name the same bytes arrived under. */
  readonly path: string
  readonly paths: readonly string[]
  readonly size: number
  readonly state: FileState
  readonly attempts: number
  /** Leases that expired in a row (a worker stopped mid-load); reset by an outcome. */
  readonly lapses: number
  /** The current load's id: the destination's load marker carries it (see ClaimResult.loadId). */
  readonly loadId: string | null
  readonly rows: number | null
  readonly error: string | null
  readonly worker: string | null
  readonly leaseExpiresAt: string | null
  readonly createdAt: string
  readonly updatedAt: string
  readonly committedAt: string | null
  /** The code its committed rows were produced under: its pipeline's stages' hash (null: loaded without stages). */
  readonly code: string | null
  /** Records its committed load set aside (quarantine); null when none were. */
  readonly quarantined: number | null
  /** The sidecar holding them, relative to the project root when inside it. */
  readonly sidecar: string | null
}

/** What a load set aside, as the ledger records it. */
export interface Quarantined {
  readonly rows: number
  readonly sidecar: string
}

export interface LedgerEvent {
  readonly id: number
  readonly at: string
  readonly pipeline: string
  readonly hash: string
  readonly event: LedgerEventName
  readonly fromState: FileState | null
  readonly toState: FileState | null
  readonly attempt: number | null
  readonly worker: string | null
  readonly path: string | null
  readonly error: string | null
  /** file:committed and file:healed: records the load set aside (null: none). */
  readonly quarantined: number | null
}

export interface ClaimInput {
  readonly pipeline: string
  readonly hash: string
  readonly path: string
  readonly size: number
  readonly worker: string
  readonly maxAttempts: number
  /** Leases that may expire in a row before the file is terminally FAILED (`retry.lapses`). */
  readonly maxLapses: number
  readonly ttlMs: number
  /**
   * What the source says about this copy of the bytes (locally mtime and
   * inode): with `path`, it tells a new arrival of the same bytes from the
   * same arrival seen again.
   */
  readonly version?: string
  /**
   * A COMMITTED file whose bytes arrive again (a new path, or a new version at
   * a known path) is loaded again as a new load: truncate pipelines, where the
   * newest arrival must win even when its bytes equal an older snapshot's.
   */
  readonly reopenOnArrival?: boolean
  /**
   * Remember `(path, version, size) → hash` in the stat cache. False when
   * the version cannot vouch for the bytes (a plugin supplied the hash, or
   * an mtime-based version within the clock's granularity).
   */
  readonly remember?: boolean
}

/** What identifies a file's bytes without reading them: the source's version (mtime and inode, an ETag) and the size. */
export interface FileStat {
  readonly size: number
  readonly version: string
}

/**
 * A stat cache entry: this path, last seen with this version, had these
 * bytes, and the file with those bytes is settled (COMMITTED, or FAILED with
 * no attempts left), so a run that lists the same version may skip the file
 * without reading it.
 */
export interface SettledStat extends FileStat {
  readonly path: string
  readonly hash: string
  readonly state: 'COMMITTED' | 'FAILED'
  readonly attempts: number
}

/**
 * A stat cache entry whose file a live lease holds right now: another
 * worker is loading those bytes (see LedgerStore.knownStats).
 */
export interface HeldStat extends FileStat {
  readonly path: string
  readonly hash: string
  readonly state: 'PROCESSING'
  readonly worker: string | null
}

/**
 * Why a claim that took over a lapsed lease hands back a `lapsed` lease:
 * `lapses` expired in a row, `maxLapses` allowed. The same text for both stores.
 */
export function lapsedMessage(lapses: number, maxLapses: number, worker: string | null, attempt: number): string | undefined {
  if (lapses < maxLapses) return undefined
  return `lease expired ${lapses} times in a row (retry.lapses is ${maxLapses}): worker ${worker ?? '?'} stopped during attempt ${attempt}; a file that keeps stopping its workers is not retried`
}

export type ClaimResult =
  | {
      readonly status: 'claimed'
      readonly token: string
      readonly attempt: number
      /**
       * Identifies this load of the file: new when a load starts afresh (first
       * claim, requeue of a COMMITTED file, a reopened arrival), kept across
       * retries, reclaims and releases. The destination records it in its load
       * marker, inside the transaction that commits the rows.
       */
      readonly loadId: string
      readonly isNew: boolean
      readonly reclaimed: boolean
      readonly retried: boolean
      /** COMMITTED before, loaded again because its bytes arrived again (`reopenOnArrival`). */
      readonly reopened: boolean
      /**
       * This load may already be committed in the destination (a worker died or
       * lost its lease after the commit, or the commit's outcome was unknown):
       * ask the destination's load marker before loading.
       */
      readonly verify: boolean
      /**
       * Set when this claim took over a lease that expired `maxLapses` times in
       * a row: unless the destination has the load, the file is to be failed
       * terminally with this text instead of loaded.
       */
      readonly lapsed?: string
    }
  | { readonly status: 'skipped'; readonly reason: 'committed' | 'terminal' | 'held'; readonly isNew: boolean; readonly message: string }

/** Identifies a held lease. Every write with it is fenced: it only applies while the token is current. */
export interface LeaseKey {
  readonly pipeline: string
  readonly hash: string
  readonly token: string
  readonly worker: string
  readonly attempt: number
}

export interface StatusCounts {
  readonly pipeline: string
  readonly PENDING: number
  readonly PROCESSING: number
  readonly COMMITTED: number
  readonly FAILED: number
  /** FAILED with no attempts left (given each pipeline's `retry.attempts`). */
  readonly terminal: number
  /** PROCESSING whose lease has expired: a crashed worker's file, reclaimable. */
  readonly expired: number
  readonly rows: number
  /** Records set aside by the committed loads (quarantine). */
  readonly quarantined: number
}

export interface StatusReport {
  readonly pipelines: readonly StatusCounts[]
  readonly recentFailures: readonly LedgerFile[]
}

export interface RequeueResult {
  readonly requeued: readonly LedgerFile[]
  /** Files that could not be requeued, with why (a live lease, already pending). */
  readonly refused: readonly { readonly file: LedgerFile; readonly reason: string }[]
}

/**
 * Ponds (plugins/pond) record their runs here too, in a history of their own
 * that is never rewritten: `pond:*` events for a run of a pond, `ripple:*`
 * for each ripple (a table the pond builds) within it.
 */
export type PondEventName = 'pond:started' | 'pond:succeeded' | 'pond:passed' | 'pond:failed' | 'pond:blocked' | 'ripple:succeeded' | 'ripple:failed'
export type PondTrigger = 'pulse' | 'wave' | 'tide'

export interface PondEventInput {
  /** 'daily_revenue@1': the pond's name and major. */
  readonly pond: string
  /** Full semver of the deployed pond, '1.2.0'. */
  readonly version: string
  /** One id per pond run (uuid). */
  readonly runId: string
  readonly event: PondEventName
  /** For ripple:* events. */
  readonly ripple?: string
  /** The outlet whose demand caused the run. */
  readonly outlet: string
  readonly trigger: PondTrigger
  /** The run's F, ISO-8601 UTC with ms; stored and read back as ISO-8601 UTC with ms whatever offset it is given in. */
  readonly freshness: string
  /** Hash of what the run read (code + sources' data versions). */
  readonly inputVersion?: string
  /** The pond's output version after a success or pass. */
  readonly dataVersion?: string
  readonly error?: string
  /** Whole milliseconds: a fraction is rounded, so both stores keep the same number. */
  readonly durationMs?: number
  /** For ripple:succeeded: rows in the built table. */
  readonly rows?: number
  readonly worker: string
}

/** A pond event as read back; absent optionals are null. */
export interface PondEvent {
  readonly id: number
  /** ISO, written by the store's clock. */
  readonly at: string
  readonly pond: string
  readonly version: string
  readonly runId: string
  readonly event: PondEventName
  readonly ripple: string | null
  readonly outlet: string
  readonly trigger: PondTrigger
  readonly freshness: string
  readonly inputVersion: string | null
  readonly dataVersion: string | null
  readonly error: string | null
  readonly durationMs: number | null
  readonly rows: number | null
  readonly worker: string
}

export interface PondEventFilter {
  readonly pond?: string
  readonly runId?: string
  /** The newest `limit` events (still returned oldest first). */
  readonly limit?: number
}

/**
 * What both stores write for a pond event, in one shape: absent optionals
 * null, `freshness` normalised to ISO-8601 UTC with ms, `durationMs` whole.
 * Checked here, once, so a bad value fails the same way in both stores
 * instead of being kept by SQLite and refused by Postgres.
 */
export function pondEventValues(input: PondEventInput) {
  const fail = (what: string) => new FiledgeError('INTERNAL', `pond ${input.pond} event ${input.event}: ${what}`)
  const freshness = Date.parse(input.freshness)
  if (Number.isNaN(freshness)) throw fail(`freshness must be an ISO-8601 time; got ${JSON.stringify(input.freshness)}`)
  const durationMs = input.durationMs === undefined ? null : Math.round(input.durationMs)
  if (durationMs !== null && !Number.isSafeInteger(durationMs)) throw fail(`durationMs must be a number of milliseconds; got ${input.durationMs}`)
  const rows = input.rows ?? null
  if (rows !== null && !(Number.isSafeInteger(rows) && rows >= 0)) throw fail(`rows must be a whole number ≥ 0; got ${rows}`)
  return {
    pond: input.pond,
    version: input.version,
    runId: input.runId,
    event: input.event,
    ripple: input.ripple ?? null,
    outlet: input.outlet,
    trigger: input.trigger,
    freshness: new Date(freshness).toISOString(),
    inputVersion: input.inputVersion ?? null,
    dataVersion: input.dataVersion ?? null,
    error: input.error ?? null,
    durationMs,
    rows,
    worker: input.worker,
  }
}

/** `pondEvents`' limit, checked the same way for both stores (SQLite reads -1 as no limit, Postgres refuses it). */
export function pondEventLimit(filter: PondEventFilter): number | null {
  const limit = filter.limit ?? null
  if (limit !== null && !(Number.isSafeInteger(limit) && limit >= 0)) throw new FiledgeError('INTERNAL', `pondEvents: limit must be a whole number ≥ 0; got ${limit}`)
  return limit
}

/**
 * Cursors of sources that pull their files from somewhere that has no files
 * (an HTTP API: plugins/fetch), in a history that is never rewritten: every
 * advance is one `cursor:advanced` event, and a source's cursor is its
 * newest event's `to`. A cursor is the source's own text (JSON for the fetch
 * source), opaque to the ledger and never a secret.
 */
export type CursorEventName = 'cursor:advanced'

export interface CursorAdvanceInput {
  /** The source's id (the fetch source's `name`, else its pipeline's). */
  readonly source: string
  /** The named lease that fences the advance (`fetch:<source>`), and its token. */
  readonly lease: string
  readonly token: string
  /** The cursor the advance starts from: it must still be the current one (null: the source has none yet). */
  readonly from: string | null
  readonly to: string
  readonly worker: string
  /** The file the records between `from` and `to` were promoted into (its entry path), and its SHA-256; absent when there were none. */
  readonly file?: string
  readonly hash?: string
  readonly records: number
  readonly pages: number
}

export interface CursorEvent {
  readonly id: number
  /** ISO, written by the store's clock. */
  readonly at: string
  readonly source: string
  readonly event: CursorEventName
  readonly from: string | null
  readonly to: string
  readonly file: string | null
  readonly hash: string | null
  readonly records: number
  readonly pages: number
  readonly worker: string
}

/**
 * What `advanceCursor` did: appended the event, or nothing because the lease
 * token is no longer current (`lost`: another process took the source over)
 * or the cursor is no longer `from` (`moved`: someone advanced it meanwhile).
 */
export type CursorAdvance =
  | { readonly status: 'advanced'; readonly event: CursorEvent }
  | { readonly status: 'lost' }
  | { readonly status: 'moved'; readonly current: string | null }

/** `advanceCursor`'s input checked once for both stores: counts whole and ≥ 0, the file and its hash together. */
export function cursorAdvanceValues(input: CursorAdvanceInput) {
  const fail = (what: string) => new FiledgeError('INTERNAL', `cursor of ${input.source}: ${what}`)
  for (const key of ['records', 'pages'] as const) {
    if (!(Number.isSafeInteger(input[key]) && input[key] >= 0)) throw fail(`${key} must be a whole number ≥ 0; got ${input[key]}`)
  }
  if ((input.file === undefined) !== (input.hash === undefined)) throw fail('a file and its hash go together')
  return { ...input, file: input.file ?? null, hash: input.hash ?? null }
}

/** `cursorEvents`' limit, checked the same way for both stores (as pondEventLimit). */
export function cursorEventLimit(limit: number | undefined): number | null {
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit >= 0)) throw new FiledgeError('INTERNAL', `cursorEvents: limit must be a whole number ≥ 0; got ${limit}`)
  return limit ?? null
}

export interface LedgerStore {
  readonly kind: 'sqlite' | 'postgres'
  /** Where the ledger lives, safe to print. */
  describe(): string
  /** Registers the file if new (never racing: insert-or-ignore) and tries to take a lease on it. */
  claim(input: ClaimInput): Promise<ClaimResult>
  /**
   * The stat cache of a pipeline: every path whose last recorded stat points
   * at a settled file (COMMITTED, or FAILED with `maxAttempts` used). One
   * read for the whole run; a path absent here is hashed as usual.
   */
  settledStats(pipeline: string, maxAttempts: number): Promise<SettledStat[]>
  /**
   * The stat cache entries of these paths whose file is settled or held by
   * a live lease now (by the store's clock): what a worker sharing the
   * ledger asks before reading files, because another worker may have
   * claimed or committed them since its run read `settledStats`. Optional:
   * a store without it is not asked, and its files are read and claimed.
   */
  knownStats?(pipeline: string, paths: readonly string[], maxAttempts: number): Promise<(SettledStat | HeldStat)[]>
  /** Extends the lease; false if the token is no longer current. */
  heartbeat(key: LeaseKey, ttlMs: number): Promise<boolean>
  holds(key: LeaseKey): Promise<boolean>
  /**
   * PROCESSING → COMMITTED; false if the lease was lost (nothing written).
   * `healed`: the destination already held this load (its marker); the event
   * is `file:healed` with this text instead of `file:committed`. `durable`:
   * the record must survive a crash once this resolves, because something
   * acts on it (`afterCommit` plugins that archive, delete, notify); without
   * it a store may lose the record in a crash, which the load marker heals.
   */
  complete(key: LeaseKey, rows: number, options?: { readonly healed?: string; readonly durable?: boolean; readonly code?: string; readonly quarantined?: Quarantined }): Promise<boolean>
  /** Remembers what a pipeline's stages hash (`code`) was made of (`stages`, JSON), once: `filedge stages --why` compares with it. */
  recordCode(pipeline: string, code: string, stages: string): Promise<void>
  /** What `recordCode` remembered for a code, or undefined. */
  codeOf(pipeline: string, code: string): Promise<string | undefined>
  /**
   * PROCESSING → FAILED; `lost` if the lease was lost (nothing written).
   * `exhausted`: the file is terminal whatever its attempts (its lease
   * expired `maxLapses` times in a row): its attempts are raised to `maxAttempts`.
   */
  fail(key: LeaseKey, error: string, maxAttempts: number, exhausted?: boolean): Promise<{ readonly lost: boolean; readonly terminal: boolean }>
  /** PROCESSING → PENDING without counting the attempt. */
  release(key: LeaseKey): Promise<boolean>
  /** Records `file:archived` (what `onCommitted` did to the source's copy at `path`) for a COMMITTED file; false if it is not COMMITTED. */
  archived(pipeline: string, hash: string, path: string, worker: string, what: string): Promise<boolean>
  /**
   * Records `file:replayed` for a COMMITTED file: its quarantined records
   * (of load `loadId`) were written to `path` as a new input file, whose
   * hash `what` names. False, writing nothing, unless the file is COMMITTED
   * by that very load.
   */
  replayed(pipeline: string, hash: string, loadId: string, path: string, worker: string, what: string): Promise<boolean>
  /** The `file:replayed` events whose new file is at `path` (the lineage of a replayed file back to its original). */
  replaysTo(path: string): Promise<LedgerEvent[]>
  status(maxAttempts: (pipeline: string) => number, recentFailures?: number): Promise<StatusReport>
  /** Files matching a hash (or a unique prefix of at least 6 hex digits) or a path they were seen at. */
  find(ref: string): Promise<LedgerFile[]>
  events(pipeline: string, hash: string): Promise<LedgerEvent[]>
  /** The hash and commit time of every COMMITTED file of `pipelines`, without their paths: what a pond reads to version a pipeline's table. */
  committedHashes(pipelines: readonly string[]): Promise<{ readonly pipeline: string; readonly hash: string; readonly committedAt: string }[]>
  /** Every COMMITTED file (of `pipelines`, if given), oldest commit first: what a pipeline's table is made of. */
  committed(pipelines?: readonly string[]): Promise<LedgerFile[]>
  /** Back to PENDING with attempts reset. `failed`: every FAILED file (of `pipelines`, if given). */
  requeue(target: { readonly files: readonly { readonly pipeline: string; readonly hash: string }[] } | { readonly failed: true; readonly pipelines?: readonly string[] }, worker: string): Promise<RequeueResult>
  /** Appends one pond event (never updates or deletes one) and returns it as stored. */
  recordPond(event: PondEventInput): Promise<PondEvent>
  /** Pond events (of a pond, of a run), oldest first; with `limit`, the newest `limit` of them. */
  pondEvents(filter?: PondEventFilter): Promise<PondEvent[]>
  /** Per pond (name@major), by pond: its latest pond:started, pond:succeeded, pond:passed, pond:failed or pond:blocked. */
  pondOutcomes(): Promise<PondEvent[]>
  /** The latest pond:succeeded or pond:passed of a pond: its inputVersion and dataVersion are what a new run compares with. */
  lastPondSuccess(pond: string): Promise<PondEvent | undefined>
  /**
   * A named lease: one holder at a time for work only one process may do
   * (`pond:<pond>` runs a pond, `fetch:<source>` fetches a source). A fresh
   * token when the name is free or its lease expired (by the store's clock,
   * as file leases), undefined while another live lease holds it, whoever's
   * it is. Race-free between processes.
   */
  takeLease(name: string, worker: string, ttlMs: number): Promise<string | undefined>
  /** Extends the lease to now + ttl; false if the token is no longer current. */
  renewLease(name: string, token: string, ttlMs: number): Promise<boolean>
  /** Frees the name, only if the token is current (a newer holder's lease is left alone). */
  releaseLease(name: string, token: string): Promise<void>
  /** The named lease `pond:<pond>`: who may run a pond now. */
  takePondLease(pond: string, worker: string, ttlMs: number): Promise<string | undefined>
  renewPondLease(pond: string, token: string, ttlMs: number): Promise<boolean>
  releasePondLease(pond: string, token: string): Promise<void>
  /** Whether a live lease holds the name now (by the store's clock): `leaseHeld('pond:<pond>')` is a pond run in progress somewhere. */
  leaseHeld(name: string): Promise<boolean>
  /** Whether a live lease holds the pond now (a run in progress somewhere), by the store's clock. */
  pondLeaseHeld(pond: string): Promise<boolean>
  /** A source's newest cursor event (its cursor is the event's `to`), or undefined before its first advance. */
  cursorOf(source: string): Promise<CursorEvent | undefined>
  /** A source's cursor events, oldest first; with `limit`, the newest `limit` of them. */
  cursorEvents(source: string, limit?: number): Promise<CursorEvent[]>
  /**
   * Appends `cursor:advanced` from `input.from` to `input.to`, only while
   * `input.token` is the current token of the lease `input.lease` and the
   * source's cursor is still `input.from`: a process that lost its lease, or
   * raced another, cannot move the cursor. An advance a crash loses (SQLite
   * commits it with synchronous=NORMAL) leaves the cursor behind what was
   * promoted, never ahead: the source heals it (the fetch source from its
   * manifests).
   */
  advanceCursor(input: CursorAdvanceInput): Promise<CursorAdvance>
  /**
   * A consistent, read-only view of the whole ledger for bulk reads
   * (`filedge query`, the audit page): its tables in pages of columns,
   * filtered by the store (export.ts). Close it when done: it holds a read
   * transaction (and, for Postgres, a connection).
   */
  snapshot(): Promise<LedgerSnapshot>
  close(): Promise<void>
}
