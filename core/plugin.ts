import type { ResolvedConfig } from './config/types.js'
import type { Hooks } from './hooks.js'
import type { Logger } from './logger.js'

export interface PluginContext {
  readonly hooks: Hooks
  readonly config: ResolvedConfig
  /** Scoped to the plugin: lines are prefixed with its name. */
  readonly logger: Logger
  /** This process's worker id, as recorded in the ledger. */
  readonly worker: string
}

/**
 * A plugin taps the core's hooks in `apply`. Order: `enforce: 'pre'` plugins,
 * then filedge's built-ins (ledger, formats, destinations), then plain user
 * plugins, then `enforce: 'post'` — the same model as Vite. For bail hooks
 * (`claim`, `load`, `commit`) the first tap that returns a value wins, so a
 * `pre` plugin can take over from a built-in and a plain plugin handles what
 * the built-ins leave (a format they do not know).
 */
export interface Plugin {
  /** Unique; shown in every error the plugin throws. */
  readonly name: string
  readonly enforce?: 'pre' | 'post'
  /** Format types this plugin loads (`'xml'`), so configs naming them validate. */
  readonly formats?: readonly string[]
  apply(ctx: PluginContext): void | Promise<void>
}

/** Types only: gives a plugin object its type without changing it. */
export function definePlugin<P extends Plugin>(plugin: P): P {
  return plugin
}

/** Puts plugins in apply order: pre, built-ins, normal, post (stable within each group). */
export function orderPlugins(user: readonly Plugin[], builtins: readonly Plugin[]): Plugin[] {
  const by = (enforce: Plugin['enforce']) => user.filter((plugin) => plugin.enforce === enforce)
  return [...by('pre'), ...builtins, ...by(undefined), ...by('post')]
}

/**
 * Pipelines grouped by the object that serves them (a destination, a
 * source), each group with a unique plugin name: the object's own, then
 * `name#2`, `name#3` for other objects of the same kind. One object shared
 * by pipelines becomes one plugin, opened and closed once.
 */
export function servedBy<T extends { readonly name: string }, P extends { readonly name: string }>(pipelines: readonly P[], server: (pipeline: P) => T): { server: T; pipelines: P[]; name: string }[] {
  const groups = new Map<T, P[]>()
  for (const pipeline of pipelines) {
    const served = groups.get(server(pipeline)) ?? []
    served.push(pipeline)
    groups.set(server(pipeline), served)
  }
  const names = new Map<string, number>()
  return [...groups].map(([object, served]) => {
    const seen = names.get(object.name) ?? 0
    names.set(object.name, seen + 1)
    return { server: object, pipelines: served, name: seen === 0 ? object.name : `${object.name}#${seen + 1}` }
  })
}
