import type { Readable } from 'node:stream'
import { formatCount, overLimit } from '../config/limits.js'
import { fileInvalid, showName, showValue } from '../errors.js'
import { UnreadableValue } from '../rows.js'
import { NUMBER, serialToText, type NumberKind } from './xlsx-dates.js'
import { unescapeText, XmlPart } from './xlsx-package.js'

/**
 * One worksheet's cells (`<sheetData>`) as records, read as the part
 * inflates. The header row names the fields; each later row with a value is
 * a record whose line is its row number, so messages point at the row Excel
 * shows. Rows without values are skipped (as blank lines are in CSV), and
 * cells are placed by their reference (`C7`), so a sparse row is as cheap as
 * its cells.
 *
 * Values, by cell type: numbers as JS numbers (Excel stores doubles; the
 * shortest text that reads back as the same double is what coercion sees,
 * so Excel's `8.3000000000000007` is 8.3); numbers under a date format as
 * ISO text (see xlsx-dates.ts); shared, inline and formula strings as text;
 * booleans as booleans; a formula's cached result as the cell's value; error
 * cells (`#N/A`) and formulas never calculated as UnreadableValue, which
 * fails the row's column with the cell's reference.
 */

export interface SheetOptions {
  readonly file: string
  readonly part: string
  readonly strings: readonly string[]
  /** The number kind of each cell style, by its index. */
  readonly kinds: Uint8Array
  readonly date1904: boolean
  /** The 1-based row that names the fields. */
  readonly headerRow: number
  /** 'ignore': a value in a column the header does not name is dropped, as an undeclared field is. */
  readonly unknownColumns: 'error' | 'ignore'
  readonly maxColumns: number
  readonly maxChars: number
}

/** `C` → 2 (0-based); 1-based `C7` from a 0-based column and a row. */
export function cellName(column: number, row: number): string {
  let letters = ''
  for (let n = column + 1; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters
  return `${letters}${row}`
}

const A = 65
const Z = 90

export class SheetReader {
  fields: string[] = []
  headerLine: number | undefined
  /** Completed records and their rows, taken by the caller. */
  records: unknown[][] = []
  lines: number[] = []

  private readonly xml: XmlPart
  private headerDone = false
  private headerCells: [column: number, name: string][] = []
  /** The field each column feeds (0-based column), -1 where the header names none. */
  private fieldOf = new Int32Array(0)

  private row = 0
  private column = -1
  private record: unknown[] | undefined
  private inSheetData = false

  // The cell being read.
  private type = 'n'
  private style = 0
  private cellText = ''
  private hasValue = false
  private formula = false
  private capturing = false
  private inline = false
  private phonetic = false

  constructor(
    stream: Readable,
    private readonly options: SheetOptions,
  ) {
    this.xml = new XmlPart(stream, options.file, options.part, options.maxChars, this, () => (this.row === 0 ? undefined : this.row))
  }

  /** Reads up to the header row (or the sheet's end), so that `fields` is known. */
  async readHeader(): Promise<void> {
    while (!this.headerDone && (await this.xml.pump()));
    if (!this.headerDone) this.finishHeader()
  }

  /** Reads until `want` records are waiting or the sheet has ended; false once it has ended. */
  async fill(want: number): Promise<boolean> {
    while (this.records.length < want) {
      if (!(await this.xml.pump())) return false
    }
    return true
  }

  destroy(): void {
    this.xml.destroy()
  }

  open(name: string, attributes: Readonly<Record<string, string>>): void {
    if (!this.inSheetData) {
      if (name === 'sheetData') this.inSheetData = true
      return
    }
    switch (name) {
      case 'row':
        this.openRow(attributes.r)
        return
      case 'c':
        this.openCell(attributes)
        return
      case 'v':
        this.capturing = true
        this.hasValue = true
        return
      case 'f':
        this.formula = true
        return
      case 'is':
        this.inline = true
        this.hasValue = true
        return
      case 'rPh':
        this.phonetic = true
        return
      case 't':
        if (this.inline && !this.phonetic) this.capturing = true
        return
    }
  }

  close(name: string): void {
    if (!this.inSheetData) return
    switch (name) {
      case 'v':
      case 't':
        this.capturing = false
        return
      case 'rPh':
        this.phonetic = false
        return
      case 'c':
        this.closeCell()
        return
      case 'row':
        this.closeRow()
        return
      case 'sheetData':
        // What follows the cells (merged ranges, formatting, print settings) is not data.
        this.inSheetData = false
        this.xml.destroy()
        return
    }
  }

  text(data: string): void {
    if (this.capturing) this.cellText += data
  }

  private fail(reason: string): never {
    throw fileInvalid(this.options.file, reason, this.row)
  }

  private openRow(reference: string | undefined): void {
    const row = reference === undefined ? this.row + 1 : Number(reference)
    if (!Number.isSafeInteger(row) || row <= this.row) {
      this.fail(`${this.options.part}: row ${showName(reference ?? String(row))} comes after row ${this.row} (a damaged sheet?)`)
    }
    if (!this.headerDone && row > this.options.headerRow) this.finishHeader()
    this.row = row
    this.column = -1
    this.record = undefined
  }

  private openCell(attributes: Readonly<Record<string, string>>): void {
    const reference = attributes.r
    let column = this.column + 1
    if (reference !== undefined) {
      column = 0
      for (let i = 0; i < reference.length; i++) {
        const c = reference.charCodeAt(i)
        if (c < A || c > Z) break
        column = column * 26 + (c - A + 1)
        if (column > this.options.maxColumns) break
      }
      column--
    }
    if (column >= this.options.maxColumns) {
      this.fail(overLimit(`cell ${showName(reference ?? cellName(column, this.row))} is past column ${formatCount(this.options.maxColumns)}`, 'maxColumns'))
    }
    if (column <= this.column) this.fail(`${this.options.part}: cell ${showName(reference ?? '')} comes after ${cellName(this.column, this.row)} (a damaged sheet?)`)
    this.column = column
    this.type = attributes.t ?? 'n'
    this.style = attributes.s === undefined ? 0 : Number(attributes.s)
    this.cellText = ''
    this.hasValue = false
    this.formula = false
    this.inline = false
  }

  private closeCell(): void {
    const { row, column } = this
    if (row < this.options.headerRow) return
    if (!this.headerDone) {
      const value = this.value()
      if (value instanceof UnreadableValue) this.fail(`the header cannot name a column: ${value.reason}`)
      if (value !== null) this.headerCells.push([column, typeof value === 'boolean' ? (value ? 'TRUE' : 'FALSE') : String(value)])
      return
    }
    const field = column < this.fieldOf.length ? this.fieldOf[column] : -1
    if (field < 0) {
      // An unnamed column: its values are dropped only where undeclared fields are, and only while there is a header at all.
      if (this.options.unknownColumns === 'ignore' && this.fields.length > 0) return
      const value = this.value()
      if (value === null || value === '') return
      const cell = cellName(column, row)
      if (this.fields.length === 0) this.fail(`cell ${cell} has a value, but the header row (${this.options.headerRow}) is empty; set format.header to the row that names the columns`)
      this.fail(`cell ${cell} has a value, but column ${cell.replace(/\d+$/, '')} has no name in the header (row ${this.options.headerRow}); name it, or set unknownColumns: 'ignore'`)
    }
    const value = this.value()
    if (value === null) return
    if (this.record === undefined) this.record = new Array(this.fields.length).fill(null)
    this.record[field] = value
  }

  private closeRow(): void {
    if (this.row === this.options.headerRow && !this.headerDone) {
      this.headerLine = this.row
      this.finishHeader()
      return
    }
    if (this.record === undefined) return
    this.records.push(this.record)
    this.lines.push(this.row)
    this.record = undefined
  }

  /** The header's names become the fields; a blank header cell leaves its column unnamed. */
  private finishHeader(): void {
    this.headerDone = true
    const named = this.headerCells.filter(([, name]) => name.trim() !== '')
    this.fields = named.map(([, name]) => name)
    this.fieldOf = new Int32Array(named.length === 0 ? 0 : named[named.length - 1][0] + 1).fill(-1)
    named.forEach(([column], field) => (this.fieldOf[column] = field))
    this.headerCells = []
  }

  /** The cell just closed, as a raw value (see the header comment); null when it holds nothing. */
  private value(): unknown {
    const { cellText: text, hasValue } = this
    switch (this.type) {
      case 'n': {
        if (!hasValue || text === '') return this.formula ? this.uncalculated() : null
        const number = Number(text)
        if (!Number.isFinite(number)) return this.unreadable(`holds ${showValue(text)} where a number belongs`)
        const kind = (this.style < this.options.kinds.length ? this.options.kinds[this.style] : NUMBER) as NumberKind
        if (kind === NUMBER) return number
        const date = serialToText(number, kind, this.options.date1904)
        return typeof date === 'string' ? date : this.unreadable(`has a date format, but ${date.problem}`)
      }
      case 's': {
        if (!hasValue) return null
        const index = Number(text)
        const strings = this.options.strings
        if (!(Number.isInteger(index) && index >= 0 && index < strings.length)) {
          this.fail(`cell ${cellName(this.column, this.row)} refers to shared string ${showValue(text)}, but the workbook has ${formatCount(strings.length)} (a damaged workbook?)`)
        }
        return strings[index]
      }
      case 'str':
        if (!hasValue) return this.formula ? this.uncalculated() : null
        return unescapeText(text)
      case 'inlineStr':
        return hasValue ? unescapeText(text) : null
      case 'b':
        if (!hasValue) return this.formula ? this.uncalculated() : null
        if (text === '1' || text === '0') return text === '1'
        return this.unreadable(`holds ${showValue(text)} where a boolean (1 or 0) belongs`)
      case 'e':
        return new UnreadableValue(text, `cell ${cellName(this.column, this.row)} holds the error ${text}`)
      case 'd':
        // ISO 8601 as written (strict OOXML's date cells).
        return hasValue ? text : null
      default:
        return this.unreadable(`has an unknown cell type ${showValue(this.type)}`)
    }
  }

  private unreadable(reason: string): UnreadableValue {
    return new UnreadableValue(this.cellText, `cell ${cellName(this.column, this.row)} ${reason}`)
  }

  private uncalculated(): UnreadableValue {
    return this.unreadable('holds a formula with no cached result (the workbook was saved without calculating it; open and save it in Excel)')
  }
}
