import { rmSync } from 'node:fs'
import Database from 'better-sqlite3'
import pg from 'pg'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'

/**
 * A synthetic ledger of any size, written straight into the ledger's own
 * tables (migrated by the store first, so the schema is the real one) by
 * set-based INSERT … SELECT statements in one transaction: 1,000,000 files
 * take seconds, not the minutes a million claims would.
 *
 * Deterministic (same rows for the same options). Each file i belongs to one
 * of four pipelines and was discovered `spanDays` × i / files after the start
 * of the span, which ends at `now`. Its fate, from a mix of i:
 * - 96% COMMITTED: discovered, claimed, committed `durationMs` later, 1–9,999 rows;
 * - 2% FAILED, after 1 to 3 attempts (3 is terminal with retry.attempts 3),
 *   with one of a few reasons, each naming the file as real errors do;
 * - 1% PENDING (discovered, never claimed);
 * - 1% PROCESSING: half with a live lease, half with one that expired an
 *   hour ago (a worker that died: stuck).
 * Every file has its path in file_paths; every 50th has a second name.
 */
export interface SyntheticLedgerOptions {
  readonly files: number
  /** The end of the span, ms since the epoch. Default: now. */
  readonly now?: number
  readonly spanDays?: number
}

export const SYNTHETIC_PIPELINES = ['orders', 'customers', 'invoices', 'shipments'] as const

/** The reasons failed files fail with, `{path}` standing for the file's path. */
export const SYNTHETIC_REASONS = [
  '{path}:{line} column amount: cannot coerce "12,50" to float',
  '{path}:{line}: expected 6 fields, got 7',
  '{path}: lease lost (another worker reclaimed it while this worker was loading); this worker\'s outcome was discarded',
  'plugin "postgres" failed in commit for {path}: connection terminated unexpectedly',
] as const

/**
 * One row per file, computed from its number `i` alone: the dialects share it,
 * so both ledgers hold the same files. `mix` scrambles i (Knuth's
 * multiplicative hash) so that states, durations and sizes do not follow it.
 */
function fileColumns(dialect: 'sqlite' | 'postgres', startMs: number, stepMs: number): string {
  const pg = dialect === 'postgres'
  const mix = pg ? '((i::bigint * 2654435761) % 4294967296)' : '((i * 2654435761) % 4294967296)'
  const hex = (value: string, width: number) => (pg ? `lpad(to_hex(${value}), ${width}, '0')` : `printf('%0${width}x', ${value})`)
  const cat = (...parts: string[]) => parts.join(' || ')
  const pick = (list: readonly string[], index: string) => `(CASE ${index} ${list.map((item, n) => `WHEN ${n} THEN '${item.replace(/'/g, "''")}'`).join(' ')} END)`
  const pipelines = pick(SYNTHETIC_PIPELINES, '(i % 4)')
  const day = pg ? `to_char(to_timestamp((${startMs} + i * ${stepMs}) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')` : `strftime('%Y-%m-%d', (${startMs} + i * ${stepMs}) / 1000, 'unixepoch')`
  return `
    i,
    ${pipelines} AS pipeline,
    ${cat(hex('i', 8), hex(`(${mix} % 65536)`, 4), hex(mix, 8), `'${'0'.repeat(44)}'`)} AS hash,
    ${cat("'incoming/'", pipelines, "'/'", day, "'/part-'", hex('i', 8), "'.csv'")} AS path,
    ${mix} % 1000 AS fate,
    ${startMs} + i * ${stepMs} AS created_ms,
    20 + (${mix} / 1000) % 4000 AS duration_ms,
    1 + (${mix} / 7) % 9999 AS row_count,
    1 + (${mix} / 13) % 3 AS failed_attempts,
    (${mix} / 17) % ${SYNTHETIC_REASONS.length} AS reason,
    1 + (${mix} / 19) % 5000 AS line`
}

const STATE = `(CASE WHEN fate < 960 THEN 'COMMITTED' WHEN fate < 980 THEN 'FAILED' WHEN fate < 990 THEN 'PENDING' ELSE 'PROCESSING' END)`

function reasonText(dialect: 'sqlite' | 'postgres'): string {
  const cases = SYNTHETIC_REASONS.map((reason, n) => {
    const parts = reason.split(/(\{path\}|\{line\})/).filter(Boolean)
    const text = parts.map((part) => (part === '{path}' ? 'path' : part === '{line}' ? (dialect === 'postgres' ? 'line::text' : 'line') : `'${part.replace(/'/g, "''")}'`)).join(' || ')
    return `WHEN ${n} THEN ${text}`
  })
  return `(CASE reason ${cases.join(' ')} END)`
}

/** A new SQLite ledger at `file` (whatever was there is removed) holding `options.files` synthetic files. */
export function syntheticSqliteLedger(file: string, options: SyntheticLedgerOptions): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true })
  void openSqliteLedger(file).close()
  const now = options.now ?? Date.now()
  const spanMs = (options.spanDays ?? 30) * 86_400_000
  const stepMs = Math.max(1, Math.floor(spanMs / Math.max(1, options.files)))
  const startMs = now - spanMs
  const iso = (ms: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', (${ms}) / 1000.0, 'unixepoch')`
  const db = new Database(file)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = OFF')
    db.pragma('cache_size = -262144')
    db.transaction(() => {
      db.exec(`CREATE TEMP TABLE gen AS WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ${options.files})
               SELECT ${fileColumns('sqlite', startMs, stepMs)} FROM n`)
      db.exec(`ALTER TABLE gen ADD COLUMN state TEXT; UPDATE gen SET state = ${STATE}`)
      db.exec(`
        INSERT INTO files (pipeline, hash, path, size, state, attempts, lapses, load_id, lease_token, lease_expires_at, worker, rows, error, created_at, updated_at, committed_at, code)
        SELECT pipeline, hash, path, 100 + row_count * 48,
               state,
               CASE state WHEN 'COMMITTED' THEN 1 WHEN 'FAILED' THEN failed_attempts WHEN 'PROCESSING' THEN 1 ELSE 0 END,
               0,
               CASE WHEN state = 'PENDING' THEN NULL ELSE 'load-' || hash END,
               CASE WHEN state = 'PROCESSING' THEN 'token-' || i END,
               CASE WHEN state = 'PROCESSING' THEN (CASE WHEN i % 2 = 0 THEN ${now} + 60000 ELSE ${now} - 3600000 END) END,
               CASE WHEN state = 'PENDING' THEN NULL ELSE 'bench-host:' || (1000 + i % 8) || ':cafe' || (i % 8) END,
               CASE WHEN state = 'COMMITTED' THEN row_count END,
               CASE WHEN state = 'FAILED' THEN ${reasonText('sqlite')} END,
               ${iso('created_ms')},
               ${iso('CASE WHEN state = \'PENDING\' THEN created_ms ELSE created_ms + duration_ms * failed_attempts END')},
               CASE WHEN state = 'COMMITTED' THEN ${iso('created_ms + duration_ms')} END,
               NULL
        FROM gen ORDER BY i`)
      db.exec(`
        INSERT INTO file_paths (pipeline, hash, path, first_seen_at, version) SELECT pipeline, hash, path, ${iso('created_ms')}, created_ms || ':' || i FROM gen ORDER BY i;
        INSERT INTO file_paths (pipeline, hash, path, first_seen_at, version)
          SELECT pipeline, hash, replace(path, '/part-', '/copy-'), ${iso('created_ms + 1000')}, created_ms || ':c' || i FROM gen WHERE i % 50 = 0 ORDER BY i`)
      const event = (name: string, from: string, to: string, at: string, where: string, attempt = 'NULL', error = 'NULL', path = 'NULL') =>
        `INSERT INTO events (at, pipeline, hash, event, from_state, to_state, attempt, worker, path, error)
         SELECT ${iso(at)}, pipeline, hash, '${name}', ${from}, ${to}, ${attempt}, 'bench-host:' || (1000 + i % 8) || ':cafe' || (i % 8), ${path}, ${error} FROM gen WHERE ${where} ORDER BY i;`
      db.exec(event('file:discovered', 'NULL', "'PENDING'", 'created_ms', '1', 'NULL', 'NULL', 'path'))
      db.exec(event('file:claimed', "'PENDING'", "'PROCESSING'", 'created_ms', "state <> 'PENDING'", '1', 'NULL', 'path'))
      for (let attempt = 1; attempt <= 3; attempt++) {
        if (attempt > 1) db.exec(event('file:retried', "'FAILED'", "'PROCESSING'", `created_ms + duration_ms * ${attempt - 1}`, `state = 'FAILED' AND failed_attempts >= ${attempt}`, String(attempt), 'NULL', 'path'))
        db.exec(event('file:failed', "'PROCESSING'", "'FAILED'", `created_ms + duration_ms * ${attempt}`, `state = 'FAILED' AND failed_attempts >= ${attempt}`, String(attempt), reasonText('sqlite')))
      }
      db.exec(event('file:committed', "'PROCESSING'", "'COMMITTED'", 'created_ms + duration_ms', "state = 'COMMITTED'", '1'))
      db.exec('DROP TABLE gen')
    })()
    db.pragma('wal_checkpoint(TRUNCATE)')
  } finally {
    db.close()
  }
}

/** The same synthetic files in a Postgres ledger (schema `schema`, created and migrated if missing). */
export async function syntheticPostgresLedger(url: string, schema: string, options: SyntheticLedgerOptions): Promise<void> {
  await (await openPostgresLedger(url, { schema })).close()
  const now = options.now ?? Date.now()
  const spanMs = (options.spanDays ?? 30) * 86_400_000
  const stepMs = Math.max(1, Math.floor(spanMs / Math.max(1, options.files)))
  const startMs = now - spanMs
  const ts = (ms: string) => `to_timestamp((${ms}) / 1000.0)`
  const s = `"${schema.replace(/"/g, '""')}"`
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query('BEGIN')
    await client.query(`SET LOCAL synchronous_commit = off`)
    await client.query(`CREATE TEMP TABLE gen ON COMMIT DROP AS SELECT ${fileColumns('postgres', startMs, stepMs)} FROM generate_series(0::bigint, ${options.files - 1}) AS i`)
    await client.query(`ALTER TABLE gen ADD COLUMN state text; UPDATE gen SET state = ${STATE}`)
    await client.query(`
      INSERT INTO ${s}.files (pipeline, hash, path, size, state, attempts, lapses, load_id, lease_token, lease_expires_at, worker, rows, error, created_at, updated_at, committed_at, code)
      SELECT pipeline, hash, path, 100 + row_count * 48,
             state,
             CASE state WHEN 'COMMITTED' THEN 1 WHEN 'FAILED' THEN failed_attempts WHEN 'PROCESSING' THEN 1 ELSE 0 END,
             0,
             CASE WHEN state = 'PENDING' THEN NULL ELSE 'load-' || hash END,
             CASE WHEN state = 'PROCESSING' THEN 'token-' || i END,
             CASE WHEN state = 'PROCESSING' THEN ${ts(`CASE WHEN i % 2 = 0 THEN ${now} + 60000 ELSE ${now} - 3600000 END`)} END,
             CASE WHEN state = 'PENDING' THEN NULL ELSE 'bench-host:' || (1000 + i % 8) || ':cafe' || (i % 8) END,
             CASE WHEN state = 'COMMITTED' THEN row_count END,
             CASE WHEN state = 'FAILED' THEN ${reasonText('postgres')} END,
             ${ts('created_ms')},
             ${ts("CASE WHEN state = 'PENDING' THEN created_ms ELSE created_ms + duration_ms * failed_attempts END")},
             CASE WHEN state = 'COMMITTED' THEN ${ts('created_ms + duration_ms')} END,
             NULL
      FROM gen ORDER BY i`)
    await client.query(`
      INSERT INTO ${s}.file_paths (pipeline, hash, path, first_seen_at, version) SELECT pipeline, hash, path, ${ts('created_ms')}, created_ms || ':' || i FROM gen ORDER BY i;
      INSERT INTO ${s}.file_paths (pipeline, hash, path, first_seen_at, version)
        SELECT pipeline, hash, replace(path, '/part-', '/copy-'), ${ts('created_ms + 1000')}, created_ms || ':c' || i FROM gen WHERE i % 50 = 0 ORDER BY i`)
    const event = (name: string, from: string, to: string, at: string, where: string, attempt = 'NULL', error = 'NULL', path = 'NULL') =>
      `INSERT INTO ${s}.events (at, pipeline, hash, event, from_state, to_state, attempt, worker, path, error)
       SELECT ${ts(at)}, pipeline, hash, '${name}', ${from}, ${to}, ${attempt}, 'bench-host:' || (1000 + i % 8) || ':cafe' || (i % 8), ${path}, ${error} FROM gen WHERE ${where} ORDER BY i`
    await client.query(event('file:discovered', 'NULL', "'PENDING'", 'created_ms', 'true', 'NULL', 'NULL', 'path'))
    await client.query(event('file:claimed', "'PENDING'", "'PROCESSING'", 'created_ms', "state <> 'PENDING'", '1', 'NULL', 'path'))
    for (let attempt = 1; attempt <= 3; attempt++) {
      if (attempt > 1) await client.query(event('file:retried', "'FAILED'", "'PROCESSING'", `created_ms + duration_ms * ${attempt - 1}`, `state = 'FAILED' AND failed_attempts >= ${attempt}`, String(attempt), 'NULL', 'path'))
      await client.query(event('file:failed', "'PROCESSING'", "'FAILED'", `created_ms + duration_ms * ${attempt}`, `state = 'FAILED' AND failed_attempts >= ${attempt}`, String(attempt), reasonText('postgres')))
    }
    await client.query(event('file:committed', "'PROCESSING'", "'COMMITTED'", 'created_ms + duration_ms', "state = 'COMMITTED'", '1'))
    await client.query('COMMIT')
    await client.query(`ANALYZE ${s}.files; ANALYZE ${s}.events; ANALYZE ${s}.file_paths`)
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw error
  } finally {
    await client.end()
  }
}
