import type { FileRow, LedgerDb } from '../db.js'

/**
 * find: files by hash (full, or a prefix of at least 6 hex digits) or by any
 * path the same bytes were seen at (newest first). Read-only.
 */
export function findFiles(ledger: LedgerDb, ref: string): FileRow[] {
  if (/^[0-9a-f]{6,64}$/i.test(ref)) {
    const byHash = ledger.statement(`SELECT * FROM files WHERE hash >= ? AND hash < ? ORDER BY created_at`).all(ref.toLowerCase(), `${ref.toLowerCase()}g`) as FileRow[]
    if (byHash.length > 0) return byHash
  }
  return ledger
    .statement(
      `SELECT f.* FROM file_paths p JOIN files f ON f.pipeline = p.pipeline AND f.hash = p.hash WHERE p.path = ? ORDER BY p.first_seen_at DESC`,
    )
    .all(ref) as FileRow[]
}

export function pathsOf(ledger: LedgerDb, pipeline: string, hash: string): string[] {
  return (ledger.statement('SELECT path FROM file_paths WHERE pipeline = ? AND hash = ? ORDER BY first_seen_at, path').all(pipeline, hash) as { path: string }[]).map((row) => row.path)
}

export function committedFiles(ledger: LedgerDb, pipelines: readonly string[] | undefined): FileRow[] {
  const rows = ledger.statement(`SELECT * FROM files WHERE state = 'COMMITTED' ORDER BY committed_at, pipeline, hash`).all() as FileRow[]
  return pipelines === undefined ? rows : rows.filter((row) => pipelines.includes(row.pipeline))
}

export function failedFiles(ledger: LedgerDb, pipelines: readonly string[] | undefined): { pipeline: string; hash: string }[] {
  const rows = ledger.statement(`SELECT pipeline, hash FROM files WHERE state = 'FAILED' ORDER BY updated_at`).all() as { pipeline: string; hash: string }[]
  return pipelines === undefined ? rows : rows.filter((row) => pipelines.includes(row.pipeline))
}

export function eventsOf(ledger: LedgerDb, pipeline: string, hash: string) {
  return ledger.statement('SELECT * FROM events WHERE pipeline = ? AND hash = ? ORDER BY id').all(pipeline, hash) as {
    id: number
    at: string
    pipeline: string
    hash: string
    event: string
    from_state: string | null
    to_state: string | null
    attempt: number | null
    worker: string | null
    path: string | null
    error: string | null
    quarantined: number | null
  }[]
}
