import type { ListrTaskWrapper } from 'listr2'
import type { FiledgeError } from '../errors.js'
import type { Plugin } from '../plugin.js'
import { printable } from '../printable.js'
import { redact } from '../secrets.js'
import { shownPath } from '../quarantine/sidecar.js'
import { count, formatSummary, quarantinedNote, rowCount, seconds } from './format.js'
import type { ReporterStreams } from './lines.js'

interface PipelineView {
  /** Commits in the last RATE_WINDOW_MS: [time, rows]. */
  readonly recentCommits: [number, number][]
  committed: number
  failed: number
  skipped: number
  rows: number
  readonly inFlight: Map<string, number>
  /** The last few commits. */
  readonly recent: string[]
  /**
   * The files that failed, the last failure of each, by path, in the order they failed: the view shows the last
   * few with their reason (apart from the commits, so they do not scroll away), and all are listed at the end. A
   * file that fails again (a retry after a config reload) moves to the end; one that commits since is dropped.
   */
  readonly failures: Map<string, FiledgeError>
  /** Files another worker holds (its lease is live): not loaded here, and not failed either. */
  readonly held: Map<string, string>
  /** Files queued for a slot (listed or arrived, not started). */
  waiting: number
  task?: ListrTaskWrapper<unknown, never, never>
  /** Settles when the run is over (rejects if files failed: the pipeline ends red); the pipeline's listr task waits on it. */
  readonly done: Promise<void>
  finish: () => void
}

/** The parts of listr2's default renderer `above` uses: its log-update instance, its captured streams, its redraw. */
interface LiveRenderer {
  readonly updater?: { clear(): void }
  readonly logger?: { readonly process?: { readonly stderr?: { write(text: string): boolean } } }
  update?(): void
}

const RECENT = 4
/** Characters of a failure's reason the live view shows; the whole message is printed when the view closes. */
const REASON = 100

/** A failure as `file:line column: reason` (the message names the file already, or gets it), the reason cut to REASON characters. */
function failureLine(message: string, path: string): string {
  const line = message.startsWith(path) ? message : `${path}: ${message}`
  return line.length > path.length + REASON ? `${line.slice(0, path.length + REASON - 1)}…` : line
}
const RATE_WINDOW_MS = 10_000

/** Rows per second over the last ten seconds (or since the start, if sooner), from committed files. */
function rate(view: PipelineView, startedAt: number): number {
  const now = performance.now()
  while (view.recentCommits.length > 0 && now - view.recentCommits[0][0] > RATE_WINDOW_MS) view.recentCommits.shift()
  const rows = view.recentCommits.reduce((sum, [, count]) => sum + count, 0)
  return Math.round(rows / (Math.min(RATE_WINDOW_MS, Math.max(now - startedAt, 1)) / 1000))
}

/**
 * The TTY view (listr2): one line per pipeline with its totals, and under it
 * its state, redrawn in place (listr2 keeps one output per task: state, not
 * history): how many files wait for a slot, the files in flight with
 * their rows so far, files another worker holds, the last failures with their reason, the last commits. A pipeline with failures ends red.
 * Fed entirely by hooks; failures are listed again in full after the view
 * closes.
 */
export function liveReporter({ stdout, stderr }: ReporterStreams): Plugin {
  const views = new Map<string, PipelineView>()
  let listDone: Promise<unknown> = Promise.resolve()
  /**
   * Writes a line above the live area, now: listr2 holds back what is written
   * to the terminal while it draws (it replays it when the view closes), so a
   * reload that fails, drift or a plugin's error would otherwise be seen only
   * at exit. Clears the drawn area, writes past listr2's capture, redraws.
   * Relies on listr2's default renderer (`updater`, `logger.process`); with
   * another renderer the line goes to the stream and is replayed at the end.
   */
  let above = (line: string) => void stderr.write(`${line}\n`)
  let startedAt = 0

  const render = (name: string) => {
    const view = views.get(name)
    if (view?.task === undefined) return
    view.task.title = `${name}: ${count(view.committed)} committed · ${count(view.failed)} failed · ${count(view.skipped)} skipped · ${count(view.rows)} rows · ${count(rate(view, startedAt))} rows/s${view.waiting > 0 ? ` · ${count(view.waiting)} waiting` : ''}`
    const held = [...view.held].slice(-RECENT).map(([path, message]) => `⏸ ${printable(path)}: ${printable(message)}`)
    const failed = [...view.failures].slice(-RECENT).map(([path, error]) => `✗ ${printable(failureLine(error.message, path))}`)
    const lines = [...[...view.inFlight].map(([path, rows]) => `⟳ ${printable(path)} ${rowCount(rows)}`), ...held, ...failed, ...view.recent]
    view.task.output = redact(lines.join('\n'))
  }
  /** Pipelines with a redraw scheduled (see the queue tap). */
  const redraws = new Set<string>()
  const note = (list: string[], line: string) => {
    list.push(line)
    if (list.length > RECENT) list.shift()
  }

  return {
    name: 'filedge:reporter',
    apply({ hooks, config }) {
      const { root } = config
      hooks.beforeRun.tapPromise('filedge:reporter', async ({ pipelines }) => {
        // A watcher applies the reporter again after a config reload: the view it started keeps going.
        if (views.size > 0) return
        // Loaded here, not at the top: only a terminal run draws the live view, and listr2 costs every other command its load time.
        const { Listr } = await import('listr2')
        startedAt = performance.now()
        for (const pipeline of pipelines) {
          let finish!: () => void
          const done = new Promise<void>((resolve, reject) => {
            finish = () => {
              const view = views.get(pipeline.name)!
              if (view.failed === 0) resolve()
              else reject(new Error(`${pipeline.name}: ${count(view.failed)} failed (listed below)`))
            }
          })
          // A short run can end before listr2 starts the pipeline's task (which then gets the settled promise): never unhandled.
          done.catch(() => undefined)
          views.set(pipeline.name, { recentCommits: [], committed: 0, failed: 0, skipped: 0, rows: 0, inFlight: new Map(), recent: [], failures: new Map(), held: new Map(), waiting: 0, done, finish })
        }
        const list = new Listr(
          pipelines.map((pipeline) => ({
            title: pipeline.name,
            rendererOptions: { outputBar: true, persistentOutput: false },
            task: (_: unknown, task: ListrTaskWrapper<unknown, never, never>) => {
              const view = views.get(pipeline.name)!
              view.task = task
              render(pipeline.name)
              return view.done
            },
          })),
          // listr2's own SIGINT listener calls process.exit(127): the file in flight would stay PROCESSING, held until its
          // lease expired, and each Ctrl-C would cost it an attempt. The CLI's handler stops gracefully instead.
          { concurrent: true, exitOnError: false, renderer: 'default', rendererOptions: { collapseSubtasks: false }, fallbackRenderer: 'simple', registerSignalListeners: false },
        )
        listDone = list.run().catch(() => undefined)
        // Asked at each line: the renderer sets itself up asynchronously once the list runs.
        above = (line) => {
          const renderer = (list as unknown as { renderer?: LiveRenderer }).renderer
          if (typeof renderer?.updater?.clear !== 'function' || typeof renderer.logger?.process?.stderr?.write !== 'function' || typeof renderer.update !== 'function') {
            stderr.write(`${line}\n`)
            return
          }
          renderer.updater.clear()
          renderer.logger.process.stderr.write(`${line}\n`)
          renderer.update()
        }
      })
      hooks.fileClaimed.tap('filedge:reporter', ({ pipeline, file }) => {
        views.get(pipeline.name)?.inFlight.set(file.path, 0)
        render(pipeline.name)
      })
      hooks.queue.tap('filedge:reporter', ({ pipeline, waiting }) => {
        const view = views.get(pipeline.name)
        if (view === undefined || view.waiting === waiting) return
        view.waiting = waiting
        // A listing queues thousands of files in a burst: one redraw per tenth of a second, not one per file.
        if (redraws.has(pipeline.name)) return
        redraws.add(pipeline.name)
        setTimeout(() => {
          redraws.delete(pipeline.name)
          render(pipeline.name)
        }, 100).unref()
      })
      hooks.fileProgress.tap('filedge:reporter', ({ pipeline, file, rows }) => {
        views.get(pipeline.name)?.inFlight.set(file.path, rows)
        render(pipeline.name)
      })
      hooks.afterCommit.tapPromise('filedge:reporter', async ({ pipeline, file, rows, durationMs, quarantined, sidecar }) => {
        const view = views.get(pipeline.name)
        if (view === undefined) return
        view.committed++
        view.rows += rows
        view.recentCommits.push([performance.now(), rows])
        view.inFlight.delete(file.path)
        view.held.delete(file.path)
        view.failures.delete(file.path)
        note(view.recent, `✓ ${printable(file.path)} ${rowCount(rows)} ${seconds(durationMs)}${printable(quarantinedNote(quarantined, sidecar === undefined ? undefined : shownPath(root, sidecar)))}`)
        render(pipeline.name)
      })
      hooks.fileFailed.tapPromise('filedge:reporter', async ({ pipeline, path, error }) => {
        const view = views.get(pipeline.name)
        if (view === undefined) return
        view.failed++
        view.inFlight.delete(path)
        view.failures.delete(path)
        view.failures.set(path, error)
        render(pipeline.name)
      })
      hooks.fileSkipped.tap('filedge:reporter', ({ pipeline, path, reason, message }) => {
        const view = views.get(pipeline.name)
        if (view === undefined) return
        view.skipped++
        if (reason === 'held') view.held.set(path, message)
        else view.held.delete(path)
        // A file released unfinished (the run is stopping) is no longer in flight.
        view.inFlight.delete(path)
        render(pipeline.name)
      })
      hooks.log.tap('filedge:reporter', ({ level, message, plugin }) => {
        if (level === 'warn' || level === 'error') above(`${level}: ${printable(redact(`${plugin ? `[${plugin}] ` : ''}${message}`))}`)
      })
      hooks.afterRun.tapPromise('filedge:reporter', async (summary) => {
        if (summary.reloading) return
        for (const view of views.values()) view.finish()
        await listDone
        for (const error of [...views.values()].flatMap((view) => [...view.failures.values()])) stderr.write(`✗ ${printable(redact(error.message))}\n`)
        if (summary.aborted) stderr.write(`[filedge] run stopped before loading: ${printable(redact(summary.aborted.message), { lineBreaks: true })}\n`)
        stdout.write(`${formatSummary(summary)}\n`)
      })
    },
  }
}
