import { Cron } from 'croner'
import { configInvalid, createLogger, openLedger, toMs, usageError, type Destination, type Duration, type LedgerStore, type Plugin, type PondEvent, type PondTrigger, type ResolvedConfig, type SqlSession } from '../../core/index.js'
import { ancestors, catchmentOf, findPond, parseVersion, type Catchment } from './catchment.js'
import { POND_BRAND, type PondDefinition, type PondPlugin } from './declare.js'
import { demand, type DemandResult, type PondResult } from './run.js'

export { sql } from './declare.js'
export type { PondDefinition, PondPlugin, RippleContext, RippleDefinition, SqlText } from './declare.js'
export type { DemandResult, PondOutcome, PondResult } from './run.js'

/**
 * `pond({ name, version, sources, ripples })` in a config's plugins. Every
 * pond of the config is checked against the others and the pipelines when
 * the config loads (see catchment.ts); `filedge pond pulse | wave | tide`
 * run them, `filedge pond status | history` read what they did.
 */
export function pond(definition: PondDefinition): PondPlugin {
  if (typeof definition !== 'object' || definition === null) throw configInvalid('pond(): expected { name, version, sources, ripples }')
  const major = parseVersion(definition.version)?.major
  return Object.freeze({
    name: `filedge:pond:${String(definition.name)}${major === undefined ? '' : `@${major}`}`,
    [POND_BRAND]: definition,
    apply({ config }) {
      // Refused here, before any file loads, with every problem named.
      catchmentOf(config)
    },
  } satisfies PondPlugin)
}

export interface PondStatus {
  readonly pond: string
  readonly version: string
  /** failed > blocked > running > idle, from the pond's latest event. */
  readonly status: 'failed' | 'blocked' | 'running' | 'idle'
  readonly lastRun: string | null
  readonly lastOutcome: string | null
  /** F of its latest success or pass: the data it holds is as of then. */
  readonly freshness: string | null
  readonly error: string | null
}

export interface PulseOptions {
  readonly trigger?: PondTrigger
  readonly signal?: AbortSignal
  readonly onPond?: (result: PondResult) => void
  readonly now?: () => number
}

/** What `filedge pond` drives: the config's ponds with a ledger, and the DuckDB database they live in. */
export interface Ponds {
  readonly catchment: Catchment
  /** `daily` or `daily@1` to the pond's key; throws a usage error naming the ponds for an unknown one. */
  resolve(name: string): string
  pulse(outlet: string, options?: PulseOptions): Promise<DemandResult>
  /** Pulses whenever a pipeline the outlet reads (through its ancestors) commits a file; runs until `signal`. */
  wave(outlet: string, options: PulseOptions & { readonly signal: AbortSignal; readonly pollMs?: number; readonly onDemand?: (result: DemandResult) => void }): Promise<void>
  /** Pulses on a schedule (`every` or a cron expression) until `signal`. */
  tide(
    outlet: string,
    options: PulseOptions & {
      readonly signal: AbortSignal
      readonly every?: Duration
      readonly cron?: string
      readonly onDemand?: (result: DemandResult) => void
      /** Waits until the next tick (default: a timer); with `now`, a test's simulated clock. */
      readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>
    },
  ): Promise<void>
  /** A plugin for a watch session: each commit of a file the outlet reads sets off a pulse (one at a time, coalesced). */
  wavePlugin(outlet: string, onDemand?: (result: DemandResult) => void): Plugin
  status(): Promise<PondStatus[]>
  history(pond: string, limit?: number): Promise<PondEvent[]>
  close(): Promise<void>
}

/**
 * The ponds of a config. Opens the config's ledger unless one is given, and
 * the ponds' DuckDB database when first needed (the destination the
 * pipelines write to, or the ponds' own `database` file).
 */
export async function openPonds(config: ResolvedConfig, options: { readonly ledger?: LedgerStore; readonly worker: string }): Promise<Ponds> {
  const catchment = catchmentOf(config)
  if (catchment.ponds.size === 0) throw usageError('pond: the config has no ponds (add pond({ name, version, sources, ripples }) from filedge/plugins/pond to plugins)')
  const ledger = options.ledger ?? (await openLedger(config))
  const logger = createLogger(() => undefined, 'filedge:pond')
  let database: Destination | undefined
  let opened = false
  let sessions = 0
  /** The database, opened on first use; a destination a watch session holds open is used as it is. */
  const session = async <T>(task: (db: SqlSession) => Promise<T>, external?: Destination): Promise<T> => {
    if (external !== undefined) return external.session!(task)
    if (database === undefined) {
      database = catchment.database ?? (await ownDatabase(catchment.databasePath!))
      await database.open?.({ config, logger })
      opened = true
    }
    sessions++
    try {
      return await database.session!(task)
    } finally {
      sessions--
    }
  }
  const resolve = (name: string) => {
    const key = findPond(catchment, name)
    if (key === undefined) throw usageError(`pond: no pond is named "${name}" (ponds: ${[...catchment.ponds.keys()].join(', ')})`)
    return key
  }
  const pulseWith = (outlet: string, pulse: PulseOptions, external?: { readonly catchment: Catchment; readonly database: Destination | undefined }) =>
    demand({
      catchment: external?.catchment ?? catchment,
      ledger,
      session: (task) => session(task, external?.database),
      outlet: resolve(outlet),
      trigger: pulse.trigger ?? 'pulse',
      worker: options.worker,
      root: config.root,
      // A pond's lease lasts as long as a file's: a process killed mid-run holds it at most that long.
      leaseMs: config.lease.ttlMs,
      ...(pulse.now === undefined ? {} : { now: pulse.now }),
      ...(pulse.onPond === undefined ? {} : { onPond: pulse.onPond }),
      ...(pulse.signal === undefined ? {} : { signal: pulse.signal }),
    })
  /** What the inlets hold: their committed files, as one string that changes when any commits. */
  const inletState = async (inlets: ReadonlySet<string>) => (await ledger.committedHashes([...inlets])).map((file) => `${file.pipeline}:${file.hash}`).sort().join(',')

  return {
    catchment,
    resolve,
    pulse: (outlet, pulse = {}) => pulseWith(outlet, pulse),

    async wave(outlet, wave) {
      const inlets = inletsOf(catchment, resolve(outlet))
      let seen: string | undefined
      while (!wave.signal.aborted) {
        const state = await inletState(inlets)
        if (state !== seen) {
          seen = state
          wave.onDemand?.(await pulseWith(outlet, { ...wave, trigger: 'wave' }))
        }
        await pause(wave.pollMs ?? 2000, wave.signal)
      }
    },

    async tide(outlet, tide) {
      resolve(outlet)
      let schedule: Cron | undefined
      try {
        schedule = tide.cron === undefined ? undefined : new Cron(tide.cron, { paused: true, timezone: 'UTC' })
      } catch (error) {
        throw usageError(`pond tide: --cron ${JSON.stringify(tide.cron)}: ${error instanceof Error ? error.message : String(error)}`)
      }
      const everyMs = tide.every === undefined ? undefined : toMs(tide.every)
      if ((schedule === undefined) === (everyMs === undefined)) throw usageError('pond tide: give --every <duration> or --cron <expression> (one of them)')
      const now = tide.now ?? Date.now
      let next = schedule === undefined ? now() : schedule.nextRun(new Date(now()))!.getTime()
      while (!tide.signal.aborted) {
        await (tide.sleep ?? pause)(Math.max(0, next - now()), tide.signal)
        if (tide.signal.aborted) break
        tide.onDemand?.(await pulseWith(outlet, { ...tide, trigger: 'tide' }))
        // Ticks missed while a pulse ran are not made up one by one: the next is the first one still ahead.
        if (schedule !== undefined) next = schedule.nextRun(new Date(now()))!.getTime()
        else do next += everyMs!
        while (next <= now())
      }
    },

    wavePlugin(outlet, onDemand) {
      resolve(outlet)
      return {
        name: 'filedge:pond-wave',
        apply({ hooks, config: current, logger: log }) {
          // Each watch session (a config reload starts one) pulses with its own config's ponds, in the database the session opened.
          const here = catchmentOf(current)
          const key = findPond(here, outlet)
          if (key === undefined) throw usageError(`pond wave: the config no longer has a pond "${outlet}" (ponds: ${[...here.ponds.keys()].join(', ')})`)
          const inlets = inletsOf(here, key)
          let running: Promise<void> | undefined
          let again = false
          const kick = () => {
            again = true
            running ??= (async () => {
              while (again) {
                again = false
                try {
                  const result = await pulseWith(key, { trigger: 'wave' }, { catchment: here, database: here.database })
                  onDemand?.(result)
                } catch (error) {
                  log.error(`wave on ${key}: ${error instanceof Error ? error.message : String(error)}`)
                }
              }
            })().finally(() => (running = undefined))
          }
          hooks.afterRun.tapPromise('filedge:pond-wave', async () => {
            await running
          })
          hooks.beforeRun.tapPromise({ name: 'filedge:pond-wave', stage: 1000 }, async () => {
            // The outlet catches up with what is already committed once the session's database is open.
            queueMicrotask(kick)
          })
          hooks.afterCommit.tap('filedge:pond-wave', ({ pipeline }) => {
            if (inlets.has(pipeline.name)) kick()
          })
          hooks.close.tapPromise({ name: 'filedge:pond-wave', stage: -1000 }, async () => {
            again = false
            await running
          })
        },
      }
    },

    async status() {
      const latest = new Map((await ledger.pondOutcomes()).map((event) => [event.pond, event]))
      const rows: PondStatus[] = []
      for (const key of catchment.order) {
        const pond = catchment.ponds.get(key)!
        const event = latest.get(key)
        const success = await ledger.lastPondSuccess(key)
        // A run started and never finished is running only while its lease lives: a process killed mid-run left it interrupted.
        const interrupted = event?.event === 'pond:started' && !(await ledger.pondLeaseHeld(key))
        const status = event === undefined ? 'idle' : event.event === 'pond:failed' || interrupted ? 'failed' : event.event === 'pond:blocked' ? 'blocked' : event.event === 'pond:started' ? 'running' : 'idle'
        rows.push({
          pond: key,
          version: pond.versionText,
          status,
          lastRun: event?.at ?? null,
          lastOutcome: interrupted ? 'interrupted' : (event?.event.slice('pond:'.length) ?? null),
          freshness: success?.freshness ?? null,
          error: interrupted ? 'interrupted: its last run stopped before it finished (its process ended); the next pulse runs it again' : (event?.error ?? null),
        })
      }
      return rows
    },

    history: (name, limit) => ledger.pondEvents({ pond: resolve(name), ...(limit === undefined ? {} : { limit }) }),

    async close() {
      while (sessions > 0) await pause(10)
      if (opened) await database?.close?.()
      if (options.ledger === undefined) await ledger.close()
    },
  }
}

/** The pipelines an outlet reads, through its ancestors. */
function inletsOf(catchment: Catchment, outlet: string): Set<string> {
  return new Set(ancestors(catchment, outlet).flatMap((key) => catchment.ponds.get(key)!.sources.flatMap((source) => (source.kind === 'pipeline' ? [source.pipeline.name] : []))))
}

async function ownDatabase(file: string): Promise<Destination> {
  // The DuckDB plugin's public entry, loaded only for ponds that read no pipeline.
  const { duckdb } = (await import('filedge/plugins/duckdb')) as { duckdb(options: { path: string; releaseAfter: false }): Destination }
  return duckdb({ path: file, releaseAfter: false })
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

export default pond
