import path from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { resolveConfig, run, type ColumnInput, type FormatInput, type LimitsConfig, type LogEntry, type Plugin, type RunSummary, type WriteMode } from '../../core/index.js'
import { duckdb } from '../../plugins/duckdb/index.js'

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

/** What an in-process run into DuckDB did (loadIntoDuckdb). */
export interface DuckdbOutcome {
  readonly summary: RunSummary
  /** The table's rows but `_ingested_at`, by file and record number (none with `read: false`). */
  readonly rows: Record<string, unknown>[]
  readonly errors: string[]
  /** Files whose rows went through JS batches (`fileProgress` fires for them; DuckDB reading a file itself never pulls one). */
  readonly viaJs: Set<string>
  readonly logs: LogEntry[]
}

/**
 * Runs the real runner in-process over `<dir>/incoming` into `<dir>/w.duckdb`
 * (pipeline `p`, table `t`, one attempt), watching which path each file
 * took, what failed and what was logged.
 */
export async function loadIntoDuckdb(
  dir: string,
  columns: Record<string, ColumnInput>,
  options: { native?: boolean; format?: FormatInput; plugins?: Plugin[]; unknownColumns?: 'error' | 'ignore'; limits?: LimitsConfig; writeMode?: WriteMode; read?: boolean } = {},
): Promise<DuckdbOutcome> {
  const config = resolveConfig(
    {
      plugins: options.plugins ?? [],
      pipelines: [
        {
          name: 'p',
          source: 'incoming',
          format: options.format,
          destination: duckdb({ path: 'w.duckdb', native: options.native }),
          table: 't',
          columns,
          unknownColumns: options.unknownColumns,
          limits: options.limits,
          writeMode: options.writeMode,
          retry: { attempts: 1 },
        },
      ],
    },
    { cwd: dir },
  )
  const viaJs = new Set<string>()
  const errors: string[] = []
  const logs: LogEntry[] = []
  const watcher: Plugin = {
    name: 'watcher',
    apply({ hooks }) {
      hooks.fileProgress.tap('watcher', ({ file }) => void viaJs.add(file.path))
      hooks.fileFailed.tapPromise('watcher', async ({ error }) => void errors.push(`${error.code} ${error.message}`))
      hooks.log.tap('watcher', (entry) => void logs.push(entry))
    },
  }
  const summary = await run({ config, plugins: [watcher] })
  const rows = summary.aborted || options.read === false ? [] : await readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT * EXCLUDE (_ingested_at) FROM t ORDER BY _source_file_hash, _source_row_number')
  return { summary, rows, errors: errors.sort(), viaJs, logs }
}
