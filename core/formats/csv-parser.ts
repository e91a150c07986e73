import { DEFAULT_LIMITS, formatCount, overLimit } from '../config/limits.js'

/**
 * A streaming CSV parser (RFC 4180 plus the variants real exports use).
 *
 * Why not csv-parse: on the 1M-row benchmark file (74 MB) csv-parse takes
 * 5.5 s, 11.2 s with line numbers, while `sqlite3 .import` loads the whole
 * file into a typed table in 3.6 s. This parser slices unquoted fields
 * straight out of the decoded chunk and keeps state across chunks, so a field
 * may span any number of chunks without rescanning (a 10 MB single line costs
 * the same as 10 MB of short lines).
 *
 * Rules: records end at LF, CRLF or a lone CR (mixed endings are fine); blank
 * lines are skipped; a quoted field may hold delimiters, quotes (doubled, or
 * preceded by `escape`) and newlines; an empty unquoted field is null while
 * `""` is the empty string; a quote inside an unquoted field, text after a
 * closing quote, an unterminated quote and NUL bytes are errors with the line.
 */

export interface CsvParserOptions {
  readonly delimiter: string
  readonly quote: string
  /** Defaults to `quote` (RFC 4180 `""`). */
  readonly escape?: string
  /** Unquoted values that mean null, besides the empty field. */
  readonly nullValues?: readonly string[]
  /** A field longer than this fails the file (an unterminated quote must not eat the heap). Default: limits.maxFieldChars's. */
  readonly maxFieldChars?: number
  /**
   * A record with more fields than this fails the file (a line of commas must
   * not become an array of millions). Checked once per `write`, on the record
   * still being read: a record completed within one chunk is at most a chunk
   * long, and its field count is checked against the header's anyway.
   */
  readonly maxFields?: number
  /** Keep each record's text (`texts`), line breaks inside quotes included, the one ending it not. */
  readonly keepText?: boolean
}

export class CsvSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    /** 1-based field of the record the error is in, when it is in one. */
    readonly field?: number,
  ) {
    super(message)
  }
}

const LF = 10
const CR = 13

const enum State {
  FieldStart,
  Unquoted,
  Quoted,
  /** Just read a quote inside a quoted field: the closing quote, or the first half of `""`. */
  QuoteSeen,
  /** Just read the escape character inside a quoted field (escape ≠ quote). */
  EscapeSeen,
  /** Just ended a record at CR; an LF right after belongs to it. */
  AfterCr,
}

export class CsvParser {
  /** Completed records and the line each started on, drained by the caller. */
  records: (string | null)[][] = []
  lines: number[] = []
  /** With `keepText`: each record's text, aligned with `records`. */
  texts: string[] = []

  private readonly delimiter: number
  private readonly quote: number
  private readonly quoteChar: string
  private readonly escapeChar: string
  private readonly escapeIsQuote: boolean
  private readonly nullValues: ReadonlySet<string> | undefined
  private readonly maxFieldChars: number
  private readonly maxFields: number
  private readonly keepText: boolean
  /** Where the record being read started in the text being scanned (-1: between records), and what of it earlier texts held. */
  private textStart = -1
  private textBefore = ''

  private state = State.FieldStart
  private fields: (string | null)[] = []
  private field = ''
  private line = 1
  private recordLine = 1
  private quoteLine = 1
  /** A CR ended the previous quoted segment: an LF starting the next one is the same line break. */
  private quotedCr = false

  constructor(options: CsvParserOptions) {
    this.delimiter = options.delimiter.charCodeAt(0)
    this.quote = options.quote.charCodeAt(0)
    this.quoteChar = options.quote
    this.escapeChar = options.escape ?? options.quote
    this.escapeIsQuote = this.escapeChar === options.quote
    this.nullValues = options.nullValues && options.nullValues.length > 0 ? new Set(options.nullValues) : undefined
    this.maxFieldChars = options.maxFieldChars ?? DEFAULT_LIMITS.maxFieldChars
    this.maxFields = options.maxFields ?? DEFAULT_LIMITS.maxColumns
    this.keepText = options.keepText === true
  }

  /** The line the parser has reached (for messages about the input that follows). */
  get currentLine(): number {
    return this.line
  }

  /** The 1-based field of the current record the parser has reached. */
  get currentField(): number {
    return this.fields.length + 1
  }

  write(text: string): void {
    const nul = text.indexOf('\0')
    if (nul >= 0) {
      this.scan(text.slice(0, nul))
      throw new CsvSyntaxError('NUL byte in the data (a binary file, or UTF-16 without `encoding` set?)', this.line, this.currentField)
    }
    // A field inside one piece of text is at most that long: a chunk longer than maxFieldChars is scanned in pieces
    // of maxFieldChars, so a longer field always spans pieces and is checked where it does, and the per-field loop
    // checks nothing. Chunks are at most 1 MiB: only a limit set below that splits them.
    if (text.length <= this.maxFieldChars) this.scan(text)
    else for (let at = 0; at < text.length; at += this.maxFieldChars) this.scan(text.slice(at, at + this.maxFieldChars))
    // Fields completed so far, and one more after them: the record has more than maxFields.
    if (this.fields.length >= this.maxFields) {
      throw new CsvSyntaxError(overLimit(`a record with more than ${formatCount(this.maxFields)} fields`, 'maxColumns'), this.recordLine)
    }
  }

  end(): void {
    switch (this.state) {
      case State.Quoted:
      case State.EscapeSeen:
        throw new CsvSyntaxError('unterminated quoted field (the file ends inside quotes)', this.quoteLine, this.currentField)
      case State.QuoteSeen:
        this.pushQuoted()
        this.endRecord('', 0)
        break
      case State.Unquoted:
        this.pushUnquoted(this.field)
        this.endRecord('', 0)
        break
      case State.FieldStart:
        // "a,b," at the very end: the trailing delimiter opened an empty last field.
        if (this.fields.length > 0) {
          this.fields.push(null)
          this.endRecord('', 0)
        }
        break
      case State.AfterCr:
        break
    }
    this.state = State.FieldStart
  }

  private scan(s: string): void {
    const n = s.length
    const delimiter = this.delimiter
    const quote = this.quote
    let i = 0
    while (i < n) {
      switch (this.state) {
        case State.AfterCr:
          if (s.charCodeAt(i) === LF) i++
          this.state = State.FieldStart
          break

        case State.FieldStart: {
          const c = s.charCodeAt(i)
          if (this.fields.length === 0) {
            if (c === LF || c === CR) {
              // Blank line: no record.
              this.line++
              i++
              this.state = c === CR ? State.AfterCr : State.FieldStart
              break
            }
            this.recordLine = this.line
            if (this.keepText) this.textStart = i
          }
          if (c === quote) {
            this.state = State.Quoted
            this.field = ''
            this.quoteLine = this.line
            this.quotedCr = false
            i++
            break
          }
          if (c === delimiter) {
            this.fields.push(null)
            i++
            break
          }
          if (c === LF || c === CR) {
            // Line ended right after a delimiter: the last field is empty.
            this.fields.push(null)
            this.endRecord(s, i)
            this.line++
            i++
            this.state = c === CR ? State.AfterCr : State.FieldStart
            break
          }
          this.state = State.Unquoted
          this.field = ''
          break
        }

        case State.Unquoted: {
          let j = i
          let c = 0
          while (j < n) {
            c = s.charCodeAt(j)
            if (c === delimiter || c === LF || c === CR || c === quote) break
            j++
          }
          if (j === n) {
            this.field += s.slice(i, n)
            this.checkFieldSize()
            i = n
            break
          }
          if (c === quote) {
            throw new CsvSyntaxError(`quote character inside unquoted field ${this.currentField} (quote the whole field and double the quote)`, this.line, this.currentField)
          }
          let value
          if (this.field === '') {
            value = s.slice(i, j)
          } else {
            // The field began in an earlier chunk: its whole length is known only now.
            value = this.field + s.slice(i, j)
            this.checkFieldSize(value.length)
          }
          this.field = ''
          this.pushUnquoted(value)
          i = j + 1
          if (c === delimiter) {
            this.state = State.FieldStart
          } else {
            this.endRecord(s, j)
            this.line++
            this.state = c === CR ? State.AfterCr : State.FieldStart
          }
          break
        }

        case State.Quoted: {
          let j = s.indexOf(this.quoteChar, i)
          if (!this.escapeIsQuote) {
            const e = s.indexOf(this.escapeChar, i)
            if (e >= 0 && (j < 0 || e < j)) j = e
          }
          const end = j < 0 ? n : j
          if (end > i) {
            const segment = s.slice(i, end)
            this.countQuotedLines(segment)
            this.field += segment
            this.checkFieldSize()
          }
          if (j < 0) {
            i = n
            break
          }
          i = j + 1
          this.state = !this.escapeIsQuote && s[j] === this.escapeChar ? State.EscapeSeen : State.QuoteSeen
          break
        }

        case State.EscapeSeen:
          this.field += s[i]
          this.quotedCr = false
          i++
          this.state = State.Quoted
          break

        case State.QuoteSeen: {
          const c = s.charCodeAt(i)
          if (c === quote && this.escapeIsQuote) {
            this.field += this.quoteChar
            this.quotedCr = false
            this.state = State.Quoted
            i++
          } else if (c === delimiter) {
            this.pushQuoted()
            this.state = State.FieldStart
            i++
          } else if (c === LF || c === CR) {
            this.pushQuoted()
            this.endRecord(s, i)
            this.line++
            i++
            this.state = c === CR ? State.AfterCr : State.FieldStart
          } else {
            throw new CsvSyntaxError(
              `unexpected ${JSON.stringify(s[i])} after the closing quote of field ${this.currentField} (a quote inside a quoted field must be doubled)`,
              this.line,
              this.currentField,
            )
          }
          break
        }
      }
    }
    // A record continues in the next text: what this one held of it is kept.
    if (this.textStart >= 0) {
      this.textBefore += s.slice(this.textStart)
      this.textStart = 0
    }
  }

  private countQuotedLines(segment: string): void {
    if (segment.indexOf('\n') < 0 && segment.indexOf('\r') < 0) {
      this.quotedCr = false
      return
    }
    for (let k = 0; k < segment.length; k++) {
      const c = segment.charCodeAt(k)
      if (c === LF) {
        if (!this.quotedCr) this.line++
        this.quotedCr = false
      } else if (c === CR) {
        this.line++
        this.quotedCr = true
      } else {
        this.quotedCr = false
      }
    }
  }

  private checkFieldSize(length = this.field.length): void {
    if (length > this.maxFieldChars) {
      const where = this.state === State.Quoted ? 'a quoted field starting on this line (unterminated quote?)' : 'a field'
      throw new CsvSyntaxError(overLimit(`${where} is longer than ${formatCount(this.maxFieldChars)} characters`, 'maxFieldChars'), this.state === State.Quoted ? this.quoteLine : this.line, this.currentField)
    }
  }

  private pushUnquoted(value: string): void {
    this.fields.push(value === '' || this.nullValues?.has(value) ? null : value)
  }

  private pushQuoted(): void {
    this.fields.push(this.field)
    this.field = ''
  }

  /** `s` and `end`: the text being scanned and where in it the record ended (its line break). */
  private endRecord(s: string, end: number): void {
    this.records.push(this.fields)
    this.lines.push(this.recordLine)
    this.fields = []
    if (this.keepText) {
      this.texts.push(this.textStart < 0 ? this.textBefore : this.textBefore + s.slice(this.textStart, end))
      this.textBefore = ''
      this.textStart = -1
    }
  }
}
