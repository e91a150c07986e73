import { configInvalid } from '../errors.js'
import type { Plugin } from '../plugin.js'
import { formatIssues } from './issues.js'
import { presetSchema } from './schema.js'
import type { PipelineConfig, PipelineDefaults, PluginOption, Preset, PresetOption, UserConfig } from './types.js'

/** Types only: gives a preset object its type without changing it. */
export function definePreset<P extends Preset>(preset: P): P {
  return preset
}

export function flattenPlugins(options: readonly PluginOption[] | undefined): Plugin[] {
  const out: Plugin[] = []
  const visit = (option: PluginOption) => {
    if (Array.isArray(option)) option.forEach(visit)
    else if (option) out.push(option)
  }
  options?.forEach(visit)
  return out
}

/**
 * Replaces presets named by string (an npm package, or a path relative to
 * the config file) with their default export, recursively through
 * `extends`. A package that extends itself, directly or not, is reported
 * with the chain instead of recursing forever.
 */
export async function loadPresets(
  options: readonly PresetOption[] | undefined,
  load: (spec: string) => Promise<unknown>,
  chain: readonly string[] = [],
): Promise<PresetOption[] | undefined> {
  if (options === undefined) return undefined
  return Promise.all(
    options.map(async (option) => {
      let value: unknown = option
      let label = chain
      if (typeof option === 'string') {
        if (chain.includes(option)) throw configInvalid(`preset cycle: ${[...chain, option].join(' → ')}`)
        label = [...chain, option]
        try {
          value = await load(option)
        } catch (error) {
          throw configInvalid(`preset "${option}" could not be loaded: ${(error as Error).message}`, error)
        }
      }
      if (typeof value === 'function') value = await (value as () => unknown)()
      if (typeof value !== 'object' || value === null || !Array.isArray((value as Preset).extends)) return value as PresetOption
      const preset = value as Preset
      return { ...preset, extends: await loadPresets(preset.extends, load, typeof option === 'string' ? label : [...chain, preset.name]) }
    }),
  )
}

type Merged = Omit<Preset, 'name' | 'extends' | 'plugins'> & { plugins: Plugin[] }

function mergeDefaults(base: PipelineDefaults | undefined, next: PipelineDefaults | undefined): PipelineDefaults | undefined {
  if (next === undefined) return base
  if (base === undefined) return next
  return {
    ...base,
    ...next,
    format: mergeFormat(base.format, next.format),
    retry: next.retry === undefined ? base.retry : { ...base.retry, ...next.retry },
    columns: next.columns === undefined ? base.columns : { ...base.columns, ...next.columns },
  }
}

/** Format options merge key by key when both sides name the same type; otherwise the later one replaces the earlier. */
function mergeFormat(base: PipelineDefaults['format'], next: PipelineDefaults['format']): PipelineDefaults['format'] {
  if (next === undefined) return base
  if (typeof base === 'object' && base !== null && typeof next === 'object' && next !== null && base.type === next.type) return { ...base, ...next }
  return next
}

function withPlugins(current: readonly Plugin[], added: readonly Plugin[]): Plugin[] {
  const names = new Set(added.map((plugin) => plugin.name))
  return [...current.filter((plugin) => !names.has(plugin.name)), ...added]
}

/** Built-in plugins a config or preset may remove with `disablePlugins` (the others are the run itself). */
export const DISABLEABLE_BUILTINS = ['filedge:stat-cache'] as const

function disable(current: readonly Plugin[], names: readonly string[] | undefined, by: string, warnings: string[], builtins: Set<string>): Plugin[] {
  if (names === undefined) return [...current]
  for (const name of names) {
    if ((DISABLEABLE_BUILTINS as readonly string[]).includes(name)) {
      builtins.add(name)
    } else if (!current.some((plugin) => plugin.name === name)) {
      warnings.push(`${by}: disablePlugins "${name}" matches no plugin; known plugins: ${current.map((plugin) => plugin.name).join(', ') || '(none)'}`)
    }
  }
  return current.filter((plugin) => !names.includes(plugin.name))
}

function applyPipelineDefaults(pipeline: PipelineConfig, defaults: PipelineDefaults | undefined): PipelineConfig {
  if (defaults === undefined || typeof pipeline !== 'object' || pipeline === null) return pipeline
  const merged: Record<string, unknown> = { ...pipeline }
  for (const key of ['destination', 'writeMode', 'batchSize', 'unknownColumns'] as const) {
    if (merged[key] === undefined && defaults[key] !== undefined) merged[key] = defaults[key]
  }
  merged.format = mergeFormat(defaults.format, pipeline.format)
  if (defaults.retry !== undefined) merged.retry = { ...defaults.retry, ...pipeline.retry }
  if (defaults.columns !== undefined && typeof pipeline.columns === 'object' && pipeline.columns !== null) merged.columns = { ...defaults.columns, ...pipeline.columns }
  if (merged.format === undefined) delete merged.format
  return merged as unknown as PipelineConfig
}

/**
 * Applies `config.presets`: depth-first through `extends` (a preset's
 * parents first), each preset once (diamonds are fine), later wins; then the
 * config itself wins over every preset. Plugins are de-duplicated by name (the
 * later definition replaces the earlier one); `disablePlugins` removes the
 * plugins accumulated before it. Returns a plain config for validation.
 */
export function applyPresets(config: UserConfig): { config: UserConfig; warnings: string[]; disabledBuiltins: string[]; origins: Record<string, string> } {
  const warnings: string[] = []
  const builtins = new Set<string>()
  /** Which preset set a value (`ledger`, `lease.ttl`, `plugins.acme-stamp`, `defaults.destination`): `filedge config` shows it. */
  const origins: Record<string, string> = {}
  if (config.presets === undefined && config.disablePlugins === undefined) return { config, warnings, disabledBuiltins: [], origins }
  const order: Preset[] = []
  const seen = new Set<string>()

  const visit = (option: PresetOption, at: string, chain: readonly string[]) => {
    if (option === false || option === null || option === undefined) return
    if (typeof option === 'string') throw configInvalid(`${at}: preset "${option}" was not loaded (presets named by package are loaded by loadConfig)`)
    const candidate = option as Preset
    const flat = typeof candidate === 'object' && candidate !== null ? { ...candidate, plugins: flattenPlugins(candidate.plugins) } : candidate
    const parsed = presetSchema.safeParse(flat, { reportInput: true })
    if (!parsed.success) {
      const label = typeof candidate?.name === 'string' ? `${at} ("${candidate.name}")` : at
      throw configInvalid(`invalid preset:\n  ${formatIssues(parsed.error.issues, () => Object.keys(presetSchema.shape)).map((line) => `${label}.${line}`).join('\n  ')}`)
    }
    const preset = flat as Preset
    if (chain.includes(preset.name)) throw configInvalid(`preset cycle: ${[...chain, preset.name].join(' → ')}`)
    if (seen.has(preset.name)) return
    ;(preset.extends ?? []).forEach((parent, index) => visit(parent as PresetOption, `${at}.extends[${index}]`, [...chain, preset.name]))
    if (seen.has(preset.name)) return
    seen.add(preset.name)
    order.push(preset)
  }
  ;(config.presets ?? []).forEach((option, index) => visit(option, `presets[${index}]`, []))

  let merged: Merged = { plugins: [] }
  for (const preset of order) {
    const by = `preset "${preset.name}"`
    if (preset.ledger !== undefined) origins.ledger = by
    if (preset.concurrency !== undefined) origins.concurrency = by
    for (const key of Object.keys(preset.lease ?? {})) origins[`lease.${key}`] = by
    for (const key of Object.keys(preset.limits ?? {})) origins[`limits.${key}`] = by
    for (const plugin of flattenPlugins(preset.plugins)) origins[`plugins.${plugin.name}`] = by
    for (const key of Object.keys(preset.defaults ?? {})) origins[`defaults.${key}`] = by
    for (const key of Object.keys(preset.defaults?.columns ?? {})) origins[`defaults.columns.${key}`] = by
    const plugins = withPlugins(disable(merged.plugins, preset.disablePlugins, `preset "${preset.name}"`, warnings, builtins), flattenPlugins(preset.plugins))
    merged = {
      ledger: preset.ledger ?? merged.ledger,
      lease: preset.lease === undefined ? merged.lease : { ...merged.lease, ...preset.lease },
      concurrency: preset.concurrency ?? merged.concurrency,
      limits: preset.limits === undefined ? merged.limits : { ...merged.limits, ...preset.limits },
      defaults: mergeDefaults(merged.defaults, preset.defaults),
      plugins,
    }
  }

  const plugins = withPlugins(disable(merged.plugins, config.disablePlugins, 'config', warnings, builtins), flattenPlugins(config.plugins))
  const { presets: _presets, disablePlugins: _disabled, ...rest } = config
  const result: UserConfig = {
    ...rest,
    ...(merged.ledger !== undefined && config.ledger === undefined ? { ledger: merged.ledger } : {}),
    ...(merged.lease !== undefined ? { lease: { ...merged.lease, ...config.lease } } : {}),
    ...(merged.concurrency !== undefined && config.concurrency === undefined ? { concurrency: merged.concurrency } : {}),
    ...(merged.limits !== undefined ? { limits: { ...merged.limits, ...config.limits } } : {}),
    plugins,
    pipelines: Array.isArray(config.pipelines) ? config.pipelines.map((pipeline) => applyPipelineDefaults(pipeline, merged.defaults)) : config.pipelines,
  }
  return { config: result, warnings, disabledBuiltins: [...builtins], origins }
}
