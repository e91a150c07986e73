import { setMaxListeners } from 'node:events'
import { stat } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { watch as watchPaths, type FSWatcher } from 'chokidar'
import type { ResolvedConfig, ResolvedPipeline } from '../config/types.js'
import { FiledgeError, describeError, isFiledgeError } from '../errors.js'
import type { FileCandidate, RunSummary } from '../hooks.js'
import type { SettledStat } from '../ledger/types.js'
import { createFiledge, filesInFlight, newTally, processCandidate, record, statCache, type Filedge, type RunOptions } from '../runner/run.js'
import type { FileOutcome, FileRunContext } from '../runner/file.js'
import { discover, sourceMatcher, toRelative } from '../source/discover.js'
import { boundaryOf, linkedOutside, resolvesInside } from '../source/links.js'
import { configDependencies } from './dependencies.js'

export interface WatchOptions extends RunOptions {
  /** Loads the config again (from the same file); called when the config or a file it imports changes. */
  readonly reload?: () => Promise<ResolvedConfig>
}

/** A loaded config with its hooks applied and its destinations prepared. */
interface Session {
  readonly config: ResolvedConfig
  readonly filedge: Filedge
  readonly context: FileRunContext
  readonly matchers: ReadonlyMap<string, (absPath: string) => boolean>
  /** Per pipeline: files in flight by hash, so two names for the same bytes load once. */
  readonly inFlight: ReadonlyMap<string, Map<string, Promise<FileOutcome>>>
  /**
   * Paths whose file failed under this config, with the size/mtime/inode it had.
   * Watchers report one write more than once (and a file that lands while the
   * first sweep runs is seen by both); the same bytes under the same config fail
   * the same way, so such repeats must not spend the file's retry attempts. A
   * changed file, a config reload or a restart tries it again.
   */
  readonly failed: Map<string, string>
  /**
   * Per pipeline, the stat cache as the last sweep read it, by absolute path.
   * An entry serves once: the sweep's own visit of the path. A later event
   * for the path means something happened to it, and it is hashed.
   */
  readonly settled: Map<string, Map<string, SettledStat>>
  /** Paths that lead out of their source directory through a link, warned about once. */
  readonly outside: Set<string>
}

interface Lane {
  readonly pending: Set<string>
  running: number
}

/**
 * `filedge --watch`: one run, then every file that lands in a pipeline's
 * source directory goes through the same path as a run (same ledger, same
 * hooks), pipelines side by side, files within a pipeline at the configured
 * concurrency.
 *
 * Half-written files: chokidar reports a file only once its size has stayed
 * the same for `watch.settle`; hashing then re-stats it and a file that moved
 * meanwhile is checked again one settle window later; and the load re-hashes
 * the bytes it reads, so bytes that changed after the claim never commit. A
 * producer that pauses longer than the settle window in mid-write should write
 * to a temporary name and rename (in-progress names are ignored), or use
 * `source.readyMarker`.
 *
 * Config edits reload between files: the watcher stops taking new files, lets
 * the ones in flight finish, and starts again on the new config. A config that
 * does not load, or whose destinations do not prepare (drift), is reported and
 * the last good one is kept.
 *
 * The first stop signal (the `signal` option) rolls back and releases the files
 * in flight, closes the databases and resolves with the summary; nothing is
 * lost, the next run loads them.
 */
export async function watch(options: WatchOptions): Promise<RunSummary> {
  const started = performance.now()
  const stop = options.signal ?? new AbortController().signal
  // Every file in flight listens for the stop (see run).
  setMaxListeners(0, stop)
  const tally = newTally()
  const lanes = new Map<string, Lane>()
  const retryTimers = new Set<NodeJS.Timeout>()
  let watchers: FSWatcher[] = []
  let configWatcher: FSWatcher | undefined
  let paused = false
  const idle: (() => void)[] = []
  const summary = (aborted?: FiledgeError): RunSummary => ({ ...tally, durationMs: Math.round(performance.now() - started), ...(aborted ? { aborted } : {}) })

  /** `first`: the watcher's start, where a failure ends the command like a run's would (reported through afterRun). */
  const open = async (config: ResolvedConfig, first = false): Promise<Session> => {
    const filedge = await createFiledge({ ...options, config })
    try {
      await filedge.hooks.beforeRun.promise({ config, worker: filedge.worker, pipelines: filedge.pipelines })
    } catch (error) {
      try {
        if (first) await filedge.hooks.afterRun.promise(summary(isFiledgeError(error) ? error : new FiledgeError('INTERNAL', describeError(error), { cause: error })))
      } finally {
        await filedge.close().catch(() => undefined)
      }
      throw error
    }
    return {
      config,
      filedge,
      context: { hooks: filedge.hooks, worker: filedge.worker, heartbeatMs: config.lease.heartbeatMs, signal: stop },
      matchers: new Map(filedge.pipelines.map((pipeline) => [pipeline.name, sourceMatcher(pipeline)])),
      inFlight: new Map(filedge.pipelines.map((pipeline) => [pipeline.name, new Map()])),
      failed: new Map(),
      settled: new Map(),
      outside: new Set(),
    }
  }

  let session: Session
  try {
    session = await open(options.config, true)
  } catch (error) {
    return summary(isFiledgeError(error) ? error : new FiledgeError('INTERNAL', describeError(error), { cause: error }))
  }
  const log = (level: 'info' | 'warn' | 'error', message: string) => session.filedge.hooks.log.call({ level, message })
  const settleMs = () => session.config.watch.settleMs

  const lane = (pipeline: string): Lane => {
    let found = lanes.get(pipeline)
    if (found === undefined) {
      found = { pending: new Set(), running: 0 }
      lanes.set(pipeline, found)
    }
    return found
  }
  const busy = () => [...lanes.values()].some((entry) => entry.running > 0)
  const settled = () => {
    if (!busy()) idle.splice(0).forEach((resolve) => resolve())
  }
  const drain = () => (busy() ? new Promise<void>((resolve) => idle.push(resolve)) : Promise.resolve())

  async function processPath(pipeline: ResolvedPipeline, absPath: string): Promise<void> {
    let stats
    try {
      stats = await stat(absPath)
    } catch {
      return // removed before its turn: nothing to load
    }
    if (!stats.isFile()) return
    if (pipeline.readyMarker !== undefined && !existsSync(absPath + pipeline.readyMarker)) return
    // chokidar follows every link; the source's link rule is applied here, as discovery applies it to a sweep.
    const boundary = await boundaryOf(pipeline)
    if (boundary !== undefined && !(await resolvesInside(boundary, absPath))) {
      if (!session.outside.has(absPath)) log('warn', linkedOutside(toRelative(session.config.root, absPath)))
      session.outside.add(absPath)
      return
    }
    session.outside.delete(absPath)
    const signature = `${stats.size}:${stats.mtimeMs}:${stats.ino}`
    if (session.failed.get(absPath) === signature) return
    const candidate: FileCandidate = {
      pipeline,
      path: toRelative(session.config.root, absPath),
      absPath,
      size: stats.size,
      mtimeMs: stats.mtimeMs,
      ino: stats.ino,
      dev: stats.dev,
    }
    const inFlight = session.inFlight.get(pipeline.name)!
    const cached = session.settled.get(pipeline.name)
    const settled = cached?.get(absPath)
    cached?.delete(absPath)
    const outcome = await processCandidate(candidate, session.context, inFlight, settled)
    record(tally, outcome)
    if (outcome.kind === 'failed') session.failed.set(absPath, signature)
    else session.failed.delete(absPath)
    // A long-running watcher must not remember every file it ever saw.
    if (outcome.hash !== undefined) inFlight.delete(outcome.hash)
    if (outcome.kind === 'skipped' && outcome.reason === 'changing') schedule(pipeline.name, absPath, settleMs())
  }

  function pump(name: string): void {
    const entry = lane(name)
    const pipeline = session.filedge.pipelines.find((candidate) => candidate.name === name)
    while (!paused && !stop.aborted && pipeline !== undefined && entry.running < filesInFlight(pipeline, options) && entry.pending.size > 0) {
      const [absPath] = entry.pending
      entry.pending.delete(absPath)
      entry.running++
      processPath(pipeline, absPath)
        .catch((error) => log('error', `${toRelative(session.config.root, absPath)}: ${describeError(error)}`))
        .finally(() => {
          entry.running--
          pump(name)
          settled()
        })
    }
  }

  function schedule(name: string, absPath: string, delayMs = 0): void {
    if (stop.aborted) return
    if (delayMs > 0) {
      const timer = setTimeout(() => {
        retryTimers.delete(timer)
        schedule(name, absPath)
      }, delayMs)
      retryTimers.add(timer)
      return
    }
    lane(name).pending.add(absPath)
    pump(name)
  }

  async function startWatching(): Promise<void> {
    const waits: Promise<void>[] = []
    for (const pipeline of session.filedge.pipelines) {
      const matches = session.matchers.get(pipeline.name)!
      const marker = pipeline.readyMarker
      const watcher = watchPaths(pipeline.sourceDir, {
        ignoreInitial: true,
        awaitWriteFinish: { stabilityThreshold: settleMs(), pollInterval: Math.max(10, Math.min(100, Math.floor(settleMs() / 4))) },
        // Dot-directories and dotfiles are never data; not even descended into.
        ignored: (absPath: string) => absPath !== pipeline.sourceDir && toRelative(pipeline.sourceDir, absPath).split('/').some((part) => part.startsWith('.')),
      })
      const onPath = (absPath: string) => {
        if (marker !== undefined && absPath.endsWith(marker)) {
          const data = absPath.slice(0, -marker.length)
          if (matches(data)) schedule(pipeline.name, data)
        } else if (matches(absPath)) {
          schedule(pipeline.name, absPath)
        }
      }
      watcher.on('add', onPath).on('change', onPath)
      watcher.on('error', (error) => log('warn', `watching ${toRelative(session.config.root, pipeline.sourceDir)}: ${describeError(error)}`))
      waits.push(new Promise((resolve) => watcher.once('ready', () => resolve())))
      watchers.push(watcher)
    }
    await Promise.all(waits)
  }

  async function stopWatching(): Promise<void> {
    const closing = watchers
    watchers = []
    await Promise.all(closing.map((watcher) => watcher.close()))
  }

  /**
   * Everything already in the source directories: a watcher only hears about
   * what changes. A file written less than a settle window ago may still be
   * being written: it waits out the rest of its window like a file the
   * watcher reported.
   */
  async function sweep(): Promise<void> {
    for (const pipeline of session.filedge.pipelines) {
      const [candidates, settled] = await Promise.all([discover(pipeline, session.config.root, (message) => log('warn', message)), statCache(session.filedge.ledger, pipeline)])
      session.settled.set(pipeline.name, new Map(candidates.flatMap((candidate) => {
        const entry = settled.get(candidate.path)
        return entry === undefined ? [] : [[candidate.absPath, entry] as const]
      })))
      const now = Date.now()
      for (const candidate of candidates) schedule(pipeline.name, candidate.absPath, Math.max(0, Math.ceil(candidate.mtimeMs + settleMs() - now)))
    }
  }

  async function watchConfig(): Promise<void> {
    const file = session.config.configFile
    if (options.reload === undefined || file === undefined) return
    const files = configDependencies(file)
    if (configWatcher === undefined) {
      let timer: NodeJS.Timeout | undefined
      configWatcher = watchPaths(files, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 25 } })
      const changed = () => {
        clearTimeout(timer)
        timer = setTimeout(() => void reload(), 50)
      }
      configWatcher.on('change', changed).on('add', changed).on('unlink', changed)
      // Ready before the watcher says it is watching: an edit made right after must not be missed.
      await new Promise<void>((resolve) => configWatcher!.once('ready', () => resolve()))
    } else {
      const watched = Object.entries(configWatcher.getWatched()).flatMap(([dir, names]) => names.map((name) => `${dir}/${name}`))
      configWatcher.unwatch(watched.filter((path) => !files.includes(path)))
      configWatcher.add(files)
    }
  }

  let reloading: Promise<void> = Promise.resolve()
  function reload(): Promise<void> {
    reloading = reloading.then(async () => {
      if (stop.aborted) return
      let next: ResolvedConfig
      try {
        next = await options.reload!()
      } catch (error) {
        log('error', `config not reloaded, keeping the previous one: ${describeError(error)}`)
        return
      }
      paused = true
      await drain()
      await stopWatching()
      for (const entry of lanes.values()) entry.pending.clear()
      const previous = session
      await previous.filedge.close().catch((error) => log('warn', `closing the previous config: ${describeError(error)}`))
      try {
        session = await open(next)
        log('info', `config reloaded from ${toRelative(next.root, next.configFile ?? '')}`)
      } catch (error) {
        session = await open(previous.config)
        log('error', `the new config did not start, keeping the previous one: ${describeError(error)}`)
      }
      await watchConfig()
      await startWatching()
      paused = false
      await sweep()
    })
    return reloading
  }

  const stopped = new Promise<void>((resolve) => (stop.aborted ? resolve() : stop.addEventListener('abort', () => resolve(), { once: true })))
  try {
    await startWatching()
    await watchConfig()
    const folders = session.filedge.pipelines.map((pipeline) => toRelative(session.config.root, pipeline.sourceDir) || '.')
    log('info', `watching ${folders.join(', ')} (files settle for ${settleMs()} ms); Ctrl-C to stop`)
    await sweep()
    await stopped
    await reloading
  } finally {
    for (const timer of retryTimers) clearTimeout(timer)
    await stopWatching()
    await configWatcher?.close()
    // In-flight loads saw the same signal: they roll back and release their leases.
    await drain()
  }
  const result = summary()
  try {
    await session.filedge.hooks.afterRun.promise(result)
  } finally {
    await session.filedge.close()
  }
  return result
}
