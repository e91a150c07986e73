import { createHash } from 'node:crypto'
import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { inTransaction, quoteIdentifier } from '../../sql.js'

/** A statement with a name: `pg` prepares it once per connection (see `prepared`). */
export interface PreparedQuery {
  readonly name: string
  readonly text: string
  readonly values: unknown[]
}

/** Something that runs one statement: the pool (autocommit) or a client inside a transaction. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string | PreparedQuery, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>
}

const names = new Map<string, string>()

/**
 * A statement every file runs (claim, complete, fail, heartbeat, holds), as
 * a named prepared statement: the server parses, analyses and plans it once
 * per connection, not on every call. The claim's two statements are CTEs of
 * half a dozen parts each, and planning them was most of their cost:
 * measured over 400 claims on one connection, 1.85 ms of server CPU and
 * 1.30 ms of the worker's per claim unnamed, 0.60 and 0.98 ms named (a claim
 * that finds the file held: 1.33 against 0.45 ms of the server's).
 *
 * The name is the text's hash, so two ledgers in different schemas (two
 * texts) never share one. Prepared statements belong to a server session,
 * as the ledger's session settings (`options`) already do: a pooler that
 * hands one client's statements to several server sessions cannot sit in
 * front of the ledger.
 */
export function prepared(text: string, values: unknown[]): PreparedQuery {
  let name = names.get(text)
  if (name === undefined) {
    name = `filedge_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`
    names.set(text, name)
  }
  return { name, text, values }
}

/** The ledger's tables, schema-qualified and quoted once, so every statement names them the same way. */
export interface Tables {
  readonly schema: string
  readonly files: string
  readonly paths: string
  readonly events: string
  readonly stats: string
  readonly codes: string
  readonly pondEvents: string
  readonly leases: string
  readonly cursorEvents: string
  readonly migrations: string
}

export function tablesIn(schema: string): Tables {
  const s = quoteIdentifier(schema)
  return { schema: s, files: `${s}.files`, paths: `${s}.file_paths`, events: `${s}.events`, stats: `${s}.file_stats`, codes: `${s}.codes`, pondEvents: `${s}.pond_events`, leases: `${s}.leases`, cursorEvents: `${s}.cursor_events`, migrations: `${s}.filedge_migrations` }
}

/**
 * The time every lease decision is made with: the database's clock, never a
 * worker's, because workers on many machines must agree on when a lease
 * expired. `statement_timestamp()` rather than `now()`: a claim transaction
 * runs several statements and may wait on a lock, and a lease must not be
 * judged by when the transaction began. The parameter is null in production;
 * tests pass a fixed instant to move time without sleeping (the SQLite store
 * takes the same `now` option).
 */
export function nowSql(param: string): string {
  return `COALESCE(${param}::timestamptz, statement_timestamp())`
}

/** Runs `fn` in one READ COMMITTED transaction on a dedicated connection. */
export function transaction<T>(pool: Pool, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, 'BEGIN', fn)
}

export interface FileRow {
  pipeline: string
  hash: string
  path: string
  size: string
  state: string
  attempts: number
  lapses: number
  load_id: string | null
  worker: string | null
  rows: string | null
  error: string | null
  lease_expires_at: Date | null
  created_at: Date
  updated_at: Date
  committed_at: Date | null
  code: string | null
  quarantined: string | null
  sidecar: string | null
  paths: string[]
}

/** Columns for a FileRow, with every path the bytes were seen at aggregated in (one round trip per listing). */
export function fileColumns(t: Tables, alias: string): string {
  return `${alias}.pipeline, ${alias}.hash, ${alias}.path, ${alias}.size, ${alias}.state, ${alias}.attempts, ${alias}.lapses, ${alias}.load_id, ${alias}.worker, ${alias}.rows, ${alias}.error,
    ${alias}.lease_expires_at, ${alias}.created_at, ${alias}.updated_at, ${alias}.committed_at, ${alias}.code, ${alias}.quarantined, ${alias}.sidecar,
    ARRAY(SELECT p.path FROM ${t.paths} p WHERE p.pipeline = ${alias}.pipeline AND p.hash = ${alias}.hash ORDER BY p.first_seen_at, p.path) AS paths`
}
