import { createCipheriv } from 'node:crypto'

/**
 * AES-256-GCM (NIST SP 800-38D) over many short values at once.
 *
 * Why not `createCipheriv('aes-256-gcm')` per value: measured here at
 * 6–10 µs a value, almost all of it object creation and crossings into
 * native code, so two encrypted columns of 1,000,000 rows cost 12–20 s on
 * top of a 3–5 s load. GCM is CTR mode plus GHASH, so a batch is done with
 * one native call: every counter block of every value (its J0 and its CTR
 * blocks) is laid out in one buffer and encrypted with AES-256-ECB by
 * OpenSSL, which is exactly CTR's keystream; GHASH, a multiplication in
 * GF(2^128) by H = E(K, 0^128), runs here with Shoup's 8-bit tables.
 * Measured at about 1 µs a short value, all told.
 *
 * Only encryption lives here. Decryption uses OpenSSL's own AES-256-GCM
 * (frame.ts), which verifies the tag: a frame this code got wrong would
 * fail to decrypt, and the tests decrypt what it writes with OpenSSL.
 * The table lookups depend on H and the data; a process sharing the CPU's
 * caches could in principle learn H from their timing (no key, no
 * plaintext). Loads run on machines the data owner controls.
 */

/**
 * GHASH by bytes (Shoup's 8-bit tables): the 256 multiples of H, rebuilt per
 * value key (256 XORs of four words), and what shifting a byte out of the
 * accumulator adds back (the reduction by x^128 + x^7 + x^2 + x + 1, which
 * lands in the top 16 bits). Half the steps of the 4-bit tables mbedTLS
 * uses: measured 0.74 → 0.4 µs a value.
 */
const REDUCE8 = (() => {
  const table = new Uint32Array(256)
  for (let r = 0; r < 256; r++) {
    // r's bits leave through the bottom of the last word; each one that leaves adds the reduction at the top of the
    // first, where it stays within 8 shifts (it never reaches the words between).
    let z0 = 0
    let z3 = r
    for (let bit = 0; bit < 8; bit++) {
      const carry = z3 & 1
      z3 >>>= 1
      z0 = (z0 >>> 1) ^ (carry ? 0xe1000000 : 0)
    }
    table[r] = z0
  }
  return table
})()

/** The 256 multiples of H by 8-bit values, as four 32-bit words each (big-endian word order). */
interface HTable {
  readonly h0: Uint32Array
  readonly h1: Uint32Array
  readonly h2: Uint32Array
  readonly h3: Uint32Array
}

function hTable(h: Uint8Array): HTable {
  const t = { h0: new Uint32Array(256), h1: new Uint32Array(256), h2: new Uint32Array(256), h3: new Uint32Array(256) }
  const view = new DataView(h.buffer, h.byteOffset, 16)
  let v0 = view.getUint32(0)
  let v1 = view.getUint32(4)
  let v2 = view.getUint32(8)
  let v3 = view.getUint32(12)
  // In GCM's bit order 0x80 is 1, so H itself sits at 128 and H·x, H·x², … at 64, 32, …
  for (let i = 128; i > 0; i >>= 1) {
    t.h0[i] = v0
    t.h1[i] = v1
    t.h2[i] = v2
    t.h3[i] = v3
    const reduce = v3 & 1 ? 0xe1000000 : 0
    v3 = (v3 >>> 1) | (v2 << 31)
    v2 = (v2 >>> 1) | (v1 << 31)
    v1 = (v1 >>> 1) | (v0 << 31)
    v0 = (v0 >>> 1) ^ reduce
  }
  for (let i = 2; i <= 128; i *= 2) {
    for (let j = 1; j < i; j++) {
      t.h0[i + j] = t.h0[i] ^ t.h0[j]
      t.h1[i + j] = t.h1[i] ^ t.h1[j]
      t.h2[i + j] = t.h2[i] ^ t.h2[j]
      t.h3[i + j] = t.h3[i] ^ t.h3[j]
    }
  }
  return t
}

/**
 * GHASH of `data[from, from + length)` (zero-padded to whole blocks) followed
 * by the length block for a ciphertext of `length` bytes and no AAD, XORed
 * with `mask` (E(K, J0)) into `out[at, at + 16)`: the tag.
 */
function ghashTag(t: HTable, data: Uint8Array, from: number, length: number, mask: Uint8Array, maskAt: number, out: Uint8Array, at: number): void {
  const { h0, h1, h2, h3 } = t
  let y0 = 0
  let y1 = 0
  let y2 = 0
  let y3 = 0
  const blocks = (length + 15) >>> 4
  const end = from + length
  // One more block than the data has: the lengths.
  for (let b = 0; b <= blocks; b++) {
    if (b < blocks) {
      const p = from + (b << 4)
      if (p + 16 <= end) {
        y0 ^= (data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
        y1 ^= (data[p + 4] << 24) | (data[p + 5] << 16) | (data[p + 6] << 8) | data[p + 7]
        y2 ^= (data[p + 8] << 24) | (data[p + 9] << 16) | (data[p + 10] << 8) | data[p + 11]
        y3 ^= (data[p + 12] << 24) | (data[p + 13] << 16) | (data[p + 14] << 8) | data[p + 15]
      } else {
        // The last, partial block: its missing bytes are zeros.
        let w0 = 0
        let w1 = 0
        let w2 = 0
        let w3 = 0
        for (let k = 0; p + k < end; k++) {
          const byte = data[p + k] << (24 - ((k & 3) << 3))
          if (k < 4) w0 |= byte
          else if (k < 8) w1 |= byte
          else if (k < 12) w2 |= byte
          else w3 |= byte
        }
        y0 ^= w0
        y1 ^= w1
        y2 ^= w2
        y3 ^= w3
      }
    } else {
      // len(A) = 0 in the first 64 bits, len(C) in bits in the last 64 (values are far below 2^29 bytes).
      y3 ^= length << 3
      y2 ^= length >>> 29
    }
    // (y) · H, byte by byte from the last (the least significant byte of y3) to the first. Shifting the initial
    // zero is harmless, so every byte takes the same step.
    let z0 = 0
    let z1 = 0
    let z2 = 0
    let z3 = 0
    for (let w = 3; w >= 0; w--) {
      let word = w === 3 ? y3 : w === 2 ? y2 : w === 1 ? y1 : y0
      for (let n = 0; n < 4; n++) {
        const byte = word & 0xff
        word >>>= 8
        const rem = z3 & 0xff
        z3 = (z3 >>> 8) | (z2 << 24)
        z2 = (z2 >>> 8) | (z1 << 24)
        z1 = (z1 >>> 8) | (z0 << 24)
        z0 = (z0 >>> 8) ^ REDUCE8[rem] ^ h0[byte]
        z1 ^= h1[byte]
        z2 ^= h2[byte]
        z3 ^= h3[byte]
      }
    }
    y0 = z0
    y1 = z1
    y2 = z2
    y3 = z3
  }
  const words = [y0, y1, y2, y3]
  for (let k = 0; k < 16; k++) out[at + k] = ((words[k >>> 2] >>> ((3 - (k & 3)) << 3)) & 0xff) ^ mask[maskAt + k]
}

/** Where one value's plaintext is in a batch's buffer, and where its sealed form goes. */
export interface GcmItem {
  /** Offset and length of the plaintext in `plain`. */
  readonly from: number
  readonly length: number
  /** Offset in `out` of the value's index (4 bytes, its nonce); the ciphertext follows it, then the 16-byte tag. */
  readonly at: number
}

/** What of a nonce is written: the index. The 96-bit nonce is 8 zero bytes, then these 4. */
export const INDEX_BYTES = 4
export const TAG_BYTES = 16

/** The 96-bit GCM nonce of the value at `index` of its batch. */
export function nonceOf(index: Uint8Array): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.set(index, 8)
  return nonce
}

/**
 * Seals every item of a batch under `key` (32 bytes), item `i` with the
 * nonce `i` as a 96-bit big-endian number: nonces are unique per key as
 * long as a key seals one batch (the caller derives a key per batch) of at
 * most 2^32 values. Writes i (4 bytes) ‖ ciphertext ‖ tag at each item's
 * `at`: the nonce's other 8 bytes are zeros, not worth storing.
 */
export function gcmSealBatch(key: Uint8Array, plain: Uint8Array, items: readonly GcmItem[], out: Uint8Array): void {
  if (items.length >= 2 ** 32) throw new RangeError('at most 2^32 - 1 values in one batch')
  // Counter blocks: per item J0 (its tag mask), then one block per 16 bytes of plaintext; plus H's block first.
  let blocks = 1
  for (const item of items) blocks += 1 + ((item.length + 15) >>> 4)
  const counters = Buffer.alloc(blocks << 4)
  let b = 1
  for (let i = 0; i < items.length; i++) {
    const n = 1 + ((items[i].length + 15) >>> 4)
    for (let k = 0; k < n; k++) {
      const p = (b + k) << 4
      // Nonce: 8 zero bytes, then i; the 32-bit block counter starts at 1 (J0).
      counters.writeUInt32BE(i, p + 8)
      counters.writeUInt32BE(k + 1, p + 12)
    }
    b += n
  }
  const ecb = createCipheriv('aes-256-ecb', key, null)
  ecb.setAutoPadding(false)
  const stream = ecb.update(counters)
  ecb.final()
  const table = hTable(stream.subarray(0, 16))
  b = 1
  for (let i = 0; i < items.length; i++) {
    const { from, length, at } = items[i]
    const j0 = b << 4
    out[at] = i >>> 24
    out[at + 1] = (i >>> 16) & 0xff
    out[at + 2] = (i >>> 8) & 0xff
    out[at + 3] = i & 0xff
    const c = at + INDEX_BYTES
    for (let k = 0; k < length; k++) out[c + k] = plain[from + k] ^ stream[j0 + 16 + k]
    ghashTag(table, out, c, length, stream, j0, out, c + length)
    b += 1 + ((length + 15) >>> 4)
  }
}
