import { fileURLToPath } from 'node:url'
import type { ColumnInput } from '../config/types.js'
import type { Value } from '../rows.js'

/**
 * A stage: a named step of a pipeline that takes rows (the parsed file's, or
 * its parent stage's output) and returns rows, and says which columns it
 * returns. Its hash (its code, what the code reaches in its module: the
 * top-level declarations, local modules and packages; its declared inputs
 * and columns, its parents' hashes) decides when rows it produced are stale.
 */

/** A row as a stage sees it: column name → value. Build new rows from old ones (`{ ...row, total }`) so they keep their source line. */
export type StageRow = Record<string, Value>

export interface StageContext {
  readonly pipeline: string
  readonly stage: string
  readonly file: { readonly path: string; readonly hash: string }
  /** The stage's declared inputs, as given. */
  readonly inputs: Readonly<Record<string, unknown>>
}

export interface StageDefinition {
  /** Unique within the pipeline; letters, digits, `_`, `-`. */
  readonly name: string
  /** The stage whose output this one reads. Default: the stage before it in the list; the first reads the parsed rows. */
  readonly from?: string
  /** The columns it returns (added, renamed, dropped, retyped), as in a pipeline's `columns`. Default: the columns it receives. */
  readonly columns?: Readonly<Record<string, ColumnInput>>
  /** One batch of rows in, rows out (fewer, more, reshaped). Rows it returns keep the source line of the row they were built from. */
  readonly run: (rows: StageRow[], context: StageContext) => Record<string, unknown>[] | Promise<Record<string, unknown>[]>
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

export const STAGE_BRAND: unique symbol = Symbol.for('filedge.stage')

export interface Stage extends StageDefinition {
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

export function stage(definition: StageDefinition): Stage {
  const definedIn = caller()
  return Object.freeze({ ...definition, [STAGE_BRAND]: true as const, ...(definedIn === undefined ? {} : { definedIn }) })
}

export function isStage(value: unknown): value is Stage {
  return typeof value === 'object' && value !== null && (value as Stage)[STAGE_BRAND] === true
}
