import type { Writable } from 'node:stream'
import type { Plugin } from '../plugin.js'
import { printable } from '../printable.js'
import { redact } from '../secrets.js'
import { shownPath } from '../quarantine/sidecar.js'
import { count, formatSummary, quarantinedNote, rowCount, seconds, summaryJson } from './format.js'

export interface ReporterStreams {
  readonly stdout: Writable
  readonly stderr: Writable
}

/**
 * Lines for one stream, written together once per event-loop turn: one
 * write (one syscall on a pipe) per tick rather than one per file. Over 5,000
 * files that was 10,000 writes and ~0.8 s of a run. `flush` writes what is
 * pending at once (before the summary, so it stays the last line).
 */
function batched(stream: Writable): { line(text: string): void; flush(): void } {
  let pending: string[] = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (pending.length === 0) return
    // Redacted as one string: a secret never spans lines, and one pass beats one per line.
    const text = redact(pending.join(''))
    pending = []
    stream.write(text)
  }
  return {
    line(text) {
      pending.push(`${text}\n`)
      if (scheduled) return
      scheduled = true
      setImmediate(flush)
    },
    flush,
  }
}

/**
 * Plain lines, for logs and pipes: one line per committed or failed file,
 * skips only when they need attention (terminal failures, files still being
 * written), then the summary. Quiet about files that were already committed.
 * Every name and message is `printable`: one event, one line.
 */
export function simpleReporter({ stdout, stderr }: ReporterStreams): Plugin {
  const outLines = batched(stdout)
  const errLines = batched(stderr)
  const out = (line: string) => outLines.line(line)
  const err = (line: string) => errLines.line(line)
  // A watcher sees a file again on every rescan (a config reload applies the reporter again): the same skip is said once.
  const said = new Set<string>()
  return {
    name: 'filedge:reporter',
    apply({ hooks, config }) {
      hooks.afterCommit.tapPromise('filedge:reporter', async ({ pipeline, file, rows, durationMs, healed, quarantined, sidecar }) => {
        const aside = printable(quarantinedNote(quarantined, sidecar === undefined ? undefined : shownPath(config.root, sidecar)))
        out(`✓ ${pipeline.name} ${printable(file.path)} ${rowCount(rows)} ${healed === undefined ? seconds(durationMs) : '(healed: already in the destination)'}${aside}`)
      })
      hooks.fileFailed.tapPromise('filedge:reporter', async ({ pipeline, error, terminal }) => {
        err(`✗ ${pipeline.name} ${printable(error.message)}${terminal ? ' (no attempts left: skipped until `filedge requeue`)' : ''}`)
      })
      hooks.fileSkipped.tap('filedge:reporter', ({ pipeline, path, reason, message }) => {
        if (reason !== 'terminal' && reason !== 'changing' && reason !== 'gone' && reason !== 'plugin' && reason !== 'stopped' && reason !== 'held') return
        const line = `- ${pipeline.name} ${printable(path)} skipped: ${printable(message)}`
        if (reason !== 'changing' && reason !== 'stopped' && said.has(line)) return
        said.add(line)
        out(line)
      })
      hooks.fileArchived.tapPromise('filedge:reporter', async ({ pipeline, path, outcome }) => {
        out(`→ ${pipeline.name} ${printable(path)} ${printable(outcome)}`)
      })
      hooks.log.tap('filedge:reporter', ({ level, message, plugin }) => {
        if (level === 'debug') return
        const line = printable(`${plugin ? `[${plugin}] ` : ''}${message}`)
        if (level === 'info') out(line)
        else err(`${level}: ${line}`)
      })
      hooks.afterRun.tapPromise('filedge:reporter', async (summary) => {
        if (summary.reloading) return
        // The one message that may span lines (a drift diff); it names no file.
        if (summary.aborted) err(`[filedge] run stopped before loading: ${printable(summary.aborted.message, { lineBreaks: true })}`)
        out(formatSummary(summary))
        errLines.flush()
        outLines.flush()
      })
    },
  }
}

/** One JSON object per line and event, for log shippers and schedulers; the last line is the summary. */
export function jsonReporter({ stdout }: ReporterStreams): Plugin {
  const lines = batched(stdout)
  const emit = (event: Record<string, unknown>): void => lines.line(JSON.stringify({ time: new Date().toISOString(), ...event }))
  return {
    name: 'filedge:reporter',
    apply({ hooks, config }) {
      hooks.fileClaimed.tap('filedge:reporter', ({ pipeline, file, attempt, reclaimed }) =>
        emit({ event: 'file:claimed', pipeline: pipeline.name, path: file.path, hash: file.hash, attempt, reclaimed }),
      )
      hooks.afterCommit.tapPromise('filedge:reporter', async ({ pipeline, file, rows, durationMs, attempt, healed, quarantined, sidecar }) =>
        emit({
          event: 'file:committed',
          pipeline: pipeline.name,
          path: file.path,
          hash: file.hash,
          rows,
          durationMs,
          attempt,
          ...(healed === undefined ? {} : { healed }),
          ...(quarantined === undefined ? {} : { quarantined, sidecar: shownPath(config.root, sidecar!) }),
        }),
      )
      hooks.fileFailed.tapPromise('filedge:reporter', async ({ pipeline, path, hash, error, terminal }) =>
        emit({ event: 'file:failed', pipeline: pipeline.name, path, hash, terminal, error: error.toJSON() }),
      )
      hooks.fileSkipped.tap('filedge:reporter', ({ pipeline, path, hash, reason, message }) =>
        emit({ event: 'file:skipped', pipeline: pipeline.name, path, hash, reason, message }),
      )
      hooks.fileArchived.tapPromise('filedge:reporter', async ({ pipeline, path, hash, action, outcome }) =>
        emit({ event: 'file:archived', pipeline: pipeline.name, path, hash, action, outcome }),
      )
      hooks.log.tap('filedge:reporter', ({ level, message, plugin }) => {
        if (level !== 'debug') emit({ event: 'log', level, plugin, message })
      })
      hooks.afterRun.tapPromise('filedge:reporter', async (summary) => {
        if (summary.reloading) return
        emit({ event: 'run:summary', ...summaryJson(summary) })
        lines.flush()
      })
    },
  }
}

export function silentReporter(): Plugin {
  return { name: 'filedge:reporter', apply() {} }
}
