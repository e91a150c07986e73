import { readDuckdb } from './duckdb.js'
import { dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './postgres.js'
import type { Workspace } from './workspace.js'

/**
 * The three built-in destinations as end-to-end targets: a config file for one
 * pipeline, the environment the CLI needs, and read-only queries of the
 * destination and the ledger after a run. SQLite and DuckDB use a SQLite
 * ledger; Postgres a Postgres ledger, as a deployment of many workers would.
 */
export type TargetName = 'sqlite' | 'duckdb' | 'postgres'

export interface Target {
  readonly name: TargetName
  readonly env: NodeJS.ProcessEnv
  config(options: TargetConfig): string
  /** Runs `sql` on the destination; `{name}` stands for table `name` (quoted, and schema-qualified on Postgres). */
  select(ws: Workspace, sql: string): Promise<Record<string, unknown>[]>
  /** The ledger's files: path, state, error. */
  files(ws: Workspace): Promise<{ path: string; state: string; error: string | null }[]>
  cleanup(): Promise<void>
}

export interface TargetConfig {
  readonly columns: string
  /** Source text of the pipeline's writeMode. */
  readonly writeMode: string
  readonly table?: string
  readonly extra?: string
  readonly top?: string
  readonly plugins?: string
  readonly imports?: string
  /** A function (imported with `imports`) to wrap the destination in, e.g. a pause wrapper. */
  readonly wrap?: string
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

function configText(destination: string, imports: string, options: TargetConfig, ledger = ''): string {
  const wrapped = options.wrap ? `${options.wrap}(${destination})` : destination
  return `import { defineConfig, env } from 'filedge'
${imports}
${options.imports ?? ''}
export default defineConfig({
  ${ledger}
  ${options.top ?? ''}
  plugins: [${options.plugins ?? ''}],
  pipelines: [{
    name: 'changes',
    source: { dir: 'incoming' },
    destination: ${wrapped},
    table: ${JSON.stringify(options.table ?? 'customers')},
    writeMode: ${options.writeMode},
    columns: ${options.columns},
    ${options.extra ?? ''}
  }],
})
`
}

async function sqliteLedgerFiles(ws: Workspace) {
  return ws.query<{ path: string; state: string; error: string | null }>('.filedge/ledger.db', 'SELECT path, state, error FROM files ORDER BY path')
}

export function target(name: TargetName): Target {
  switch (name) {
    case 'sqlite':
      return {
        name,
        env: {},
        config: (options) => configText("sqlite({ path: 'warehouse.db' })", "import { sqlite } from 'filedge/plugins/sqlite'", options),
        select: async (ws, sql) => ws.query('warehouse.db', sql.replace(/\{(\w+)\}/g, (_, table: string) => quote(table))),
        files: sqliteLedgerFiles,
        cleanup: async () => undefined,
      }
    case 'duckdb':
      return {
        name,
        env: {},
        config: (options) => configText("duckdb({ path: 'warehouse.duckdb' })", "import { duckdb } from 'filedge/plugins/duckdb'", options),
        select: (ws, sql) => readDuckdb(ws.file('warehouse.duckdb'), sql.replace(/\{(\w+)\}/g, (_, table: string) => quote(table))),
        files: sqliteLedgerFiles,
        cleanup: async () => undefined,
      }
    case 'postgres': {
      const ledger = freshSchema('filedge_ledger')
      const dest = freshSchema('filedge_dest')
      return {
        name,
        env: { FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL },
        config: (options) =>
          configText(`postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(dest)} })`, "import { postgres } from 'filedge/plugins/postgres'", options, "ledger: env('FILEDGE_LEDGER_URL'),"),
        select: (_ws, sql) => pgQuery(sql.replace(/\{(\w+)\}/g, (_, table: string) => `${quote(dest)}.${quote(table)}`)),
        files: (_ws) => pgQuery(`SELECT path, state, error FROM ${quote(ledger)}.files ORDER BY path`),
        async cleanup() {
          await dropSchema(ledger)
          await dropSchema(dest)
        },
      }
    }
  }
}
