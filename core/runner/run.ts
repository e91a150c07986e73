import { setMaxListeners } from 'node:events'
import type { ResolvedConfig, ResolvedPipeline } from '../config/types.js'
import { forEachLimit } from '../concurrency.js'
import type { Destination } from '../destination.js'
import { selectPipelines } from '../config/pipelines.js'
import { FiledgeError, capped, describeError, isFiledgeError } from '../errors.js'
import { csvFormat } from '../formats/csv.js'
import { jsonFormats } from '../formats/json.js'
import { parquetFormat } from '../formats/parquet.js'
import { createHooks, type FileCandidate, type Hooks, type RunSummary, type SkipReason } from '../hooks.js'
import { ledgerPlugin } from '../ledger/plugin.js'
import { openLedger } from '../ledger/open.js'
import type { FileStat, LedgerStore, SettledStat } from '../ledger/types.js'
import { createLogger } from '../logger.js'
import { orderPlugins, type Plugin } from '../plugin.js'
import { discover } from '../source/discover.js'
import { identify, loadClaimed, tableSpec, type FileOutcome, type FileRunContext, type HashedBytes } from './file.js'
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
  const owners = new Map<Destination, ResolvedPipeline[]>()
  for (const pipeline of pipelines) {
    const list = owners.get(pipeline.destination) ?? []
    list.push(pipeline)
    owners.set(pipeline.destination, list)
  }
  const names = new Map<string, number>()
  return [...owners].map(([destination, owned]) => {
    const seen = names.get(destination.name) ?? 0
    names.set(destination.name, seen + 1)
    const name = seen === 0 ? destination.name : `${destination.name}#${seen + 1}`
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
  close(): Promise<void>
}

/** Builds hooks and applies plugins (user pre, built-ins, user, user post, then the caller's). */
export async function createFiledge(options: RunOptions): Promise<Filedge> {
  const { config } = options
  const pipelines = selectPipelines(config, options.pipelines)
  const ledger = options.ledger ?? (await openLedger(config))
  const hooks = createHooks()
  const worker = workerId()
  const builtins = [ledgerPlugin(ledger, config), csvFormat(), jsonFormats(), parquetFormat(), ...destinationPlugins(pipelines)]
  const plugins = [...orderPlugins(config.plugins, builtins), ...(options.plugins ?? [])]
  for (const plugin of plugins) {
    await plugin.apply({ hooks, config, worker, logger: createLogger((entry) => hooks.log.call(entry), plugin.name) })
  }
  return {
    hooks,
    worker,
    pipelines,
    ledger,
    async close() {
      try {
        await hooks.close.promise()
      } finally {
        if (options.ledger === undefined) await ledger.close()
      }
    },
  }
}

export interface Tally {
  committed: number
  failed: number
  skipped: number
  new: number
  reclaimed: number
  retried: number
  rows: number
  released: number
  healed: number
}

/**
 * One pass over every pipeline's source directory: each file is hashed,
 * claimed, loaded and committed (or failed) once. Pipelines run side by side;
 * within a pipeline up to `concurrency` files are in flight.
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
    const context: FileRunContext = { hooks, worker, heartbeatMs: options.config.lease.heartbeatMs, signal }
    await Promise.all(
      filedge.pipelines.map(async (pipeline) => {
        const [candidates, settled] = await Promise.all([
          discover(pipeline, options.config.root, (message) => hooks.log.call({ level: 'warn', message })),
          statCache(filedge.ledger, pipeline),
        ])
        const inFlight = new Map<string, Promise<FileOutcome>>()
        await forEachLimit(candidates, filesInFlight(pipeline, options), async (candidate) => {
          if (signal.aborted) return
          const outcome = await processCandidate(candidate, context, inFlight, settled.get(candidate.path))
          record(tally, outcome)
        })
      }),
    )
    const result = summary()
    await hooks.afterRun.promise(result)
    return result
  } finally {
    await filedge.close()
  }
}

/**
 * How many of a pipeline's files may load at once. Truncate and cdc files are
 * not independent of each other: they go one at a time, in path order
 * (discover sorts; a watcher queues in arrival order).
 */
export function filesInFlight(pipeline: ResolvedPipeline, options: Pick<RunOptions, 'concurrency'>): number {
  return pipeline.writeMode.kind === 'append' ? (options.concurrency ?? pipeline.concurrency) : 1
}

/** A pipeline's stat cache, by path (see LedgerStore.settledStats). */
export async function statCache(ledger: LedgerStore, pipeline: ResolvedPipeline): Promise<Map<string, SettledStat>> {
  const entries = await ledger.settledStats(pipeline.name, pipeline.retry.attempts)
  return new Map(entries.map((entry) => [entry.path, entry]))
}

export function newTally(): Tally {
  return { committed: 0, failed: 0, skipped: 0, new: 0, reclaimed: 0, retried: 0, rows: 0, released: 0, healed: 0 }
}

export function record(tally: Tally, outcome: FileOutcome): void {
  if (outcome.isNew) tally.new++
  if (outcome.kind === 'skipped') {
    tally.skipped++
    return
  }
  if (outcome.kind === 'released') {
    tally.released++
    return
  }
  if (outcome.reclaimed) tally.reclaimed++
  if (outcome.retried) tally.retried++
  if (outcome.kind === 'committed') {
    tally.committed++
    if (outcome.healed) tally.healed++
    else tally.rows += outcome.rows
  } else {
    tally.failed++
  }
}

/**
 * Hash, then claim and load. Two names for the same bytes in one run: the
 * second waits for the first, then claims (which records the alias and finds
 * the file committed) — or, if the first failed, skips instead of spending a
 * second attempt on the same bytes.
 *
 * `settled` is the path's stat cache entry, if the ledger has one: when the
 * candidate's size, mtime, inode and device all match it, the file is the one
 * hashed before and is settled, so it is skipped without reading a byte or
 * writing to the ledger (no transition, no event). Anything else is hashed.
 */
export async function processCandidate(
  candidate: FileCandidate,
  context: FileRunContext,
  inFlight: Map<string, Promise<FileOutcome>>,
  settled?: SettledStat,
): Promise<FileOutcome> {
  const { hooks } = context
  const { pipeline } = candidate
  const skip = (reason: SkipReason, message: string, hash?: string, isNew = false): FileOutcome => {
    hooks.fileSkipped.call({ pipeline, path: candidate.path, hash, reason, message })
    return { kind: 'skipped', hash, reason, isNew }
  }
  const failBeforeClaim = async (failure: FiledgeError, hash?: string): Promise<FileOutcome> => {
    const error = capped(failure)
    await hooks.fileFailed.promise({ pipeline, path: candidate.path, hash, error, terminal: false }).catch(() => undefined)
    return { kind: 'failed', hash, error, isNew: false, reclaimed: false, retried: false }
  }

  if (settled !== undefined && settled.size === candidate.size && settled.mtimeMs === candidate.mtimeMs && settled.ino === candidate.ino && settled.dev === candidate.dev) {
    return settled.state === 'COMMITTED'
      ? skip('committed', 'already committed (unchanged since it was hashed)', settled.hash)
      : skip('terminal', `failed ${settled.attempts} times (retry.attempts is ${pipeline.retry.attempts}); run \`filedge requeue\` to try again`, settled.hash)
  }
  let identity
  try {
    identity = await identify(candidate, hooks)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return skip('changing', 'removed before it could be hashed')
    return failBeforeClaim(isFiledgeError(error) ? error : new FiledgeError('FILE_INVALID', `${candidate.path}: cannot read: ${describeError(error)}`, { file: candidate.path, cause: error }))
  }
  if ('skip' in identity) return skip(identity.reason, identity.skip)
  const { hash } = identity
  if (context.signal.aborted) return skip('stopped', 'the run is stopping; not claimed', hash)

  const earlier = inFlight.get(hash)
  if (earlier !== undefined) {
    const first = await earlier
    if (first.kind === 'failed') return skip('duplicate', 'same bytes as another file in this run, which failed', hash)
  }
  // A second name for bytes in flight in this run arrived with them: it does not reopen a truncate file the first one just applied.
  const attempt = claimAndLoad(candidate, hash, identity.stat, context, identity.read, earlier === undefined)
  if (earlier === undefined) inFlight.set(hash, attempt)
  return attempt
}

/** What a local file's stat says about this copy of its bytes: a rewrite or a new file at the path changes it. */
function localVersion(candidate: FileCandidate): string {
  return `${candidate.mtimeMs}:${candidate.ino}`
}

async function claimAndLoad(candidate: FileCandidate, hash: string, stat: FileStat | undefined, context: FileRunContext, read: HashedBytes | undefined, arrival: boolean): Promise<FileOutcome> {
  const { hooks } = context
  const { pipeline } = candidate
  const file = { hash, path: candidate.path, absPath: candidate.absPath, size: candidate.size, mtimeMs: candidate.mtimeMs }
  const claim = await hooks.claim.promise({ pipeline, file, worker: context.worker, version: localVersion(candidate), arrival, ...(stat === undefined ? {} : { stat }) })
  if (claim === undefined) throw new FiledgeError('INTERNAL', 'no ledger answered the claim')
  if (claim.status === 'skipped') {
    hooks.fileSkipped.call({ pipeline, path: file.path, hash, reason: claim.reason, message: claim.message })
    return { kind: 'skipped', hash, reason: claim.reason, isNew: claim.isNew }
  }
  const { lease, isNew, reclaimed, retried } = claim
  const started = performance.now()
  hooks.fileClaimed.call({ pipeline, file, attempt: lease.attempt, reclaimed })
  const result = await loadClaimed(pipeline, file, lease, context, read)
  if ('released' in result) {
    hooks.fileSkipped.call({ pipeline, path: file.path, hash, reason: context.signal.aborted ? 'stopped' : 'held', message: result.released })
    return { kind: 'released', hash, isNew }
  }
  if ('error' in result) {
    await hooks.fileFailed.promise({ pipeline, path: file.path, hash, error: result.error, terminal: result.terminal }).catch((error) =>
      hooks.log.call({ level: 'error', message: `fileFailed hook failed for ${file.path}: ${describeError(error)}` }),
    )
    return { kind: 'failed', hash, error: result.error, isNew, reclaimed, retried }
  }
  await hooks.afterCommit
    .promise({ pipeline, file, rows: result.rows, attempt: lease.attempt, durationMs: Math.round(performance.now() - started), ...(result.healed === undefined ? {} : { healed: result.healed }) })
    .catch((error) => hooks.log.call({ level: 'error', message: `${describeError(error)} (the file stays committed)` }))
  return { kind: 'committed', hash, rows: result.rows, isNew, reclaimed, retried, healed: result.healed !== undefined }
}
