import pg from 'pg'
import { FiledgeError, describeError } from '../../errors.js'
import { redact } from '../../secrets.js'
import { createSchemaIfMissing } from '../../sql.js'
import type { FileState, LedgerEvent, LedgerFile, LedgerStore, StatusCounts } from '../types.js'
import { inTransaction } from '../../sql.js'
import { tablesIn, transaction, type FileRow, type Tables } from './db.js'
import { POSTGRES_MIGRATIONS } from './migrations.js'
import { claim } from './sql/claim.js'
import { archived } from './sql/archived.js'
import { replayed, replaysTo } from './sql/replayed.js'
import { complete } from './sql/complete.js'
import { fail } from './sql/fail.js'
import { committedFiles, eventsOf, failedFiles, findFiles, type EventRow } from './sql/find.js'
import { heartbeat, holds } from './sql/heartbeat.js'
import { lastPondSuccess, pondEvents, pondOutcomes, recordPond } from './sql/pond.js'
import { advanceCursor, cursorEvents, cursorOf } from './sql/cursor.js'
import { leaseHeld, releaseLease, renewLease, takeLease } from './sql/lease.js'
import { release } from './sql/release.js'
import { knownStats, settledStats } from './sql/stats.js'
import { postgresSnapshot } from './sql/export.js'
import { requeue } from './sql/requeue.js'
import { countStates, recentFailures } from './sql/status.js'

/**
 * Connections per worker process. Ledger statements are short (a claim is a
 * handful of indexed statements), so a few connections serve a worker with
 * many files in flight; more would only eat into the server's
 * max_connections when many workers share one ledger.
 */
const POOL_SIZE = 4

/**
 * Durability: ledger sessions run with synchronous_commit = off, except for
 * completions and failures, which commit synchronously. What a server crash
 * can undo is then the last fraction of a second (up to three times
 * wal_writer_delay) of claims, heartbeats and releases — never corrupt them —
 * and each of those is safe to lose:
 * - a lost claim or heartbeat lets another worker claim the file while the
 *   first may still be loading it: the first is fenced out of the ledger (its
 *   token no longer matches) and of the destination (the lease check before
 *   COMMIT; the per-hash lock and the load marker keep one copy of the rows);
 * - a lost release leaves the file PROCESSING until its lease expires: a
 *   lapse, reclaimed by the next run, not an attempt.
 * A COMMITTED record is never lost once `complete` resolved, because
 * `afterCommit` taps (archiving or deleting the source file, notifications)
 * act on it; and a FAILED one is never lost once reported. Measured when
 * every statement waited for its WAL flush: a third of the ledger's time in a
 * 2-worker run went to WALWrite and WALSync waits; claims are two of a file's
 * four ledger commits and heartbeats the rest.
 *
 * Named leases (ponds, fetch sources) and cursor advances commit
 * synchronously too, but for releasing a lease. For ponds: a pond
 * writes a handful of records a run, not a file's four, and nothing fences a
 * pond run the way a destination fences a file, so a lost take or renewal
 * would let a second worker run the pond while the first still does, and a
 * lost event would drop a run from the history. A lost release only keeps
 * the pond leased until the lease expires.
 */
const SESSION_OPTIONS = '-c synchronous_commit=off'
/** How outcomes begin: their COMMIT waits for the WAL flush whatever the session's setting. */
const DURABLE = 'BEGIN; SET LOCAL synchronous_commit TO on'

async function migrate(pool: pg.Pool, t: Tables, schema: string): Promise<void> {
  await transaction(pool, async (tx) => {
    // Many workers starting at once against a new ledger: one migrates, the others wait and find it done.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('filedge ledger migrations ' || $1, 0))`, [schema])
    // A destination may be creating the same schema right now: see createSchemaIfMissing.
    await createSchemaIfMissing(tx, schema)
    await tx.query(`SELECT set_config('search_path', $1, true)`, [t.schema])
    await tx.query(`CREATE TABLE IF NOT EXISTS ${t.migrations} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await tx.query<{ version: number }>(`SELECT COALESCE(max(version), 0) AS version FROM ${t.migrations}`)
    const current = rows[0].version
    const known = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1].version
    if (current > known) {
      throw new FiledgeError('CONFIG_INVALID', `ledger schema "${schema}" is at migration ${current}, newer than this filedge knows (${known}); upgrade filedge`)
    }
    for (const migration of POSTGRES_MIGRATIONS) {
      if (migration.version <= current) continue
      await tx.query(migration.sql)
      await tx.query(`INSERT INTO ${t.migrations} (version) VALUES ($1)`, [migration.version])
    }
  })
}

const iso = (value: Date | null): string | null => (value === null ? null : value.toISOString())

function toFile(row: FileRow): LedgerFile {
  return {
    pipeline: row.pipeline,
    hash: row.hash,
    path: row.path,
    paths: row.paths,
    size: Number(row.size),
    state: row.state as FileState,
    attempts: row.attempts,
    lapses: row.lapses,
    loadId: row.load_id,
    rows: row.rows === null ? null : Number(row.rows),
    error: row.error,
    worker: row.worker,
    leaseExpiresAt: iso(row.lease_expires_at),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    committedAt: iso(row.committed_at),
    code: row.code,
    quarantined: row.quarantined === null ? null : Number(row.quarantined),
    sidecar: row.sidecar,
  }
}

function toEvent(row: EventRow): LedgerEvent {
  return {
    id: Number(row.id),
    at: row.at.toISOString(),
    pipeline: row.pipeline,
    hash: row.hash,
    event: row.event,
    fromState: row.from_state as FileState | null,
    toState: row.to_state as FileState | null,
    attempt: row.attempt,
    worker: row.worker,
    path: row.path,
    error: row.error,
    quarantined: row.quarantined === null ? null : Number(row.quarantined),
  }
}

export interface PostgresLedgerOptions {
  /** `public` or any schema name; created if missing. Several ledgers can share a database under different schemas. */
  readonly schema: string
  /**
   * Milliseconds since the epoch, used instead of the database's clock. Tests
   * only: in production every worker must judge leases by the one clock they
   * share, the server's.
   */
  readonly now?: () => number
}

/** Opens (and migrates) the Postgres ledger. `url` may hold a password: it never appears in messages. */
export async function openPostgresLedger(url: string, options: PostgresLedgerOptions): Promise<LedgerStore> {
  const { schema } = options
  const t = tablesIn(schema)
  const where = `${redact(url)} (schema ${schema})`
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, application_name: 'filedge ledger', options: SESSION_OPTIONS })
  // An idle connection the server dropped (restart, failover) is discarded by pg; the next query opens a new one.
  // Without a listener the 'error' event would crash the worker.
  pool.on('error', () => undefined)
  try {
    await migrate(pool, t, schema)
  } catch (error) {
    await pool.end().catch(() => undefined)
    throw error instanceof FiledgeError ? error : new FiledgeError('INTERNAL', `ledger ${where}: cannot open: ${describeError(error)}`, { cause: error })
  }
  const at = (): string | null => (options.now === undefined ? null : new Date(options.now()).toISOString())

  return {
    kind: 'postgres',
    describe: () => `postgres ${where}`,
    claim: (input) => claim(pool, t, input, at()),
    settledStats: (pipeline, maxAttempts) => settledStats(pool, t, pipeline, maxAttempts),
    knownStats: (pipeline, paths, maxAttempts) => knownStats(pool, t, pipeline, paths, maxAttempts, at()),
    archived: (pipeline, hash, path, worker, what) => archived(pool, t, pipeline, hash, path, worker, what, at()),
    replayed: (pipeline, hash, loadId, path, worker, what) => replayed(pool, t, pipeline, hash, loadId, path, worker, what, at()),
    replaysTo: async (path) => (await replaysTo(pool, t, path)).map(toEvent),
    heartbeat: (key, ttlMs) => heartbeat(pool, t, key, ttlMs, at()),
    holds: (key) => holds(pool, t, key),
    // Always synchronous, whatever `durable` says: the worker waits for the server's flush without blocking its event loop.
    complete: (key, rows, options = {}) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => complete(tx, t, key, rows, at(), options.healed, options.code, options.quarantined)),
    fail: (key, error, maxAttempts, exhausted) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => fail(tx, t, key, error, maxAttempts, at(), exhausted)),
    release: (key) => release(pool, t, key, at()),
    async recordCode(pipeline, code, stages) {
      await pool.query(`INSERT INTO ${t.codes} (pipeline, code, stages) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [pipeline, code, stages])
    },
    async codeOf(pipeline, code) {
      const { rows } = await pool.query<{ stages: string }>(`SELECT stages FROM ${t.codes} WHERE pipeline = $1 AND code = $2`, [pipeline, code])
      return rows[0]?.stages
    },
    async status(maxAttempts, recent = 10) {
      const byPipeline = new Map<string, { -readonly [K in keyof StatusCounts]: StatusCounts[K] }>()
      for (const row of await countStates(pool, t, at())) {
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
      return { pipelines: [...byPipeline.values()], recentFailures: (await recentFailures(pool, t, recent)).map(toFile) }
    },
    async find(ref) {
      return (await findFiles(pool, t, ref)).map(toFile)
    },
    async committedHashes(pipelines) {
      const result = await pool.query<{ pipeline: string; hash: string; committed_at: Date }>(
        `SELECT pipeline, hash, committed_at FROM ${t.files} WHERE state = 'COMMITTED' AND pipeline = ANY($1)`,
        [[...pipelines]],
      )
      return result.rows.map((row) => ({ pipeline: row.pipeline, hash: row.hash, committedAt: iso(row.committed_at)! }))
    },

    async committed(pipelines) {
      return (await committedFiles(pool, t, pipelines)).map(toFile)
    },
    async events(pipeline, hash) {
      return (await eventsOf(pool, t, pipeline, hash)).map(toEvent)
    },
    recordPond: (event) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => recordPond(tx, t, event, at())),
    pondEvents: (filter = {}) => pondEvents(pool, t, filter),
    pondOutcomes: () => pondOutcomes(pool, t),
    lastPondSuccess: (pond) => lastPondSuccess(pool, t, pond),
    takeLease: (name, worker, ttlMs) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => takeLease(tx, t, name, worker, ttlMs, at())),
    renewLease: (name, token, ttlMs) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => renewLease(tx, t, name, token, ttlMs, at())),
    releaseLease: (name, token) => releaseLease(pool, t, name, token),
    takePondLease: (pond, worker, ttlMs) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => takeLease(tx, t, `pond:${pond}`, worker, ttlMs, at())),
    renewPondLease: (pond, token, ttlMs) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => renewLease(tx, t, `pond:${pond}`, token, ttlMs, at())),
    releasePondLease: (pond, token) => releaseLease(pool, t, `pond:${pond}`, token),
    leaseHeld: (name) => leaseHeld(pool, t, name, at()),
    pondLeaseHeld: (pond) => leaseHeld(pool, t, `pond:${pond}`, at()),
    cursorOf: (source) => cursorOf(pool, t, source),
    cursorEvents: (source, limit) => cursorEvents(pool, t, source, limit),
    advanceCursor: (input) => inTransaction(pool, DURABLE, (tx: pg.PoolClient) => advanceCursor(tx, t, input, at())),
    snapshot: () => postgresSnapshot(pool, t, at()),
    async requeue(target, worker) {
      const files = 'failed' in target ? await failedFiles(pool, t, target.pipelines) : target.files
      const result = await transaction(pool, (tx) => requeue(tx, t, files, worker, at()))
      return {
        requeued: result.requeued.map(toFile),
        refused: result.refused.map(({ row, reason }) => ({ file: toFile(row), reason })),
      }
    },
    async close() {
      if (pool.ended) return
      await pool.end()
    },
  }
}
