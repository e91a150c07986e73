import path from 'node:path'
import { configInvalid } from '../errors.js'
import { BUILTIN_FORMATS, defaultIncludes, formatAlias } from '../formats/registry.js'
import type { Plugin } from '../plugin.js'
import { PROVENANCE_COLUMNS } from '../rows.js'
import { isEnvRef, readEnv, redact } from '../secrets.js'
import { toMs } from './duration.js'
import { formatIssues, formatPath } from './issues.js'
import { resolveLimits } from './limits.js'
import { applyPresets, flattenPlugins } from './presets.js'
import { BUILTIN_FORMAT_SCHEMAS, cdcSchema, configSchema, csvFormatSchema, fixedFieldSchema, limitsSchema, quarantineSchema, truncateSchema } from './schema.js'
import { checkProtectedCdc, resolveProtection, resolveQuarantine, storedColumn } from './row-controls.js'
import { resolveWriteMode } from './write-mode.js'
import { localSource } from '../source/local.js'
import type { ArchiveAction, Source } from '../source.js'
import { resolveStages } from '../stages/resolve.js'
import type {
  ColumnInput,
  FixedFormatOptions,
  PipelineConfig,
  PluginOption,
  ResolvedColumn,
  ResolvedConfig,
  ResolvedFormat,
  ResolvedLedger,
  ResolvedPipeline,
  SourceConfig,
  UserConfig,
} from './types.js'

/** Types only: `export default defineConfig({ … })` gives the config its type and autocompletion. */
export function defineConfig(config: UserConfig): UserConfig {
  return config
}

const DEFAULT_LEDGER = 'sqlite:.filedge/ledger.db'
const DEFAULT_TTL_MS = 60_000
const DEFAULT_CONCURRENCY = 4
const DEFAULT_ATTEMPTS = 3
const DEFAULT_LAPSES = 5
const DEFAULT_BATCH_SIZE = 2_000
const DEFAULT_SETTLE_MS = 500
const DEFAULT_POLL_MS = 10_000

/** Where in the config a path points, so unknown keys can be matched against the keys that exist there. */
function knownKeysAt(at: readonly PropertyKey[]): readonly string[] {
  const shapes: Record<string, readonly string[]> = {
    config: [...Object.keys(configSchema.shape), 'presets', 'disablePlugins'],
    lease: ['ttl', 'heartbeat'],
    watch: ['enabled', 'settle', 'poll'],
    pipeline: ['name', 'source', 'onCommitted', 'format', 'destination', 'table', 'writeMode', 'columns', 'unknownColumns', 'retry', 'batchSize', 'limits', 'quarantine', 'stages'],
    source: ['dir', 'include', 'exclude', 'readyMarker', 'followSymlinks'],
    column: ['type', 'required', 'source', 'precision', 'scale', 'encrypt', 'hash'],
    encrypt: ['key'],
    hash: ['key'],
    quarantine: Object.keys(quarantineSchema.shape),
    retry: ['attempts', 'lapses'],
    format: Object.keys(csvFormatSchema.shape),
    writeMode: ['truncate', 'cdc'],
    truncate: Object.keys(truncateSchema.shape),
    cdc: Object.keys(cdcSchema.shape),
    ops: ['insert', 'update', 'delete'],
    limits: Object.keys(limitsSchema.shape),
  }
  if (at.length === 0) return shapes.config
  const last = at[at.length - 1]
  if (at[0] === 'pipelines' && at.length === 2) return shapes.pipeline
  if (at.length >= 2 && at[at.length - 2] === 'columns') return shapes.column
  if (typeof last === 'string' && last in shapes) return shapes[last]
  return []
}

function toColumn(name: string, input: ColumnInput): ResolvedColumn {
  const spec = typeof input === 'string' ? { type: input } : input
  const column: ResolvedColumn = {
    name,
    source: spec.source ?? name,
    type: spec.type,
    required: spec.required ?? false,
    ...(spec.type === 'decimal' ? { precision: spec.precision ?? 38, scale: spec.scale ?? 9 } : {}),
  }
  return column
}

function resolveFormat(input: PipelineConfig['format'], at: string, knownFormats: ReadonlySet<string>, problems: string[]): ResolvedFormat | undefined {
  if (input === undefined) return undefined
  const type = typeof input === 'string' ? input : input.type
  const alias = formatAlias(type)
  if (alias !== undefined && typeof input === 'string') return alias
  if (!knownFormats.has(type)) {
    problems.push(`${at}${typeof input === 'string' ? '' : '.type'}: expected one of ${[...knownFormats, 'tsv'].join(', ')}; got ${JSON.stringify(type)}`)
    return undefined
  }
  if (typeof input === 'string') return { type, options: {} }
  const schema = BUILTIN_FORMAT_SCHEMAS[type as keyof typeof BUILTIN_FORMAT_SCHEMAS]
  if (schema !== undefined) {
    const parsed = schema.safeParse(input, { reportInput: true })
    if (!parsed.success) {
      // A misspelt key inside a fixed-width layout's field is matched against a field's keys, not the format's.
      const knownKeys = (path: readonly PropertyKey[]) => Object.keys(path.includes('layout') ? fixedFieldSchema.shape : schema.shape)
      problems.push(...formatIssues(parsed.error.issues, knownKeys, at.split('.').flatMap(splitPathSegment)))
      return undefined
    }
    // As parsed: a schema may spell a value the way the format reads it (a fixed-width encoding's label).
    const { type: _type, ...options } = parsed.data
    return { type, options }
  }
  const { type: _type, ...options } = input
  return { type, options }
}

/**
 * A fixed-width layout names the file's fields, so what a CSV file's header
 * would tell at load time is known here: a required column no field feeds,
 * and (unless unknownColumns is 'ignore') a field no column takes.
 */
function checkLayout(format: Omit<FixedFormatOptions, 'type'>, columns: readonly ResolvedColumn[], unknownColumns: 'error' | 'ignore', at: string, problems: string[]): void {
  const names = new Set(format.layout.map((field) => field.name))
  for (const column of columns) {
    if (column.required && !names.has(column.source)) problems.push(`${at}.columns${formatPath([column.name]).replace(/^(?!\[)/, '.')}: required, but the layout has no field "${column.source}"`)
  }
  if (unknownColumns === 'ignore') return
  const sources = new Set(columns.map((column) => column.source))
  format.layout.forEach((field, index) => {
    if (!sources.has(field.name)) problems.push(`${at}.format.layout[${index}].name: "${field.name}" feeds no column; declare it in columns or set unknownColumns: 'ignore'`)
  })
}

function splitPathSegment(segment: string): PropertyKey[] {
  const match = /^(\w+)\[(\d+)\]$/.exec(segment)
  return match ? [match[1], Number(match[2])] : [segment]
}

/**
 * What is wrong with a postgres:// URL, or undefined. Checked here, with the
 * config, so that a URL pg cannot read is a config error naming the key
 * (exit 2) rather than an internal error from the driver with a stack. An
 * unencoded `#`, `/` or `?` in the password is the usual cause: the URL then
 * ends its authority early (`postgres://u:pa#ss@h` reads as host `u`, port
 * `pa`), and with `/` it may even parse, as host `u`, port 12 and a path
 * holding the rest (`postgres://u:12/ss@h/db`), hence the check for an `@`
 * after the host.
 */
function postgresUrlProblem(value: string): string | undefined {
  const encode = 'percent-encode special characters in the user name and password (# as %23, / as %2F, ? as %3F, @ as %40, : as %3A, a space as %20)'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return `is not a valid URL; ${encode}`
  }
  if (url.pathname.includes('@')) return `has an "@" after its host; ${encode}`
  if (url.hostname === '' && !url.searchParams.has('host')) return 'names no host; expected postgres://user:password@host:5432/database'
  return undefined
}

function resolveLedger(input: UserConfig['ledger'], root: string, problems: string[]): ResolvedLedger | undefined {
  const value = input === undefined ? DEFAULT_LEDGER : readEnv(input)
  if (value === undefined) {
    problems.push(`ledger: environment variable ${isEnvRef(input) ? input.name : ''} is not set`)
    return undefined
  }
  if (value.startsWith('sqlite:')) {
    const file = value.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '')
    if (file === '') {
      problems.push('ledger: expected sqlite:PATH, e.g. sqlite:.filedge/ledger.db')
      return undefined
    }
    return { kind: 'sqlite', path: path.resolve(root, file) }
  }
  if (/^postgres(ql)?:\/\//.test(value)) {
    const problem = postgresUrlProblem(value)
    if (problem !== undefined) {
      problems.push(`ledger: ${isEnvRef(input) ? `the value of ${input.name}` : redact(value)} ${problem}`)
      return undefined
    }
    const url = new URL(value)
    const schema = url.searchParams.get('schema') ?? 'filedge'
    url.searchParams.delete('schema')
    return { kind: 'postgres', url: url.toString(), schema }
  }
  problems.push(`ledger: expected "sqlite:PATH" or a postgres:// URL; got ${isEnvRef(input) ? `the value of ${input.name}` : JSON.stringify(value)}`)
  return undefined
}

/**
 * Validates a loaded config and resolves it once into the read-only object
 * the rest of filedge reads. Nothing here touches a database or the source
 * directories: a bad config fails before anything is created.
 */
export function resolveConfig(raw: unknown, options: { configFile?: string; cwd?: string; builtinPlugins?: readonly Plugin[] } = {}): ResolvedConfig {
  const configDir = options.configFile ? path.dirname(options.configFile) : (options.cwd ?? process.cwd())
  let warnings: string[] = []
  let disabledBuiltins: string[] = []
  let fromPresets: Record<string, string> = {}
  const own = raw as Partial<UserConfig> | undefined
  if (typeof raw === 'object' && raw !== null && ('presets' in raw || 'disablePlugins' in raw)) {
    ;({ config: raw, warnings, disabledBuiltins, origins: fromPresets } = applyPresets(raw as UserConfig))
  }
  const candidate = raw as Partial<UserConfig> | undefined
  const plugins = flattenPlugins(
    typeof candidate === 'object' && candidate !== null && Array.isArray(candidate.plugins) ? candidate.plugins : undefined,
  )
  const parsed = configSchema.safeParse(
    typeof candidate === 'object' && candidate !== null && 'plugins' in candidate ? { ...candidate, plugins } : raw,
    { reportInput: true },
  )
  if (!parsed.success) throw invalid(formatIssues(parsed.error.issues, knownKeysAt).map(misplacedAllowEmpty))
  const config = parsed.data as unknown as UserConfig

  const problems: string[] = []
  const root = path.resolve(configDir, config.root ?? '.')
  const knownFormats = new Set([
    ...Object.keys(BUILTIN_FORMATS),
    ...[...(options.builtinPlugins ?? []), ...plugins].flatMap((plugin) => plugin.formats ?? []),
  ])

  // Before the pipelines (a quarantine's sidecars go next to a SQLite ledger); its problems are said after theirs.
  const ledgerProblems: string[] = []
  const ledger = resolveLedger(config.ledger, root, ledgerProblems)
  const names = new Set<string>()
  const pipelines: ResolvedPipeline[] = config.pipelines.map((pipeline, index) => {
    const at = `pipelines[${index}]`
    if (names.has(pipeline.name)) problems.push(`${at}.name: "${pipeline.name}" is used by another pipeline; names must be unique`)
    names.add(pipeline.name)

    const columns = Object.entries(pipeline.columns).map(([name, input]) => {
      const column = toColumn(name, input)
      const protect = typeof input === 'object' ? resolveProtection(input, `${at}.columns${formatPath([name]).replace(/^(?!\[)/, '.')}`, problems) : undefined
      return protect === undefined ? column : { ...column, protect }
    })
    const sources = new Map<string, string>()
    for (const column of columns) {
      const columnAt = `${at}.columns${formatPath([column.name]).replace(/^(?!\[)/, '.')}`
      if (PROVENANCE_COLUMNS.some((provenance) => provenance.name === column.name)) {
        problems.push(`${columnAt}: "${column.name}" is a provenance column filedge adds itself; rename it`)
      }
      const other = sources.get(column.source)
      if (other !== undefined) problems.push(`${columnAt}.source: field "${column.source}" already feeds column "${other}"`)
      sources.set(column.source, column.name)
      if (column.type !== 'decimal' && (pipeline.columns[column.name] as { precision?: number; scale?: number }).precision !== undefined) {
        problems.push(`${columnAt}.precision: only decimal columns take a precision`)
      }
      if (column.type !== 'decimal' && (pipeline.columns[column.name] as { scale?: number }).scale !== undefined) {
        problems.push(`${columnAt}.scale: only decimal columns take a scale`)
      }
      if (column.type === 'decimal' && column.scale! > column.precision!) {
        problems.push(`${columnAt}.scale: must not exceed precision (${column.precision})`)
      }
    }

    const mode = resolveWriteMode(pipeline, columns, at, problems)
    checkProtectedCdc(mode.columns, mode.writeMode, at, problems)
    // Stages and the table see protected columns as they are stored: text.
    const staged = resolveStages(pipeline.stages ?? [], mode.columns.map(storedColumn), mode.writeMode.kind, at, problems, toColumn)
    const format = resolveFormat(pipeline.format, `${at}.format`, knownFormats, problems)
    const quarantine = resolveQuarantine(pipeline, columns, format, root, ledger, at, problems)
    if (format?.type === 'fixed') checkLayout(format.options as Omit<FixedFormatOptions, 'type'>, columns, pipeline.unknownColumns ?? 'error', at, problems)
    const defaultInclude = Object.freeze(defaultIncludes(format ? [format.type] : Object.keys(BUILTIN_FORMATS)))
    const source = resolveSource(pipeline, root, defaultInclude, at, problems)
    const onCommitted = resolveOnCommitted(pipeline, root, at, problems)
    return Object.freeze({
      name: pipeline.name,
      source,
      defaultInclude,
      ...(onCommitted === undefined ? {} : { onCommitted }),
      format,
      destination: pipeline.destination!,
      table: pipeline.table,
      writeMode: mode.writeMode,
      columns: Object.freeze(mode.columns.map((column) => Object.freeze(column))),
      unknownColumns: pipeline.unknownColumns ?? 'error',
      retry: Object.freeze({ attempts: pipeline.retry?.attempts ?? DEFAULT_ATTEMPTS, lapses: pipeline.retry?.lapses ?? DEFAULT_LAPSES }),
      batchSize: pipeline.batchSize ?? DEFAULT_BATCH_SIZE,
      limits: resolveLimits([{ at: 'limits', limits: config.limits }, { at: `${at}.limits`, limits: pipeline.limits }], problems),
      concurrency: config.concurrency ?? pipeline.destination?.capabilities?.concurrency ?? DEFAULT_CONCURRENCY,
      stages: Object.freeze(staged.stages),
      tableColumns: Object.freeze(staged.tableColumns.map((column) => Object.freeze(column))),
      ...(quarantine === undefined ? {} : { quarantine }),
    })
  })
  problems.push(...ledgerProblems)
  const ttlMs = config.lease?.ttl === undefined ? DEFAULT_TTL_MS : toMs(config.lease.ttl)
  const heartbeatMs = config.lease?.heartbeat === undefined ? Math.max(50, Math.floor(ttlMs / 3)) : toMs(config.lease.heartbeat)
  if (heartbeatMs >= ttlMs) problems.push(`lease.heartbeat: must be shorter than lease.ttl (${ttlMs} ms), or the lease lapses between heartbeats`)

  const pluginNames = new Set<string>()
  for (const [index, plugin] of plugins.entries()) {
    if (pluginNames.has(plugin.name)) problems.push(`plugins[${index}].name: "${plugin.name}" is already used by another plugin`)
    pluginNames.add(plugin.name)
  }

  // A top-level problem (a limit every pipeline inherits) is said once.
  if (problems.length > 0 || ledger === undefined) throw invalid([...new Set(problems)])
  return Object.freeze({
    root,
    configFile: options.configFile,
    ledger: Object.freeze(ledger),
    lease: Object.freeze({ ttlMs, heartbeatMs }),
    concurrency: config.concurrency ?? DEFAULT_CONCURRENCY,
    watch: Object.freeze({
      enabled: config.watch === true || (typeof config.watch === 'object' && config.watch.enabled === true),
      settleMs: typeof config.watch === 'object' && config.watch.settle !== undefined ? toMs(config.watch.settle) : DEFAULT_SETTLE_MS,
      pollMs: typeof config.watch === 'object' && config.watch.poll !== undefined ? toMs(config.watch.poll) : DEFAULT_POLL_MS,
    }),
    plugins: Object.freeze(plugins),
    disabledBuiltins: Object.freeze(disabledBuiltins),
    origins: Object.freeze(originsOf(own, fromPresets)),
    pipelines: Object.freeze(pipelines),
    warnings: Object.freeze(warnings),
  })
}

/**
 * Where the values of a config came from, for `filedge config`: `config`
 * (the config file set it), a preset (`preset "acme"`), or nothing here (a
 * default). Keys: `ledger`, `lease.ttl`, `plugins.<name>`,
 * `pipelines[0].destination`, `pipelines[0].columns.id`, …
 */
function originsOf(own: Partial<UserConfig> | undefined, fromPresets: Record<string, string>): Record<string, string> {
  const origins: Record<string, string> = {}
  for (const [key, by] of Object.entries(fromPresets)) if (!key.startsWith('defaults.')) origins[key] = by
  if (typeof own !== 'object' || own === null) return origins
  for (const key of ['ledger', 'concurrency', 'watch', 'root'] as const) if (own[key] !== undefined) origins[key] = 'config'
  for (const key of Object.keys(own.lease ?? {})) origins[`lease.${key}`] = 'config'
  for (const key of Object.keys(own.limits ?? {})) origins[`limits.${key}`] = 'config'
  for (const plugin of flattenPlugins(Array.isArray(own.plugins) ? own.plugins : undefined)) origins[`plugins.${plugin.name}`] = 'config'
  ;(Array.isArray(own.pipelines) ? own.pipelines : []).forEach((pipeline, index) => {
    const at = `pipelines[${index}]`
    for (const key of ['source', 'onCommitted', 'format', 'destination', 'table', 'writeMode', 'unknownColumns', 'retry', 'batchSize', 'limits', 'quarantine'] as const) {
      const by = pipeline[key] !== undefined ? 'config' : fromPresets[`defaults.${key}`]
      if (by !== undefined) origins[`${at}.${key}`] = by
    }
    const columns = new Set([...Object.keys(pipeline.columns ?? {}), ...Object.keys(fromPresets).filter((key) => key.startsWith('defaults.columns.')).map((key) => key.slice('defaults.columns.'.length))])
    for (const column of columns) origins[`${at}.columns.${column}`] = pipeline.columns?.[column] !== undefined ? 'config' : fromPresets[`defaults.columns.${column}`]
  })
  return origins
}

/** A source plugin's object as it is; a directory (or `{ dir, … }`) becomes the built-in local source. */
function resolveSource(pipeline: PipelineConfig, root: string, defaultInclude: readonly string[], at: string, problems: string[]): Source {
  if (typeof pipeline.source === 'object' && 'list' in pipeline.source) return pipeline.source
  const config: SourceConfig = typeof pipeline.source === 'string' ? { dir: pipeline.source } : pipeline.source
  const include = config.include ?? defaultInclude
  if (include.length === 0) problems.push(`${at}.source.include: no default patterns for the pipeline's format; list the files to include`)
  const dir = path.resolve(root, config.dir)
  const moveTo = typeof pipeline.onCommitted === 'object' ? path.resolve(root, pipeline.onCommitted.moveTo) : undefined
  if (moveTo !== undefined && (moveTo === dir || moveTo.startsWith(dir + path.sep))) {
    problems.push(`${at}.onCommitted.moveTo: must be outside source.dir (${config.dir}), or the moved files would be listed again`)
  }
  return localSource({
    dir,
    root,
    include: Object.freeze([...include]),
    exclude: Object.freeze([...(config.exclude ?? [])]),
    ...(config.readyMarker === undefined ? {} : { readyMarker: config.readyMarker }),
    followSymlinks: config.followSymlinks ?? 'inside',
  })
}

function resolveOnCommitted(pipeline: PipelineConfig, root: string, at: string, problems: string[]): ArchiveAction | undefined {
  const option = pipeline.onCommitted ?? 'keep'
  if (option === 'keep') return undefined
  if (option === 'delete') return Object.freeze({ kind: 'delete' })
  if (typeof pipeline.source === 'object' && 'list' in pipeline.source && pipeline.source.archive === undefined) {
    problems.push(`${at}.onCommitted: the ${pipeline.source.name} source cannot delete or move files`)
  }
  return Object.freeze({ kind: 'move', to: option.moveTo })
}

/** `allowEmpty` is an option of the truncate mode; written next to `writeMode`, where one first looks for it, the message says where it goes. */
function misplacedAllowEmpty(line: string): string {
  const match = /^(pipelines\[\d+\])\.allowEmpty: unknown key/.exec(line)
  return match === null ? line : `${match[1]}.allowEmpty: unknown key; it is an option of the truncate mode: writeMode: { truncate: { allowEmpty: true } }`
}

function invalid(lines: readonly string[]) {
  return configInvalid(lines.length === 1 ? `invalid config: ${lines[0]}` : `invalid config:\n  ${lines.join('\n  ')}`)
}
