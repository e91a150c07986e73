import type { ResolvedPipeline } from '../config/types.js'
import { describeError } from '../errors.js'
import type { FileCandidate } from '../hooks.js'
import type { SourceEntry } from '../source.js'
import { inFlightKey, ingestFile, type FileOutcome, type FileRunContext } from './file.js'

export interface Tally {
  committed: number
  failed: number
  skipped: number
  new: number
  reclaimed: number
  retried: number
  rows: number
  quarantined: number
  released: number
  healed: number
  sourceErrors: number
}

export function newTally(): Tally {
  return { committed: 0, failed: 0, skipped: 0, new: 0, reclaimed: 0, retried: 0, rows: 0, quarantined: 0, released: 0, healed: 0, sourceErrors: 0 }
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
    else {
      tally.rows += outcome.rows
      tally.quarantined += outcome.quarantined?.rows ?? 0
    }
  } else {
    tally.failed++
  }
}

/**
 * How many of a pipeline's files may load at once. Truncate and cdc files are
 * not independent of each other: they go one at a time, in the order they
 * were queued (a run queues them by path; a watcher in arrival order).
 */
function filesInFlight(pipeline: ResolvedPipeline, concurrency: number | undefined): number {
  return pipeline.writeMode.kind === 'append' ? (concurrency ?? pipeline.concurrency) : 1
}

export interface IngestOptions {
  readonly context: FileRunContext
  readonly tally: Tally
  /** `--concurrency`, over the pipeline's own. */
  readonly concurrency?: number
  /** Watch mode: hears each outcome (to retry a file still being written, or remember a failure). */
  readonly onOutcome?: (candidate: FileCandidate, outcome: FileOutcome) => void
  /**
   * Count a skip once per file and reason (watch mode: a config reload lists
   * every file again, and the summary must not grow with each rescan).
   */
  readonly skipsOnce?: Set<string>
  /**
   * Forget a file's hash once it is done (watch mode: a long-running watcher
   * must not remember every file it ever saw). A run keeps them, so a second
   * name of bytes that failed earlier in the run skips instead of spending
   * another attempt.
   */
  readonly forget?: boolean
  /**
   * Workers share the ledger (Postgres): an append pipeline whose file turns
   * out held by another worker takes its waiting files in an order of its own
   * from then on (see `scatter`).
   */
  readonly scatterWhenHeld?: boolean
}

/**
 * The waiting files of a lane, shuffled. Workers listing the same files take
 * them in the same order, in step: each read, hashed and claimed the files
 * the other had just taken, and lost those claims (with two workers, about
 * half its files). A file found held by another worker is the sign; in orders
 * of their own the workers mostly meet files the other has already claimed or
 * committed, which the stat cache's lookup skips unread (stat-cache.ts).
 * Append files only: nothing depends on their order. A worker alone never
 * sees a file held by another (but a dead worker's, until its lease expires),
 * so its files go in the order they were listed.
 */
function scatter(pending: Map<string, FileCandidate>): void {
  const entries = [...pending]
  for (let index = entries.length - 1; index > 0; index--) {
    const other = Math.floor(Math.random() * (index + 1))
    ;[entries[index], entries[other]] = [entries[other], entries[index]]
  }
  pending.clear()
  for (const [path, candidate] of entries) pending.set(path, candidate)
}

/** Files of one pipeline waiting for a slot, by path: a path queued again before its turn is read once, as it is then. */
interface Lane {
  readonly pipeline: ResolvedPipeline
  readonly pending: Map<string, FileCandidate>
  running: number
}

/**
 * The one ingest loop. A run feeds it each source's listing; watch feeds it
 * the listing, then what the source's watcher (or the core's polling)
 * reports. Pipelines run side by side; within a pipeline up to
 * `filesInFlight` files go through `ingestFile` at once.
 */
export interface Ingest {
  submit(pipeline: ResolvedPipeline, entry: SourceEntry): void
  /** Resolves once nothing is queued or loading (for a pipeline, or all). */
  idle(pipeline?: string): Promise<void>
  /** Stops starting files for good: `idle` then waits only for the files loading now (a config reload, a stop). */
  pause(): void
}

export function createIngest(options: IngestOptions): Ingest {
  const { context, tally } = options
  const lanes = new Map<string, Lane>()
  const waiters: { readonly pipeline?: string; readonly resolve: () => void }[] = []
  let paused = false

  const lane = (pipeline: ResolvedPipeline): Lane => {
    let found = lanes.get(pipeline.name)
    if (found === undefined) {
      found = { pipeline, pending: new Map(), running: 0 }
      lanes.set(pipeline.name, found)
    }
    return found
  }
  const quiet = (name?: string) => {
    const check = (entry: Lane | undefined) => entry === undefined || (entry.running === 0 && (entry.pending.size === 0 || paused || context.signal.aborted))
    return name === undefined ? [...lanes.values()].every(check) : check(lanes.get(name))
  }
  const wake = () => {
    for (let index = waiters.length - 1; index >= 0; index--) {
      if (quiet(waiters[index].pipeline)) waiters.splice(index, 1)[0].resolve()
    }
  }

  const pump = (pipeline: ResolvedPipeline) => {
    const entry = lane(pipeline)
    while (!paused && !context.signal.aborted && entry.running < filesInFlight(pipeline, options.concurrency) && entry.pending.size > 0) {
      const [path, candidate] = entry.pending.entries().next().value as [string, FileCandidate]
      entry.pending.delete(path)
      context.hooks.queue.call({ pipeline, waiting: entry.pending.size })
      entry.running++
      void ingestOne(pipeline, candidate, entry)
    }
    wake()
  }

  const ingestOne = async (pipeline: ResolvedPipeline, candidate: FileCandidate, entry: Lane) => {
    try {
      const outcome = await ingestFile(candidate, context)
      const key = (reason: string) => `${pipeline.name}\u0000${candidate.path}\u0000${candidate.version}\u0000${reason}`
      const skip = outcome.kind === 'skipped' ? key(outcome.reason) : undefined
      if (skip === undefined || options.skipsOnce === undefined || !options.skipsOnce.has(skip)) record(tally, outcome)
      if (skip !== undefined) options.skipsOnce?.add(skip)
      // A version this watch committed, listed again by a rescan (a reload, a watcher event and a sweep racing), is not a skip of its own.
      else if (outcome.kind === 'committed') options.skipsOnce?.add(key('committed'))
      if (options.forget === true && outcome.hash !== undefined) context.inFlight.delete(inFlightKey(pipeline, outcome.hash))
      if (options.scatterWhenHeld === true && outcome.kind === 'skipped' && outcome.reason === 'held' && pipeline.writeMode.kind === 'append') scatter(entry.pending)
      options.onOutcome?.(candidate, outcome)
    } catch (error) {
      context.hooks.log.call({ level: 'error', message: `${candidate.path}: ${describeError(error)}` })
    } finally {
      entry.running--
      pump(pipeline)
      wake()
    }
  }

  return {
    submit(pipeline, entry) {
      if (context.signal.aborted) return
      const queued = lane(pipeline).pending
      queued.set(entry.path, { ...entry, pipeline })
      context.hooks.queue.call({ pipeline, waiting: queued.size })
      pump(pipeline)
    },
    idle(pipeline) {
      return quiet(pipeline) ? Promise.resolve() : new Promise((resolve) => waiters.push({ pipeline, resolve }))
    },
    pause() {
      paused = true
      wake()
    },
  }
}
