import { mkdirSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { ClaimInput, ClaimResult, FileState, LeaseKey, LedgerEvent, LedgerEventName, LedgerFile, LedgerStore, Quarantined, StatusCounts } from '../types.js'
import { ledgerDb, type FileRow, type LedgerDb } from './db.js'
import { SQLITE_MIGRATIONS } from './migrations.js'
import { claim } from './sql/claim.js'
import { archived } from './sql/archived.js'
import { replayed, replaysTo } from './sql/replayed.js'
import { complete } from './sql/complete.js'
import { fail } from './sql/fail.js'
import { committedFiles, eventsOf, failedFiles, findFiles, pathsOf } from './sql/find.js'
import { heartbeat, holds } from './sql/heartbeat.js'
import { lastPondSuccess, pondEvents, pondOutcomes, recordPond } from './sql/pond.js'
import { advanceCursor, cursorEvents, cursorOf } from './sql/cursor.js'
import { leaseHeld, releaseLease, renewLease, takeLease } from './sql/lease.js'
import { release } from './sql/release.js'
import { settledStats } from './sql/stats.js'
import { sqliteSnapshot } from './sql/export.js'
import { requeue } from './sql/requeue.js'
import { countStates, recentFailures } from './sql/status.js'

/**
 * The WAL is copied back into the database (a checkpoint: the pages written
 * since the last one, and an fsync of each file) every this many pages, not
 * SQLite's default 1,000. A ledger rewrites the same few pages for every file
 * (the files, paths and events tables and their indexes), and a checkpoint
 * writes each page once however often it changed since the last: over 5,000
 * small files the default checkpointed 35 times, each stalling the event loop
 * for its writes and two fsyncs. Checkpoints are invisible to durability: a
 * committed transaction is in the WAL. The WAL grows to ~40 MB between
 * checkpoints (and goes when the last connection closes).
 */
const WAL_CHECKPOINT_PAGES = 10_000

/**
 * Durability: WAL with synchronous=NORMAL. A power cut may lose the last few
 * records, never corrupt the file: that only loads or heals those files
 * again, because the destination keeps one copy of a load whatever the ledger
 * forgot (its load marker). Completions asked to be durable (a plugin acts on
 * the COMMITTED record in `afterCommit`: archives or deletes the source file,
 * notifies) commit with synchronous=FULL; those arriving in the same
 * event-loop turn share that fsync, which also makes every earlier record
 * durable (the WAL is written in order). Not always: better-sqlite3 is
 * synchronous, so the fsync stalls the event loop, and measured over 2,000
 * small files it took the ledger's transactions from 0.62 to 1.17 s of CPU
 * profile (the run about 8% slower) for a record nothing needed.
 */
const PRAGMAS = ['journal_mode = WAL', 'synchronous = NORMAL', 'busy_timeout = 30000', 'foreign_keys = ON', `wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`]

function migrate(ledger: LedgerDb): void {
  const { db } = ledger
  db.exec('CREATE TABLE IF NOT EXISTS filedge_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)')
  const apply = db.transaction(() => {
    const current = (db.prepare('SELECT COALESCE(MAX(version), 0) AS version FROM filedge_migrations').get() as { version: number }).version
    for (const migration of SQLITE_MIGRATIONS) {
      if (migration.version <= current) continue
      db.exec(migration.sql)
      db.prepare('INSERT INTO filedge_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, new Date().toISOString())
    }
  })
  // IMMEDIATE: two workers starting at once must not both run migration 1.
  apply.immediate()
}

function toFile(ledger: LedgerDb, row: FileRow): LedgerFile {
  return {
    pipeline: row.pipeline,
    hash: row.hash,
    path: row.path,
    paths: pathsOf(ledger, row.pipeline, row.hash),
    size: row.size,
    state: row.state as FileState,
    attempts: row.attempts,
    lapses: row.lapses,
    loadId: row.load_id,
    rows: row.rows,
    error: row.error,
    worker: row.worker,
    leaseExpiresAt: row.lease_expires_at === null ? null : new Date(row.lease_expires_at).toISOString(),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    committedAt: row.committed_at,
    code: row.code,
    quarantined: row.quarantined === null ? null : Number(row.quarantined),
    sidecar: row.sidecar,
  }
}

function toEvent(row: ReturnType<typeof eventsOf>[number]): LedgerEvent {
  return {
    id: row.id,
    at: row.at,
    pipeline: row.pipeline,
    hash: row.hash,
    event: row.event as LedgerEventName,
    fromState: row.from_state as FileState | null,
    toState: row.to_state as FileState | null,
    attempt: row.attempt,
    worker: row.worker,
    path: row.path,
    error: row.error,
    quarantined: row.quarantined,
  }
}

export interface SqliteLedgerOptions {
  /** Milliseconds since the epoch; tests move time forward to expire leases. */
  readonly now?: () => number
}

export function openSqliteLedger(file: string, options: SqliteLedgerOptions = {}): LedgerStore {
  mkdirSync(path.dirname(file), { recursive: true })
  const db = new Database(file)
  for (const pragma of PRAGMAS) db.pragma(pragma)
  const ledger = ledgerDb(db)
  migrate(ledger)
  const now = options.now ?? Date.now
  const immediate = <A extends unknown[], R>(fn: (...args: A) => R) => {
    const transaction = db.transaction(fn)
    return (...args: A): R => transaction.immediate(...args)
  }
  // Claims that arrive in the same event-loop turn share one transaction, as completions do: the runner starts
  // the files a finished group freed together, and a small local file reaches its claim without leaving the turn.
  // Measured over 5,000 small files: a transaction per claim rewrote the same ledger pages (files, file_paths,
  // file_stats, events and their indexes) in the WAL once per file, and the WAL's checkpoints (each an fsync)
  // came every few dozen files. A claim that throws rolls the whole batch back, and each of its claims then runs
  // in a transaction of its own, so the error reaches that claim alone and nothing of it is left in the others'
  // transaction. (A savepoint per claim would isolate them too, but cost ~80 µs a claim, nearly its whole work.)
  const claimTx = immediate(claim)
  const claimAll = immediate((batch: readonly { input: ClaimInput }[], at: number) => batch.map(({ input }) => claim(ledger, input, at)))
  let claims: { input: ClaimInput; resolve: (result: ClaimResult) => void; reject: (error: unknown) => void }[] = []
  const flushClaims = () => {
    const batch = claims
    claims = []
    const at = now()
    let results: ClaimResult[] | undefined
    try {
      results = claimAll(batch, at)
    } catch (error) {
      // The ledger stayed locked past the busy timeout: so would it for each claim alone.
      if (batch.length === 1 || (error as { code?: string }).code === 'SQLITE_BUSY') return batch.forEach((entry) => entry.reject(error))
    }
    if (results !== undefined) return batch.forEach((entry, index) => entry.resolve(results[index]))
    for (const entry of batch) {
      try {
        entry.resolve(claimTx(ledger, entry.input, at))
      } catch (error) {
        entry.reject(error)
      }
    }
  }
  // Completions that arrive in the same event-loop turn share one transaction: a group commit in the
  // destination finishes several files at once, and each still gets its own fenced UPDATE and event.
  const completeAll = immediate((batch: readonly { key: LeaseKey; rows: number; healed?: string; code?: string; quarantined?: Quarantined }[], at: number) =>
    batch.map(({ key, rows, healed, code, quarantined }) => complete(ledger, key, rows, at, healed, code, quarantined)),
  )
  let completions: { key: LeaseKey; rows: number; healed?: string; code?: string; quarantined?: Quarantined; durable: boolean; resolve: (done: boolean) => void; reject: (error: unknown) => void }[] = []
  const durably = <T>(fn: () => T): T => {
    db.pragma('synchronous = FULL')
    try {
      return fn()
    } finally {
      db.pragma('synchronous = NORMAL')
    }
  }
  const flushCompletions = () => {
    const batch = completions
    completions = []
    try {
      const at = now()
      const results = batch.some((entry) => entry.durable) ? durably(() => completeAll(batch, at)) : completeAll(batch, at)
      batch.forEach((entry, index) => entry.resolve(results[index]))
    } catch (error) {
      for (const entry of batch) entry.reject(error)
    }
  }
  const failTx = immediate(fail)
  const releaseTx = immediate(release)
  const requeueTx = immediate(requeue)
  const archivedTx = immediate(archived)
  const replayedTx = immediate(replayed)
  const advanceCursorTx = immediate(advanceCursor)

  return {
    kind: 'sqlite',
    describe: () => `sqlite:${file}`,
    claim: (input) =>
      new Promise<ClaimResult>((resolve, reject) => {
        claims.push({ input, resolve, reject })
        if (claims.length === 1) setImmediate(flushClaims)
      }),
    settledStats: async (pipeline, maxAttempts) => settledStats(ledger, pipeline, maxAttempts),
    heartbeat: async (key, ttlMs) => heartbeat(ledger, key, ttlMs, now()),
    holds: async (key) => holds(ledger, key),
    complete: (key, rows, options = {}) =>
      new Promise<boolean>((resolve, reject) => {
        completions.push({ key, rows, healed: options.healed, code: options.code, quarantined: options.quarantined, durable: options.durable === true, resolve, reject })
        if (completions.length === 1) setImmediate(flushCompletions)
      }),
    fail: async (key, error, maxAttempts, exhausted) => failTx(ledger, key, error, maxAttempts, now(), exhausted),
    release: async (key) => releaseTx(ledger, key, now()),
    recordCode: async (pipeline, code, stages) =>
      void ledger.statement('INSERT OR IGNORE INTO codes (pipeline, code, stages, first_seen_at) VALUES (?, ?, ?, ?)').run(pipeline, code, stages, new Date(now()).toISOString()),
    codeOf: async (pipeline, code) => (ledger.statement('SELECT stages FROM codes WHERE pipeline = ? AND code = ?').get(pipeline, code) as { stages: string } | undefined)?.stages,
    archived: async (pipeline, hash, path, worker, what) => archivedTx(ledger, pipeline, hash, path, worker, what, now()),
    replayed: async (pipeline, hash, loadId, path, worker, what) => replayedTx(ledger, pipeline, hash, loadId, path, worker, what, now()),
    replaysTo: async (path) => (replaysTo(ledger, path) as Parameters<typeof toEvent>[0][]).map(toEvent),
    async status(maxAttempts, recent = 10) {
      const byPipeline = new Map<string, { -readonly [K in keyof StatusCounts]: StatusCounts[K] }>()
      for (const row of countStates(ledger, now())) {
        let counts = byPipeline.get(row.pipeline)
        if (counts === undefined) {
          counts = { pipeline: row.pipeline, PENDING: 0, PROCESSING: 0, COMMITTED: 0, FAILED: 0, terminal: 0, expired: 0, rows: 0, quarantined: 0 }
          byPipeline.set(row.pipeline, counts)
        }
        counts[row.state as FileState] += row.files
        counts.expired += row.expired
        if (row.state === 'COMMITTED') {
          counts.rows += row.rows
          counts.quarantined += row.quarantined
        }
        if (row.state === 'FAILED' && row.attempts >= maxAttempts(row.pipeline)) counts.terminal += row.files
      }
      return { pipelines: [...byPipeline.values()], recentFailures: recentFailures(ledger, recent).map((row) => toFile(ledger, row)) }
    },
    async find(ref) {
      return findFiles(ledger, ref).map((row) => toFile(ledger, row))
    },
    async committedHashes(pipelines) {
      const select = ledger.statement(`SELECT hash, committed_at FROM files WHERE pipeline = ? AND state = 'COMMITTED'`)
      return pipelines.flatMap((pipeline) => (select.all(pipeline) as { hash: string; committed_at: string }[]).map((row) => ({ pipeline, hash: row.hash, committedAt: row.committed_at })))
    },

    async committed(pipelines) {
      return committedFiles(ledger, pipelines).map((row) => toFile(ledger, row))
    },
    async events(pipeline, hash) {
      return eventsOf(ledger, pipeline, hash).map(toEvent)
    },
    recordPond: async (event) => recordPond(ledger, event, now()),
    pondEvents: async (filter = {}) => pondEvents(ledger, filter),
    pondOutcomes: async () => pondOutcomes(ledger),
    lastPondSuccess: async (pond) => lastPondSuccess(ledger, pond),
    takeLease: async (name, worker, ttlMs) => takeLease(ledger, name, worker, ttlMs, now()),
    renewLease: async (name, token, ttlMs) => renewLease(ledger, name, token, ttlMs, now()),
    releaseLease: async (name, token) => releaseLease(ledger, name, token),
    takePondLease: async (pond, worker, ttlMs) => takeLease(ledger, `pond:${pond}`, worker, ttlMs, now()),
    renewPondLease: async (pond, token, ttlMs) => renewLease(ledger, `pond:${pond}`, token, ttlMs, now()),
    releasePondLease: async (pond, token) => releaseLease(ledger, `pond:${pond}`, token),
    leaseHeld: async (name) => leaseHeld(ledger, name, now()),
    pondLeaseHeld: async (pond) => leaseHeld(ledger, `pond:${pond}`, now()),
    cursorOf: async (source) => cursorOf(ledger, source),
    cursorEvents: async (source, limit) => cursorEvents(ledger, source, limit),
    advanceCursor: async (input) => advanceCursorTx(ledger, input, now()),
    snapshot: async () => sqliteSnapshot(file, now()),
    async requeue(target, worker) {
      const files = 'failed' in target ? failedFiles(ledger, target.pipelines) : target.files
      const result = requeueTx(ledger, files, worker, now())
      return {
        requeued: result.requeued.map((row) => toFile(ledger, row)),
        refused: result.refused.map(({ row, reason }) => ({ file: toFile(ledger, row), reason })),
      }
    },
    async close() {
      if (db.open) db.close()
    },
  }
}
