import { setMaxListeners } from 'node:events'
import { lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { ResolvedConfig, ResolvedPipeline } from '../config/types.js'
import { selectPipelines } from '../config/pipelines.js'
import { requireKeys, type PipelineKeys } from '../config/row-controls.js'
import { FiledgeError, configInvalid, describeError, isFiledgeError } from '../errors.js'
import { csvFormat } from '../formats/csv.js'
import { fixedFormat } from '../formats/fixed.js'
import { jsonFormats } from '../formats/json.js'
import { parquetFormat } from '../formats/parquet.js'
import { xlsxFormat } from '../formats/xlsx.js'
import { createHooks, type Hooks, type RunSummary } from '../hooks.js'
import { ledgerPlugin } from '../ledger/plugin.js'
import { openLedger } from '../ledger/open.js'
import type { LedgerStore } from '../ledger/types.js'
import { createLogger } from '../logger.js'
import { orderPlugins, servedBy, type Plugin } from '../plugin.js'
import type { SourceEntry } from '../source.js'
import { sourcePlugins } from '../source/plugin.js'
import { statCachePlugin } from '../source/stat-cache.js'
import { stagesPlugin } from '../stages/plugin.js'
import { openTelemetryPlugin } from '../telemetry/opentelemetry.js'
import { tableSpec, type FileRunContext } from './file.js'
import { createIngest, newTally } from './ingest.js'
import { workerId } from './worker.js'

export interface RunOptions {
  readonly config: ResolvedConfig
  /** Only these pipelines (by name). Default: all. */
  readonly pipelines?: readonly string[]
  /** Files in flight per pipeline; overrides the config. */
  readonly concurrency?: number
  /** Reporters and other plugins supplied by the caller (the CLI), applied after the config's. */
  readonly plugins?: readonly Plugin[]
  /** Stops starting new files when aborted. */
  readonly signal?: AbortSignal
  /** Use this ledger instead of opening the configured one (the caller closes it). */
  readonly ledger?: LedgerStore
}

/** Each destination object becomes a plugin: it prepares its tables before the run and answers `commit` for its pipelines. */
function destinationPlugins(pipelines: readonly ResolvedPipeline[]): Plugin[] {
  return servedBy(pipelines, (pipeline) => pipeline.destination).map(({ server: destination, pipelines: owned, name }) => {
    const mine = new Set(owned.map((pipeline) => pipeline.name))
    return {
      name,
      apply({ hooks, config, logger }) {
        hooks.beforeRun.tapPromise(name, async () => {
          await destination.open?.({ config, logger })
          for (const pipeline of owned) await destination.prepare(tableSpec(pipeline), pipeline.writeMode)
        })
        hooks.commit.tapPromise(name, async (job) => (mine.has(job.pipeline) ? destination.write(job) : undefined))
        hooks.loaded.tapPromise(name, async ({ pipeline, file }) =>
          mine.has(pipeline.name) && destination.hasLoaded !== undefined
            ? destination.hasLoaded({ pipeline: pipeline.name, table: tableSpec(pipeline), writeMode: pipeline.writeMode, hash: file.hash })
            : undefined,
        )
        hooks.close.tapPromise(name, async () => {
          await destination.close?.()
        })
      },
    } satisfies Plugin
  })
}

export interface Filedge {
  readonly hooks: Hooks
  readonly worker: string
  readonly pipelines: readonly ResolvedPipeline[]
  readonly ledger: LedgerStore
  /** The keys of protected columns and quarantines, by pipeline, read once before the run. */
  readonly keys: ReadonlyMap<string, PipelineKeys>
  close(): Promise<void>
}

/** Builds hooks and applies plugins (user pre, built-ins, user, user post, then the caller's). */
export async function createFiledge(options: RunOptions): Promise<Filedge> {
  const { config } = options
  const pipelines = selectPipelines(config, options.pipelines)
  // Every key the loads need, before anything is opened or written (a missing one stops the run with exit 2).
  const keys = requireKeys(pipelines)
  const ledger = options.ledger ?? (await openLedger(config))
  const hooks = createHooks()
  const worker = workerId()
  const builtins = [...sourcePlugins(pipelines, ledger), statCachePlugin(ledger), ledgerPlugin(ledger, config), csvFormat(), fixedFormat(), jsonFormats(), parquetFormat(), xlsxFormat(), stagesPlugin(), ...destinationPlugins(pipelines), openTelemetryPlugin()].filter(
    (plugin) => !config.disabledBuiltins.includes(plugin.name),
  )
  const plugins = [...orderPlugins(config.plugins, builtins), ...(options.plugins ?? [])]
  for (const plugin of plugins) {
    try {
      await plugin.apply({ hooks, config, worker, logger: createLogger((entry) => hooks.log.call(entry), plugin.name) })
    } catch (error) {
      if (options.ledger === undefined) await ledger.close().catch(() => undefined)
      // A plugin that cannot set itself up is a configuration problem (exit 2), said with its name, not an internal error.
      const hint = /\b(tap|tapPromise|tapAsync)\b/.test(describeError(error)) ? ` (the hooks are: ${Object.keys(hooks).join(', ')})` : ''
      throw configInvalid(`plugin "${plugin.name}" failed in apply: ${describeError(error)}${hint}`, error)
    }
  }
  return {
    hooks,
    worker,
    pipelines,
    ledger,
    keys,
    async close() {
      try {
        await hooks.close.promise()
      } finally {
        if (options.ledger === undefined) await ledger.close()
      }
    },
  }
}

/**
 * One pass over every pipeline's source: each file listed is hashed, claimed,
 * loaded and committed (or failed) once. Pipelines run side by side; within
 * a pipeline up to `concurrency` files are in flight. A source that cannot
 * list (a missing bucket, wrong credentials) fails its pipeline alone.
 */
export async function run(options: RunOptions): Promise<RunSummary> {
  const started = performance.now()
  const filedge = await createFiledge(options)
  const { hooks, worker } = filedge
  const signal = options.signal ?? new AbortController().signal
  // Every file in flight listens for the stop; with a high --concurrency that is more than Node's default of 10.
  setMaxListeners(0, signal)
  const tally = newTally()
  const summary = (aborted?: FiledgeError): RunSummary => ({ ...tally, durationMs: Math.round(performance.now() - started), ...(aborted ? { aborted } : {}) })
  try {
    try {
      await hooks.beforeRun.promise({ config: options.config, worker, pipelines: filedge.pipelines })
    } catch (error) {
      const aborted = isFiledgeError(error) ? error : new FiledgeError('INTERNAL', describeError(error), { cause: error })
      const result = summary(aborted)
      await hooks.afterRun.promise(result)
      return result
    }
    const ingest = createIngest({ context: await fileRunContext(filedge, options.config, signal), tally, concurrency: options.concurrency, scatterWhenHeld: filedge.ledger.kind === 'postgres' })
    await Promise.all(
      filedge.pipelines.map(async (pipeline) => {
        if (!(await listInto(filedge, pipeline, signal, (entry) => ingest.submit(pipeline, entry)))) tally.sourceErrors++
        // Files listed before a listing failed are loading: they finish before the run ends.
        await ingest.idle(pipeline.name)
      }),
    )
    const result = summary()
    await hooks.afterRun.promise(result)
    return result
  } finally {
    await filedge.close()
  }
}

/** What every file of a session shares: hooks, worker, the stop signal, the spool directory. */
export async function fileRunContext(filedge: Filedge, config: ResolvedConfig, signal: AbortSignal): Promise<FileRunContext> {
  const spoolDir = await spoolDirectory()
  await sweepSpool(spoolDir)
  return { hooks: filedge.hooks, worker: filedge.worker, heartbeatMs: config.lease.heartbeatMs, signal, spoolDir, inFlight: new Map(), keys: filedge.keys }
}

/**
 * The user's own spool directory under the system's temporary directory,
 * readable by nobody else (spooled files are partners' data). A path there
 * that is not a directory of this user with mode 0700 (someone else made it
 * first, or a link) is not used: the run gets a private one of its own.
 */
async function spoolDirectory(): Promise<string> {
  const uid = process.getuid?.() ?? 0
  const dir = path.join(os.tmpdir(), `filedge-spool-${uid}`)
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch(() => undefined)
  const stats = await lstat(dir).catch(() => undefined)
  if (stats !== undefined && stats.isDirectory() && (process.getuid === undefined || (stats.uid === uid && (stats.mode & 0o077) === 0))) return dir
  return mkdtemp(path.join(os.tmpdir(), 'filedge-spool-'))
}

/**
 * Spool files are named `<pid>-<uuid>` and deleted when their file is done;
 * a process killed meanwhile leaves them. Whoever starts next deletes those
 * of processes that no longer run (a pid reused since keeps its files until
 * that process ends: a leak, never a file deleted under a running load).
 */
async function sweepSpool(spoolDir: string): Promise<void> {
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM'
    }
  }
  for (const name of await readdir(spoolDir).catch(() => [] as string[])) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1])
    if (Number.isInteger(pid) && pid > 0 && !alive(pid)) await rm(path.join(spoolDir, name), { force: true }).catch(() => undefined)
  }
}

/**
 * Hands a pipeline's listing to `submit` (the ingest loop); false (the error
 * logged, naming the pipeline and its source) when the source cannot list.
 * Append files stream in as the source pages through its store; truncate and
 * cdc files are applied in path order, so their listing is sorted first, and
 * none of a listing that fails is applied (its order would be a guess). A
 * failing listing's append files listed before the error still load (the
 * fetch source lists what it promoted, then says the API failed).
 */
export async function listInto(filedge: Filedge, pipeline: ResolvedPipeline, signal: AbortSignal, submit: (entry: SourceEntry) => void): Promise<boolean> {
  const { hooks } = filedge
  // A source's warnings name the path they are about (a link out of the folder), or the source.
  const warn = (message: string) => hooks.log.call({ level: 'warn', message })
  let submitted = 0
  try {
    const listing = await hooks.list.promise({ pipeline, signal, warn })
    if (listing === undefined) throw new FiledgeError('PLUGIN_ERROR', `no source lists pipeline "${pipeline.name}"`)
    const ordered = pipeline.writeMode.kind !== 'append'
    const entries: SourceEntry[] = []
    for await (const entry of listing) {
      if (signal.aborted) break
      if (ordered) entries.push(entry)
      else {
        submit(entry)
        submitted++
      }
    }
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).forEach(submit)
    return true
  } catch (error) {
    const where = pipeline.source.describe()
    const reason = describeError(error)
    const loaded = submitted === 0 ? 'its files were not loaded' : submitted === 1 ? 'the file listed before the error is loaded' : `the ${submitted} files listed before the error are loaded`
    hooks.log.call({ level: 'error', message: `pipeline "${pipeline.name}": cannot list ${reason.includes(where) ? reason : `${where}: ${reason}`}; ${loaded}` })
    return false
  }
}
