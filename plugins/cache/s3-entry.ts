import { createHash } from 'node:crypto'
import { Transform, type Readable } from 'node:stream'
import { decompressor, VALUE_TYPES } from './codec.js'
import type { Compression, EntryInfo, ValueType } from './types.js'

/**
 * An entry of the S3 cache as an object: its description in the object's
 * user metadata (names that S3 lowercases, ASCII values: numbers as decimal
 * text), and its bytes read back against that description.
 */

export interface Entry extends EntryInfo {
  /** SHA-256 (hex) of the stored bytes (after compression). */
  readonly sha256: string
}

const COUNT = /^(0|[1-9]\d{0,15})$/

export function metadataOf(entry: Entry): Record<string, string> {
  return {
    type: entry.type,
    compression: entry.compression ?? 'none',
    size: String(entry.size),
    stored: String(entry.storedSize),
    sha256: entry.sha256,
    created: String(entry.createdAt),
    expires: entry.expiresAt === null ? 'never' : String(entry.expiresAt),
  }
}

/** The entry a metadata describes, or undefined when it is missing, garbled or inconsistent. */
function entryOf(metadata: Record<string, string> = {}): Entry | undefined {
  const count = (text: string | undefined) => (text !== undefined && COUNT.test(text) ? Number(text) : undefined)
  const { type, compression = '', sha256 = '', expires } = metadata
  const [size, storedSize, createdAt] = [count(metadata.size), count(metadata.stored), count(metadata.created)]
  const expiresAt = expires === 'never' ? null : count(expires)
  if (!VALUE_TYPES.includes(type as ValueType) || !['none', 'gzip', 'brotli'].includes(compression) || !/^[0-9a-f]{64}$/.test(sha256)) return undefined
  if (size === undefined || storedSize === undefined || createdAt === undefined || expiresAt === undefined) return undefined
  if (compression === 'none' && size !== storedSize) return undefined
  return { type: type as ValueType, compression: compression === 'none' ? null : (compression as Compression), size, storedSize, createdAt, expiresAt, sha256 }
}

/** An object as an entry, or why it is none: damaged (metadata missing or garbled, a length other than it says) or expired. */
export function judge(metadata: Record<string, string> | undefined, length: number | undefined): Entry | 'corrupt' | 'expired' {
  const entry = entryOf(metadata)
  if (entry === undefined || (length !== undefined && length !== entry.storedSize)) return 'corrupt'
  return entry.expiresAt !== null && Date.now() >= entry.expiresAt ? 'expired' : entry
}

export function infoOf({ type, compression, size, storedSize, createdAt, expiresAt }: Entry): EntryInfo {
  return { type, compression, size, storedSize, createdAt, expiresAt }
}

export interface ReadOutcomes {
  /** The body failed, or ended early: the transport's fault, not the entry's. */
  failed(what: string, received: number, cause?: Error): Error
  /** Bytes other than the metadata says: the error to end with, once the entry is removed. Asked once per read at most. */
  damaged(what: string): Promise<Error>
  /** Every byte arrived and passed. */
  passed(): void
}

/** A stream that shows each chunk to `see`, which may refuse it, and ends through `end`. */
function tap(see: (chunk: Buffer) => Error | undefined, end?: (done: (error?: Error) => void) => void): Transform {
  return new Transform({ transform: (chunk: Buffer, _encoding, done) => done(see(chunk), chunk), flush: end })
}

/**
 * The value's bytes from an object's body: the stored bytes counted and
 * hashed as they arrive, decompressed, counted again. If a check fails the
 * stream ends with the error `outcomes` gives instead of its end.
 */
export function checkedValue(body: Readable, entry: Entry, outcomes: ReadOutcomes): Readable {
  const hash = createHash('sha256')
  let [received, size] = [0, 0]
  let damage: Promise<Error> | undefined
  // Once, whichever check finds it first: a checksum that fails and a decompressor that chokes on the same bytes.
  const damaged = (what: string) => (damage ??= outcomes.damaged(what))
  const output = tap(
    (chunk) => void (size += chunk.length),
    (done) => {
      if (size !== entry.size) return void damaged(`${size} bytes once decompressed, where its metadata says ${entry.size}`).then(done)
      outcomes.passed()
      done()
    },
  )
  const fail = (error: Error) => output.destroyed || output.destroy(error)
  const stored = tap(
    (chunk) => {
      received += chunk.length
      hash.update(chunk)
      return undefined
    },
    (done) => {
      if (received !== entry.storedSize) return done(outcomes.failed('ended early', received))
      if (hash.digest('hex') === entry.sha256) return done()
      void damaged('its stored bytes do not match their SHA-256').then(done)
    },
  )
  body.on('error', (error) => fail(outcomes.failed('failed', received, error)))
  stored.on('error', fail)
  // The consumer stopping early (or a failure) lets go of the connection.
  output.on('close', () => body.destroy())
  if (entry.compression === null) return body.pipe(stored).pipe(output)
  const inflate = decompressor(entry.compression)
  inflate.on('error', (error) => void damaged(`its stored bytes do not decompress: ${error.message}`).then(fail))
  return body.pipe(stored).pipe(inflate).pipe(output)
}
