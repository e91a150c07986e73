import { createHash, randomUUID } from 'node:crypto'
import { rename, rm, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { describeError, quoteIdentifier, type LedgerStore, type PondEventInput, type PondTrigger, type ResolvedPipeline, type SqlSession } from '../../core/index.js'
import { ancestors, type Catchment, type ResolvedPond, type ResolvedRipple } from './catchment.js'

/**
 * One demand from an outlet: its ancestors run in order, each once, as of
 * the demand's freshness F. A pond whose inputs (its code, the data versions
 * of what it reads) are those of its last good run passes without running;
 * one that fails (after its attempts) is marked failed, and the ponds that
 * need it are blocked, not run; ponds upstream keep what they built.
 *
 * A pond runs under a lease in the ledger, so two processes demanding at
 * once never run it twice for the same inputs: the second waits for the
 * lease, then finds the inputs already built and passes.
 *
 * Its ripples run in one DuckDB transaction: each is built beside its table,
 * checked against it (a dropped or retyped column fails the run: that takes
 * a new major), and swapped in; readers see the old tables or the new ones,
 * and a crash mid-run leaves the old. Sources are read as of F: a pipeline's
 * table through a view of the files committed by F, an upstream pond's
 * ripples as this demand left them.
 */

export type PondOutcome = 'succeeded' | 'passed' | 'failed' | 'blocked'

export interface PondResult {
  readonly pond: string
  readonly version: string
  readonly outcome: PondOutcome
  readonly durationMs: number
  readonly error?: string
  /** Ripples built, with their rows (a run that succeeded). */
  readonly ripples?: readonly { readonly name: string; readonly rows: number }[]
}

export interface DemandResult {
  readonly outlet: string
  readonly freshness: string
  readonly ponds: readonly PondResult[]
}

export interface DemandOptions {
  readonly catchment: Catchment
  readonly ledger: LedgerStore
  readonly session: <T>(task: (db: SqlSession) => Promise<T>) => Promise<T>
  readonly outlet: string
  readonly trigger: PondTrigger
  readonly worker: string
  /** The config's directory: Parquet paths resolve against it. */
  readonly root: string
  /** The clock (ms since the epoch); F is its time when the demand starts. */
  readonly now?: () => number
  readonly onPond?: (result: PondResult) => void
  /** How long a pond's lease lasts without renewal. Default 60 s. */
  readonly leaseMs?: number
  readonly signal?: AbortSignal
}

const RUN_CATALOG = '__filedge_pond'

function sha256(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex')
}

/** What a pipeline's table held at F: the files committed by then, and the hash of that set (its data version). */
interface Inlet {
  readonly version: string
  readonly hashes: readonly string[]
  readonly freshness: string | null
}

async function inletAt(ledger: LedgerStore, pipeline: ResolvedPipeline, freshness: string): Promise<Inlet> {
  const files = (await ledger.committedHashes([pipeline.name])).filter((file) => file.committedAt <= freshness)
  const hashes = files.map((file) => file.hash).sort()
  const latest = files.reduce<string | null>((max, file) => (max === null || file.committedAt > max ? file.committedAt : max), null)
  return { version: sha256({ pipeline: pipeline.name, table: pipeline.table, hashes }), hashes, freshness: latest }
}

function sqlString(text: string): string {
  return `'${text.replace(/'/g, "''")}'`
}

async function waitFor(ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal?.addEventListener('abort', () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })
}

export async function demand(options: DemandOptions): Promise<DemandResult> {
  const { catchment, ledger, outlet, trigger, worker } = options
  const now = options.now ?? Date.now
  const freshness = new Date(now()).toISOString()
  const leaseMs = options.leaseMs ?? 60_000
  const results = new Map<string, PondResult & { dataVersion?: string }>()
  const inlets = new Map<string, Promise<Inlet>>()
  const inlet = (pipeline: ResolvedPipeline) => {
    let found = inlets.get(pipeline.name)
    if (found === undefined) inlets.set(pipeline.name, (found = inletAt(ledger, pipeline, freshness)))
    return found
  }
  const record = (pond: ResolvedPond, runId: string, event: Omit<PondEventInput, 'pond' | 'version' | 'runId' | 'outlet' | 'trigger' | 'freshness' | 'worker'>) =>
    ledger.recordPond({ pond: pond.key, version: pond.versionText, runId, outlet, trigger, freshness, worker, ...event })

  for (const key of ancestors(catchment, outlet)) {
    if (options.signal?.aborted) break
    const pond = catchment.ponds.get(key)!
    const started = performance.now()
    const finish = (result: Omit<PondResult, 'pond' | 'version' | 'durationMs'> & { dataVersion?: string }) => {
      const done = { pond: key, version: pond.versionText, durationMs: Math.round(performance.now() - started), ...result }
      results.set(key, done)
      options.onPond?.(done)
    }
    const blockers = pond.sources.filter((source) => source.kind === 'pond' && !['succeeded', 'passed'].includes(results.get(source.pond)?.outcome ?? 'blocked'))
    if (blockers.length > 0) {
      const error = `blocked: it needs ${blockers.map((source) => `${source.kind === 'pond' ? source.pond : source.alias} (${results.get(source.kind === 'pond' ? source.pond : '')?.outcome ?? 'not run'})`).join(', ')}`
      await record(pond, randomUUID(), { event: 'pond:blocked', error })
      finish({ outcome: 'blocked', error })
      continue
    }
    const reads: Record<string, string> = {}
    for (const source of pond.sources) {
      reads[source.alias] = source.kind === 'absent' ? 'absent' : source.kind === 'pond' ? results.get(source.pond)!.dataVersion! : (await inlet(source.pipeline)).version
    }
    const inputVersion = sha256({ code: pond.code, reads })

    const token = await lease(ledger, key, worker, leaseMs, options.signal)
    if (token === undefined) break
    const renew = setInterval(() => void ledger.renewPondLease(key, token, leaseMs).catch(() => undefined), Math.max(1000, leaseMs / 3))
    try {
      const last = await ledger.lastPondSuccess(key)
      if (last !== undefined && last.inputVersion === inputVersion) {
        await record(pond, randomUUID(), { event: 'pond:passed', inputVersion, dataVersion: last.dataVersion ?? inputVersion })
        finish({ outcome: 'passed', dataVersion: last.dataVersion ?? inputVersion })
        continue
      }
      const runId = randomUUID()
      await record(pond, runId, { event: 'pond:started', inputVersion })
      let failure: { ripple?: string; error: string } | undefined
      for (let attempt = 1; attempt <= pond.attempts; attempt++) {
        failure = undefined
        const attemptStarted = performance.now()
        try {
          // Fenced like a file's commit: the transaction commits only while this process still holds the pond's lease.
          const fence = () => ledger.renewPondLease(key, token, leaseMs)
          const built = await options.session((db) => build(db, pond, catchment, freshness, inlet, fence))
          for (const ripple of built) await record(pond, runId, { event: 'ripple:succeeded', ripple: ripple.name, rows: ripple.rows, durationMs: ripple.durationMs, inputVersion })
          await publish(options, pond, built)
          const durationMs = Math.round(performance.now() - attemptStarted)
          await record(pond, runId, { event: 'pond:succeeded', inputVersion, dataVersion: inputVersion, durationMs })
          finish({ outcome: 'succeeded', dataVersion: inputVersion, ripples: built.map(({ name, rows }) => ({ name, rows })) })
          break
        } catch (error) {
          failure = { ...(error instanceof RippleError ? { ripple: error.ripple } : {}), error: describeError(error instanceof RippleError ? error.cause : error) }
          if (attempt < pond.attempts) continue
        }
      }
      if (failure !== undefined) {
        const message = failure.ripple === undefined ? failure.error : `ripple ${failure.ripple}: ${failure.error}`
        if (failure.ripple !== undefined) await record(pond, runId, { event: 'ripple:failed', ripple: failure.ripple, error: failure.error, inputVersion })
        await record(pond, runId, { event: 'pond:failed', inputVersion, error: message, durationMs: Math.round(performance.now() - started) })
        finish({ outcome: 'failed', error: message })
      }
    } finally {
      clearInterval(renew)
      await ledger.releasePondLease(key, token).catch(() => undefined)
    }
  }
  return { outlet, freshness, ponds: [...results.values()].map(({ dataVersion: _version, ...result }) => result) }
}

/** The pond's lease: taken at once when free, else waited for (another process is running it); undefined if stopped. */
async function lease(ledger: LedgerStore, key: string, worker: string, leaseMs: number, signal?: AbortSignal): Promise<string | undefined> {
  for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
    const token = await ledger.takePondLease(key, worker, leaseMs)
    if (token !== undefined) return token
    if (signal?.aborted) return undefined
    await waitFor(wait, signal)
  }
}

class RippleError extends Error {
  constructor(
    readonly ripple: string,
    override readonly cause: unknown,
  ) {
    super(`ripple ${ripple}: ${describeError(cause)}`)
  }
}

interface Built {
  readonly name: string
  readonly rows: number
  readonly durationMs: number
  readonly parquet?: string
}

interface Column {
  readonly name: string
  readonly type: string
}

async function columnsOf(db: SqlSession, catalog: string, schema: string, table: string): Promise<Column[]> {
  const rows = await db.all(
    'SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = $catalog AND table_schema = $schema AND table_name = $table ORDER BY ordinal_position',
    { catalog, schema, table },
  )
  return rows.map((row) => ({ name: String(row.column_name), type: String(row.data_type) }))
}

/** A dropped or retyped column, said as the user would fix it; undefined when the new table keeps every old column as it was. */
function incompatible(before: readonly Column[], after: readonly Column[]): string | undefined {
  const now = new Map(after.map((column) => [column.name, column.type]))
  for (const column of before) {
    const type = now.get(column.name)
    if (type === undefined) return `column "${column.name}" (${column.type}) is gone`
    if (type !== column.type) return `column "${column.name}" was ${column.type} and is now ${type}`
  }
  return undefined
}

/**
 * Builds the pond's ripples in one transaction, in order, each reading its
 * sources and the ripples built before it; the tables swap in at COMMIT.
 */
async function build(
  db: SqlSession,
  pond: ResolvedPond,
  catchment: Catchment,
  freshness: string,
  inlet: (pipeline: ResolvedPipeline) => Promise<Inlet>,
  fence: () => Promise<boolean>,
): Promise<Built[]> {
  const [{ catalog, search }] = (await db.all("SELECT current_database() AS catalog, current_setting('search_path') AS search")) as [{ catalog: string; search: string }]
  const database = quoteIdentifier(catalog)
  const schema = `${database}.${quoteIdentifier(pond.key)}`
  const attached: string[] = []
  const present = new Set<string>()
  try {
    await db.run(`ATTACH ':memory:' AS ${quoteIdentifier(RUN_CATALOG)}`)
    attached.push(RUN_CATALOG)
    const run = `${quoteIdentifier(RUN_CATALOG)}.main`
    for (const source of pond.sources) {
      if (source.kind === 'absent') continue
      present.add(source.alias)
      if (source.kind === 'pipeline') {
        const table = `${database}.main.${quoteIdentifier(source.pipeline.table)}`
        if (source.pipeline.writeMode.kind === 'append') {
          // Pinned to F: only the rows of files committed by then (a file committing during the run is not half-read).
          const pin = `${run}.${quoteIdentifier(`__pin_${source.alias}`)}`
          await db.run(`CREATE TABLE ${pin} AS SELECT unnest(string_split($hashes, ',')) AS hash`, { hashes: (await inlet(source.pipeline)).hashes.join(',') })
          await db.run(`CREATE VIEW ${run}.${quoteIdentifier(source.alias)} AS SELECT * FROM ${table} WHERE "_source_file_hash" IN (SELECT hash FROM ${pin})`)
        } else {
          await db.run(`CREATE VIEW ${run}.${quoteIdentifier(source.alias)} AS SELECT * FROM ${table}`)
        }
      } else {
        // An upstream pond's ripples, as `alias.ripple`.
        await db.run(`ATTACH ':memory:' AS ${quoteIdentifier(source.alias)}`)
        attached.push(source.alias)
        for (const ripple of catchment.ponds.get(source.pond)!.ripples) {
          await db.run(`CREATE VIEW ${quoteIdentifier(source.alias)}.main.${quoteIdentifier(ripple.name)} AS SELECT * FROM ${database}.${quoteIdentifier(source.pond)}.${quoteIdentifier(ripple.name)}`)
        }
      }
    }
    await db.run(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    await db.run(`SET search_path = ${sqlString(`${quoteIdentifier(RUN_CATALOG)}.main,${schema}`)}`)
    const built: Built[] = []
    await db.run('BEGIN TRANSACTION')
    try {
      for (const ripple of pond.ripples) built.push(await buildRipple(db, pond, ripple, catalog, schema, freshness, present))
      if (!(await fence())) throw new Error(`${pond.key} lost its lease while it ran (another process may run it now); nothing it built was kept`)
      await db.run('COMMIT')
    } catch (error) {
      await db.run('ROLLBACK').catch(() => undefined)
      throw error
    }
    return built
  } finally {
    await db.run(`SET search_path = ${sqlString(search)}`).catch(() => undefined)
    for (const name of attached.reverse()) await db.run(`DETACH ${quoteIdentifier(name)}`).catch(() => undefined)
  }
}

async function buildRipple(db: SqlSession, pond: ResolvedPond, ripple: ResolvedRipple, catalog: string, schema: string, freshness: string, present: ReadonlySet<string>): Promise<Built> {
  const started = performance.now()
  const target = `${schema}.${quoteIdentifier(ripple.name)}`
  const building = `${ripple.name}__filedge_building`
  const table = `${schema}.${quoteIdentifier(building)}`
  try {
    await db.run(`DROP TABLE IF EXISTS ${table}`)
    let select = ripple.sql
    if (ripple.run !== undefined) {
      const returned = await ripple.run(db, { pond: pond.key, ripple: ripple.name, freshness, table, present })
      select = returned === undefined ? undefined : typeof returned === 'string' ? returned : returned.text
    }
    if (select !== undefined) await db.run(`CREATE TABLE ${table} AS ${select.trim().replace(/;\s*$/, '')}`)
    const after = await columnsOf(db, catalog, pond.key, building)
    if (after.length === 0) throw new Error(`run returned nothing and did not create ${table}`)
    const before = await columnsOf(db, catalog, pond.key, ripple.name)
    const broken = before.length === 0 ? undefined : incompatible(before, after)
    if (broken !== undefined) throw new Error(`${broken}; a dropped or retyped column needs a new major version of ${pond.name} (its tables live beside these), the previous output is kept`)
    await db.run(`DROP TABLE IF EXISTS ${target}`)
    await db.run(`ALTER TABLE ${table} RENAME TO ${quoteIdentifier(ripple.name)}`)
    const [{ rows }] = (await db.all(`SELECT count(*) AS rows FROM ${target}`)) as [{ rows: bigint | number }]
    return { name: ripple.name, rows: Number(rows), durationMs: Math.round(performance.now() - started), ...(ripple.parquet === undefined ? {} : { parquet: ripple.parquet }) }
  } catch (error) {
    throw new RippleError(ripple.name, error)
  }
}

/** Ripples with a Parquet file: written beside it, then renamed over it (a reader sees the old file or the new). */
async function publish(options: DemandOptions, pond: ResolvedPond, built: readonly Built[]): Promise<void> {
  for (const ripple of built) {
    if (ripple.parquet === undefined) continue
    const file = path.resolve(options.root, ripple.parquet)
    const temp = `${file}.${randomUUID().slice(0, 8)}.tmp`
    await mkdir(path.dirname(file), { recursive: true })
    try {
      await options.session(async (db) => {
        const [{ catalog }] = (await db.all('SELECT current_database() AS catalog')) as [{ catalog: string }]
        await db.run(`COPY (SELECT * FROM ${quoteIdentifier(catalog)}.${quoteIdentifier(pond.key)}.${quoteIdentifier(ripple.name)}) TO ${sqlString(temp)} (FORMAT parquet)`)
      })
      await rename(temp, file)
    } catch (error) {
      await rm(temp, { force: true })
      throw new RippleError(ripple.name, new Error(`writing ${ripple.parquet}: ${describeError(error)}`))
    }
  }
}

