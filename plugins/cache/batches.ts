import type { Readable } from 'node:stream'
import { deserialize, serialize } from 'node:v8'
import type { RowBatch, Value } from '../../core/index.js'

/**
 * A file's coerced rows as bytes, for the cache, and back exactly: a header
 * frame (the column names, once per file), then one frame per batch, each a
 * 4-byte length and V8's serialization of the batch stored by column. A
 * column is stored the cheapest way that gives its values back unchanged:
 * numbers as a Float64Array; strings (and nulls) with few distinct values as
 * a dictionary and indexes, so a replay does not allocate the same string
 * again and again; other strings as one string and their offsets, which a
 * replay slices (V8 copies a long string whole and a slice costs little,
 * where a million strings deserialized or parsed one by one cost a second);
 * anything else (bigints, booleans, mixes) as a plain array, which V8's
 * structured clone keeps exactly.
 */

const FORMAT = 4

type Column =
  | { kind: 'f64'; values: Float64Array }
  | { kind: 'dict'; words: (string | null)[]; index: Uint16Array | Uint32Array }
  | { kind: 'text'; text: string; ends: Uint32Array; nulls?: Uint8Array }
  | { kind: 'v8'; values: Value[] }

function frame(payload: Buffer): Buffer[] {
  const length = Buffer.allocUnsafe(4)
  length.writeUInt32LE(payload.length)
  return [length, payload]
}

export function headerFrame(columns: readonly string[]): Buffer[] {
  return frame(serialize({ format: FORMAT, columns }))
}

/** A column's values as they are: bigints, booleans, mixes. */
function plain(rows: readonly Value[][], column: number): Column {
  return { kind: 'v8', values: rows.map((row) => row[column]!) }
}

function numbers(rows: readonly Value[][], column: number): Column {
  const values = new Float64Array(rows.length)
  for (let i = 0; i < rows.length; i++) {
    const value = rows[i]![column]
    if (typeof value !== 'number') return plain(rows, column)
    values[i] = value
  }
  return { kind: 'f64', values }
}

/** Strings and nulls with at most a quarter as many distinct values as rows, else undefined. */
function dictionary(rows: readonly Value[][], column: number): Column | undefined {
  const count = rows.length
  const words = new Map<string | null, number>()
  const index = count <= 0xffff * 4 ? new Uint16Array(count) : new Uint32Array(count)
  const limit = Math.max(1, count >> 2)
  for (let i = 0; i < count; i++) {
    const value = rows[i]![column] as string | null
    let at = words.get(value)
    if (at === undefined) {
      if (words.size === limit) return undefined
      at = words.size
      words.set(value, at)
    }
    index[i] = at
  }
  return { kind: 'dict', words: [...words.keys()], index }
}

function text(rows: readonly Value[][], column: number): Column {
  const count = rows.length
  const ends = new Uint32Array(count)
  let nulls: Uint8Array | undefined
  let joined = ''
  for (let i = 0; i < count; i++) {
    const value = rows[i]![column]
    if (typeof value === 'string') joined += value
    else if (value === null) (nulls ??= new Uint8Array(count))[i] = 1
    else return plain(rows, column)
    ends[i] = joined.length
  }
  return nulls === undefined ? { kind: 'text', text: joined, ends } : { kind: 'text', text: joined, ends, nulls }
}

/** Few distinct values among the first rows: worth trying a dictionary (a column of ids or notes is not). */
function repetitive(rows: readonly Value[][], column: number): boolean {
  const sample = Math.min(rows.length, 512)
  const seen = new Set<Value>()
  for (let i = 0; i < sample; i++) {
    const value = rows[i]![column]!
    if (typeof value !== 'string' && value !== null) return false
    seen.add(value)
  }
  return seen.size <= (sample * 3) >> 2
}

/** How a string column is stored, decided on a file's first batch (a sample of its rows) and kept for the rest. */
type Plan = 'dict' | 'text'

function encodeColumn(rows: readonly Value[][], column: number, plans: Plan[]): Column {
  if (rows.length === 0) return { kind: 'v8', values: [] }
  const first = rows[0]![column]
  if (typeof first === 'number') return numbers(rows, column)
  if (typeof first !== 'string' && first !== null) return plain(rows, column)
  const plan = (plans[column] ??= repetitive(rows, column) ? 'dict' : 'text')
  if (plan === 'dict') {
    const encoded = dictionary(rows, column)
    if (encoded !== undefined) return encoded
    plans[column] = 'text'
  }
  return text(rows, column)
}

/** Record numbers and lines: usually consecutive (one line a record), then kept as their first value alone. */
function sequence(values: readonly number[]): number | Float64Array {
  const first = values[0] ?? 0
  for (let i = 1; i < values.length; i++) if (values[i] !== first + i) return Float64Array.from(values)
  return first
}

function unsequence(encoded: number | Float64Array, count: number): number[] {
  if (typeof encoded !== 'number') return Array.from(encoded)
  const values = new Array<number>(count)
  for (let i = 0; i < count; i++) values[i] = encoded + i
  return values
}

/** Encodes one file's batches, in order (it learns how each column is best stored). */
export function batchEncoder(): (batch: RowBatch) => Buffer[] {
  const plans: Plan[] = []
  return (batch) => {
    const columns: Column[] = []
    for (let column = 0; column < batch.columns.length; column++) columns.push(encodeColumn(batch.rows, column, plans))
    return frame(serialize([batch.rows.length, columns, sequence(batch.rowNumbers), sequence(batch.lines)]))
  }
}

function decodeColumn(column: Column): Float64Array | readonly Value[] {
  switch (column.kind) {
    case 'f64':
    case 'v8':
      return column.values
    case 'text': {
      const { text, ends, nulls } = column
      const values = new Array<string | null>(ends.length)
      let start = 0
      for (let i = 0; i < ends.length; i++) {
        const end = ends[i]!
        values[i] = nulls !== undefined && nulls[i] === 1 ? null : text.slice(start, end)
        start = end
      }
      return values
    }
    case 'dict': {
      const { words, index } = column
      const values = new Array<string | null>(index.length)
      for (let i = 0; i < index.length; i++) values[i] = words[index[i]!]!
      return values
    }
  }
}

const BUILT = Symbol('rows built')

/**
 * A replayed batch: its values by column, as they were stored; rows are
 * built only if something reads them (a destination that binds by column
 * never does), and then the columns are dropped, as a row may be changed in
 * place. A class, its getter on the prototype: a getter closure per batch
 * made V8 take the replay 3.5 times as long (measured).
 */
class ReplayedBatch implements RowBatch {
  vectors: readonly ArrayLike<Value>[] | undefined
  private [BUILT]: Value[][] | undefined

  constructor(
    readonly columns: readonly string[],
    vectors: readonly ArrayLike<Value>[],
    readonly rowNumbers: number[],
    readonly lines: number[],
  ) {
    this.vectors = vectors
    this[BUILT] = undefined
  }

  get rows(): Value[][] {
    let rows = this[BUILT]
    if (rows === undefined) {
      const vectors = this.vectors!
      const count = this.rowNumbers.length
      const width = vectors.length
      rows = new Array<Value[]>(count)
      for (let i = 0; i < count; i++) rows[i] = new Array<Value>(width)
      // Column by column: each loop reads one kind of array (a Float64Array, an Array), which V8 keeps fast.
      for (let column = 0; column < width; column++) {
        const values = vectors[column]!
        if (values instanceof Float64Array) fillNumbers(rows, column, values)
        else fillValues(rows, column, values)
      }
      this[BUILT] = rows
      this.vectors = undefined
    }
    return rows
  }
}

function fillNumbers(rows: Value[][], column: number, values: Float64Array): void {
  for (let i = 0; i < rows.length; i++) rows[i]![column] = values[i]!
}

function fillValues(rows: Value[][], column: number, values: ArrayLike<Value>): void {
  for (let i = 0; i < rows.length; i++) rows[i]![column] = values[i]!
}

/** Splits a byte stream into its frames' payloads. */
async function* frames(bytes: Readable): AsyncGenerator<Buffer> {
  // Chunks not yet split, the first one possibly started: a frame within one chunk is a view of it, and only a frame
  // across chunks is copied, alone (copying the rest of the chunk with it cost a copy of the whole value, measured).
  const pending: Buffer[] = []
  let buffered = 0
  /** The first `count` bytes of the pending chunks, taken off them: a view when the first chunk holds them, else a copy. */
  const take = (count: number): Buffer => {
    buffered -= count
    const first = pending[0]!
    if (first.length >= count) {
      if (first.length === count) pending.shift()
      else pending[0] = first.subarray(count)
      return first.subarray(0, count)
    }
    const out = Buffer.allocUnsafe(count)
    let filled = 0
    while (filled < count) {
      const chunk = pending[0]!
      const used = Math.min(chunk.length, count - filled)
      chunk.copy(out, filled, 0, used)
      filled += used
      if (used === chunk.length) pending.shift()
      else pending[0] = chunk.subarray(used)
    }
    return out
  }
  /** The frame length at the front, without taking it. */
  const length = (): number => {
    const first = pending[0]!
    if (first.length >= 4) return first.readUInt32LE(0)
    const head = Buffer.concat(pending, 4)
    return head.readUInt32LE(0)
  }
  for await (const chunk of bytes as AsyncIterable<Buffer>) {
    if (chunk.length === 0) continue
    pending.push(chunk)
    buffered += chunk.length
    while (buffered >= 4) {
      const size = length()
      if (buffered < 4 + size) break
      yield take(4 + size).subarray(4)
    }
  }
  if (buffered !== 0) throw new Error(`the cached rows end inside a frame (${buffered} bytes left over)`)
}

/** Decodes what `headerFrame` and `batchFrame` wrote, batch by batch. */
export async function* decodeBatches(bytes: Readable): AsyncGenerator<RowBatch> {
  let names: readonly string[] | undefined
  for await (const payload of frames(bytes)) {
    if (names === undefined) {
      const header = deserialize(payload) as { format?: unknown; columns?: unknown }
      if (header.format !== FORMAT || !Array.isArray(header.columns)) throw new Error(`the cached rows are in an unknown format (${String(header.format)})`)
      names = header.columns as string[]
      continue
    }
    const [count, columns, rowNumbers, lines] = deserialize(payload) as [number, Column[], number | Float64Array, number | Float64Array]
    yield new ReplayedBatch(names, columns.map(decodeColumn), unsequence(rowNumbers, count), unsequence(lines, count))
  }
  if (names === undefined) throw new Error('the cached rows have no header')
}
