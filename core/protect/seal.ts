import { createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { gcmSealBatch, INDEX_BYTES, TAG_BYTES, type GcmItem } from './gcm.js'

/**
 * Protection of a batch's values as bytes in, bytes out: what the worker
 * runs (pool.ts), and the calling thread when there is no worker. Texts
 * come as UTF-8 in one buffer with their end offsets; frames (or
 * pseudonyms) leave as ASCII in one buffer with theirs, so that crossing
 * between threads is two transferred buffers, not a million strings.
 */

export const FRAME_VERSION = 'fe1'
export const SALT_BYTES = 16
export const FRAME_INFO = 'filedge fe1'
/** salt ‖ index ‖ tag: what a frame holds besides the ciphertext. */
export const OVERHEAD = SALT_BYTES + INDEX_BYTES + TAG_BYTES

export interface SealJob {
  readonly id: number
  readonly kind: 'encrypt' | 'hash'
  /** The 32-byte key and its id. */
  readonly key: Uint8Array
  readonly keyId: string
  /** The texts in UTF-8, back to back; `ends[i]` is where text `i` ends. */
  readonly plain: Uint8Array
  readonly ends: Uint32Array
}

export interface SealResult {
  /** The frames or pseudonyms in ASCII, back to back; `ends[i]` is where value `i` ends. */
  readonly out: Uint8Array
  readonly ends: Uint32Array
}

export function valueKey(key: Uint8Array, salt: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, FRAME_INFO, 32))
}

const BASE64 = Uint8Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', (char) => char.charCodeAt(0))
const HEX = Uint8Array.from('0123456789abcdef', (char) => char.charCodeAt(0))
const PAD = 61

/** Standard base64 (padded) of `bytes[from, to)` into `out` at `at`; returns where it ended. */
function base64Into(bytes: Uint8Array, from: number, to: number, out: Uint8Array, at: number): number {
  let i = from
  for (; i + 3 <= to; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2]
    out[at++] = BASE64[n >>> 18]
    out[at++] = BASE64[(n >>> 12) & 63]
    out[at++] = BASE64[(n >>> 6) & 63]
    out[at++] = BASE64[n & 63]
  }
  const left = to - i
  if (left === 1) {
    const n = bytes[i] << 16
    out[at++] = BASE64[n >>> 18]
    out[at++] = BASE64[(n >>> 12) & 63]
    out[at++] = PAD
    out[at++] = PAD
  } else if (left === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8)
    out[at++] = BASE64[n >>> 18]
    out[at++] = BASE64[(n >>> 12) & 63]
    out[at++] = BASE64[(n >>> 6) & 63]
    out[at++] = PAD
  }
  return at
}

/** Seals each text into its frame `fe1:<key id>:<base64(salt ‖ index ‖ ciphertext ‖ tag)>` (frame.ts says why). */
export function sealBytes(job: SealJob): SealResult {
  const count = job.ends.length
  const salt = randomBytes(SALT_BYTES)
  const items: GcmItem[] = new Array(count)
  let from = 0
  let at = 0
  for (let i = 0; i < count; i++) {
    const length = job.ends[i] - from
    items[i] = { from, length, at: at + SALT_BYTES }
    from = job.ends[i]
    at += OVERHEAD + length
  }
  const sealed = Buffer.allocUnsafe(at)
  for (const item of items) salt.copy(sealed, item.at - SALT_BYTES)
  gcmSealBatch(valueKey(job.key, salt), job.plain, items, sealed)

  const prefix = Buffer.from(`${FRAME_VERSION}:${job.keyId}:`, 'latin1')
  let size = 0
  for (const item of items) size += prefix.length + 4 * Math.ceil((OVERHEAD + item.length) / 3)
  const out = new Uint8Array(size)
  const ends = new Uint32Array(count)
  let o = 0
  for (let i = 0; i < count; i++) {
    const item = items[i]
    out.set(prefix, o)
    o = base64Into(sealed, item.at - SALT_BYTES, item.at + INDEX_BYTES + item.length + TAG_BYTES, out, o + prefix.length)
    ends[i] = o
  }
  return { out, ends }
}

/** HMAC-SHA256 of each text, in lowercase hex. */
export function pseudonymBytes(job: SealJob): SealResult {
  const count = job.ends.length
  const out = new Uint8Array(count * 64)
  const ends = new Uint32Array(count)
  const plain = Buffer.from(job.plain.buffer, job.plain.byteOffset, job.plain.byteLength)
  let from = 0
  for (let i = 0; i < count; i++) {
    const digest = createHmac('sha256', job.key).update(plain.subarray(from, job.ends[i])).digest()
    from = job.ends[i]
    const at = i * 64
    for (let k = 0; k < 32; k++) {
      out[at + 2 * k] = HEX[digest[k] >>> 4]
      out[at + 2 * k + 1] = HEX[digest[k] & 15]
    }
    ends[i] = at + 64
  }
  return { out, ends }
}

/**
 * Texts as UTF-8 back to back, and where each ends, in a buffer of their
 * own. ASCII by char codes: a `Buffer.write` per short value cost as much
 * as sealing it.
 */
export function packTexts(texts: readonly string[]): { plain: Uint8Array; ends: Uint32Array } {
  // Never from Buffer's shared pool: the buffer may be transferred to the worker, which detaches it here.
  let buffer = Buffer.allocUnsafeSlow(32 * texts.length + 64)
  const ends = new Uint32Array(texts.length)
  let at = 0
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]
    const n = text.length
    if (buffer.length - at < n * 3) {
      const grown = Buffer.allocUnsafeSlow(Math.max(buffer.length * 2, at + n * 3))
      buffer.copy(grown, 0, 0, at)
      buffer = grown
    }
    let k = 0
    for (; k < n; k++) {
      const c = text.charCodeAt(k)
      if (c >= 0x80) break
      buffer[at + k] = c
    }
    at += k < n ? buffer.write(text, at, 'utf8') : n
    ends[i] = at
  }
  return { plain: buffer.subarray(0, at), ends }
}

/** The values of a result, as strings (ASCII, so latin1 slices). */
export function unpackValues(result: SealResult): string[] {
  const out = Buffer.from(result.out.buffer, result.out.byteOffset, result.out.byteLength)
  const values: string[] = new Array(result.ends.length)
  let from = 0
  for (let i = 0; i < values.length; i++) {
    values[i] = out.toString('latin1', from, result.ends[i])
    from = result.ends[i]
  }
  return values
}
