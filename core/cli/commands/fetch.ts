import type { Command } from 'commander'
import { selectPipelines } from '../../config/pipelines.js'
import type { ResolvedPipeline } from '../../config/types.js'
import { describeError, usageError } from '../../errors.js'
import { openLedger } from '../../ledger/open.js'
import { createLogger } from '../../logger.js'
import { printable } from '../../printable.js'
import { servedBy } from '../../plugin.js'
import { workerId } from '../../runner/worker.js'
import type { Source } from '../../source.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'
import { untilStopped } from '../signals.js'

/**
 * The part of a fetch source (filedge/plugins/fetch) this command uses,
 * described here so the core does not import a plugin: any source with a
 * `fetchNow` is fetched.
 */
interface FetchReportLike {
  readonly source: string
  readonly status: 'fetched' | 'unchanged' | 'busy' | 'failed'
  readonly pages: number
  readonly records: number
  readonly files: readonly { readonly path: string; readonly records: number; readonly pages: number; readonly sha256: string }[]
  readonly cursor: { readonly from: string; readonly to: string }
  readonly error?: Error
}

type FetchingSource = Source & { fetchNow(options: { readonly signal: AbortSignal; readonly dryRun?: boolean }): Promise<FetchReportLike> }

function isFetching(source: Source): source is FetchingSource {
  return typeof (source as { fetchNow?: unknown }).fetchNow === 'function'
}

interface FetchFlags extends ConfigOption {
  readonly pipeline?: string[]
  readonly dryRun?: boolean
  readonly json?: boolean
}

const plural = (count: number, one: string) => `${count} ${one}${count === 1 ? '' : 's'}`

/** One line per source, as a person reads it. */
function summary(pipelines: string, report: FetchReportLike, dryRun: boolean): string {
  const cursor = `cursor ${report.cursor.from}${report.cursor.to === report.cursor.from ? '' : ` → ${report.cursor.to}`}`
  const got = `${plural(report.pages, 'page')}, ${plural(report.records, 'new record')}`
  switch (report.status) {
    case 'busy':
      return `${pipelines}: another process is fetching it; skipped`
    case 'unchanged':
      return `${pipelines}: nothing new (${got}; ${cursor})`
    case 'fetched':
      return dryRun
        ? `${pipelines}: would promote ${plural(report.files.length, 'file')} (${got}; ${cursor}); dry run, nothing written`
        : `${pipelines}: ${got} → ${report.files.map((file) => printable(file.path)).join(', ')} (${cursor})`
    default:
      return `${pipelines}: ${report.files.length === 0 ? 'nothing promoted' : `promoted ${report.files.map((file) => printable(file.path)).join(', ')} before failing`} (${cursor})`
  }
}

/**
 * `filedge fetch`: fetches every fetch source of the config (or of the
 * pipelines named) and promotes what is new into its folder, without loading
 * it; the next `filedge` run loads it (a run fetches too). Exit 1 when a
 * source failed, 0 otherwise (a source another process is fetching is
 * skipped, not failed).
 */
export function registerFetch(program: Command, io: CliIo, exit: (code: number) => void): void {
  program
    .command('fetch')
    .description('fetch what is new from the API of every fetch source into files, without loading them')
    .option('-c, --config <path>', 'config file')
    .option('-p, --pipeline <name...>', 'only the sources of these pipelines')
    .option('--dry-run', 'ask the API and report what would be promoted; write nothing, leave the cursor')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge fetch\n  $ filedge fetch --pipeline orders --dry-run\n  $ filedge fetch --json')
    .action(async (flags: FetchFlags) => {
      const config = await configFor(flags, io)
      const chosen = selectPipelines(config, flags.pipeline).filter((pipeline) => isFetching(pipeline.source))
      if (chosen.length === 0) throw usageError(`fetch: ${flags.pipeline === undefined ? 'no pipeline' : 'none of those pipelines'} has a fetch source (fetch() from filedge/plugins/fetch)`)
      const ledger = await openLedger(config)
      const worker = workerId()
      const logger = createLogger((entry) => {
        if (entry.level === 'warn' || entry.level === 'error') print(io.stderr, `[filedge] ${entry.level}: ${entry.message}`)
      }, 'fetch')
      const results: { pipelines: string[]; report: FetchReportLike }[] = []
      try {
        await untilStopped(async (signal) => {
          for (const { server: source, pipelines } of servedBy(chosen, (pipeline: ResolvedPipeline) => pipeline.source as FetchingSource)) {
            const names = pipelines.map((pipeline) => pipeline.name)
            try {
              await source.connect?.({ config, logger, defaultInclude: pipelines[0].defaultInclude, pipelines: names, ledger, worker })
              results.push({ pipelines: names, report: await source.fetchNow({ signal, dryRun: flags.dryRun === true }) })
            } catch (error) {
              const reason = error instanceof Error ? error : new Error(describeError(error))
              results.push({ pipelines: names, report: { source: names.join(', '), status: 'failed', pages: 0, records: 0, files: [], cursor: { from: '?', to: '?' }, error: reason } })
            } finally {
              await source.close?.()
            }
            if (signal.aborted) break
          }
        })
      } finally {
        await ledger.close()
      }
      // Stopped by Ctrl-C (or SIGTERM): what was promoted stays, and stopping is not a failure (as for a run).
      const failed = results.some(({ report }) => report.status === 'failed' && (report.error as { code?: string } | undefined)?.code !== 'STOPPED')
      if (flags.json) {
        printJson(io.stdout, {
          dryRun: flags.dryRun === true,
          sources: results.map(({ pipelines, report }) => ({
            pipelines,
            source: report.source,
            status: report.status,
            pages: report.pages,
            records: report.records,
            files: report.files,
            cursor: report.cursor,
            ...(report.error === undefined ? {} : { error: { code: (report.error as { code?: string }).code ?? 'INTERNAL', message: report.error.message } }),
          })),
        })
      } else {
        for (const { pipelines, report } of results) {
          const line = summary(pipelines.join(', '), report, flags.dryRun === true)
          if (report.status === 'failed') print(io.stderr, `[filedge] ${line}: ${describeError(report.error)}`)
          else print(io.stdout, line)
        }
      }
      exit(failed ? 1 : 0)
    })
}
