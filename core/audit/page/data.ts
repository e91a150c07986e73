import type { DuckDBConnection } from '@duckdb/node-api'
import type { ResolvedConfig } from '../../config/types.js'
import type { ExportFilter } from '../../ledger/export.js'
import type { LedgerStore } from '../../ledger/types.js'
import { redact } from '../../secrets.js'
import { openLedgerDuck, type LedgerDuck } from '../duck.js'
import { duckdb } from '../duckdb.js'
import { queryTable, type QueryTable } from '../tables.js'

/**
 * Everything the audit page shows, computed once by DuckDB over the whole
 * ledger (counts, since-whens, charts) plus the files listed in it. No row
 * data: the page is about files, never their contents, and reads no
 * destination.
 */

/** What the operator's first screen says, one entry per problem: what, where, how many, since when. */
export interface Alert {
  readonly kind: 'failing' | 'stuck' | 'backlog' | 'late' | 'pond'
  readonly pipeline: string
  readonly count: number
  /** ms since the epoch. */
  readonly since: number | null
  readonly detail: string
}

export interface PipelineSummary {
  readonly name: string
  /** From the config; absent for a pipeline the ledger knows and the config no longer has. */
  readonly table?: string
  readonly destination?: string
  readonly writeMode?: string
  readonly retryAttempts: number
  readonly files: number
  readonly pending: number
  readonly processing: number
  readonly stuck: number
  readonly committed: number
  readonly failed: number
  readonly terminal: number
  readonly rows: number
  readonly lastCommitAt: number | null
  /** The 90th percentile of the gaps between its commits over the 30 days before its last one, when there were enough to judge. */
  readonly usualGapMs: number | null
}

/** The files listed, by column (same index = same file); `pipeline`, `state` and `error` index into their lists. */
export interface FileColumns {
  readonly pipeline: number[]
  readonly state: number[]
  readonly path: string[]
  readonly hash: string[]
  readonly attempts: number[]
  readonly rows: (number | null)[]
  readonly size: number[]
  readonly createdAt: number[]
  readonly updatedAt: number[]
  readonly committedAt: (number | null)[]
  readonly leaseExpiresAt: (number | null)[]
  readonly error: (number | null)[]
}

/** The files listed: the JSON text of their FileColumns, UTF-8 (see listedFiles). */
export interface ListedFiles {
  readonly count: number
  /** In parts, joined once with the page. */
  readonly json: readonly Uint8Array[]
}

export interface Bucket {
  readonly at: number
  readonly files: number
  readonly rows: number
  readonly failures: number
}

export interface PondSummary {
  readonly pond: string
  readonly version: string
  readonly outcome: string | null
  readonly at: number
  readonly error: string | null
}

export interface PageData {
  readonly generatedAt: number
  /** The store's clock when its snapshot was read: what "stuck" and "late" are judged by. */
  readonly now: number
  readonly ledger: string
  readonly alerts: readonly Alert[]
  readonly pipelines: readonly PipelineSummary[]
  readonly states: readonly string[]
  readonly errors: readonly string[]
  readonly files: ListedFiles
  readonly filesTotal: number
  readonly buckets: { readonly unit: 'day' | 'hour'; readonly list: readonly Bucket[] }
  readonly reasons: readonly { readonly reason: string; readonly failures: number }[]
  readonly ponds: readonly PondSummary[]
}

/** The page's data as its script reads it: the listed files' JSON in place. */
export type EmbeddedPageData = Omit<PageData, 'files'> & { readonly files: FileColumns }

export const STATES = ['FAILED', 'PROCESSING', 'PENDING', 'COMMITTED'] as const

/** A pipeline is late when it has not committed for 3 times its usual gap (and at least this long). */
const LATE_FACTOR = 3
const LATE_MIN_MS = 5 * 60_000
/** Gaps it takes to know what usual is. */
const LATE_MIN_GAPS = 10

export interface PageOptions {
  /** Files listed: every failing, stuck and pending one first, then the latest to change. */
  readonly files: number
}

/**
 * What the counts and charts read of every file: its state, rows and commit
 * time. The rest is read of the listed files only, which hold every failing,
 * pending and in-flight one: what the first screen says of them (attempts,
 * lease expiries, since when) comes from there. Over a million files, the
 * hashes, paths and other times are most of the bytes.
 */
const EVERY_FILE = ['pipeline', 'state', 'rows', 'committed_at']
/** What the list shows of the files it lists. */
const LISTED = ['pipeline', 'hash', 'path', 'size', 'state', 'attempts', 'rows', 'error', 'lease_expires_at', 'created_at', 'updated_at', 'committed_at']
/** Files the first screen points at: listed first, whatever their age. */
const PROBLEMS = ['FAILED', 'PENDING', 'PROCESSING']

function pick(table: QueryTable, names: readonly string[]): QueryTable['columns'] {
  return table.columns.filter((column) => names.includes(column.name))
}

type Row = Record<string, unknown>

async function rows(connection: DuckDBConnection, sql: string, values?: Record<string, unknown>): Promise<Row[]> {
  return (await connection.runAndReadAll(sql, values as never)).getRowObjectsJS() as Row[]
}

const num = (value: unknown): number => (value === null || value === undefined ? 0 : Number(value))
const msOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value))

/**
 * How a failure reads once what is particular to one file is taken out: the
 * path that opens filedge's messages (`incoming/a.csv:12 column amount: …`,
 * `incoming/a.csv: …`, `plugin "x" failed in commit for incoming/a.csv: …`),
 * quoted values and numbers. `{file}:{line} column amount: cannot coerce
 * "…" to float`: failures of many files for one cause count as one reason.
 * A path is what has no space and a `/` or a `.`; a name with spaces is left
 * as it is (its failures then count apart).
 */
export function reasonOf(error: string): string {
  return error
    .replace(/^(plugin "[^"]*" failed in \w+ for )[^\s"]*[./][^\s"]*?(:\d+)?(?=: )/, (_, prefix: string, line?: string) => `${prefix}{file}${line === undefined ? '' : ':{line}'}`)
    .replace(/^[^\s"]*[./][^\s"]*?(:\d+)?(?=: | column )/, (_, line?: string) => `{file}${line === undefined ? '' : ':{line}'}`)
    .replace(/(?<!plugin )"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/\b\d+(\.\d+)?\b/g, 'N')
}

export async function pageData(ledger: LedgerStore | undefined, config: ResolvedConfig, options: PageOptions): Promise<PageData> {
  const duck = await openLedgerDuck(ledger)
  try {
    const { connection } = duck
    const filesTable = queryTable('files')!
    const eventsTable = queryTable('events')!
    const pondTable = queryTable('pond_events')!
    // Each table is read while DuckDB unpacks the one before.
    const loads = await duck.reading(async () => [
      await duck.load(filesTable, pick(filesTable, EVERY_FILE)),
      await duck.load(eventsTable, pick(eventsTable, ['occurred_at', 'event', 'error']), [{ column: 'event', in: ['file:failed'] }]),
      await duck.load(pondTable, pondTable.columns),
    ])
    await Promise.all(loads.map((load) => load.unpacked))
    await loadListed(duck, filesTable, options.files)
    const now = { now: duck.now * 1000 }
    const nowSql = 'make_timestamp(CAST($now AS BIGINT))'
    const configured = new Map(config.pipelines.map((pipeline) => [pipeline.name, pipeline]))
    const cap = (name: string) => configured.get(name)?.retry.attempts ?? 3

    const totals = await rows(
      connection,
      `SELECT pipeline, count(*) AS files,
              count(*) FILTER (WHERE state = 'PENDING') AS pending,
              count(*) FILTER (WHERE state = 'PROCESSING') AS processing,
              count(*) FILTER (WHERE state = 'COMMITTED') AS committed,
              count(*) FILTER (WHERE state = 'FAILED') AS failed,
              sum(rows) FILTER (WHERE state = 'COMMITTED') AS rows,
              epoch_ms(max(committed_at)) AS last_commit
       FROM files GROUP BY pipeline ORDER BY pipeline`,
    )
    const problems = await rows(
      connection,
      `SELECT pipeline,
              count(*) FILTER (WHERE state = 'PROCESSING' AND lease_expires_at < ${nowSql}) AS stuck,
              epoch_ms(min(updated_at) FILTER (WHERE state = 'FAILED')) AS failing_since,
              epoch_ms(min(lease_expires_at) FILTER (WHERE state = 'PROCESSING' AND lease_expires_at < ${nowSql})) AS stuck_since,
              epoch_ms(min(created_at) FILTER (WHERE state = 'PENDING')) AS pending_since
       FROM listed GROUP BY pipeline`,
      now,
    )
    const counts = totals.map((row) => ({ ...row, ...problems.find((entry) => entry.pipeline === row.pipeline) }))
    const failedByAttempts = await rows(connection, `SELECT pipeline, attempts, count(*) AS files FROM listed WHERE state = 'FAILED' GROUP BY ALL`)
    // What "usual" is: the gaps between a pipeline's commits over the 30 days before its last one.
    const gaps = await rows(
      connection,
      `SELECT pipeline, count(gap) AS gaps, quantile_cont(gap, 0.9) AS p90
       FROM (SELECT pipeline, committed_at, max(committed_at) OVER (PARTITION BY pipeline) AS last,
                    date_diff('millisecond', lag(committed_at) OVER (PARTITION BY pipeline ORDER BY committed_at), committed_at) AS gap
             FROM files WHERE state = 'COMMITTED')
       WHERE committed_at >= last - INTERVAL 30 DAY
       GROUP BY pipeline`,
    )
    const latestFailure = await rows(
      connection,
      `SELECT pipeline, arg_max(error, updated_at) AS error FROM listed WHERE state = 'FAILED' GROUP BY pipeline`,
    )

    const names = [...new Set([...config.pipelines.map((pipeline) => pipeline.name), ...counts.map((row) => String(row.pipeline))])]
    const alerts: Alert[] = []
    const pipelines = names.map((name): PipelineSummary => {
      const row = counts.find((candidate) => candidate.pipeline === name) ?? {}
      const pipeline = configured.get(name)
      const terminal = failedByAttempts.filter((entry) => entry.pipeline === name && num(entry.attempts) >= cap(name)).reduce((sum, entry) => sum + num(entry.files), 0)
      const gap = gaps.find((entry) => entry.pipeline === name)
      const usualGapMs = gap !== undefined && num(gap.gaps) >= LATE_MIN_GAPS ? num(gap.p90) : null
      const summary: PipelineSummary = {
        name,
        ...(pipeline === undefined ? {} : { table: pipeline.table, destination: pipeline.destination.describe(), writeMode: pipeline.writeMode.kind }),
        retryAttempts: cap(name),
        files: num(row.files),
        pending: num(row.pending),
        processing: num(row.processing),
        stuck: num(row.stuck),
        committed: num(row.committed),
        failed: num(row.failed),
        terminal,
        rows: num(row.rows),
        lastCommitAt: msOrNull(row.last_commit),
        usualGapMs,
      }
      if (summary.failed > 0) {
        const last = latestFailure.find((entry) => entry.pipeline === name)?.error
        const retrying = summary.failed - terminal
        alerts.push({
          kind: 'failing',
          pipeline: name,
          count: summary.failed,
          since: msOrNull(row.failing_since),
          detail: `${terminal} with no attempts left${retrying > 0 ? `, ${retrying} to retry` : ''}${typeof last === 'string' ? `; latest: ${redact(last)}` : ''}`,
        })
      }
      if (summary.stuck > 0) alerts.push({ kind: 'stuck', pipeline: name, count: summary.stuck, since: msOrNull(row.stuck_since), detail: 'PROCESSING past its lease: its worker stopped; the next run reclaims it' })
      if (summary.pending > 0) alerts.push({ kind: 'backlog', pipeline: name, count: summary.pending, since: msOrNull(row.pending_since), detail: 'registered, waiting to be loaded' })
      if (usualGapMs !== null && summary.lastCommitAt !== null) {
        const quiet = duck.now - summary.lastCommitAt
        if (quiet > Math.max(LATE_FACTOR * usualGapMs, LATE_MIN_MS)) {
          alerts.push({ kind: 'late', pipeline: name, count: 0, since: summary.lastCommitAt, detail: `no commit for ${duration(quiet)}; usually one every ${duration(usualGapMs)} or less` })
        }
      }
      return summary
    })

    const ponds = await pondsOf(connection)
    for (const pond of ponds) {
      if (pond.outcome === 'failed' || pond.outcome === 'blocked') alerts.push({ kind: 'pond', pipeline: pond.pond, count: 1, since: pond.at, detail: `${pond.outcome}${pond.error === null ? '' : `: ${pond.error}`}` })
    }

    const files = await listedFiles(connection, options.files, nowSql, now, names)
    const buckets = await bucketsOf(connection)
    const reasons = (await rows(connection, `SELECT error, count(*) AS failures FROM events WHERE event = 'file:failed' AND error IS NOT NULL GROUP BY ALL`)).reduce((merged, row) => {
      const reason = reasonOf(redact(String(row.error)))
      merged.set(reason, { reason, failures: (merged.get(reason)?.failures ?? 0) + num(row.failures) })
      return merged
    }, new Map<string, { reason: string; failures: number }>())
    return {
      generatedAt: Date.now(),
      now: duck.now,
      ledger: ledger?.describe() ?? (config.ledger.kind === 'sqlite' ? `sqlite:${config.ledger.path} (not created yet)` : 'postgres'),
      alerts: alerts.sort((a, b) => ALERT_ORDER.indexOf(a.kind) - ALERT_ORDER.indexOf(b.kind) || (a.since ?? 0) - (b.since ?? 0)),
      pipelines,
      states: STATES,
      ...files,
      buckets,
      reasons: [...reasons.values()].sort((a, b) => b.failures - a.failures),
      ponds,
    }
  } finally {
    await duck.close()
  }
}

/**
 * The files the list shows, with their hashes, paths and errors, read from
 * the store on their own, into `listed`: every failing, pending or in-flight
 * one, and the committed ones committed since a cutoff (one read, the store
 * applying both conditions). The list then takes the first `limit` of them.
 *
 * Every failing and pending file comes before any committed one in the list,
 * so at most `limit` less their number of committed files make it (the
 * latest: a committed file last changed when it committed); the cutoff is
 * the commit time of the last of those. In-flight files are all read: which
 * of them are stuck (listed first) is only known from their leases.
 */
async function loadListed(duck: LedgerDuck, files: QueryTable, limit: number): Promise<void> {
  const [ahead] = await rows(duck.connection, `SELECT count(*) AS files FROM files WHERE state IN ('FAILED', 'PENDING')`)
  const committed = limit - num(ahead.files)
  const problems = { column: 'state', in: PROBLEMS }
  let where: ExportFilter[] = [problems]
  if (committed > 0) {
    const [cutoff] = await rows(duck.connection, `SELECT epoch_ms(committed_at) AS at FROM files WHERE state = 'COMMITTED' ORDER BY committed_at DESC LIMIT 1 OFFSET $skip`, { skip: committed - 1 })
    where = cutoff === undefined ? [] : [{ any: [problems, { column: 'committed_at', min: num(cutoff.at) }] }]
  }
  await (await duck.reading(() => duck.load(files, pick(files, LISTED), where, 'listed'))).unpacked
}

const ALERT_ORDER: readonly Alert['kind'][] = ['failing', 'stuck', 'pond', 'late', 'backlog']

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`
  return `${Math.round(ms / 86_400_000)} days`
}

/**
 * The list's columns as the page's script reads them (FileColumns), each
 * as DuckDB computes it of a listed file: times in ms since the epoch; the
 * pipeline, state and error as indexes into their lists.
 */
const LIST_COLUMNS: Record<keyof FileColumns, string> = {
  pipeline: 'list_position($pipelines, pipeline) - 1',
  state: `list_position([${STATES.map((state) => `'${state}'`).join(', ')}], state) - 1`,
  path: 'path',
  hash: 'hash',
  attempts: 'attempts',
  rows: 'rows',
  size: 'size',
  createdAt: 'epoch_ms(created_at)',
  updatedAt: 'epoch_ms(updated_at)',
  committedAt: 'epoch_ms(committed_at)',
  leaseExpiresAt: 'epoch_ms(lease_expires_at)',
  error: 'error_code',
}

/**
 * The files listed: failing, stuck and pending first (what the first screen
 * points at), then the latest to change, up to `limit`. DuckDB writes them
 * as the page embeds them: the JSON text of one array per column (from one
 * list of the files in order, one sort: a list per column, each ordered,
 * took 0.9–1.9 s of 140,000 listed files, one list 1.0 s), as UTF-8 bytes
 * that go into the page as they are (html.ts, scriptSafe). Parsed into
 * JavaScript arrays and written out again, 100,000 files had cost 0.4–0.5 s
 * more; one JSON object of every column, written by DuckDB, 0.3 s more than
 * an array per column. Errors are listed once each, redacted again (the
 * ledger stores them redacted already).
 */
async function listedFiles(connection: DuckDBConnection, limit: number, nowSql: string, now: { now: number }, pipelines: readonly string[]): Promise<{ files: ListedFiles; errors: string[]; filesTotal: number }> {
  const columns = Object.entries(LIST_COLUMNS) as [keyof FileColumns, string][]
  const [row] = await rows(
    connection,
    `WITH shown AS (
       SELECT *, row_number() OVER (ORDER BY (state IN ('FAILED', 'PENDING') OR (state = 'PROCESSING' AND lease_expires_at < ${nowSql})) DESC, updated_at DESC, path) AS n
       FROM listed QUALIFY n <= $limit),
     errors AS (SELECT error, CAST(row_number() OVER (ORDER BY error) - 1 AS INTEGER) AS error_code FROM (SELECT DISTINCT error FROM shown WHERE error IS NOT NULL)),
     list AS (
       SELECT count(*) AS count, list({${columns.map(([name, value]) => `"${name}": ${value}`).join(', ')}} ORDER BY n) AS files
       FROM shown LEFT JOIN errors USING (error))
     SELECT (SELECT count(*) FROM files) AS total, (SELECT list(error ORDER BY error_code) FROM errors) AS errors, count,
            ${columns.map(([name]) => `encode(CAST(to_json(list_transform(files, file -> file."${name}")) AS VARCHAR)) AS "${name}"`).join(', ')}
     FROM list`,
    { ...now, limit, pipelines: duckdb.listValue([...pipelines]) },
  )
  const count = num(row.count)
  // No file listed: an empty list, where DuckDB's list of nothing is NULL.
  const json = columns.flatMap(([name], index) => [Buffer.from(`${index === 0 ? '{' : ','}"${name}":`), count === 0 ? Buffer.from('[]') : (row[name] as Uint8Array)])
  json.push(Buffer.from('}'))
  return {
    filesTotal: num(row.total),
    errors: ((row.errors ?? []) as string[]).map((error) => redact(error)),
    files: { count, json },
  }
}

/** Files and rows committed, and failures, per day (per hour when the ledger spans less than three days), the last 60 buckets. */
async function bucketsOf(connection: DuckDBConnection): Promise<PageData['buckets']> {
  const [span] = await rows(connection, `SELECT date_diff('hour', min(committed_at), max(committed_at)) AS hours FROM files`)
  const unit = span.hours !== null && num(span.hours) < 72 ? 'hour' : 'day'
  const list = await rows(
    connection,
    `WITH committed AS (SELECT date_trunc('${unit}', committed_at) AS bucket, count(*) AS files, sum(rows) AS rows FROM files WHERE state = 'COMMITTED' GROUP BY ALL),
          failed AS (SELECT date_trunc('${unit}', occurred_at) AS bucket, count(*) AS failures FROM events WHERE event = 'file:failed' GROUP BY ALL)
     SELECT epoch_ms(bucket) AS bucket, coalesce(files, 0) AS files, coalesce(rows, 0) AS rows, coalesce(failures, 0) AS failures
     FROM committed FULL JOIN failed USING (bucket) ORDER BY bucket DESC LIMIT 60`,
  )
  return { unit, list: list.reverse().map((row) => ({ at: num(row.bucket), files: num(row.files), rows: num(row.rows), failures: num(row.failures) })) }
}

/** Each pond's latest run. */
async function pondsOf(connection: DuckDBConnection): Promise<PondSummary[]> {
  const list = await rows(
    connection,
    `SELECT pond, arg_max(version, started_at) AS version, arg_max(outcome, started_at) AS outcome, epoch_ms(max(started_at)) AS at, arg_max(error, started_at) AS error
     FROM pond_runs GROUP BY pond ORDER BY pond`,
  )
  return list.map((row) => ({ pond: String(row.pond), version: String(row.version), outcome: row.outcome === null ? null : String(row.outcome), at: num(row.at), error: row.error === null ? null : redact(String(row.error)) }))
}
