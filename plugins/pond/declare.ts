import { configInvalid, type Plugin, type SqlSession } from '../../core/index.js'

/**
 * A pond: a versioned unit of transformations (ripples) on DuckDB, reading
 * declared sources (a pipeline's table, or another pond's ripples) and
 * writing one table per ripple. Ponds form a DAG by their sources; demand
 * from an outlet runs its ancestors, each only when what it reads changed.
 */

/** A ripple's SQL: a SELECT whose result becomes the ripple's table. */
export interface SqlText {
  readonly kind: 'sql'
  readonly text: string
}

/** `sql\`SELECT …\``: the text as written. Interpolation is refused: a value belongs in a source, not spliced into SQL. */
export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlText {
  if (values.length > 0) throw configInvalid('sql`…`: interpolation (${…}) is not allowed in a ripple; read values from a source table')
  return Object.freeze({ kind: 'sql' as const, text: strings.raw.join('') })
}

export interface RippleContext {
  readonly pond: string
  readonly ripple: string
  /** The run's freshness F (ISO): sources are read as of it. */
  readonly freshness: string
  /** The table this ripple builds, qualified and quoted: a `run` that returns nothing creates it itself. */
  readonly table: string
  /** The aliases of the sources that are there (an optional one may be absent). */
  readonly present: ReadonlySet<string>
}

export interface RippleDefinition {
  /** Ripples of this pond read before this one (by name, unqualified in its SQL). */
  readonly parents?: readonly string[]
  readonly sql?: SqlText | string
  /** Builds the ripple: returns a SELECT to materialize, or creates `ctx.table` itself and returns nothing. */
  readonly run?: (db: SqlSession, ctx: RippleContext) => Promise<string | SqlText | void> | string | SqlText | void
  /** Also write the ripple to this Parquet file (relative to the config) after each run that changes it. */
  readonly parquet?: string
}

export interface PondDefinition {
  /** Letters, digits and `_`, starting with a letter. */
  readonly name: string
  /** Semantic version, `1.2.0`. Ponds of different majors live side by side (`name@1`, `name@2`). */
  readonly version: string
  /**
   * What the pond reads, alias → version range: a pipeline (its table) or a
   * pond, `'^1'` (major 1), `'^1.4'` (major 1, at least 1.4.0). A pipeline is
   * version 1.0.0. A trailing `?` makes the source optional: absent (no
   * such pond or pipeline in the config), the pond runs without it; a
   * `run` ripple sees which sources are there in `ctx.present`.
   */
  readonly sources?: Readonly<Record<string, string>>
  readonly ripples: Readonly<Record<string, SqlText | string | RippleDefinition>>
  /** Attempts of a failing pond within one demand before it is marked failed. Default 1 (no retry). */
  readonly attempts?: number
  /** The DuckDB file its tables live in, relative to the config. Default: the DuckDB destination of the pipelines it reads. */
  readonly database?: string
}

export const POND_BRAND: unique symbol = Symbol.for('filedge.pond')

export interface PondPlugin extends Plugin {
  readonly [POND_BRAND]: PondDefinition
}

export function isPondPlugin(value: unknown): value is PondPlugin {
  return typeof value === 'object' && value !== null && (value as PondPlugin)[POND_BRAND] !== undefined
}
