import { createHash } from 'node:crypto'
import { configInvalid, type Destination, type ResolvedConfig, type ResolvedPipeline } from '../../core/index.js'
import { isPondPlugin, POND_BRAND, type PondDefinition, type RippleDefinition, type SqlText } from './declare.js'

/**
 * Every pond of a config resolved against the others and the pipelines: the
 * catchment. Refused here, when the config loads, with both ends named: a
 * source that is neither a pond nor a pipeline, a major no pond has, a
 * minimum version not met, ponds that read each other in a cycle, a ripple
 * reading one that does not exist or reading itself around a loop.
 */

export interface Version {
  readonly major: number
  readonly minor: number
  readonly patch: number
}

export interface Range {
  readonly text: string
  readonly major: number
  readonly min: Version
  readonly optional: boolean
}

export type ResolvedSource =
  | { readonly alias: string; readonly range: Range; readonly kind: 'pipeline'; readonly pipeline: ResolvedPipeline }
  | { readonly alias: string; readonly range: Range; readonly kind: 'pond'; readonly pond: string }
  | { readonly alias: string; readonly range: Range; readonly kind: 'absent' }

export interface ResolvedRipple {
  readonly name: string
  readonly parents: readonly string[]
  readonly sql?: string
  readonly run?: RippleDefinition['run']
  readonly parquet?: string
}

export interface ResolvedPond {
  /** `name@major`: what the ledger records, and the schema its tables live in. */
  readonly key: string
  readonly name: string
  readonly version: Version
  readonly versionText: string
  readonly sources: readonly ResolvedSource[]
  /** In an order that runs each ripple after its parents. */
  readonly ripples: readonly ResolvedRipple[]
  readonly attempts: number
  /** The hash of the pond as declared (version, sources, ripples' code): a change runs it again. */
  readonly code: string
}

export interface Catchment {
  readonly ponds: ReadonlyMap<string, ResolvedPond>
  /** Every pond key, each after the ponds it reads. */
  readonly order: readonly string[]
  /** Where the ponds' tables live: the DuckDB destination of the pipelines they read. */
  readonly database: Destination | undefined
  /** `database` option of ponds that read no pipeline (the file the plugin opens itself). */
  readonly databasePath: string | undefined
}

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/
const RESERVED = new Set(['main', 'memory', 'system', 'temp', 'information_schema', 'pg_catalog'])

export function parseVersion(text: unknown): Version | undefined {
  const match = typeof text === 'string' ? /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.exec(text) : null
  return match === null ? undefined : { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]) }
}

/** `^1`, `^1.4`, `^1.4.2`, each with an optional trailing `?`. */
export function parseRange(text: unknown): Range | undefined {
  const match = typeof text === 'string' ? /^\^(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?)?(\?)?$/.exec(text) : null
  if (match === null) return undefined
  const major = Number(match[1])
  return { text: text as string, major, min: { major, minor: Number(match[2] ?? 0), patch: Number(match[3] ?? 0) }, optional: match[4] === '?' }
}

export function formatVersion(version: Version): string {
  return `${version.major}.${version.minor}.${version.patch}`
}

function below(version: Version, min: Version): boolean {
  return version.minor < min.minor || (version.minor === min.minor && version.patch < min.patch)
}

const PIPELINE_VERSION: Version = { major: 1, minor: 0, patch: 0 }

function rippleOf(name: string, value: SqlText | string | RippleDefinition): ResolvedRipple | string {
  if (typeof value === 'string') return { name, parents: [], sql: value }
  if (typeof value === 'object' && value !== null && (value as SqlText).kind === 'sql') return { name, parents: [], sql: (value as SqlText).text }
  if (typeof value !== 'object' || value === null) return `expected sql\`…\`, a string of SQL, or { parents, sql | run }`
  const ripple = value as RippleDefinition
  const sqlText = ripple.sql === undefined ? undefined : typeof ripple.sql === 'string' ? ripple.sql : ripple.sql.text
  if ((sqlText === undefined) === (ripple.run === undefined)) return 'give it sql or run (one of them)'
  if (ripple.run !== undefined && typeof ripple.run !== 'function') return 'run: expected a function (db, ctx) => SELECT text, or nothing once it created ctx.table'
  if (ripple.parents !== undefined && !(Array.isArray(ripple.parents) && ripple.parents.every((parent) => typeof parent === 'string'))) return 'parents: expected an array of ripple names'
  if (ripple.parquet !== undefined && (typeof ripple.parquet !== 'string' || ripple.parquet === '')) return 'parquet: expected a file path'
  return {
    name,
    parents: [...(ripple.parents ?? [])],
    ...(sqlText === undefined ? {} : { sql: sqlText }),
    ...(ripple.run === undefined ? {} : { run: ripple.run }),
    ...(ripple.parquet === undefined ? {} : { parquet: ripple.parquet }),
  }
}

/** Ripples in an order that runs parents first; a cycle or an unknown parent is a problem. */
function orderRipples(key: string, ripples: ResolvedRipple[], problems: string[]): ResolvedRipple[] {
  const byName = new Map(ripples.map((ripple) => [ripple.name, ripple]))
  for (const ripple of ripples) {
    for (const parent of ripple.parents) {
      if (!byName.has(parent)) problems.push(`pond ${key}: ripple "${ripple.name}" reads ripple "${parent}", which the pond does not have (ripples: ${[...byName.keys()].join(', ')})`)
    }
  }
  const order: ResolvedRipple[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (ripple: ResolvedRipple, way: string[]): boolean => {
    const seen = state.get(ripple.name)
    if (seen === 'done') return true
    if (seen === 'visiting') {
      const loop = way.slice(way.indexOf(ripple.name))
      problems.push(`pond ${key}: its ripples form a cycle: ${[...loop, ripple.name].join(' → ')}`)
      return false
    }
    state.set(ripple.name, 'visiting')
    for (const parent of ripple.parents) {
      const found = byName.get(parent)
      if (found !== undefined && !visit(found, [...way, ripple.name])) return false
    }
    state.set(ripple.name, 'done')
    order.push(ripple)
    return true
  }
  for (const ripple of ripples) if (!visit(ripple, [])) break
  return order
}

function codeOf(definition: PondDefinition, ripples: readonly ResolvedRipple[]): string {
  const parts = {
    version: definition.version,
    sources: Object.entries(definition.sources ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)),
    ripples: ripples.map((ripple) => ({ name: ripple.name, parents: ripple.parents, sql: ripple.sql ?? null, run: ripple.run?.toString() ?? null, parquet: ripple.parquet ?? null })),
  }
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex')
}

const built = new WeakMap<ResolvedConfig, Catchment>()

/** The config's catchment, built once per config; throws CONFIG_INVALID with every problem found. */
export function catchmentOf(config: ResolvedConfig): Catchment {
  const known = built.get(config)
  if (known !== undefined) return known
  const problems: string[] = []
  const definitions = config.plugins.filter(isPondPlugin).map((plugin) => plugin[POND_BRAND])
  const pipelines = new Map(config.pipelines.map((pipeline) => [pipeline.name, pipeline]))

  // Each pond on its own: name, version, ripples.
  const declared = new Map<string, { definition: PondDefinition; version: Version; ripples: ResolvedRipple[] }>()
  const majors = new Map<string, Map<number, string>>()
  for (const definition of definitions) {
    const version = parseVersion(definition.version)
    if (typeof definition.name !== 'string' || !NAME.test(definition.name)) {
      problems.push(`pond ${JSON.stringify(definition.name)}: a pond's name is letters, digits and _, starting with a letter`)
      continue
    }
    if (version === undefined) {
      problems.push(`pond ${definition.name}: version ${JSON.stringify(definition.version)} is not a version (expected major.minor.patch, like 1.2.0)`)
      continue
    }
    if (pipelines.has(definition.name)) problems.push(`pond ${definition.name}: a pipeline has this name too; a source would not know which to read`)
    const key = `${definition.name}@${version.major}`
    const other = declared.get(key)
    if (other !== undefined) {
      problems.push(`pond ${key}: declared twice (${formatVersion(other.version)} and ${formatVersion(version)}); one version of a major is live at a time`)
      continue
    }
    if (definition.attempts !== undefined && !(Number.isInteger(definition.attempts) && definition.attempts >= 1)) problems.push(`pond ${key}: attempts must be a whole number ≥ 1`)
    const ripples: ResolvedRipple[] = []
    if (typeof definition.ripples !== 'object' || definition.ripples === null || Object.keys(definition.ripples).length === 0) {
      problems.push(`pond ${key}: it has no ripples; give it at least one (ripples: { name: sql\`SELECT …\` })`)
    } else {
      for (const [name, value] of Object.entries(definition.ripples)) {
        if (!NAME.test(name)) problems.push(`pond ${key}: ripple "${name}": a ripple's name is letters, digits and _, starting with a letter`)
        const ripple = rippleOf(name, value)
        if (typeof ripple === 'string') problems.push(`pond ${key}: ripple "${name}": ${ripple}`)
        else ripples.push(ripple)
      }
    }
    declared.set(key, { definition, version, ripples })
    const byMajor = majors.get(definition.name) ?? new Map<number, string>()
    byMajor.set(version.major, key)
    majors.set(definition.name, byMajor)
  }

  // Sources against the other ponds and the pipelines.
  const ponds = new Map<string, ResolvedPond>()
  for (const [key, { definition, version, ripples }] of declared) {
    const sources: ResolvedSource[] = []
    for (const [alias, text] of Object.entries(definition.sources ?? {})) {
      const range = parseRange(text)
      if (!NAME.test(alias) || RESERVED.has(alias.toLowerCase())) {
        problems.push(`pond ${key}: source alias "${alias}" is not a usable name (letters, digits and _; not ${[...RESERVED].join(', ')})`)
        continue
      }
      if (ripples.some((ripple) => ripple.name === alias)) problems.push(`pond ${key}: "${alias}" is both a source and a ripple of the pond; rename one`)
      if (range === undefined) {
        problems.push(`pond ${key}: source ${alias}: ${JSON.stringify(text)} is not a version range (expected ^major, ^major.minor or ^major.minor.patch, and ? when optional)`)
        continue
      }
      const pipeline = pipelines.get(alias)
      const candidates = majors.get(alias)
      if (pipeline !== undefined) {
        if (range.major !== PIPELINE_VERSION.major || below(PIPELINE_VERSION, range.min)) {
          problems.push(`pond ${key} reads pipeline ${alias} as ${range.text}, but a pipeline is version 1.0.0 (read it as ^1)`)
          continue
        }
        sources.push({ alias, range, kind: 'pipeline', pipeline })
      } else if (candidates !== undefined && candidates.has(range.major)) {
        const upstream = candidates.get(range.major)!
        const upstreamVersion = declared.get(upstream)!.version
        if (below(upstreamVersion, range.min)) {
          problems.push(`pond ${key} needs ${alias} ≥ ${formatVersion(range.min)} (${range.text}), but ${upstream} is ${formatVersion(upstreamVersion)}`)
          continue
        }
        sources.push({ alias, range, kind: 'pond', pond: upstream })
      } else if (range.optional) {
        sources.push({ alias, range, kind: 'absent' })
      } else if (candidates !== undefined) {
        problems.push(`pond ${key} reads ${alias} ${range.text}, but ${alias} is deployed as ${[...candidates.keys()].sort((a, b) => a - b).map((major) => `${alias}@${major}`).join(', ')} only`)
      } else {
        problems.push(
          `pond ${key} reads "${alias}", which is no pond or pipeline of this config (ponds: ${[...new Set([...declared.values()].map((pond) => pond.definition.name))].join(', ') || 'none'}; pipelines: ${[...pipelines.keys()].join(', ') || 'none'})`,
        )
      }
    }
    const ordered = orderRipples(key, ripples, problems)
    ponds.set(key, {
      key,
      name: definition.name,
      version,
      versionText: formatVersion(version),
      sources,
      ripples: ordered,
      attempts: definition.attempts ?? 1,
      code: codeOf(definition, ordered),
    })
  }

  // Ponds reading each other in a loop.
  const order: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (key: string, way: string[]): boolean => {
    const seen = state.get(key)
    if (seen === 'done') return true
    if (seen === 'visiting') {
      problems.push(`ponds read each other in a cycle: ${[...way.slice(way.indexOf(key)), key].join(' → ')}`)
      return false
    }
    state.set(key, 'visiting')
    for (const source of ponds.get(key)!.sources) if (source.kind === 'pond' && !visit(source.pond, [...way, key])) return false
    state.set(key, 'done')
    order.push(key)
    return true
  }
  for (const key of ponds.keys()) if (!visit(key, [])) break

  // One DuckDB database for the catchment: where the pipelines the ponds read write.
  const inlets = [...ponds.values()].flatMap((pond) => pond.sources.filter((source) => source.kind === 'pipeline').map((source) => ({ pond: pond.key, pipeline: source.pipeline })))
  let database: Destination | undefined
  for (const { pond, pipeline } of inlets) {
    const destination = pipeline.destination
    if (destination.dialect !== 'duckdb' || typeof destination.session !== 'function') {
      problems.push(`pond ${pond} reads pipeline ${pipeline.name}, which writes to ${destination.describe()}; ponds run on DuckDB and read the tables of pipelines that load into it (destination: duckdb({ path }))`)
    } else if (database === undefined) database = destination
    else if (database !== destination) {
      problems.push(`pond ${pond} reads pipeline ${pipeline.name}, written to ${destination.describe()}, but other ponds read tables in ${database.describe()}; the ponds of a config share one DuckDB database`)
    }
  }
  const paths = new Set([...declared.values()].map(({ definition }) => definition.database).filter((value): value is string => value !== undefined))
  if (paths.size > 1) problems.push(`ponds name different databases (${[...paths].join(', ')}); the ponds of a config share one DuckDB database`)
  if (paths.size > 0 && database !== undefined) problems.push(`pond database ${[...paths][0]}: ponds that read pipelines live in those pipelines' DuckDB database (${database.describe()}); leave database out`)

  if (problems.length > 0) throw configInvalid(`ponds:\n  - ${problems.join('\n  - ')}`)
  const catchment: Catchment = { ponds, order, database, databasePath: database === undefined ? ([...paths][0] ?? '.filedge/ponds.duckdb') : undefined }
  built.set(config, catchment)
  return catchment
}

/** The ponds `outlet` needs, itself included, each after those it reads. */
export function ancestors(catchment: Catchment, outlet: string): string[] {
  const needed = new Set<string>()
  const walk = (key: string) => {
    if (needed.has(key)) return
    needed.add(key)
    for (const source of catchment.ponds.get(key)!.sources) if (source.kind === 'pond') walk(source.pond)
  }
  walk(outlet)
  return catchment.order.filter((key) => needed.has(key))
}

/** `daily` or `daily@1` to a pond key; a bare name picks its highest major. */
export function findPond(catchment: Catchment, name: string): string | undefined {
  if (catchment.ponds.has(name)) return name
  const majors = [...catchment.ponds.values()].filter((pond) => pond.name === name).sort((a, b) => b.version.major - a.version.major)
  return majors[0]?.key
}
