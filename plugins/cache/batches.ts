import { endianness } from 'node:os'
import { deserialize, serialize } from 'node:v8'
import type { RowBatch, StoredBatch, StoredColumn, Value } from '../../core/index.js'
import type { EntryReader } from './types.js'

/**
 * A file's coerced rows as bytes, for the cache, and back exactly: a header
 * frame (the column names, once per file), then one frame per batch, each a
 * 4-byte length and the batch stored by column, in a layout of our own (a
 * V8 deserializer per frame cost a quarter of a replay, measured). A column
 * is stored the cheapest way that gives its values back unchanged: numbers
 * as float64s; strings (and nulls) with few distinct values as indexes into
 * a dictionary kept over the file (a frame carries the words new to it), so
 * a replay does not allocate or parse the same string again and again;
 * other strings as one string (Latin-1 bytes when every character fits,
 * else UTF-16, both exact) and their offsets, which a replay slices (a slice
 * costs little, where a million strings decoded one by one cost a second);
 * anything else (bigints, booleans, mixes) as V8's structured clone of the
 * column, which keeps them exactly.
 *
 * A batch frame: u32 rows, u32 columns, the record numbers and the lines
 * (each u8 0 + f64 first, when consecutive; or u8 1 + a f64 per row), then
 * per column a u8 kind and its data. Numbers are little-endian; a cache
 * written on a big-endian machine is refused by the header, not misread.
 */

const FORMAT = 6

type Column =
  | { kind: 'f64'; values: Float64Array }
  | { kind: 'dict'; fresh: (string | null)[]; index: Uint16Array }
  | { kind: 'text'; text: string; ends: Uint32Array; nulls?: Uint8Array }
  | { kind: 'v8'; values: Value[] }

function frame(payload: Buffer): Buffer[] {
  const length = Buffer.allocUnsafe(4)
  length.writeUInt32LE(payload.length)
  return [length, payload]
}

export function headerFrame(columns: readonly string[]): Buffer[] {
  return frame(serialize({ format: FORMAT, endianness: endianness(), columns }))
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

/** Words a column's dictionary holds at most: its indexes fit 16 bits. A column that needs more is stored as text from then on. */
const MAX_WORDS = 0x10000

/**
 * Strings and nulls as indexes into the file's dictionary of the column
 * (`words`, which this adds to), when this batch adds at most a quarter as
 * many words as it has rows; else undefined, and `words` as it was.
 */
function dictionary(rows: readonly Value[][], column: number, words: Map<string | null, number>): Column | undefined {
  const count = rows.length
  const index = new Uint16Array(count)
  const limit = Math.max(1, count >> 2)
  const fresh: (string | null)[] = []
  for (let i = 0; i < count; i++) {
    const value = rows[i]![column]
    let at = words.get(value as string | null)
    if (at === undefined) {
      if ((typeof value !== 'string' && value !== null) || fresh.length === limit || words.size === MAX_WORDS) {
        for (const word of fresh) words.delete(word)
        return undefined
      }
      at = words.size
      words.set(value, at)
      fresh.push(value)
    }
    index[i] = at
  }
  return { kind: 'dict', fresh, index }
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

/** How a string column is stored, decided on a file's first batch (a sample of its rows) and kept for the rest: text, or a dictionary of its words. */
type Plan = Map<string | null, number> | 'text'

function encodeColumn(rows: readonly Value[][], column: number, plans: Plan[]): Column {
  if (rows.length === 0) return { kind: 'v8', values: [] }
  const first = rows[0]![column]
  if (typeof first === 'number') return numbers(rows, column)
  if (typeof first !== 'string' && first !== null) return plain(rows, column)
  const plan = (plans[column] ??= repetitive(rows, column) ? new Map() : 'text')
  if (plan !== 'text') {
    const encoded = dictionary(rows, column, plan)
    if (encoded !== undefined) return encoded
    plans[column] = 'text'
  }
  return text(rows, column)
}

const KIND = { f64: 1, dict: 2, text: 3, v8: 4 } as const
const ONE_BYTE = 0
const TWO_BYTE = 1
/** Not a Latin-1 character: the text is then stored as UTF-16. */
const WIDE = /[^\u0000-\u00ff]/

/** A frame's bytes as they are written, then joined once. */
class FrameWriter {
  readonly parts: Buffer[] = []
  length = 0

  u8(value: number): void {
    this.push(Buffer.of(value))
  }

  u32(value: number): void {
    const bytes = Buffer.allocUnsafe(4)
    bytes.writeUInt32LE(value)
    this.push(bytes)
  }

  f64(value: number): void {
    const bytes = Buffer.allocUnsafe(8)
    bytes.writeDoubleLE(value)
    this.push(bytes)
  }

  /** A typed array's bytes (the machine's order, little-endian: the header says so). */
  array(values: Float64Array | Uint16Array | Uint32Array | Uint8Array): void {
    this.push(Buffer.from(values.buffer, values.byteOffset, values.byteLength))
  }

  push(bytes: Buffer): void {
    this.parts.push(bytes)
    this.length += bytes.length
  }
}

/** Record numbers and lines: usually consecutive (one line a record), then kept as their first value alone. */
function writeSequence(out: FrameWriter, values: readonly number[]): void {
  const first = values[0] ?? 0
  for (let i = 1; i < values.length; i++) {
    if (values[i] !== first + i) {
      out.u8(1)
      out.array(Float64Array.from(values))
      return
    }
  }
  out.u8(0)
  out.f64(first)
}

function writeColumn(out: FrameWriter, column: Column): void {
  switch (column.kind) {
    case 'f64':
      out.u8(KIND.f64)
      out.array(column.values)
      return
    case 'dict': {
      out.u8(KIND.dict)
      // The words new to the dictionary. JSON keeps every string exactly, lone surrogates included (escaped), and null.
      const fresh = Buffer.from(JSON.stringify(column.fresh), 'utf8')
      out.u32(fresh.length)
      out.push(fresh)
      out.array(column.index)
      return
    }
    case 'text': {
      out.u8(KIND.text)
      const wide = WIDE.test(column.text)
      const text = Buffer.from(column.text, wide ? 'utf16le' : 'latin1')
      out.u8(wide ? TWO_BYTE : ONE_BYTE)
      out.u32(text.length)
      out.push(text)
      out.array(column.ends)
      out.u8(column.nulls === undefined ? 0 : 1)
      if (column.nulls !== undefined) out.array(column.nulls)
      return
    }
    case 'v8': {
      out.u8(KIND.v8)
      const values = serialize(column.values)
      out.u32(values.length)
      out.push(values)
    }
  }
}

/** Encodes one file's batches, in order (it learns how each column is best stored). */
export function batchEncoder(): (batch: RowBatch) => Buffer[] {
  const plans: Plan[] = []
  return (batch) => {
    const out = new FrameWriter()
    out.u32(batch.rows.length)
    out.u32(batch.columns.length)
    writeSequence(out, batch.rowNumbers)
    writeSequence(out, batch.lines)
    for (let column = 0; column < batch.columns.length; column++) writeColumn(out, encodeColumn(batch.rows, column, plans))
    const length = Buffer.allocUnsafe(4)
    length.writeUInt32LE(out.length)
    return [length, ...out.parts]
  }
}

interface TypedArrayOf<T> {
  new (count: number): T
  new (buffer: ArrayBuffer, offset: number, count: number): T
  readonly BYTES_PER_ELEMENT: number
}

/** Bytes of each buffer the typed arrays of replayed batches are cut from. */
const POOL_BYTES = 256 * 1024
let pool: ArrayBuffer | undefined
let pooled = 0

/**
 * `count` elements of a typed array, cut from a shared buffer when small. A
 * typed array of its own is a buffer of its own, allocated and freed outside
 * V8's heap: a 1M-row replay made 2,000 of them (its numbers and dictionary
 * indexes), and cutting them from buffers of 256 KiB took ~15 ms off the
 * 130–175 ms it waited for rows (ABBA, 10 retries each, twice). A batch kept
 * keeps the buffer it was cut from alive, as Node's own Buffer pool does.
 */
function pooledArray<T>(make: TypedArrayOf<T>, count: number): T {
  const bytes = count * make.BYTES_PER_ELEMENT
  if (bytes > POOL_BYTES >> 2) return new make(count)
  pooled = (pooled + 7) & ~7
  if (pool === undefined || pooled + bytes > POOL_BYTES) {
    pool = new ArrayBuffer(POOL_BYTES)
    pooled = 0
  }
  const values = new make(pool, pooled, count)
  pooled += bytes
  return values
}

/** FrameReader.scratch's arrays, one per type for every replay: a column is decoded synchronously, so none reads another's. */
const scratches = new Map<unknown, Uint8Array | Uint16Array | Uint32Array>()

/** Reads a frame written by FrameWriter, front to back; every read is checked against the frame's end. */
class FrameReader {
  private at = 0

  constructor(private readonly bytes: Buffer) {}

  private take(count: number): number {
    const start = this.at
    if (start + count > this.bytes.length) throw new Error(`a cached batch ends early (${count} bytes wanted at ${start} of ${this.bytes.length})`)
    this.at = start + count
    return start
  }

  u8(): number {
    return this.bytes[this.take(1)]!
  }

  u32(): number {
    return this.bytes.readUInt32LE(this.take(4))
  }

  f64(): number {
    return this.bytes.readDoubleLE(this.take(8))
  }

  /** `count` elements into a typed array the batch keeps (copied: a frame's offset need not be aligned for a view). */
  array<T extends Float64Array | Uint16Array | Uint32Array | Uint8Array>(make: TypedArrayOf<T>, count: number): T {
    const values = pooledArray(make, count)
    const start = this.take(values.byteLength)
    new Uint8Array(values.buffer, values.byteOffset, values.byteLength).set(this.bytes.subarray(start, start + values.byteLength))
    return values
  }

  /**
   * `count` elements into the scratch array of their type, for what a column's
   * decoding reads and drops (offsets, dictionary indexes, null flags): valid
   * until the next scratch read of the type, so no batch allocates them.
   */
  scratch<T extends Uint8Array | Uint16Array | Uint32Array>(make: { new (count: number): T; readonly BYTES_PER_ELEMENT: number }, count: number): T {
    let values = scratches.get(make) as T | undefined
    if (values === undefined || values.length < count) scratches.set(make, (values = new make(Math.max(count, 4096))))
    const length = count * make.BYTES_PER_ELEMENT
    const start = this.take(length)
    new Uint8Array(values.buffer, 0, length).set(this.bytes.subarray(start, start + length))
    return values
  }

  slice(count: number): Buffer {
    const start = this.take(count)
    return this.bytes.subarray(start, start + count)
  }

  string(count: number, wide: boolean): string {
    const start = this.take(count)
    return this.bytes.toString(wide ? 'utf16le' : 'latin1', start, start + count)
  }

  end(): void {
    if (this.at !== this.bytes.length) throw new Error(`a cached batch has ${this.bytes.length - this.at} bytes too many`)
  }
}

/** Record numbers or lines as stored: the first of consecutive ones, or each. */
type Sequence = number | Float64Array

function readSequence(input: FrameReader, count: number): Sequence {
  return input.u8() === 1 ? input.array(Float64Array, count) : input.f64()
}

function sequence(stored: Sequence, count: number): number[] {
  return typeof stored === 'number' ? consecutive(stored, count) : Array.from(stored)
}

/**
 * A column as its frame keeps it. A dictionary's values are looked up only
 * if read through `vectors` or `rows`: a destination may read them through
 * the dictionary instead (`RowBatch.stored`). `words`: the file's dictionary
 * of each column so far, which a dictionary column's frame adds to.
 */
function readColumn(input: FrameReader, count: number, words: (string | null)[]): StoredColumn {
  const kind = input.u8()
  switch (kind) {
    case KIND.f64:
      return { kind: 'values', values: input.array(Float64Array, count) }
    case KIND.dict: {
      const fresh = JSON.parse(input.slice(input.u32()).toString('utf8')) as unknown
      if (!Array.isArray(fresh) || words.length + fresh.length > MAX_WORDS) throw new Error('a cached batch has a damaged dictionary')
      for (const word of fresh as (string | null)[]) words.push(word)
      const index = input.array(Uint16Array, count)
      // A word is a string or null: an index past the words would put undefined in a row.
      const past = pastWords(index, words.length)
      if (past >= 0) throw new Error(`a cached batch indexes word ${past} of a dictionary of ${words.length}`)
      return { kind: 'words', words, index }
    }
    case KIND.text: {
      const wide = input.u8() === TWO_BYTE
      const text = input.string(input.u32(), wide)
      const ends = input.scratch(Uint32Array, count)
      return { kind: 'values', values: input.u8() === 1 ? slicedWithNulls(text, ends, input.scratch(Uint8Array, count), count) : sliced(text, ends, count) }
    }
    case KIND.v8:
      return { kind: 'values', values: deserialize(input.slice(input.u32())) as Value[] }
    default:
      throw new Error(`a cached batch has a column of unknown kind ${kind}`)
  }
}

/** The first index at or past `words`, or -1. */
function pastWords(index: Uint16Array, words: number): number {
  for (let i = 0; i < index.length; i++) if (index[i]! >= words) return index[i]!
  return -1
}

/** A stored column's values, made. */
function valuesOf(column: StoredColumn, count: number): ArrayLike<Value> {
  return column.kind === 'values' ? column.values : lookedUp(column.words, column.index, count)
}

// The loops over a column's values, each a function of its own: small and of one kind, V8 optimizes them sooner in a
// new process (a 1M-row replay's first 50 batches took 63-90 ms, against 78-132 with the loops inside readColumn, and
// the decoding 10% less CPU).

/**
 * Record numbers or lines from the first, as small integers when they fit:
 * counted on from a float64 they were doubles, which V8 keeps unboxed in the
 * array and boxes on every read, so a destination binding them made a
 * million allocations a 1M-row replay.
 */
function consecutive(first: number, count: number): number[] {
  const values = new Array<number>(count)
  if (first === (first | 0) && first + count <= 0x3fffffff) {
    // `| 0`, not `first` itself: a float64 stays a double however it is counted on.
    let value = first | 0
    for (let i = 0; i < count; i++) values[i] = value++
  } else {
    for (let i = 0; i < count; i++) values[i] = first + i
  }
  return values
}

function lookedUp(words: readonly (string | null)[], index: Uint16Array, count: number): (string | null)[] {
  const values = new Array<string | null>(count)
  for (let i = 0; i < count; i++) values[i] = words[index[i]!]!
  return values
}

function sliced(text: string, ends: Uint32Array, count: number): string[] {
  const values = new Array<string>(count)
  let start = 0
  for (let i = 0; i < count; i++) {
    const end = ends[i]!
    values[i] = text.slice(start, end)
    start = end
  }
  return values
}

function slicedWithNulls(text: string, ends: Uint32Array, nulls: Uint8Array, count: number): (string | null)[] {
  const values = new Array<string | null>(count)
  let start = 0
  for (let i = 0; i < count; i++) {
    const end = ends[i]!
    values[i] = nulls[i] === 1 ? null : text.slice(start, end)
    start = end
  }
  return values
}

const BUILT = Symbol('rows built')
const LINES = Symbol('lines')
const NUMBERS = Symbol('row numbers')
const COUNT = Symbol('count')
const STORED = Symbol('stored')
const VECTORS = Symbol('vectors')

/**
 * A replayed batch: its columns as they were stored (`stored`), whose
 * values are gathered only if something reads them (`vectors`, `rows`: a
 * destination that binds by column never does); once rows are built, the
 * columns are dropped, as a row may be changed in place. Record numbers and
 * lines are made only if read: a destination may count record numbers from
 * the first, and lines are for error messages. `rows`, `rowNumbers` and
 * `lines` are accessors of each batch's own, so a batch behaves as a plain
 * one: spread (`{ ...batch, columns }`) it carries them (and not the stored
 * columns, the class's), and they may be assigned (`batch.rows = kept`).
 * One descriptor each for every batch, its functions shared (a getter
 * closure per batch made V8 take the replay 3.5 times as long, measured).
 */
class ReplayedBatch implements RowBatch {
  declare readonly columns: readonly string[]
  declare rowNumbers: number[]
  declare lines: number[]
  declare rows: Value[][]
  declare [BUILT]: Value[][] | undefined
  declare [LINES]: Sequence | number[]
  declare [NUMBERS]: Sequence | number[]
  declare [COUNT]: number
  declare [STORED]: StoredBatch | undefined
  declare [VECTORS]: readonly ArrayLike<Value>[] | undefined

  constructor(columns: readonly string[], stored: readonly StoredColumn[], count: number, rowNumbers: Sequence, lines: Sequence) {
    this.columns = columns
    Object.defineProperty(this, 'rowNumbers', NUMBERS_PROPERTY)
    Object.defineProperty(this, 'lines', LINES_PROPERTY)
    Object.defineProperty(this, 'rows', ROWS)
    this[BUILT] = undefined
    this[LINES] = lines
    this[NUMBERS] = rowNumbers
    this[COUNT] = count
    this[STORED] = { count, firstRowNumber: typeof rowNumbers === 'number' ? smallest(rowNumbers) : undefined, columns: stored }
    this[VECTORS] = undefined
  }

  get stored(): StoredBatch | undefined {
    return this[STORED]
  }

  get vectors(): readonly ArrayLike<Value>[] | undefined {
    const stored = this[STORED]
    if (stored === undefined) return undefined
    return (this[VECTORS] ??= stored.columns.map((column) => valuesOf(column, stored.count)))
  }
}

/** A record number counted on from, as a small integer when it is one: V8 keeps a double unboxed and boxes it on every read. */
function smallest(first: number): number {
  return first === (first | 0) ? first | 0 : first
}

/** Record numbers or lines, made from how they are stored when first read. */
function sequenceProperty(key: typeof LINES | typeof NUMBERS): PropertyDescriptor {
  return {
    enumerable: true,
    configurable: true,
    get(this: ReplayedBatch): number[] {
      const stored = this[key]
      if (Array.isArray(stored)) return stored
      return (this[key] = sequence(stored, this[COUNT]))
    },
    set(this: ReplayedBatch, values: number[]): void {
      this[key] = values
      // Record numbers assigned: no longer counted from the first.
      const stored = this[STORED]
      if (key === NUMBERS && stored?.firstRowNumber !== undefined) this[STORED] = { ...stored, firstRowNumber: undefined }
    },
  }
}

const NUMBERS_PROPERTY = sequenceProperty(NUMBERS)
const LINES_PROPERTY = sequenceProperty(LINES)

const ROWS: PropertyDescriptor = {
  enumerable: true,
  configurable: true,
  get(this: ReplayedBatch): Value[][] {
    let rows = this[BUILT]
    if (rows === undefined) {
      rows = buildRows(this.vectors!, this[COUNT])
      this[BUILT] = rows
      this[STORED] = undefined
      this[VECTORS] = undefined
    }
    return rows
  },
  set(this: ReplayedBatch, rows: Value[][]): void {
    this[BUILT] = rows
    this[STORED] = undefined
    this[VECTORS] = undefined
  },
}

function buildRows(vectors: readonly ArrayLike<Value>[], count: number): Value[][] {
  const width = vectors.length
  const rows = new Array<Value[]>(count)
  for (let i = 0; i < count; i++) rows[i] = new Array<Value>(width)
  // Column by column: each loop reads one kind of array (a Float64Array, an Array), which V8 keeps fast.
  for (let column = 0; column < width; column++) {
    const values = vectors[column]!
    if (values instanceof Float64Array) fillNumbers(rows, column, values)
    else fillValues(rows, column, values)
  }
  return rows
}

function fillNumbers(rows: Value[][], column: number, values: Float64Array): void {
  for (let i = 0; i < rows.length; i++) rows[i]![column] = values[i]!
}

function fillValues(rows: Value[][], column: number, values: ArrayLike<Value>): void {
  for (let i = 0; i < rows.length; i++) rows[i]![column] = values[i]!
}

/** The first buffer a replay reads frames into; it grows to hold the largest frame. */
const FRAME_BUFFER = 1024 * 1024

/**
 * An entry's frames' payloads, each a view of one buffer that the next read
 * reuses: valid until the next payload is taken, which is all a decoder
 * needs (decoding copies out whatever it keeps).
 * - A stream's chunks were new buffers, 70 MB of them for a 1M-row replay,
 *   whose fresh pages a new process paid for: decoding that replay took
 *   0.43–0.61 s from a stream, 0.20–0.25 s read into one buffer (18,000 page
 *   faults fewer), measured in new processes.
 * - `take` hands out a frame the buffer holds whole without a promise: a read
 *   brings ~7 frames of 2,000 rows, and every await between the decoder and
 *   the destination costs each batch of a replay.
 */
class Frames {
  private buffer = Buffer.allocUnsafe(FRAME_BUFFER)
  // What was read and not yet taken: buffer[start, end).
  private start = 0
  private end = 0

  constructor(private readonly reader: EntryReader) {}

  /** The next frame if the buffer holds it whole, else undefined (`fill` then brings it, or the value's end). */
  take(): Buffer | undefined {
    const { buffer, start } = this
    if (this.end - start < 4) return undefined
    const size = buffer.readUInt32LE(start)
    if (this.end - start < 4 + size) return undefined
    this.start = start + 4 + size
    return buffer.subarray(start + 4, this.start)
  }

  /** Reads until the next frame is whole; false at the value's end, which must be a frame's. */
  async fill(): Promise<boolean> {
    if (!(await this.fillTo(4))) return this.ended()
    if (!(await this.fillTo(4 + this.buffer.readUInt32LE(this.start)))) return this.ended()
    return true
  }

  private ended(): false {
    if (this.end !== this.start) throw new Error(`the cached rows end inside a frame (${this.end - this.start} bytes left over)`)
    return false
  }

  /** At least `count` bytes from `start` on, unless the value ends first. */
  private async fillTo(count: number): Promise<boolean> {
    if (this.start + count > this.buffer.length && this.start > 0) {
      // The frame does not fit after what was taken: moved to the front.
      this.buffer.copy(this.buffer, 0, this.start, this.end)
      this.end -= this.start
      this.start = 0
    }
    while (this.end - this.start < count) {
      if (this.end === this.buffer.length) {
        // A frame larger than the buffer: it grows as the bytes arrive, so a length that promises more than the value
        // holds ends in the error above, not in allocating what it promised.
        const larger = Buffer.allocUnsafe(this.buffer.length * 2)
        this.buffer.copy(larger, 0, this.start, this.end)
        this.buffer = larger
      }
      const read = await this.reader.read(this.buffer, this.end, this.buffer.length - this.end)
      if (read === 0) return false
      this.end += read
    }
    return true
  }
}

/** Decodes what `headerFrame` and `batchFrame` wrote, batch by batch, as it is read; the reader is closed at the end, or when the batches are left unread. */
export async function* readBatches(reader: EntryReader): AsyncGenerator<RowBatch> {
  try {
    const frames = new Frames(reader)
    let names: readonly string[] | undefined
    let dictionaries: (string | null)[][] = []
    for (;;) {
      const payload = frames.take() ?? ((await frames.fill()) ? frames.take()! : undefined)
      if (payload === undefined) break
      if (names === undefined) {
        const header = deserialize(payload) as { format?: unknown; endianness?: unknown; columns?: unknown }
        if (header.format !== FORMAT || !Array.isArray(header.columns)) throw new Error(`the cached rows are in an unknown format (${String(header.format)})`)
        if (header.endianness !== endianness()) throw new Error(`the cached rows were written on a ${String(header.endianness)} machine`)
        names = header.columns as string[]
        dictionaries = names.map(() => [])
        continue
      }
      yield decodeBatch(payload, names, dictionaries)
    }
    if (names === undefined) throw new Error('the cached rows have no header')
  } finally {
    await reader.close()
  }
}

function decodeBatch(payload: Buffer, names: readonly string[], dictionaries: (string | null)[][]): RowBatch {
  const input = new FrameReader(payload)
  const count = input.u32()
  const width = input.u32()
  if (width !== names.length) throw new Error(`a cached batch has ${width} columns, the header ${names.length}`)
  const rowNumbers = readSequence(input, count)
  const lines = readSequence(input, count)
  const stored: StoredColumn[] = []
  for (let column = 0; column < width; column++) stored.push(readColumn(input, count, dictionaries[column]!))
  input.end()
  return new ReplayedBatch(names, stored, count, rowNumbers, lines)
}
