import { EXPORT_TABLES, type ExportFilter, type ExportTable } from '../ledger/export.js'

/**
 * The ledger as `filedge query` and the audit page see it: tables in an
 * in-memory DuckDB database, named and typed here once (docs/audit.md lists
 * them). They mirror the ledger's own tables, read through the store's
 * snapshot, with one rename: the events' `at` is `occurred_at`, because AT is
 * a keyword in DuckDB (`SELECT at FROM events` does not parse).
 *
 * Times are TIMESTAMP in UTC, not TIMESTAMPTZ: DuckDB does arithmetic on
 * TIMESTAMPTZ through ICU's calendars, time zone and all, and `committed_at
 * - created_at` over 960,000 files took 2.2 s that way, 23 ms on TIMESTAMP.
 * Comparing one with `now()` (a TIMESTAMPTZ) reads it as UTC, the session's
 * time zone.
 */

export type DuckType = 'VARCHAR' | 'BIGINT' | 'INTEGER' | 'TIMESTAMP'

export interface QueryColumn {
  /** As queries name it. */
  readonly name: string
  /** As the ledger names it (export.ts). */
  readonly source: string
  readonly type: DuckType
}

export interface QueryTable {
  readonly name: ExportTable
  readonly columns: readonly QueryColumn[]
}

/** Counters that stay small are INTEGER; sizes, rows and ids BIGINT. */
const SMALL = new Set(['attempts', 'lapses', 'attempt'])

function tableOf(name: ExportTable): QueryTable {
  return {
    name,
    columns: EXPORT_TABLES[name].map((column) => ({
      name: column.name === 'at' ? 'occurred_at' : column.name,
      source: column.name,
      type: column.kind === 'text' ? 'VARCHAR' : column.kind === 'time' ? 'TIMESTAMP' : SMALL.has(column.name) ? 'INTEGER' : 'BIGINT',
    })),
  }
}

export const QUERY_TABLES: readonly QueryTable[] = (['files', 'file_paths', 'events', 'pond_events'] as const).map(tableOf)

export function queryTable(name: string): QueryTable | undefined {
  return QUERY_TABLES.find((table) => table.name === name)
}

/** Events that start a load of a file, and those that end one. */
export const LOAD_STARTS = ['file:claimed', 'file:retried', 'file:reclaimed', 'file:reopened'] as const
export const LOAD_ENDS = ['file:committed', 'file:healed', 'file:failed', 'file:released'] as const
const POND_OUTCOMES = ['pond:succeeded', 'pond:passed', 'pond:failed', 'pond:blocked'] as const

const list = (values: readonly string[]) => values.map((value) => `'${value}'`).join(', ')

/**
 * Views over the tables: what a question usually wants instead of raw
 * events. Each names the one table it reads, the columns it needs of it, and
 * the rows it can do without (pushed to the store when nothing else reads
 * that table).
 */
export interface QueryView {
  readonly name: string
  readonly table: ExportTable
  readonly columns: readonly string[]
  readonly where?: readonly ExportFilter[]
  readonly sql: string
}

export const QUERY_VIEWS: readonly QueryView[] = [
  {
    // One row per load of a file: from the event that started it (a claim, a retry, a reclaim, a reopening) to the one
    // that ended it (committed, healed, failed, released), or to the next start when its lease lapsed; no end while in flight.
    name: 'loads',
    table: 'events',
    columns: ['id', 'pipeline', 'hash', 'attempt', 'worker', 'occurred_at', 'event', 'error', 'path'],
    where: [{ column: 'event', in: [...LOAD_STARTS, ...LOAD_ENDS] }],
    sql: `CREATE VIEW loads AS
      SELECT pipeline, hash, path, attempt, worker, started_at, ended_at,
             CASE WHEN next_event IN (${list(LOAD_STARTS)}) THEN 'lapsed' ELSE replace(next_event, 'file:', '') END AS outcome,
             date_diff('millisecond', started_at, ended_at) AS duration_ms,
             CASE WHEN next_event <> 'file:committed' THEN next_error END AS error
      FROM (
        SELECT pipeline, hash, path, attempt, worker, event, occurred_at AS started_at,
               lead(event) OVER w AS next_event, lead(occurred_at) OVER w AS ended_at, lead(error) OVER w AS next_error
        FROM events
        WHERE event IN (${list([...LOAD_STARTS, ...LOAD_ENDS])})
        WINDOW w AS (PARTITION BY pipeline, hash ORDER BY id)
      )
      WHERE event IN (${list(LOAD_STARTS)})`,
  },
  {
    // One row per run of a pond: when it started and ended, how, and what it read and built.
    name: 'pond_runs',
    table: 'pond_events',
    columns: QUERY_TABLES.find((table) => table.name === 'pond_events')!.columns.map((column) => column.name),
    sql: `CREATE VIEW pond_runs AS
      SELECT run_id, any_value(pond) AS pond, any_value(version) AS version, any_value(outlet) AS outlet, any_value(trigger) AS trigger,
             any_value(worker) AS worker, min(occurred_at) AS started_at,
             max(occurred_at) FILTER (WHERE event IN (${list(POND_OUTCOMES)})) AS ended_at,
             replace(arg_max(event, id) FILTER (WHERE event IN (${list(POND_OUTCOMES)})), 'pond:', '') AS outcome,
             max(duration_ms) FILTER (WHERE event IN (${list(POND_OUTCOMES)})) AS duration_ms,
             arg_max(error, id) FILTER (WHERE event IN ('pond:failed', 'pond:blocked')) AS error,
             any_value(input_version) AS input_version,
             arg_max(data_version, id) FILTER (WHERE data_version IS NOT NULL) AS data_version,
             count(*) FILTER (WHERE event LIKE 'ripple:%') AS ripples,
             sum(rows) FILTER (WHERE event = 'ripple:succeeded') AS rows
      FROM pond_events GROUP BY run_id`,
  },
]

export function queryView(name: string): QueryView | undefined {
  return QUERY_VIEWS.find((view) => view.name === name)
}

const quote = (name: string) => `"${name}"`

export function createTableSql(table: QueryTable, columns: readonly QueryColumn[] = table.columns, name: string = table.name): string {
  return `CREATE OR REPLACE TABLE ${name} (${columns.map((column) => `${quote(column.name)} ${column.type}`).join(', ')})`
}
