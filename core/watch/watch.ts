import { setMaxListeners } from 'node:events'
import { watch as watchPaths, type FSWatcher } from 'chokidar'
import type { ResolvedConfig, ResolvedPipeline } from '../config/types.js'
import { FiledgeError, describeError, isFiledgeError } from '../errors.js'
import type { FileCandidate, RunSummary } from '../hooks.js'
import type { FileOutcome } from '../runner/file.js'
import { createIngest, newTally, type Ingest } from '../runner/ingest.js'
import { createFiledge, fileRunContext, listInto, type Filedge, type RunOptions } from '../runner/run.js'
import type { SourceEntry, Watching } from '../source.js'
import { toRelative } from '../source/local.js'
import { configDependencies } from './dependencies.js'

export interface WatchOptions extends RunOptions {
  /** Loads the config again (from the same file); called when the config or a file it imports changes. */
  readonly reload?: () => Promise<ResolvedConfig>
}

/** A loaded config with its hooks applied, its sources connected and its destinations prepared. */
interface Session {
  readonly config: ResolvedConfig
  readonly filedge: Filedge
  readonly ingest: Ingest
  /** Aborted when the session ends (a reload, the stop): its watchers and pollers stop. */
  readonly ended: AbortController
  readonly watchers: Watching[]
  /**
   * Paths whose file failed under this config, with the version it had.
   * Watchers report one write more than once (and a file that lands while the
   * first sweep runs is seen by both); the same bytes under the same config fail
   * the same way, so such repeats must not spend the file's retry attempts. A
   * new version, a config reload or a restart tries it again.
   */
  readonly failed: Map<string, string>
}

const versionKey = (entry: SourceEntry) => `${entry.size}:${entry.version}`

/**
 * `filedge --watch`: the ingest loop of a run, fed first by every source's
 * listing, then by what arrives: a source's own watcher (the local source
 * uses chokidar), or, for sources without one (S3, SFTP), the core listing
 * them again every `watch.poll` and queuing what is new or changed. This file
 * holds only what is watch-specific: the settle window, retries of files
 * still being written, and config reloads.
 *
 * Half-written files: the local watcher reports a file only once its size
 * has stayed the same for `watch.settle`; a listed file written less than a
 * settle window ago waits out the rest of it; reading re-checks the version
 * and a file that moved meanwhile is looked at again one window later; and
 * the load re-hashes what it reads, so bytes that changed after the claim
 * never commit. A producer that pauses longer than the settle window in
 * mid-write should write to a temporary name and rename (in-progress names
 * are ignored), or use `source.readyMarker`.
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
  // Across config reloads: each rescan lists every file again.
  const skipsOnce = new Set<string>()
  const timers = new Set<NodeJS.Timeout>()
  let configWatcher: FSWatcher | undefined
  const summary = (aborted?: FiledgeError): RunSummary => ({ ...tally, durationMs: Math.round(performance.now() - started), ...(aborted ? { aborted } : {}) })

  const later = (delayMs: number, task: () => void) => {
    if (stop.aborted) return
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (!stop.aborted) task()
    }, delayMs)
    timers.add(timer)
  }

  /** The error the first session's afterRun reported, if it failed in beforeRun. */
  let reported: unknown
  /** `first`: the watcher's start, where a failure ends the command like a run's would (reported through afterRun). */
  const open = async (config: ResolvedConfig, first = false): Promise<Session> => {
    const filedge = await createFiledge({ ...options, config })
    try {
      await filedge.hooks.beforeRun.promise({ config, worker: filedge.worker, pipelines: filedge.pipelines })
    } catch (error) {
      try {
        if (first) {
          await filedge.hooks.afterRun.promise(summary(isFiledgeError(error) ? error : new FiledgeError('INTERNAL', describeError(error), { cause: error })))
          reported = error
        }
      } finally {
        await filedge.close().catch(() => undefined)
      }
      throw error
    }
    const failed = new Map<string, string>()
    const context = await fileRunContext(filedge, config, stop)
    const ingest = createIngest({
      context,
      tally,
      concurrency: options.concurrency,
      forget: true,
      skipsOnce,
      scatterWhenHeld: filedge.ledger.kind === 'postgres',
      onOutcome: (candidate, outcome) => settled(candidate, outcome, failed),
    })
    return { config, filedge, ingest, ended: new AbortController(), watchers: [], failed }
  }

  let session: Session
  try {
    session = await open(options.config, true)
  } catch (error) {
    // Reported through afterRun (drift, a plugin failing in beforeRun): the summary says it. Anything earlier (a plugin
    // whose apply throws, a ledger that does not open) had no reporter to say it: the CLI does, with its exit code.
    if (error !== reported) throw error
    return summary(isFiledgeError(error) ? error : new FiledgeError('INTERNAL', describeError(error), { cause: error }))
  }
  const log = (level: 'info' | 'warn' | 'error', message: string) => session.filedge.hooks.log.call({ level, message })
  const settleMs = () => session.config.watch.settleMs

  /** What a file's outcome means for watching it: remember a failure; look again at a file still being written. */
  function settled(candidate: FileCandidate, outcome: FileOutcome, failed: Map<string, string>): void {
    if (outcome.kind === 'failed') failed.set(candidate.path, versionKey(candidate))
    else failed.delete(candidate.path)
    if (outcome.kind === 'skipped' && outcome.reason === 'changing') {
      const current = session
      later(settleMs(), () => {
        if (current !== session) return
        void current.filedge.hooks.stat.promise({ pipeline: candidate.pipeline, path: candidate.path }).then(
          (entry) => entry && arrived(candidate.pipeline, entry),
          (error) => log('warn', `${candidate.path}: ${describeError(error)}`),
        )
      })
    }
  }

  /** A file the watcher (or a poll) reported: queued, unless it is the version that just failed. */
  function arrived(pipeline: ResolvedPipeline, entry: SourceEntry): void {
    if (stop.aborted) return
    session.filedge.hooks.watchChange.call({ pipeline, entry })
    if (session.failed.get(entry.path) === versionKey(entry)) return
    session.ingest.submit(pipeline, entry)
  }

  /**
   * What is already there: a watcher only hears about what changes. A file
   * written less than a settle window ago may still be being written: it
   * waits out the rest of its window like a file the watcher reported.
   * `known` collects the listing for a poller to compare the next one with.
   */
  async function sweep(current: Session, known?: Map<string, Map<string, string>>): Promise<void> {
    await Promise.all(
      current.filedge.pipelines.map((pipeline) => {
        const seen = new Map<string, string>()
        known?.set(pipeline.name, seen)
        return listInto(current.filedge, pipeline, stop, (entry) => {
          seen.set(entry.path, versionKey(entry))
          if (current.failed.get(entry.path) === versionKey(entry)) return
          const wait = Math.ceil(entry.modifiedAt + settleMs() - Date.now())
          if (wait > 0) later(wait, () => current === session && current.ingest.submit(pipeline, entry))
          else current.ingest.submit(pipeline, entry)
        })
      }),
    )
  }

  /**
   * A source without a watcher is listed again every `watch.poll`; what is
   * new, or has another size or version than in the last listing, is queued.
   * A poll still running when the next is due is not doubled.
   */
  function poll(current: Session, pipeline: ResolvedPipeline, known: Map<string, string>): void {
    let last = known
    const tick = () => {
      if (current.ended.signal.aborted) return
      const seen = new Map<string, string>()
      void listInto(current.filedge, pipeline, current.ended.signal, (entry) => {
        const key = versionKey(entry)
        seen.set(entry.path, key)
        if (last.get(entry.path) !== key) arrived(pipeline, entry)
      }).then((listed) => {
        // A listing that failed (the server restarting) says nothing about what is gone: the next one compares with the last good one.
        if (listed) last = seen
        later(current.config.watch.pollMs, tick)
      })
    }
    later(current.config.watch.pollMs, tick)
  }

  /** Watchers first (ready before the sweep lists, so nothing lands unseen in between), then the sweep, then pollers. */
  async function startWatching(current: Session, ready?: () => void): Promise<void> {
    const known = new Map<string, Map<string, string>>()
    const unwatched: ResolvedPipeline[] = []
    await Promise.all(
      current.filedge.pipelines.map(async (pipeline) => {
        const watching = await current.filedge.hooks.watch
          .promise({
            pipeline,
            signal: current.ended.signal,
            settleMs: settleMs(),
            onEntry: (entry) => current === session && arrived(pipeline, entry),
            warn: (message) => log('warn', message),
          })
          .catch((error) => {
            log('error', `pipeline "${pipeline.name}": cannot watch ${pipeline.source.describe()} (polling it instead): ${describeError(error)}`)
            return undefined
          })
        if (watching === undefined) unwatched.push(pipeline)
        else current.watchers.push(watching)
      }),
    )
    ready?.()
    await sweep(current, known)
    for (const pipeline of unwatched) poll(current, pipeline, known.get(pipeline.name) ?? new Map())
  }

  async function end(current: Session): Promise<void> {
    current.ended.abort()
    current.ingest.pause()
    await Promise.all(current.watchers.splice(0).map((watching) => watching.close().catch(() => undefined)))
    await current.ingest.idle()
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
      const previous = session
      await end(previous)
      // The session of the previous config ends like a run would (afterRun, then close); the watch goes on.
      await previous.filedge.hooks.afterRun.promise({ ...summary(), reloading: true }).catch((error) => log('warn', `ending the previous config: ${describeError(error)}`))
      await previous.filedge.close().catch((error) => log('warn', `closing the previous config: ${describeError(error)}`))
      try {
        session = await open(next)
        log('info', `config reloaded from ${toRelative(next.root, next.configFile ?? '')}`)
      } catch (error) {
        session = await open(previous.config)
        // The same config again: files that failed under it fail the same way, and must not spend another attempt.
        for (const [path, version] of previous.failed) session.failed.set(path, version)
        log('error', `the new config did not start, keeping the previous one: ${describeError(error)}`)
      }
      await watchConfig()
      await startWatching(session)
    })
    return reloading
  }

  const stopped = new Promise<void>((resolve) => (stop.aborted ? resolve() : stop.addEventListener('abort', () => resolve(), { once: true })))
  try {
    await watchConfig()
    await startWatching(session, () => {
      const sources = session.filedge.pipelines.map((pipeline) => pipeline.source.describe())
      log('info', `watching ${sources.join(', ')} (files settle for ${settleMs()} ms); Ctrl-C to stop`)
    })
    await stopped
    await reloading
  } finally {
    for (const timer of timers) clearTimeout(timer)
    await configWatcher?.close()
    // In-flight loads saw the same signal: they roll back and release their leases.
    await end(session)
  }
  const result = summary()
  try {
    await session.filedge.hooks.afterRun.promise(result)
  } finally {
    await session.filedge.close()
  }
  return result
}
