import type { ResolvedColumn, ResolvedPipeline, ResolvedStage } from '../config/types.js'
import { coercerFor, isRejection } from '../columns/coerce.js'
import type { FileRef } from '../destination.js'
import { FiledgeError, rowInvalid } from '../errors.js'
import type { RowBatch, Value } from '../rows.js'
import { pipelineCode } from './code.js'
import type { StageContext, StageRow } from './stage.js'

/**
 * Runs a pipeline's stages on a file's batches. Rows go to a stage as
 * objects (column → value) that carry their source record number and line
 * under symbols: a row a stage returns keeps them if it was built from an
 * input row (`{ ...row, total }`), or, when the stage returns as many rows as
 * it got, from the row at the same place. Each stage's output is checked
 * against the columns it declares (an undeclared column is an error naming
 * the stage, the file and the line, never dropped); the last stage's output
 * is checked and coerced against the table's types like a JSON file's values.
 */

const RECORD = Symbol('filedge.record')
const LINE = Symbol('filedge.line')

type Provenanced = StageRow & { [RECORD]?: number; [LINE]?: number }

function stageError(stage: ResolvedStage, file: FileRef, line: number | undefined, message: string): FiledgeError {
  return new FiledgeError('ROW_INVALID', `${file.path}${line === undefined ? '' : `:${line}`}: stage "${stage.name}" ${message}`, { file: file.path, ...(line === undefined ? {} : { line }) })
}

/** Builds `(values, record, line) => ({ a: values[0], …, [RECORD]: record, [LINE]: line })` for a column list: one object shape for every row. */
function rowMaker(names: readonly string[]): (values: readonly Value[], record: number, line: number) => Provenanced {
  const fields = names.map((name, index) => `${JSON.stringify(name)}: values[${index}]`).join(', ')
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- column names are quoted with JSON.stringify; nothing else is interpolated
  return new Function('RECORD', 'LINE', `return (values, record, line) => ({ ${fields}, [RECORD]: record, [LINE]: line })`)(RECORD, LINE) as never
}

/**
 * `(row) => true` when a row has exactly the given columns as its own
 * enumerable string keys (compiled per column list: constant keys are what
 * V8 checks fastest, and this runs for every row of every stage).
 */
function exactKeys(names: readonly string[]): (row: object) => boolean {
  // `in` also finds what Object.prototype has (a column named "toString"): those are asked for as own keys.
  const present = names.map((name) => (name in Object.prototype ? `Object.hasOwn(row, ${JSON.stringify(name)})` : `${JSON.stringify(name)} in row`)).join(' && ')
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- column names are quoted with JSON.stringify; nothing else is interpolated
  return new Function('row', `let n = 0; for (const key in row) n++; return n === ${names.length}${names.length === 0 ? '' : ` && ${present}`}`) as never
}

/** Per stage, built once: its column names, and the compiled check that a row has exactly them. */
const checkers = new WeakMap<ResolvedStage, { readonly names: ReadonlySet<string>; readonly exact: (row: object) => boolean }>()

function checkerOf(stage: ResolvedStage): { readonly names: ReadonlySet<string>; readonly exact: (row: object) => boolean } {
  let checker = checkers.get(stage)
  if (checker === undefined) {
    const names = stage.columns.map((column) => column.name)
    checkers.set(stage, (checker = { names: new Set(names), exact: exactKeys(names) }))
  }
  return checker
}

/** Builds `(row) => [row.a, row.b, …]` for a column list. */
function valueReader(names: readonly string[]): (row: Provenanced) => unknown[] {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- column names are quoted with JSON.stringify; nothing else is interpolated
  return new Function('row', `return [${names.map((name) => `row[${JSON.stringify(name)}]`).join(', ')}]`) as never
}

/** The rows a stage returned, with their provenance, checked against its columns. */
function checked(stage: ResolvedStage, file: FileRef, input: readonly Provenanced[], output: unknown): Provenanced[] {
  if (!Array.isArray(output)) {
    throw stageError(stage, file, input[0]?.[LINE], `returned ${output === null ? 'null' : typeof output}; run must return an array of rows`)
  }
  const { names, exact } = checkerOf(stage)
  const sameCount = output.length === input.length
  for (let i = 0; i < output.length; i++) {
    const row = output[i] as Provenanced
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw stageError(stage, file, input[0]?.[LINE], `returned ${Array.isArray(row) ? 'an array' : String(row)} as row ${i + 1}; a row is an object of column → value`)
    }
    if (row[RECORD] === undefined) {
      if (!sameCount) {
        throw stageError(
          stage,
          file,
          input[0]?.[LINE],
          `returned row ${i + 1} as a new object among ${output.length} rows for ${input.length}; build it from the row it comes from ({ ...row, … }) so it keeps its source line`,
        )
      }
      row[RECORD] = input[i]![RECORD]
      row[LINE] = input[i]![LINE]
    }
    if (exact(row)) continue
    for (const key in row) {
      if (!names.has(key)) {
        throw stageError(
          stage,
          file,
          row[LINE],
          stage.declared
            ? `returned column "${key}", which it does not declare (declare it in the stage's columns, or leave it out)`
            : `returned column "${key}", which it does not receive; a stage that adds, renames or drops columns declares the columns it returns`,
        )
      }
    }
  }
  return output as Provenanced[]
}

/** The last stage's rows as the table's: values coerced to the column types (as a JSON file's would be), required ones present. */
function tableBatches(columns: readonly ResolvedColumn[], stage: ResolvedStage, file: FileRef): (rows: readonly Provenanced[]) => RowBatch {
  const names = columns.map((column) => column.name)
  const coercers = columns.map(coercerFor)
  const valuesOf = valueReader(names)
  return (rows) => {
    const out: Value[][] = new Array(rows.length)
    const rowNumbers: number[] = new Array(rows.length)
    const lines: number[] = new Array(rows.length)
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!
      const values = valuesOf(row) as Value[]
      for (let c = 0; c < columns.length; c++) {
        const value = values[c]
        if (value === null || value === undefined) {
          if (columns[c]!.required) throw rowInvalid(file.path, row[LINE]!, `${names[c]} (from stage "${stage.name}")`, null, 'required value is missing')
          values[c] = null
          continue
        }
        try {
          values[c] = coercers[c]!(value)
        } catch (error) {
          if (!isRejection(error)) throw error
          throw rowInvalid(file.path, row[LINE]!, `${names[c]} (from stage "${stage.name}")`, value, error.reason)
        }
      }
      out[r] = values
      rowNumbers[r] = row[RECORD]!
      lines[r] = row[LINE]!
    }
    return { columns: names, rows: out, rowNumbers, lines }
  }
}

/** Rows as a stage sees them, batch by batch: objects that carry their record number and line. */
async function* asObjects(batches: AsyncIterable<RowBatch>): AsyncGenerator<Provenanced[]> {
  let make: ReturnType<typeof rowMaker> | undefined
  let columns: readonly string[] | undefined
  for await (const batch of batches) {
    if (columns !== batch.columns) {
      columns = batch.columns
      make = rowMaker(columns)
    }
    const rows: Provenanced[] = new Array(batch.rows.length)
    for (let i = 0; i < rows.length; i++) rows[i] = make!(batch.rows[i]!, batch.rowNumbers[i]!, batch.lines[i]!)
    yield rows
  }
}

/** A stage's rows as batches of its columns (what a cache keeps), record numbers and lines alongside. */
async function* asBatches(rows: AsyncIterable<Provenanced[]>, stage: ResolvedStage): AsyncGenerator<RowBatch> {
  const columns = stage.columns.map((column) => column.name)
  const valuesOf = valueReader(columns)
  for await (const batch of rows) {
    yield { columns, rows: batch.map((row) => valuesOf(row) as Value[]), rowNumbers: batch.map((row) => row[RECORD]!), lines: batch.map((row) => row[LINE]!) }
  }
}

async function* runStage(stage: ResolvedStage, context: StageContext, file: FileRef, input: AsyncIterable<Provenanced[]>): AsyncGenerator<Provenanced[]> {
  for await (const rows of input) {
    let output: unknown
    try {
      output = await stage.run(rows, context)
    } catch (error) {
      if (error instanceof FiledgeError) throw error
      throw new FiledgeError('ROW_INVALID', `${file.path}: stage "${stage.name}" failed on the batch from line ${rows[0]?.[LINE] ?? '?'}: ${error instanceof Error ? error.message : String(error)}`, {
        file: file.path,
        cause: error,
      })
    }
    yield checked(stage, file, rows, output)
  }
}

/**
 * Where a pipeline's stages meet a cache (the cache plugin taps it): the
 * output of a stage declared `cache: true` for a file, kept under the
 * stage's hash; and the stream of such a stage's output to keep.
 */
export interface StageCache {
  find(stage: ResolvedStage, hash: string): Promise<AsyncIterable<RowBatch> | undefined>
  keep(stage: ResolvedStage, hash: string, rows: AsyncIterable<RowBatch>): AsyncIterable<RowBatch>
}

/**
 * The file's rows through the pipeline's stages. With a cache, the output of
 * the last stage declared `cache: true` that the cache holds for this file
 * is read back instead of parsing the file and running the stages before
 * it: a cached last stage runs no stage at all.
 */
export async function* runStages(batches: AsyncIterable<RowBatch>, pipeline: ResolvedPipeline, file: FileRef, cache?: StageCache): AsyncGenerator<RowBatch> {
  const stages = pipeline.stages
  const hashes = pipelineCode(pipeline)!.stages.map((version) => version.hash)
  const lastIndex = stages.length - 1
  let start = 0
  let replayed: AsyncIterable<RowBatch> | undefined
  if (cache !== undefined) {
    for (let s = lastIndex; s >= 0 && replayed === undefined; s--) {
      if (!stages[s]!.cache) continue
      replayed = await cache.find(stages[s]!, hashes[s]!)
      if (replayed !== undefined) start = s + 1
    }
  }
  // The last stage's output is kept as the table's batches: nothing left to run.
  if (replayed !== undefined && start === stages.length) return yield* replayed
  let rows = asObjects(replayed ?? batches)
  for (let s = start; s < stages.length; s++) {
    const stage = stages[s]!
    const context: StageContext = Object.freeze({ pipeline: pipeline.name, stage: stage.name, file: { path: file.path, hash: file.hash }, inputs: stage.inputs })
    rows = runStage(stage, context, file, rows)
    if (cache !== undefined && stage.cache && s < lastIndex) rows = asObjects(cache.keep(stage, hashes[s]!, asBatches(rows, stage)))
  }
  const last = stages[lastIndex]!
  const tableBatch = tableBatches(pipeline.tableColumns, last, file)
  const table = (async function* () {
    for await (const batch of rows) yield tableBatch(batch)
  })()
  yield* cache !== undefined && last.cache ? cache.keep(last, hashes[lastIndex]!, table) : table
}
