import { fileURLToPath } from 'node:url'
import type { ColumnInput } from '../config/types.js'
import type { Value } from '../rows.js'

/**
 * A stage: a named step of a pipeline that takes rows (the parsed file's, or
 * the output of the stages it reads) and returns rows, and says which
 * columns it returns. Its hash (its code, what the code reaches in its
 * module: the top-level declarations, local modules and packages; its
 * declared inputs and columns, its parents' hashes) decides when rows it
 * produced are stale.
 */

/** A row as a stage sees it: column name → value. Build new rows from old ones (`{ ...row, total }`) so they keep their source line. */
export type StageRow = Record<string, Value>

/** In `from`, the file's parsed rows (no stage may take this name). */
export const PARSED = 'parsed'

export interface StageContext {
  readonly pipeline: string
  readonly stage: string
  readonly file: { readonly path: string; readonly hash: string }
  /** The stage's declared inputs, as given. */
  readonly inputs: Readonly<Record<string, unknown>>
}

/** What `run` returns: rows, or a promise of them. */
export type StageOutput = Record<string, unknown>[] | Promise<Record<string, unknown>[]>

/** What a stage with `from: [...]` gets: each parent's rows from the same parsed batch, by parent name (`parsed` for the parsed rows). */
export type StageInputs<P extends string = string> = { readonly [K in P]: StageRow[] }

/** What every stage declares, whatever it reads. */
interface StageOptions {
  /** Unique within the pipeline; letters, digits, `_`, `-`; not `parsed`. */
  readonly name: string
  /**
   * The columns it returns (added, renamed, dropped, retyped), as in a pipeline's `columns`. Default: the columns it
   * receives (with several parents, their columns when they all have the same ones).
   */
  readonly columns?: Readonly<Record<string, ColumnInput>>
  /** Values `run` closes over that change its output (a threshold, a lookup table): part of the stage's hash. */
  readonly inputs?: Readonly<Record<string, unknown>>
  /**
   * Keep this stage's output per file in the cache plugin, under the stage's
   * hash: a retry, a reload after an edit of a later stage, or a second run
   * reads it back instead of parsing the file and running the stages up to
   * this one. Needs the cache plugin; default false.
   */
  readonly cache?: boolean
}

/** A stage that reads one parent: `run` gets its rows. */
export interface StageDefinition extends StageOptions {
  /** The stage whose output this one reads, or `'parsed'` for the file's parsed rows. Default: the stage before it in the list; the first reads the parsed rows. */
  readonly from?: string
  /** One batch of rows in, rows out (fewer, more, reshaped). Rows it returns keep the source line of the row they were built from. */
  readonly run: (rows: StageRow[], context: StageContext) => StageOutput
}

/** A stage that reads several parents (`from: ['a', 'b']`): `run` gets their rows by name, each from the same parsed batch. */
export interface JoinStageDefinition<P extends string = string> extends StageOptions {
  /** The stages whose outputs this one reads (`'parsed'` for the file's parsed rows), each named once. */
  readonly from: readonly [P, ...P[]]
  /**
   * One batch of each parent in (`{ a: rows, b: rows }`, the same parsed rows
   * through each), rows out. Every row it returns is built from a row it got
   * (`{ ...row, total }`), which gives it its source line.
   */
  readonly run: (inputs: StageInputs<P>, context: StageContext) => StageOutput
}

export const STAGE_BRAND: unique symbol = Symbol.for('filedge.stage')

export type Stage = (StageDefinition | JoinStageDefinition) & {
  readonly [STAGE_BRAND]: true
  /** The module that called `stage()`, for the hash of what `run` reaches in it; undefined when the call stack does not say. */
  readonly definedIn?: string
}

/** Where `stage()` was called from: the first frame of the call stack outside this module. */
function caller(): string | undefined {
  const stack = new Error().stack?.split('\n').slice(1) ?? []
  const self = import.meta.url
  for (const frame of stack) {
    const location = /\((.*):\d+:\d+\)$/.exec(frame)?.[1] ?? /at (.*):\d+:\d+$/.exec(frame)?.[1]
    if (location === undefined || location.startsWith('node:') || location === self || location === fileURLToPath(self)) continue
    return location.startsWith('file://') ? fileURLToPath(location) : location
  }
  return undefined
}

/**
 * A stage for a pipeline's `stages`. The shape of `from` decides what `run`
 * gets: a name (or none) its rows, an array of names their rows by name.
 * Overloads rather than one union, so that `run` written inline is typed by
 * the `from` beside it; the last takes a stage spread into a new one
 * (`stage({ ...base, name: 'b' })`), whose `from` could be either.
 */
export function stage<const P extends string>(definition: JoinStageDefinition<P>): Stage
export function stage(definition: StageDefinition): Stage
export function stage(definition: StageDefinition | JoinStageDefinition): Stage
export function stage(definition: StageDefinition | JoinStageDefinition): Stage {
  const definedIn = caller()
  return Object.freeze({ ...definition, [STAGE_BRAND]: true as const, ...(definedIn === undefined ? {} : { definedIn }) })
}

export function isStage(value: unknown): value is Stage {
  return typeof value === 'object' && value !== null && (value as Stage)[STAGE_BRAND] === true
}
