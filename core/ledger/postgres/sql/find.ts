import type { LedgerEventName } from '../../types.js'
import { fileColumns, type FileRow, type Queryable, type Tables } from '../db.js'

/**
 * find: files by hash (full, or a prefix of at least 6 hex digits) or by any
 * path the same bytes were seen at (newest first). Read-only.
 */
export async function findFiles(db: Queryable, t: Tables, ref: string): Promise<FileRow[]> {
  if (/^[0-9a-f]{6,64}$/i.test(ref)) {
    const prefix = ref.toLowerCase()
    const byHash = await db.query<FileRow>(`SELECT ${fileColumns(t, 'f')} FROM ${t.files} f WHERE f.hash >= $1 AND f.hash < $2 ORDER BY f.created_at`, [prefix, `${prefix}g`])
    if (byHash.rows.length > 0) return byHash.rows
  }
  const byPath = await db.query<FileRow>(
    `SELECT ${fileColumns(t, 'f')} FROM ${t.paths} seen JOIN ${t.files} f ON f.pipeline = seen.pipeline AND f.hash = seen.hash
     WHERE seen.path = $1 ORDER BY seen.first_seen_at DESC`,
    [ref],
  )
  return byPath.rows
}

export async function committedFiles(db: Queryable, t: Tables, pipelines: readonly string[] | undefined): Promise<FileRow[]> {
  const result = await db.query<FileRow>(
    `SELECT ${fileColumns(t, 'f')} FROM ${t.files} f WHERE f.state = 'COMMITTED' AND ($1::text[] IS NULL OR f.pipeline = ANY($1)) ORDER BY f.committed_at, f.pipeline, f.hash`,
    [pipelines === undefined ? null : [...pipelines]],
  )
  return result.rows
}

export async function failedFiles(db: Queryable, t: Tables, pipelines: readonly string[] | undefined): Promise<{ pipeline: string; hash: string }[]> {
  const result = await db.query<{ pipeline: string; hash: string }>(
    `SELECT pipeline, hash FROM ${t.files} WHERE state = 'FAILED' AND ($1::text[] IS NULL OR pipeline = ANY($1)) ORDER BY updated_at`,
    [pipelines === undefined ? null : [...pipelines]],
  )
  return result.rows
}

export interface EventRow {
  id: string
  at: Date
  pipeline: string
  hash: string
  event: LedgerEventName
  from_state: string | null
  to_state: string | null
  attempt: number | null
  worker: string | null
  path: string | null
  error: string | null
  quarantined: string | null
}

export async function eventsOf(db: Queryable, t: Tables, pipeline: string, hash: string): Promise<EventRow[]> {
  const result = await db.query<EventRow>(`SELECT * FROM ${t.events} WHERE pipeline = $1 AND hash = $2 ORDER BY id`, [pipeline, hash])
  return result.rows
}
