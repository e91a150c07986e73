import { createHash } from 'node:crypto'
import type { Transform } from 'node:stream'
import { constants, createBrotliCompress, createBrotliDecompress, createGunzip, createGzip } from 'node:zlib'
import { FiledgeError } from '../../core/index.js'
import type { CacheDuration, CacheValue, Compression, JsonValue, SetOptions, ValueType } from './types.js'

/**
 * Values to bytes and back, shared by every backend: the type an entry was
 * set with is recorded next to it, so it comes back as it went in (a string
 * that looks like JSON stays a string; a Uint8Array is not turned into a
 * Buffer).
 */

export function cacheError(message: string, cause?: unknown): FiledgeError {
  return new FiledgeError('PLUGIN_ERROR', message, { plugin: 'cache', ...(cause === undefined ? {} : { cause }) })
}

export function refused(message: string): FiledgeError {
  return new FiledgeError('USAGE', `cache: ${message}`, { plugin: 'cache' })
}

/** A key as a file or object name: SHA-256 hex, so no key can reach outside the store. */
export function keyName(key: string): string {
  if (typeof key !== 'string' || key === '') throw refused(`a key must be a non-empty string; got ${describe(key)}`)
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A TTL in ms: Infinity for never; 0 for "expires at once"; negative or malformed refused. */
export function ttlMs(ttl: CacheDuration | undefined, what = 'ttl'): number {
  if (ttl === undefined || ttl === Infinity) return Infinity
  if (typeof ttl === 'number') {
    if (Number.isNaN(ttl) || ttl < 0) throw refused(`${what} must be 0 or more milliseconds (or Infinity); got ${ttl}`)
    return ttl
  }
  const match = typeof ttl === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(ttl) : null
  if (match === null) throw refused(`${what} must be milliseconds or a duration like '30s', '5m', '1h', '7d'; got ${describe(ttl)}`)
  return Math.round(Number(match[1]) * UNIT_MS[match[2]!]!)
}

/** The compression of an entry: the set's option, else the cache's; `true` is gzip. */
export function compressionOf(option: SetOptions['compress'], fallback: Compression | boolean | undefined): Compression | null {
  const chosen = option ?? fallback ?? false
  if (chosen === false) return null
  if (chosen === true || chosen === 'gzip') return 'gzip'
  if (chosen === 'brotli') return 'brotli'
  throw refused(`compress must be 'gzip', 'brotli', true or false; got ${describe(chosen)}`)
}

export function compressor(compression: Compression): Transform {
  // Brotli's default quality (11) runs at a few MB/s; 5 compresses about as well as gzip -9 at gzip's speed.
  return compression === 'gzip' ? createGzip() : createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 5 } })
}

export function decompressor(compression: Compression): Transform {
  return compression === 'gzip' ? createGunzip() : createBrotliDecompress()
}

/** A value as the bytes stored for it (before compression), and its type. Refuses what would not come back equal. */
export function encodeValue(value: CacheValue): { type: ValueType; bytes: Buffer } {
  if (typeof value === 'string') return { type: 'string', bytes: Buffer.from(value, 'utf8') }
  if (Buffer.isBuffer(value)) return { type: 'buffer', bytes: value }
  if (value instanceof Uint8Array && Object.getPrototypeOf(value) === Uint8Array.prototype) {
    return { type: 'uint8array', bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength) }
  }
  checkJson(value, '', new Set())
  return { type: 'json', bytes: Buffer.from(JSON.stringify(value), 'utf8') }
}

/** The stored bytes (decompressed) back as the value they were set as. */
export function decodeValue(type: ValueType, bytes: Buffer): CacheValue {
  switch (type) {
    case 'string':
      return bytes.toString('utf8')
    case 'buffer':
    case 'bytes':
      return bytes
    case 'uint8array':
      return new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))
    case 'json':
      return JSON.parse(bytes.toString('utf8')) as JsonValue
  }
}

export const VALUE_TYPES: readonly ValueType[] = ['string', 'buffer', 'uint8array', 'json', 'bytes']

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'object') return Object.getPrototypeOf(value)?.constructor?.name ?? 'an object without a prototype'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  return `${typeof value} ${String(value)}`
}

function checkJson(value: unknown, at: string, path: Set<object>): void {
  const where = at === '' ? 'the value' : `the value at ${at}`
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return
    case 'number':
      if (!Number.isFinite(value)) throw refused(`${where} is ${value}, which JSON cannot hold; store it as a string`)
      if (Object.is(value, -0)) throw refused(`${where} is -0, which JSON turns into 0; store it as a string`)
      return
    case 'object': {
      if (value === null) return
      if (path.has(value)) throw refused(`${where} refers back to itself (a cycle)`)
      path.add(value)
      if (Array.isArray(value)) {
        if (Object.getPrototypeOf(value) !== Array.prototype) throw refused(`${where} is a ${describe(value)}, not a plain array`)
        for (let index = 0; index < value.length; index++) {
          if (!(index in value)) throw refused(`${where} has a hole at index ${index}, which JSON turns into null`)
          checkJson(value[index], `${at}[${index}]`, path)
        }
      } else {
        const proto = Object.getPrototypeOf(value)
        if (proto !== Object.prototype) throw refused(`${where} is ${proto === null ? 'an object without a prototype' : `a ${describe(value)}`}, not a string, Buffer, Uint8Array or plain JSON data`)
        if (typeof (value as { toJSON?: unknown }).toJSON === 'function') throw refused(`${where} has a toJSON method; it would not come back as it went in`)
        for (const key of Object.keys(value)) checkJson((value as Record<string, unknown>)[key], at === '' ? key : `${at}.${key}`, path)
        if (Object.getOwnPropertySymbols(value).length > 0) throw refused(`${where} has symbol keys, which JSON drops`)
      }
      path.delete(value)
      return
    }
    default:
      throw refused(`${where} is ${describe(value)}; a cache stores strings, Buffers, Uint8Arrays and plain JSON data`)
  }
}
