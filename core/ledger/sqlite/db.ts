import type { Database, Statement } from 'better-sqlite3'

/** A ledger connection with its prepared statements cached by SQL text. */
export interface LedgerDb {
  readonly db: Database
  statement(sql: string): Statement
}

export function ledgerDb(db: Database): LedgerDb {
  const cache = new Map<string, Statement>()
  return {
    db,
    statement(sql) {
      let statement = cache.get(sql)
      if (statement === undefined) {
        statement = db.prepare(sql)
        cache.set(sql, statement)
      }
      return statement
    },
  }
}

export interface EventRow {
  readonly pipeline: string
  readonly hash: string
  readonly event: string
  readonly from: string | null
  readonly to: string | null
  readonly attempt: number | null
  readonly worker: string | null
  readonly path: string | null
  readonly error?: string | null
  readonly quarantined?: number | null
}

export function insertEvent(ledger: LedgerDb, at: string, row: EventRow): void {
  ledger
    .statement('INSERT INTO events (at, pipeline, hash, event, from_state, to_state, attempt, worker, path, error, quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
    .run(at, row.pipeline, row.hash, row.event, row.from, row.to, row.attempt, row.worker, row.path, row.error ?? null, row.quarantined ?? null)
}

export interface FileRow {
  pipeline: string
  hash: string
  path: string
  size: number
  state: string
  attempts: number
  lapses: number
  load_id: string | null
  lease_token: string | null
  lease_expires_at: number | null
  worker: string | null
  rows: number | null
  error: string | null
  created_at: string
  updated_at: string
  committed_at: string | null
  code: string | null
  quarantined: number | null
  sidecar: string | null
}
