import type { ResolvedColumn, ResolvedPipeline, ResolvedStage } from '../config/types.js'
import { coercerFor, isRejection } from '../columns/coerce.js'
import type { FileRef } from '../destination.js'
import { FiledgeError, rowInvalid } from '../errors.js'
import { letGo, type RowBatch, type Value } from '../rows.js'
import { pipelineCode } from './code.js'
import { PARSED, type StageContext, type StageRow } from './stage.js'

/**
 * Runs a pipeline's stages on a file's batches, batch by batch: each stage
 * runs once per parsed batch, on what the stages it reads returned for that
 * batch, and its output goes to every stage that reads it. Rows go to a stage
 * as objects (column → value) that carry their source record number and
 * line under symbols: a row a stage returns keeps them if it was built from
 * an input row (`{ ...row, total }`), or, when a stage reading one parent
 * returns as many rows as it got, from the row at the same place. Each
 * stage's output is checked against the columns it declares (an undeclared
 * column is an error naming the stage, the file and the line, never
 * dropped); the last stage's output is checked and coerced against the
 * table's types like a JSON file's values.
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

/** What a stage gets for one batch. */
interface StageInput {
  /** What `run` is handed: the rows, or (`from` an array) the parents' rows by name. */
  readonly argument: Provenanced[] | Readonly<Record<string, Provenanced[]>>
  /** The one parent's rows, whose places a new row returned among as many takes its provenance from; undefined with several parents. */
  readonly rows: readonly Provenanced[] | undefined
  /** The first line of the batch, for messages. */
  readonly line: number | undefined
}

/** The rows a stage returned, with their provenance, checked against its columns. */
function checked(stage: ResolvedStage, file: FileRef, input: StageInput, output: unknown): Provenanced[] {
  if (!Array.isArray(output)) {
    throw stageError(stage, file, input.line, `returned ${output === null ? 'null' : typeof output}; run must return an array of rows`)
  }
  const { names, exact } = checkerOf(stage)
  const parent = input.rows
  const sameCount = parent !== undefined && output.length === parent.length
  for (let i = 0; i < output.length; i++) {
    const row = output[i] as Provenanced
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw stageError(stage, file, input.line, `returned ${Array.isArray(row) ? 'an array' : String(row)} as row ${i + 1}; a row is an object of column → value`)
    }
    if (row[RECORD] === undefined) {
      if (parent === undefined) {
        // Several parents: "the row at the same place" could be any of theirs.
        throw stageError(
          stage,
          file,
          input.line,
          `returned row ${i + 1} as a new object; it reads several stages (${stage.from.join(', ')}), so no row's place says where it came from: build it from the row it comes from ({ ...row, … }) so it keeps its source line`,
        )
      }
      if (!sameCount) {
        throw stageError(
          stage,
          file,
          input.line,
          `returned row ${i + 1} as a new object among ${output.length} rows for ${parent.length}; build it from the row it comes from ({ ...row, … }) so it keeps its source line`,
        )
      }
      row[RECORD] = parent[i]![RECORD]
      row[LINE] = parent[i]![LINE]
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

async function* runStage(stage: ResolvedStage, context: StageContext, file: FileRef, input: AsyncIterable<StageInput>): AsyncGenerator<Provenanced[]> {
  for await (const batch of input) {
    let output: unknown
    try {
      output = await stage.run(batch.argument, context)
    } catch (error) {
      if (error instanceof FiledgeError) throw error
      throw new FiledgeError('ROW_INVALID', `${file.path}: stage "${stage.name}" failed on the batch from line ${batch.line ?? '?'}: ${error instanceof Error ? error.message : String(error)}`, {
        file: file.path,
        cause: error,
      })
    }
    yield checked(stage, file, batch, output)
  }
}

/** What a stage gets, batch by batch, from the streams of the stages it reads (in `from` order). */
async function* inputsOf(stage: ResolvedStage, file: FileRef, parents: readonly AsyncIterable<Provenanced[]>[]): AsyncGenerator<StageInput> {
  if (parents.length === 1) {
    const name = stage.from[0]!
    for await (const rows of parents[0]!) yield { argument: stage.keyed ? Object.freeze({ [name]: rows }) : rows, rows, line: rows[0]?.[LINE] }
    return
  }
  for await (const batches of zipped(stage, file, parents)) {
    let line: number | undefined
    for (const rows of batches) if (rows[0] !== undefined && (line === undefined || rows[0][LINE]! < line)) line = rows[0][LINE]
    yield { argument: Object.freeze(Object.fromEntries(stage.from.map((name, i) => [name, batches[i]!]))), rows: undefined, line }
  }
}

/**
 * The parents' streams a batch from each at a time: every stream gives one
 * batch per parsed batch, so the n-th of each came from the same parsed
 * rows.
 */
async function* zipped(stage: ResolvedStage, file: FileRef, parents: readonly AsyncIterable<Provenanced[]>[]): AsyncGenerator<Provenanced[][]> {
  const iterators = parents.map((parent) => parent[Symbol.asyncIterator]())
  try {
    for (;;) {
      const results: IteratorResult<Provenanced[]>[] = []
      // One after the other: the stages run in a fixed order, and a stream read by two of these is pulled by one at a time.
      for (const iterator of iterators) results.push(await iterator.next())
      const ended = results.filter((result) => result.done === true).length
      if (ended === results.length) return
      if (ended > 0) {
        // Only outputs read back from the cache can disagree: kept under another batchSize, by loads that each kept only some of them.
        throw new FiledgeError(
          'INTERNAL',
          `${file.path}: stage "${stage.name}" got more batches from ${stage.from.filter((_, i) => results[i]!.done !== true).join(', ')} than from ${stage.from.filter((_, i) => results[i]!.done === true).join(', ')}; their outputs were kept in the cache with different batch sizes: \`filedge cache clear\`, or set batchSize back`,
          { file: file.path },
        )
      }
      yield results.map((result) => result.value as Provenanced[])
    }
  } finally {
    await Promise.all(iterators.map((iterator) => iterator.return?.()))
  }
}

/**
 * `count` readers of one stream of batches, each reading every batch. Every
 * reader but one gets shallow copies of the rows (their provenance
 * included), made as the batch arrives: a stage that changes its rows in
 * place changes them for itself, never under another branch.
 */
function branches(source: AsyncIterable<Provenanced[]>, count: number): AsyncIterable<Provenanced[]>[] {
  const iterator = source[Symbol.asyncIterator]()
  const queues: (Provenanced[][] | undefined)[] = Array.from({ length: count }, () => [])
  let open = count
  let ended = false
  let failure: { error: unknown } | undefined
  let pulling: Promise<void> | undefined
  const pull = async () => {
    try {
      const next = await iterator.next()
      if (next.done === true) ended = true
      else {
        let first = true
        for (const queue of queues) {
          if (queue === undefined) continue
          queue.push(first ? next.value : next.value.map((row) => ({ ...row })))
          first = false
        }
      }
    } catch (error) {
      failure = { error }
    } finally {
      pulling = undefined
    }
  }
  return queues.map((_, reader) => ({
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<Provenanced[]>> {
        for (;;) {
          const queue = queues[reader]
          if (queue === undefined) return { done: true, value: undefined }
          if (queue.length > 0) return { done: false, value: queue.shift()! }
          if (failure !== undefined) throw failure.error
          if (ended) return { done: true, value: undefined }
          await (pulling ??= pull())
        }
      },
      async return(): Promise<IteratorResult<Provenanced[]>> {
        if (queues[reader] !== undefined) {
          queues[reader] = undefined
          if (--open === 0 && !ended) await iterator.return?.()
        }
        return { done: true, value: undefined }
      },
    }),
  }))
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

/** Kept outputs to read instead of parsing the file, and the stages below them that run on them. */
export interface Cut {
  readonly kept: ReadonlyMap<string, AsyncIterable<RowBatch>>
  readonly run: ReadonlySet<string>
}

/**
 * The kept outputs nearest the last stage that cut every way from the
 * parsed rows to it, or undefined when a way passes no kept output (then
 * the file is parsed and every stage runs). Kept outputs are never joined
 * with freshly parsed rows: kept under another batchSize, their batches
 * would not line up with the parse's.
 */
export async function cutOf(pipeline: ResolvedPipeline, cache: StageCache): Promise<Cut | undefined> {
  const stages = pipeline.stages
  const hashes = stageHashes(pipeline)
  const byName = new Map(stages.map((stage) => [stage.name, stage]))
  const walk = async (find: (stage: ResolvedStage) => Promise<AsyncIterable<RowBatch> | undefined> | true | undefined) => {
    const kept = new Map<string, AsyncIterable<RowBatch> | true>()
    const run = new Set<string>()
    // Nearest the last stage first.
    const pending = [stages.at(-1)!.name]
    for (let next = 0; next < pending.length; next++) {
      const name = pending[next]!
      if (name === PARSED) return { kept, reached: true as const }
      if (kept.has(name) || run.has(name)) continue
      const stage = byName.get(name)!
      const found = stage.cache ? await find(stage) : undefined
      if (found !== undefined) kept.set(name, found)
      else {
        run.add(name)
        pending.push(...stage.from)
      }
    }
    return { kept, run, reached: false as const }
  }
  // Asked first with every cached stage taken as kept: when even that leaves a way from the parsed rows, the cache is not asked.
  if ((await walk(() => true)).reached) return undefined
  const found = await walk((stage) => cache.find(stage, hashes.get(stage.name)!))
  if (found.reached) {
    await Promise.all([...found.kept.values()].map((rows) => letGo(rows as AsyncIterable<RowBatch>)))
    return undefined
  }
  return { kept: found.kept as Map<string, AsyncIterable<RowBatch>>, run: found.run }
}

function stageHashes(pipeline: ResolvedPipeline): Map<string, string> {
  return new Map(pipelineCode(pipeline)!.stages.map((version) => [version.name, version.hash]))
}

/**
 * The file's rows through the pipeline's stages. With a cache, the kept
 * outputs of stages declared `cache: true` are read back instead of parsing
 * the file and running the stages above them, when they cut every way from
 * the parsed rows to the last stage (in a chain, the one nearest the last
 * stage does): a cached last stage runs no stage at all. Otherwise the file
 * is parsed and every stage runs; stages declared `cache: true` below the
 * kept outputs, or all of them, keep their output. `decided` is the cut
 * `cutOf` found before the file was loaded (its batches are then not read),
 * or that it found none; without it, the cache is asked here.
 */
export async function* runStages(
  batches: AsyncIterable<RowBatch>,
  pipeline: ResolvedPipeline,
  file: FileRef,
  cache?: StageCache,
  decided?: { readonly cut: Cut | undefined },
): AsyncGenerator<RowBatch> {
  const stages = pipeline.stages
  const hashes = stageHashes(pipeline)
  // Resolved stages come each after the stages it reads: the last is the one that feeds the table.
  const last = stages.at(-1)!
  const cut = decided !== undefined ? decided.cut : cache === undefined ? undefined : await cutOf(pipeline, cache)
  // The last stage's output is kept as the table's batches: nothing left to run.
  const table = cut?.kept.get(last.name)
  if (table !== undefined) return yield* table
  const running = stages.filter((stage) => cut === undefined || cut.run.has(stage.name))

  // Each output is read by the stages that name it in `from`, and the last stage's by the table.
  const readers = new Map<string, number>([[last.name, 1]])
  for (const stage of running) for (const parent of stage.from) readers.set(parent, (readers.get(parent) ?? 0) + 1)
  const outputs = new Map<string, AsyncIterable<Provenanced[]>[]>()
  const publish = (name: string, rows: AsyncIterable<Provenanced[]>) => {
    const count = readers.get(name) ?? 1
    outputs.set(name, count > 1 ? branches(rows, count) : [rows])
  }
  if (cut === undefined) publish(PARSED, asObjects(batches))
  else for (const [name, rows] of cut.kept) publish(name, asObjects(rows))

  for (const stage of running) {
    const context: StageContext = Object.freeze({ pipeline: pipeline.name, stage: stage.name, file: { path: file.path, hash: file.hash }, inputs: stage.inputs })
    let rows: AsyncIterable<Provenanced[]> = runStage(stage, context, file, inputsOf(stage, file, stage.from.map((parent) => outputs.get(parent)!.shift()!)))
    if (cache !== undefined && stage.cache && stage !== last) rows = asObjects(cache.keep(stage, hashes.get(stage.name)!, asBatches(rows, stage)))
    publish(stage.name, rows)
  }
  const tableBatch = tableBatches(pipeline.tableColumns, last, file)
  const converted = (async function* () {
    for await (const batch of outputs.get(last.name)![0]!) yield tableBatch(batch)
  })()
  yield* cache !== undefined && last.cache ? cache.keep(last, hashes.get(last.name)!, converted) : converted
}
