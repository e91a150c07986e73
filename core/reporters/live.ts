import type { ListrTaskWrapper } from 'listr2'
import type { FiledgeError } from '../errors.js'
import type { Plugin } from '../plugin.js'
import { printable } from '../printable.js'
import { redact } from '../secrets.js'
import { count, formatSummary, seconds } from './format.js'
import type { ReporterStreams } from './lines.js'

interface PipelineView {
  /** Commits in the last RATE_WINDOW_MS: [time, rows]. */
  readonly recentCommits: [number, number][]
  committed: number
  failed: number
  skipped: number
  rows: number
  readonly inFlight: Map<string, number>
  readonly recent: string[]
  task?: ListrTaskWrapper<unknown, never, never>
  /** Resolves when the run is over; the pipeline's listr task waits on it (it may start after the run ended). */
  readonly done: Promise<void>
  finish: () => void
}

const RECENT = 4
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
 * the files in flight with their rows so far and the last few outcomes. Fed
 * entirely by hooks; failures are listed again in full after the view closes.
 */
export function liveReporter({ stdout, stderr }: ReporterStreams): Plugin {
  const views = new Map<string, PipelineView>()
  const failures: FiledgeError[] = []
  let listDone: Promise<unknown> = Promise.resolve()
  let startedAt = 0

  const render = (name: string) => {
    const view = views.get(name)
    if (view?.task === undefined) return
    view.task.title = `${name}: ${count(view.committed)} committed · ${count(view.failed)} failed · ${count(view.skipped)} skipped · ${count(view.rows)} rows · ${count(rate(view, startedAt))} rows/s`
    const lines = [...[...view.inFlight].map(([path, rows]) => `⟳ ${printable(path)} ${count(rows)} rows`), ...view.recent]
    view.task.output = redact(lines.join('\n'))
  }
  const note = (name: string, line: string) => {
    const view = views.get(name)
    if (view === undefined) return
    view.recent.push(line)
    if (view.recent.length > RECENT) view.recent.shift()
  }

  return {
    name: 'filedge:reporter',
    apply({ hooks }) {
      hooks.beforeRun.tapPromise('filedge:reporter', async ({ pipelines }) => {
        // A watcher applies the reporter again after a config reload: the view it started keeps going.
        if (views.size > 0) return
        // Loaded here, not at the top: only a terminal run draws the live view, and listr2 costs every other command its load time.
        const { Listr } = await import('listr2')
        startedAt = performance.now()
        for (const pipeline of pipelines) {
          let finish!: () => void
          const done = new Promise<void>((resolve) => {
            finish = resolve
          })
          views.set(pipeline.name, { recentCommits: [], committed: 0, failed: 0, skipped: 0, rows: 0, inFlight: new Map(), recent: [], done, finish })
        }
        const list = new Listr(
          pipelines.map((pipeline) => ({
            title: pipeline.name,
            rendererOptions: { outputBar: RECENT + 8, persistentOutput: false },
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
      })
      hooks.fileClaimed.tap('filedge:reporter', ({ pipeline, file }) => {
        views.get(pipeline.name)?.inFlight.set(file.path, 0)
        render(pipeline.name)
      })
      hooks.fileProgress.tap('filedge:reporter', ({ pipeline, file, rows }) => {
        views.get(pipeline.name)?.inFlight.set(file.path, rows)
        render(pipeline.name)
      })
      hooks.afterCommit.tapPromise('filedge:reporter', async ({ pipeline, file, rows, durationMs }) => {
        const view = views.get(pipeline.name)
        if (view === undefined) return
        view.committed++
        view.rows += rows
        view.recentCommits.push([performance.now(), rows])
        view.inFlight.delete(file.path)
        note(pipeline.name, `✓ ${printable(file.path)} ${count(rows)} rows ${seconds(durationMs)}`)
        render(pipeline.name)
      })
      hooks.fileFailed.tapPromise('filedge:reporter', async ({ pipeline, path, error }) => {
        const view = views.get(pipeline.name)
        failures.push(error)
        if (view === undefined) return
        view.failed++
        view.inFlight.delete(path)
        note(pipeline.name, `✗ ${printable(path)}`)
        render(pipeline.name)
      })
      hooks.fileSkipped.tap('filedge:reporter', ({ pipeline, path }) => {
        const view = views.get(pipeline.name)
        if (view === undefined) return
        view.skipped++
        // A file released unfinished (the run is stopping) is no longer in flight.
        view.inFlight.delete(path)
        render(pipeline.name)
      })
      hooks.log.tap('filedge:reporter', ({ level, message, plugin }) => {
        if (level === 'warn' || level === 'error') stderr.write(`${level}: ${printable(redact(`${plugin ? `[${plugin}] ` : ''}${message}`))}\n`)
      })
      hooks.afterRun.tapPromise('filedge:reporter', async (summary) => {
        for (const view of views.values()) view.finish()
        await listDone
        for (const error of failures) stderr.write(`✗ ${printable(redact(error.message))}\n`)
        if (summary.aborted) stderr.write(`[filedge] run stopped before loading: ${printable(redact(summary.aborted.message), { lineBreaks: true })}\n`)
        stdout.write(`${formatSummary(summary)}\n`)
      })
    },
  }
}
