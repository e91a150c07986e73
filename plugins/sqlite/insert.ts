import type { Database as SqliteDatabase, Statement } from 'better-sqlite3'
import { PROVENANCE_COLUMNS, quoteIdentifier, type RowBatch, type StoredColumn, type TableSpec, type Value } from '../../core/index.js'

/** Rows per INSERT statement: fewer JS→C calls; 50–200 measured the same, bounded by SQLite's 32766 variables. */
const ROWS_PER_STATEMENT = 100
const MAX_VARIABLES = 32_766

/** What every row of one file carries besides its values and its row number. */
export interface FileProvenance {
  readonly hash: string
  readonly ingestedAt: string
}

/**
 * Multi-row INSERTs into a table's columns and the provenance columns, cached
 * per (table, rows). The file hash and the ingest time are the same for every
 * row of a file, so they are named parameters bound once per statement rather
 * than two 64- and 27-character strings copied into SQLite for each row:
 * measured 25% less CPU on 1M rows.
 */
export class Inserter {
  private readonly statements = new Map<string, Statement>()

  constructor(private readonly connection: () => SqliteDatabase) {}

  statement(table: TableSpec, rows: number): Statement {
    const key = `${table.name}\0${rows}`
    let statement = this.statements.get(key)
    if (statement === undefined) {
      const [hash, ingestedAt, rowNumber] = PROVENANCE_COLUMNS
      const names = [...table.columns, hash, ingestedAt, rowNumber].map((column) => quoteIdentifier(column.name))
      const tuple = `(${table.columns.map(() => '?').join(', ')}${table.columns.length > 0 ? ', ' : ''}@hash, @ingested_at, ?)`
      statement = this.connection().prepare(`INSERT INTO ${quoteIdentifier(table.name)} (${names.join(', ')}) VALUES ${Array(rows).fill(tuple).join(', ')}`)
      this.statements.set(key, statement)
    }
    return statement
  }

  /** Inserts every batch; the caller owns the transaction. Returns the row count. */
  async insert(table: TableSpec, batches: AsyncIterable<RowBatch>, provenance: FileProvenance): Promise<number> {
    const columns = table.columns.length
    const width = columns + 1
    const perStatement = Math.max(1, Math.min(ROWS_PER_STATEMENT, Math.floor((MAX_VARIABLES - 2) / width)))
    const full = this.statement(table, perStatement)
    const named = { hash: provenance.hash, ingested_at: provenance.ingestedAt }
    const params: unknown[] = new Array(perStatement * width)
    let total = 0
    let filled = 0
    for await (const batch of batches) {
      // A batch that has its values by column (a replay) is bound from them, column by column: its rows are never built,
      // nor its record numbers when they run on from the first.
      const stored = batch.stored ?? (batch.vectors === undefined ? undefined : { count: batch.rowNumbers.length, firstRowNumber: undefined, columns: batch.vectors.map(asStored) })
      if (stored !== undefined) {
        const { count, firstRowNumber } = stored
        for (let first = 0; first < count; ) {
          const rows = Math.min(perStatement - filled, count - first)
          const offset = filled * width
          for (let c = 0; c < columns; c++) {
            const column = stored.columns[c]!
            if (column.kind === 'values') fillValues(params, offset + c, width, column.values, first, rows)
            else fillWords(params, offset + c, width, column.words, column.index, first, rows)
          }
          if (firstRowNumber === undefined) fillValues(params, offset + columns, width, batch.rowNumbers, first, rows)
          else fillCounted(params, offset + columns, width, firstRowNumber + first, rows)
          first += rows
          filled += rows
          if (filled === perStatement) {
            full.run(params, named)
            filled = 0
          }
        }
        total += count
        continue
      }
      const rowNumbers = batch.rowNumbers
      const count = rowNumbers.length
      const rows = batch.rows
      for (let r = 0; r < count; r++) {
        let offset = filled * width
        const row = rows[r]!
        for (let c = 0; c < columns; c++) {
          const value = row[c]
          params[offset++] = typeof value === 'boolean' ? (value ? 1 : 0) : value
        }
        params[offset] = rowNumbers[r]
        if (++filled === perStatement) {
          full.run(params, named)
          filled = 0
        }
      }
      total += count
    }
    // Statements fill across batches; only the file's last rows go in a shorter one.
    if (filled > 0) this.statement(table, filled).run(params.slice(0, filled * width), named)
    return total
  }

  clear(): void {
    this.statements.clear()
  }
}

const asStored = (values: ArrayLike<Value>): StoredColumn => ({ kind: 'values', values })

// A column's values into their slots of `params` (`slot`, then every `width`), rows `first` on: a loop of one kind each,
// which V8 keeps fast.

function fillValues(params: unknown[], slot: number, width: number, values: ArrayLike<Value>, first: number, rows: number): void {
  for (let r = first; r < first + rows; r++, slot += width) {
    const value = values[r]
    params[slot] = typeof value === 'boolean' ? (value ? 1 : 0) : value
  }
}

function fillWords(params: unknown[], slot: number, width: number, words: readonly (string | null)[], index: Uint16Array, first: number, rows: number): void {
  for (let r = first; r < first + rows; r++, slot += width) params[slot] = words[index[r]!]
}

function fillCounted(params: unknown[], slot: number, width: number, from: number, rows: number): void {
  for (let r = 0; r < rows; r++, slot += width) params[slot] = from + r
}
