import type { Command } from 'commander'
import type { ResolvedPipeline } from '../../config/types.js'
import { describeError, isFiledgeError } from '../../errors.js'
import { ledgerName, probeLedger } from '../../ledger/health.js'
import { createLogger } from '../../logger.js'
import { servedBy } from '../../plugin.js'
import { printable } from '../../printable.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'

/** How long one check may take before it counts as down. */
const TIMEOUT_MS = 15_000

export interface Check {
  readonly kind: 'ledger' | 'destination' | 'source'
  /** What it serves: the pipelines (for the ledger, all of them). */
  readonly pipelines: readonly string[]
  readonly target: string
  /**
   * `ok`; `busy`: reachable, held by another process for now (a DuckDB file
   * another process has open), which a run waits for; `down`: not reachable
   * or not usable; `unchecked`: the plugin has no healthcheck.
   */
  readonly status: 'ok' | 'busy' | 'down' | 'unchecked'
  readonly latencyMs: number | null
  readonly detail?: string
}

async function timed(probe: () => Promise<string | void>): Promise<Pick<Check, 'status' | 'latencyMs' | 'detail'>> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    const detail = await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS)
        timer.unref()
      }),
    ])
    return { status: 'ok', latencyMs: Math.round(performance.now() - started), ...(typeof detail === 'string' ? { detail } : {}) }
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started)
    if (isFiledgeError(error) && error.code === 'DESTINATION_LOCKED') return { status: 'busy', latencyMs, detail: error.message }
    return { status: 'down', latencyMs, detail: describeError(error) }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * `filedge healthcheck`: the ledger, every pipeline's destination and
 * source, each probed once (an object serving several pipelines is one
 * check), side by side, each within 15 s. Exit 1 when one is down; busy is
 * not down (see Check). Nothing is created or changed, no lock waited for.
 */
export function registerHealthcheck(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('healthcheck')
    .description('whether the ledger and every destination and source answer, with latencies; exit 1 if one is down')
    .option('-c, --config <path>', 'config file')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nA DuckDB file another process holds is "busy": reachable, and a run waits for it; busy exits 0.\n\nExamples:\n  $ filedge healthcheck\n  $ filedge healthcheck --json | jq .ok')
    .action(async (flags: ConfigOption & { json?: boolean }) => {
      const config = await configFor(flags, io)
      const logger = createLogger(() => undefined, 'healthcheck')
      const names = (pipelines: readonly ResolvedPipeline[]) => pipelines.map((pipeline) => pipeline.name)
      const ledgerTarget = ledgerName(config.ledger)
      const checks: Promise<Check>[] = [
        timed(() => probeLedger(config.ledger)).then((result) => ({ kind: 'ledger', pipelines: names(config.pipelines), target: ledgerTarget, ...result })),
        ...servedBy(config.pipelines, (pipeline) => pipeline.destination).map(async ({ server: destination, pipelines }): Promise<Check> => {
          const base = { kind: 'destination' as const, pipelines: names(pipelines), target: destination.describe() }
          if (destination.healthcheck === undefined) return { ...base, status: 'unchecked', latencyMs: null, detail: `the ${destination.name} destination has no healthcheck` }
          const result = await timed(() => destination.healthcheck!({ config, logger }))
          return { ...base, ...result }
        }),
        ...servedBy(config.pipelines, (pipeline) => pipeline.source).map(async ({ server: source, pipelines }): Promise<Check> => {
          const base = { kind: 'source' as const, pipelines: names(pipelines), target: source.describe() }
          if (source.healthcheck === undefined) return { ...base, status: 'unchecked', latencyMs: null, detail: `the ${source.name} source has no healthcheck` }
          try {
            const result = await timed(() => source.healthcheck!({ config, logger, defaultInclude: pipelines[0].defaultInclude }))
            return { ...base, ...result }
          } finally {
            await source.close?.().catch(() => undefined)
          }
        }),
      ]
      const results = await Promise.all(checks)
      const ok = results.every((check) => check.status !== 'down')
      setExit(ok ? 0 : 1)
      if (flags.json) {
        printJson(io.stdout, { ok, checks: results })
        return
      }
      const rows = [['', 'pipelines', 'target', 'status', 'latency', '']]
      for (const check of results) {
        const pipelines = check.kind === 'ledger' ? '*' : check.pipelines.join(', ')
        rows.push([check.kind, printable(pipelines), printable(check.target), check.status, check.latencyMs === null ? '' : `${check.latencyMs} ms`, printable(check.detail ?? '')])
      }
      print(io.stdout, table(rows))
    })
}
