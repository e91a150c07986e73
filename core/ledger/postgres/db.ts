import type { Pool, PoolClient, QueryResultRow } from 'pg'
import { inTransaction, quoteIdentifier } from '../../sql.js'

/** Something that runs one statement: the pool (autocommit) or a client inside a transaction. */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>
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
