import { DuckDBInstance } from '@duckdb/node-api'

/**
 * Reads through the process's shared instance (`fromCache`), as the
 * destination opens it: a second instance on the same file in one process
 * would bypass DuckDB's file lock.
 */
export async function readDuckdb(file: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.fromCache(file)
  const connection = await instance.connect()
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[]
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
}
