import type { FiledgeError } from '../errors.js'

/**
 * A record spanning chunks, kept as the pieces read so far and joined once
 * its end arrives, failing as soon as it is longer than the limit. Appending
 * each chunk to the pending text and searching the whole again made a long
 * line quadratic, and a 150 MB line ran the worker out of heap before it was
 * ever parsed.
 */
export class Pending {
  private pieces: string[] = []
  private chars = 0

  constructor(
    private readonly maxChars: number,
    private readonly tooLong: () => FiledgeError,
  ) {}

  get empty(): boolean {
    return this.pieces.length === 0
  }

  /** The record read so far, joined (for a message about where in it a problem is). */
  get text(): string {
    return this.pieces.join('')
  }

  add(piece: string): void {
    this.chars += piece.length
    if (this.chars > this.maxChars) throw this.tooLong()
    this.pieces.push(piece)
  }

  /** The record: the pieces and `last`, joined; the pending record is then empty. */
  take(last: string): string {
    this.add(last)
    const record = this.pieces.length === 1 ? this.pieces[0] : this.pieces.join('')
    this.pieces = []
    this.chars = 0
    return record
  }
}

/**
 * Scans `text` in pieces of at most `maxChars`: a record inside one piece is
 * at most that long, so only a record spanning pieces, which Pending holds
 * and measures, can pass the limit, and the per-record loop checks nothing.
 * Reads are at most 1 MiB: only a limit set below that splits them.
 */
export function scanInPieces(text: string, maxChars: number, scan: (piece: string) => void): void {
  if (text.length <= maxChars) scan(text)
  else for (let at = 0; at < text.length; at += maxChars) scan(text.slice(at, at + maxChars))
}
