import { Readable } from 'node:stream'
import { serialize } from 'node:v8'
import { describe, expect, it } from 'vitest'
import { batchSize, type RowBatch, type Value } from '../core/index.js'
import { batchEncoder, headerFrame, readBatches } from '../plugins/cache/batches.js'
import { streamReader } from '../plugins/cache/reader.js'

/**
 * The cache's encoding of coerced rows: whatever a format and coercion can
 * yield comes back deep-equal (the replayed file commits the very rows the
 * parsed one would have), however the bytes are split into chunks.
 */

async function roundTrip(batches: RowBatch[], chunk = 7): Promise<RowBatch[]> {
  const encode = batchEncoder()
  const bytes = Buffer.concat([...headerFrame(batches[0]!.columns), ...batches.flatMap((batch) => encode(batch))])
  const chunks: Buffer[] = []
  for (let at = 0; at < bytes.length; at += chunk) chunks.push(bytes.subarray(at, at + chunk))
  const out: RowBatch[] = []
  for await (const batch of readBatches(streamReader(Readable.from(chunks)))) {
    // A replayed batch has its values by column (what a destination may bind from), the same values as its rows.
    const vectors = batch.vectors!.map((values) => Array.from(values))
    const { columns, rows, rowNumbers, lines } = batch
    expect(vectors).toStrictEqual(columns.map((_, column) => rows.map((row) => row[column])))
    // Once its rows are read (and may be changed in place), the columns are gone.
    expect(batch.vectors).toBeUndefined()
    out.push({ columns, rows, rowNumbers, lines })
  }
  return out
}

const batch = (columns: string[], rows: Value[][], rowNumbers = rows.map((_, i) => i + 1), lines = rows.map((_, i) => i + 2)): RowBatch => ({ columns, rows, rowNumbers, lines })

describe('cached rows', () => {
  it('keeps every kind of value and column exactly', async () => {
    const rows: Value[][] = Array.from({ length: 3000 }, (_, i) => [
      `id-${i}`, // unique strings: one string and offsets
      i % 3 === 0 ? null : `status-${i % 4}`, // few distinct, with nulls: a dictionary
      i * 0.25 - 7, // numbers
      i % 2 === 0 ? 2n ** 70n + BigInt(i) : i, // bigints mixed with numbers
      i % 5 === 0, // booleans
      i === 7 ? '\ud800 lone surrogate' : i === 8 ? '' : i % 11 === 0 ? null : `naïve ☃ ${i} ${'x'.repeat(i % 40)}`, // unicode, empty, nulls
      i === 0 ? -0 : i === 1 ? Number.MAX_VALUE : i === 2 ? -1e-300 : i, // -0 and extremes in a number column
    ])
    const columns = ['id', 'status', 'amount', 'big', 'flag', 'text', 'edge']
    const batches = [batch(columns, rows.slice(0, 1000)), batch(columns, rows.slice(1000, 2999), undefined, rows.slice(1000, 2999).map((_, i) => 1000 + i * 3)), batch(columns, rows.slice(2999))]
    const back = await roundTrip(batches)
    expect(back).toStrictEqual(batches)
    expect(Object.is(back[0]!.rows[0]![6], -0)).toBe(true)
  })

  it('keeps a column whose type changes between rows, a dictionary past 65,535 words, and an empty batch', async () => {
    const columns = ['mixed', 'words']
    // The first rows repeat (so a dictionary is tried), then 70,000 distinct words: indexes past 16 bits.
    const many = Array.from({ length: 300_000 }, (_, i): Value[] => [i === 5 ? 'five' : i, i < 1000 ? 'same' : `w${i % 70_000}`])
    const batches = [batch(columns, many), batch(columns, [])]
    expect(await roundTrip(batches, 64 * 1024)).toStrictEqual(batches)
  })

  it('keeps a dictionary over the file: words sent once, new ones as they come, and text from a value that is no word, or past 65,536 words', async () => {
    const columns = ['status', 'word', 'n']
    const day = (i: number) => `2024-${String(1 + (i % 12)).padStart(2, '0')}-${String(1 + (i % 28)).padStart(2, '0')}`
    const batches = [
      // 336 words, each used again and again.
      batch(columns, Array.from({ length: 2048 }, (_, i) => [day(i), day(i + 3), i])),
      // The same words, and a few new ones.
      batch(columns, Array.from({ length: 2048 }, (_, i) => [i % 100 === 0 ? `new-${i}` : day(i + 7), i % 50 === 0 ? null : day(i), i])),
      // In `status`, a value no dictionary holds (a boolean): text from here on.
      batch(columns, Array.from({ length: 2048 }, (_, i) => [i === 9 ? true : day(i), day(i), i])),
      // In `word`, 2,000 new words a batch: past 65,536 words it is text from then on.
      ...Array.from({ length: 40 }, (_, b) => batch(columns, Array.from({ length: 8000 }, (_, i) => [day(i), i % 4 === 0 ? `w-${b}-${i}` : day(i), i]))),
    ]
    expect(await roundTrip(batches, 64 * 1024)).toStrictEqual(batches)
    // Split anywhere, the first batches too.
    expect(await roundTrip(batches.slice(0, 4))).toStrictEqual(batches.slice(0, 4))
  })

  it('replays batches that behave as plain ones: spread, their rows changed in place, or assigned', async () => {
    const columns = ['id', 'n']
    const rows: Value[][] = Array.from({ length: 10 }, (_, i) => [`id-${i}`, i])
    const encode = batchEncoder()
    const bytes = Buffer.concat([...headerFrame(columns), ...[0, 1, 2, 3].flatMap(() => encode(batch(columns, rows)))])
    const replayed: RowBatch[] = []
    for await (const one of readBatches(streamReader(Readable.from([bytes])))) replayed.push(one)
    const [untouched, changed, assigned, renumbered] = replayed as [RowBatch, RowBatch, RowBatch & { rows: Value[][] }, RowBatch & { rowNumbers: number[] }]
    // As kept: its rows counted, its record numbers counted from the first; assigned record numbers replace them.
    expect(renumbered.stored).toMatchObject({ count: 10, firstRowNumber: 1 })
    expect(batchSize(renumbered)).toBe(10)
    renumbered.rowNumbers = renumbered.rowNumbers.map((n) => n * 2)
    expect(renumbered.stored).toMatchObject({ count: 10, firstRowNumber: undefined })
    expect(renumbered.rowNumbers).toStrictEqual(rows.map((_, i) => (i + 1) * 2))
    // Spread before its rows are read: the copy has them, and no columns to bind from instead.
    const copy = { ...untouched }
    expect(copy.rows).toStrictEqual(rows)
    expect(copy.lines).toStrictEqual(rows.map((_, i) => i + 2))
    expect(Object.getOwnPropertyDescriptor(copy, 'lines')?.value).toStrictEqual(copy.lines)
    expect(copy.vectors).toBeUndefined()
    // Rows changed in place, then spread: the copy has the changed rows, not the columns as stored.
    for (const row of changed.rows) row[1] = (row[1] as number) * 10
    const changedCopy = { ...changed, columns }
    expect(changedCopy.rows.map((row) => row[1])).toStrictEqual(rows.map((row) => (row[1] as number) * 10))
    expect(changedCopy.vectors).toBeUndefined()
    // Rows assigned: they are the batch's rows from then on.
    assigned.rows = assigned.rows.filter((row) => (row[1] as number) % 2 === 0)
    expect(assigned.rows.map((row) => row[0])).toStrictEqual(['id-0', 'id-2', 'id-4', 'id-6', 'id-8'])
    expect(assigned.vectors).toBeUndefined()
    expect(assigned.stored).toBeUndefined()
  })

  it('fails on bytes cut inside a frame rather than yield a short file', async () => {
    const bytes = Buffer.concat([...headerFrame(['a']), ...batchEncoder()(batch(['a'], [['x'], ['y']]))])
    const read = async () => {
      for await (const _ of readBatches(streamReader(Readable.from([bytes.subarray(0, bytes.length - 3)])))) void _
    }
    await expect(read()).rejects.toThrow(/end inside a frame/)
  })

  it('fails on a frame whose length promises more bytes than there are, without allocating what it promises', async () => {
    const lying = Buffer.alloc(4)
    lying.writeUInt32LE(0xf0000000)
    const bytes = Buffer.concat([...headerFrame(['a']), lying, Buffer.alloc(3 * 1024 * 1024, 1)])
    const read = async () => {
      for await (const _ of readBatches(streamReader(Readable.from([bytes])))) void _
    }
    await expect(read()).rejects.toThrow(/end inside a frame/)
  })

  it('refuses rows written on a machine of the other byte order, and a batch whose bytes do not add up, rather than misread them', async () => {
    const rows: Value[][] = [['a', 1.5], ['b', 2.5]]
    const drain = async (chunks: Buffer[]) => {
      for await (const _ of readBatches(streamReader(Readable.from(chunks)))) void _
    }
    const encode = batchEncoder()
    const body = Buffer.concat(encode(batch(['id', 'x'], rows)))
    // The header as a big-endian machine would write it.
    const other = serialize({ format: 6, endianness: 'BE', columns: ['id', 'x'] })
    const length = Buffer.alloc(4)
    length.writeUInt32LE(other.length)
    await expect(drain([length, other, body])).rejects.toThrow('the cached rows were written on a BE machine')
    // A batch frame one byte longer than what its columns hold: its length prefix says so, its contents do not.
    const header = Buffer.concat(headerFrame(['id', 'x']))
    const padded = Buffer.concat([body.subarray(4), Buffer.of(0)])
    const prefix = Buffer.alloc(4)
    prefix.writeUInt32LE(padded.length)
    await expect(drain([header, prefix, padded])).rejects.toThrow('a cached batch has 1 bytes too many')
    // A column of a kind no version wrote.
    const unknown = Buffer.from(body.subarray(4))
    unknown[4 + 4 + 9 + 9] = 9
    await expect(drain([header, body.subarray(0, 4), unknown])).rejects.toThrow('a cached batch has a column of unknown kind 9')
  })
})
