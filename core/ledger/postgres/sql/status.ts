import { fileColumns, nowSql, type FileRow, type Queryable, type Tables } from '../db.js'

/**
 * status: per pipeline, how many files are in each state (FAILED split by
 * attempts so the caller can tell terminal from retryable), expired leases
 * (by the database's clock), committed rows; and the most recent failures.
 * Read-only.
 */
export async function countStates(db: Queryable, t: Tables, at: string | null) {
  const result = await db.query<{ pipeline: string; state: string; attempts: number; files: number; rows: string; quarantined: string; expired: number }>(
    `SELECT pipeline, state, attempts, count(*)::integer AS files, COALESCE(sum(rows), 0)::text AS rows, COALESCE(sum(quarantined), 0)::text AS quarantined,
            (count(*) FILTER (WHERE state = 'PROCESSING' AND lease_expires_at < ${nowSql('$1')}))::integer AS expired
     FROM ${t.files} GROUP BY pipeline, state, attempts ORDER BY pipeline`,
    [at],
  )
  return result.rows.map((row) => ({ ...row, rows: Number(row.rows), quarantined: Number(row.quarantined) }))
}

export async function recentFailures(db: Queryable, t: Tables, limit: number): Promise<FileRow[]> {
  const result = await db.query<FileRow>(`SELECT ${fileColumns(t, 'f')} FROM ${t.files} f WHERE f.state = 'FAILED' ORDER BY f.updated_at DESC LIMIT $1`, [limit])
  return result.rows
}
