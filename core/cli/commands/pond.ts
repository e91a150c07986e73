import type { Command } from 'commander'
import type { ResolvedConfig } from '../../config/types.js'
import { usageError } from '../../errors.js'
import type { PondEvent } from '../../ledger/types.js'
import type { Plugin } from '../../plugin.js'
import { printable } from '../../printable.js'
import { workerId } from '../../runner/worker.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'
import { untilStopped } from '../signals.js'

/**
 * `filedge pond`: pulse, wave and tide an outlet; the status and history of
 * the config's ponds. The ponds plugin (filedge/plugins/pond) does the work;
 * it is described here structurally so the core does not import a plugin.
 */

interface PondResultLike {
  readonly pond: string
  readonly version: string
  readonly outcome: 'succeeded' | 'passed' | 'failed' | 'blocked'
  readonly durationMs: number
  readonly error?: string
  readonly ripples?: readonly { readonly name: string; readonly rows: number }[]
}

interface DemandLike {
  readonly outlet: string
  readonly freshness: string
  readonly ponds: readonly PondResultLike[]
}

interface PondsLike {
  resolve(name: string): string
  pulse(outlet: string, options?: { onPond?: (result: PondResultLike) => void }): Promise<DemandLike>
  wave(outlet: string, options: { signal: AbortSignal; pollMs?: number; onDemand?: (result: DemandLike) => void }): Promise<void>
  tide(outlet: string, options: { signal: AbortSignal; every?: string; cron?: string; onDemand?: (result: DemandLike) => void }): Promise<void>
  wavePlugin(outlet: string, onDemand?: (result: DemandLike) => void): Plugin
  status(): Promise<readonly { pond: string; version: string; status: string; lastRun: string | null; lastOutcome: string | null; freshness: string | null; error: string | null }[]>
  history(pond: string, limit?: number): Promise<PondEvent[]>
  close(): Promise<void>
}

interface PondFlags extends ConfigOption {
  readonly json?: boolean
  readonly watch?: boolean
  readonly poll?: string
  readonly every?: string
  readonly cron?: string
  readonly limit?: string
  readonly staleAfter?: string
}

async function openPonds(config: ResolvedConfig): Promise<PondsLike> {
  const { openPonds: open } = (await import('filedge/plugins/pond')) as { openPonds(config: ResolvedConfig, options: { worker: string }): Promise<PondsLike> }
  return open(config, { worker: workerId() })
}

function describe(result: PondResultLike): string {
  const ripples = result.ripples === undefined ? '' : `  ${result.ripples.map((ripple) => `${ripple.name} ${ripple.rows} rows`).join(', ')}`
  const error = result.error === undefined ? '' : `  ${result.error}`
  return printable(`${result.pond} ${result.version}  ${result.outcome}  ${result.durationMs} ms${ripples}${error}`)
}

/** Exit 1 when a pond of the demand failed or was blocked. */
function failed(demand: DemandLike): boolean {
  return demand.ponds.some((pond) => pond.outcome === 'failed' || pond.outcome === 'blocked')
}

export function registerPond(program: Command, io: CliIo, exit: (code: number) => void): void {
  const command = program.command('pond').description('ponds: versioned DuckDB transformations downstream of the pipelines, run by demand from an outlet')
  const withPonds = async (flags: PondFlags, use: (ponds: PondsLike, config: ResolvedConfig) => Promise<void>) => {
    const config = await configFor(flags, io)
    const ponds = await openPonds(config)
    try {
      await use(ponds, config)
    } finally {
      await ponds.close()
    }
  }
  const onDemand = (flags: PondFlags) => (demand: DemandLike) => {
    if (flags.json) return io.stdout.write(`${JSON.stringify(demand)}\n`)
    print(io.stdout, `${printable(demand.outlet)} as of ${demand.freshness}:`)
    for (const result of demand.ponds) print(io.stdout, `  ${describe(result)}`)
  }

  command
    .command('pulse <outlet>')
    .description("run the outlet once: its ancestors in order, each only if what it reads changed")
    .option('-c, --config <path>', 'config file')
    .option('--json', 'the demand as JSON')
    .action(async (outlet: string, flags: PondFlags) =>
      withPonds(flags, async (ponds) => {
        const demand = await ponds.pulse(outlet, flags.json ? {} : { onPond: (result) => print(io.stdout, describe(result)) })
        if (flags.json) printJson(io.stdout, demand)
        exit(failed(demand) ? 1 : 0)
      }),
    )

  command
    .command('wave <outlet>')
    .description('keep the outlet fresh: pulse it whenever a file it reads commits (Ctrl-C stops)')
    .option('-c, --config <path>', 'config file')
    .option('-w, --watch', 'also load files as they land (the watch loop): a committed file flows through to the outlet')
    .option('--poll <duration>', 'without --watch: how often the ledger is checked for new commits', '2s')
    .option('--json', 'one JSON object per demand')
    .action(async (outlet: string, flags: PondFlags) => {
      if (!flags.watch) {
        const pollMs = durationMs(flags.poll ?? '2s', '--poll')
        return withPonds(flags, (ponds) => untilStopped((signal) => ponds.wave(outlet, { signal, pollMs, onDemand: onDemand(flags) })))
      }
      const config = await configFor(flags, io)
      const ponds = await openPonds(config)
      try {
        const wave = ponds.wavePlugin(outlet, onDemand(flags))
        const [{ createReporter }, { watch }] = await Promise.all([import('../../reporters/index.js'), import('../../watch/watch.js')])
        await untilStopped(async (signal) => {
          const summary = await watch({ config, signal, plugins: [createReporter(flags.json ? 'json' : 'simple', io), wave], reload: () => configFor(flags, io) })
          exit(summary.aborted ? 1 : 0)
        })
      } finally {
        await ponds.close()
      }
    })

  command
    .command('tide <outlet>')
    .description('pulse the outlet on a schedule: --every 15m, or --cron "*/15 * * * *" (UTC)')
    .option('-c, --config <path>', 'config file')
    .option('--every <duration>', 'a fixed interval (30s, 15m, 1h)')
    .option('--cron <expression>', 'a cron expression, in UTC')
    .option('--stale-after <duration>', 'warn when the outlet holds data older than this (a pulse failed, or took too long)')
    .option('--json', 'one JSON object per demand')
    .action(async (outlet: string, flags: PondFlags) => {
      if ((flags.every === undefined) === (flags.cron === undefined)) throw usageError('pond tide: give --every <duration> or --cron <expression> (one of them)')
      if (flags.every !== undefined) durationMs(flags.every, '--every')
      const staleMs = flags.staleAfter === undefined ? undefined : durationMs(flags.staleAfter, '--stale-after')
      let fresh = Date.now()
      const report = onDemand(flags)
      return withPonds(flags, (ponds) =>
        untilStopped((signal) =>
          ponds.tide(outlet, {
            signal,
            ...(flags.every === undefined ? {} : { every: flags.every }),
            ...(flags.cron === undefined ? {} : { cron: flags.cron }),
            onDemand: (demand) => {
              report(demand)
              if (!failed(demand)) fresh = Date.parse(demand.freshness)
              else if (staleMs !== undefined && Date.now() - fresh > staleMs) {
                print(io.stderr, `[filedge] pond tide: ${printable(outlet)} holds data as of ${new Date(fresh).toISOString()}, older than --stale-after ${flags.staleAfter}`)
              }
            },
          }),
        ),
      )
    })

  command
    .command('status')
    .description("each pond: its version, status (failed > blocked > running > idle), last run and freshness, upstream first")
    .option('-c, --config <path>', 'config file')
    .option('--json', 'as JSON')
    .action(async (flags: PondFlags) =>
      withPonds(flags, async (ponds) => {
        const rows = await ponds.status()
        // Exit 1 while a pond is failed or blocked: a health check can run this.
        exit(rows.some((row) => row.status === 'failed' || row.status === 'blocked') ? 1 : 0)
        if (flags.json) return printJson(io.stdout, rows)
        print(
          io.stdout,
          table([
            ['POND', 'VERSION', 'STATUS', 'LAST RUN', 'FRESH AS OF', 'ERROR'],
            ...rows.map((row) => [row.pond, row.version, row.status, row.lastRun ?? '-', row.freshness ?? '-', printable(row.error ?? '')]),
          ]),
        )
      }),
    )

  command
    .command('history <pond>')
    .description("a pond's runs and ripples, oldest first (every version it had)")
    .option('-c, --config <path>', 'config file')
    .option('--limit <n>', 'the latest n events', '50')
    .option('--json', 'as JSON')
    .action(async (name: string, flags: PondFlags) =>
      withPonds(flags, async (ponds) => {
        const limit = Number(flags.limit ?? '50')
        if (!Number.isInteger(limit) || limit < 1) throw usageError(`--limit: expected a positive integer; got "${flags.limit}"`)
        const events = await ponds.history(name, limit)
        if (flags.json) return printJson(io.stdout, events)
        print(
          io.stdout,
          table([
            ['AT', 'VERSION', 'EVENT', 'RIPPLE', 'TRIGGER', 'FRESHNESS', 'ROWS', 'MS', 'ERROR'],
            ...events.map((event) => [
              event.at,
              event.version,
              event.event,
              event.ripple ?? '',
              event.trigger,
              event.freshness,
              event.rows === null ? '' : String(event.rows),
              event.durationMs === null ? '' : String(event.durationMs),
              printable(event.error ?? ''),
            ]),
          ]),
        )
      }),
    )
}

function durationMs(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text)
  if (match === null) throw usageError(`${flag}: expected a duration like 500ms, 30s, 15m or 1h; got "${text}"`)
  return Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h']
}
