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

const FORMAT = 3

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

function encodeColumn(rows: readonly Value[][], column: number): Column {
  const count = rows.length
  let numbers = true
  let strings = true
  for (let i = 0; i < count && (numbers || strings); i++) {
    const value = rows[i]![column]
    if (typeof value !== 'number') numbers = false
    if (typeof value !== 'string' && value !== null) strings = false
  }
  if (numbers) {
    const values = new Float64Array(count)
    for (let i = 0; i < count; i++) values[i] = rows[i]![column] as number
    return { kind: 'f64', values }
  }
  if (!strings) return { kind: 'v8', values: rows.map((row) => row[column]!) }
  const words = new Map<string | null, number>()
  const index = new Uint32Array(count)
  const limit = count >> 2
  for (let i = 0; i < count; i++) {
    const value = rows[i]![column] as string | null
    let at = words.get(value)
    if (at === undefined) {
      if (words.size >= limit) break
      at = words.size
      words.set(value, at)
    }
    index[i] = at
  }
  if (words.size < limit || count === 0) return { kind: 'dict', words: [...words.keys()], index: words.size <= 0xffff ? Uint16Array.from(index) : index }
  const parts = new Array<string>(count)
  const ends = new Uint32Array(count)
  let nulls: Uint8Array | undefined
  let end = 0
  for (let i = 0; i < count; i++) {
    const value = rows[i]![column] as string | null
    if (value === null) (nulls ??= new Uint8Array(count))[i] = 1
    parts[i] = value ?? ''
    end += parts[i]!.length
    ends[i] = end
  }
  return nulls === undefined ? { kind: 'text', text: parts.join(''), ends } : { kind: 'text', text: parts.join(''), ends, nulls }
}

export function batchFrame(batch: RowBatch): Buffer[] {
  const columns: Column[] = []
  for (let column = 0; column < batch.columns.length; column++) columns.push(encodeColumn(batch.rows, column))
  return frame(serialize([batch.rows.length, columns, Float64Array.from(batch.rowNumbers), Float64Array.from(batch.lines)]))
}

function decodeColumn(column: Column): ArrayLike<Value> {
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

/** Splits a byte stream into its frames' payloads. */
async function* frames(bytes: Readable): AsyncGenerator<Buffer> {
  let pending: Buffer[] = []
  let buffered = 0
  for await (const chunk of bytes as AsyncIterable<Buffer>) {
    pending.push(chunk)
    buffered += chunk.length
    while (buffered >= 4) {
      if (pending[0]!.length < 4) pending = [Buffer.concat(pending, buffered)]
      const length = pending[0]!.readUInt32LE(0)
      if (buffered < 4 + length) break
      const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, buffered)
      yield all.subarray(4, 4 + length)
      const rest = all.subarray(4 + length)
      pending = rest.length === 0 ? [] : [rest]
      buffered = rest.length
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
    const [count, columns, rowNumbers, lines] = deserialize(payload) as [number, Column[], Float64Array, Float64Array]
    const values = columns.map(decodeColumn)
    const width = values.length
    const rows = new Array<Value[]>(count)
    for (let i = 0; i < count; i++) {
      const row = new Array<Value>(width)
      for (let column = 0; column < width; column++) row[column] = values[column]![i]!
      rows[i] = row
    }
    yield { columns: names, rows, rowNumbers: Array.from(rowNumbers), lines: Array.from(lines) }
  }
  if (names === undefined) throw new Error('the cached rows have no header')
}
