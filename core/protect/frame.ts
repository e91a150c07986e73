import { createDecipheriv, createHmac } from 'node:crypto'
import { FiledgeError } from '../errors.js'
import { INDEX_BYTES, nonceOf, TAG_BYTES } from './gcm.js'
import { parseKey, type ProtectKey } from './keys.js'
import { FRAME_VERSION, OVERHEAD, packTexts, SALT_BYTES, sealBytes, unpackValues, valueKey } from './seal.js'

export { FRAME_VERSION }

/**
 * Sealed values: `fe1:<key id>:<base64(salt ‖ index ‖ ciphertext ‖ tag)>`.
 *
 * - `fe1` is the frame's version: a later construction gets `fe2`, and
 *   readers keep reading `fe1`.
 * - The key id (keys.ts) names the key, so a table may hold values sealed
 *   under several keys while they rotate.
 * - salt: 16 random bytes, one per batch of values. The value key is
 *   HKDF-SHA256(key, salt, "filedge fe1", 32 bytes).
 * - index: 4 bytes, the value's index in its batch (big-endian); the
 *   96-bit GCM nonce is 8 zero bytes followed by it.
 * - ciphertext and a 16-byte tag: AES-256-GCM under the value key, no AAD,
 *   over the value's text in UTF-8.
 *
 * 36 bytes beside the ciphertext, 48 base64 characters: a frame is what a
 * table stores in place of a value, so every byte is written and read a
 * million times (the full 12-byte nonce cost 11 more characters a value).
 *
 * Nonce uniqueness: a value key seals one batch, and within it every value
 * has its own index, so no (key, nonce) pair repeats as long as two batches
 * never draw the same 128-bit salt (after 2^48 batches, odds of 2^-33). A
 * random 96-bit nonce per value under one key would instead reach NIST's
 * 2^-32 bound at 2^32 values, which a busy pipeline's key can see.
 *
 * What it gives: confidentiality and integrity of each value (a changed
 * byte fails the tag). What it does not: values are not bound to their row
 * or column (no AAD), so someone who can write the table can swap sealed
 * values between rows undetected; lengths show (a value's ciphertext is as
 * long as its text).
 *
 * Any AES-GCM implementation can open a frame: derive the value key with
 * HKDF-SHA256, then decrypt ciphertext ‖ tag with the nonce (8 zero bytes
 * and the index).
 */

/**
 * Seals the texts of one batch, each into its frame (same order), on the
 * calling thread: one salt and one value key for the batch, AES and GHASH
 * over all of it at once (gcm.ts). Loads seal in the worker (pool.ts).
 */
export function sealTexts(key: ProtectKey, texts: readonly string[]): string[] {
  return unpackValues(sealBytes({ id: 0, kind: 'encrypt', key: key.bytes, keyId: key.id, ...packTexts(texts) }))
}

/** Whether a value looks like a frame (not whether it opens). */
export function isFrame(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(`${FRAME_VERSION}:`) && value.indexOf(':', FRAME_VERSION.length + 1) === FRAME_VERSION.length + 9
}

function decryptFailed(message: string): FiledgeError {
  return new FiledgeError('DECRYPT_FAILED', message)
}

/**
 * The text a frame holds, opened with whichever of `keys` its key id names;
 * OpenSSL's AES-256-GCM checks the tag. Fails loudly (DECRYPT_FAILED) when
 * no key has the frame's id, when the frame is damaged or was sealed by
 * another key with the same id, never returning a wrong value.
 */
export function openFrame(frame: string, keys: readonly ProtectKey[]): string {
  if (!isFrame(frame)) throw decryptFailed(`not an encrypted value (expected ${FRAME_VERSION}:<key id>:<base64>)`)
  const id = frame.slice(FRAME_VERSION.length + 1, FRAME_VERSION.length + 9)
  const key = keys.find((candidate) => candidate.id === id)
  if (key === undefined) {
    const have = keys.length === 0 ? 'no key was given' : `the key${keys.length === 1 ? ' given has id' : 's given have ids'} ${keys.map((candidate) => candidate.id).join(', ')}`
    throw decryptFailed(`the value was encrypted with key ${id}; ${have}`)
  }
  const bytes = Buffer.from(frame.slice(FRAME_VERSION.length + 10), 'base64')
  if (bytes.length < OVERHEAD) throw decryptFailed(`the value is damaged (${bytes.length} bytes; a frame has at least ${OVERHEAD})`)
  const salt = bytes.subarray(0, SALT_BYTES)
  const nonce = nonceOf(bytes.subarray(SALT_BYTES, SALT_BYTES + INDEX_BYTES))
  const ciphertext = bytes.subarray(SALT_BYTES + INDEX_BYTES, bytes.length - TAG_BYTES)
  const decipher = createDecipheriv('aes-256-gcm', valueKey(key.bytes, salt), nonce)
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES))
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8')
  } catch {
    throw decryptFailed(`the value does not authenticate under key ${id}: it was changed, or sealed by another key with the same id`)
  }
}

/**
 * What a `hash` column stores for a value's text: HMAC-SHA256 (UTF-8) under
 * `key` (hex or base64, or bytes), as 64 lowercase hex digits, for looking a
 * known value up (`WHERE email = pseudonym('ann@example.com', key)`). NULL
 * stays null. The same value gives the same pseudonym under the same key, in
 * every table and every load, so pseudonyms join. That is the point, and
 * the limit: equal values show as equal, and anyone holding the key can
 * test a guess. Postgres computes the same: encode(hmac(value, key, 'sha256'), 'hex').
 *
 * Loads hash on the worker (seal.ts), `createHmac` per value (1.7–1.9 µs
 * here): two `crypto.hash` calls over key-padded buffers measured 1.6–2.3
 * µs, the Buffer handling eating what the object creation saved.
 */
export function pseudonym(value: string | null, key: string | Uint8Array): string | null {
  if (value === null) return null
  const [parsed] = toKeys([key])
  return createHmac('sha256', parsed.bytes).update(value).digest('hex')
}

/** Keys given as text (hex or base64) or bytes, for `decrypt`; a bad one fails naming its position, never its value. */
export function toKeys(keys: readonly (string | Uint8Array | ProtectKey)[]): ProtectKey[] {
  return keys.map((key, index) => {
    if (typeof key === 'object' && 'id' in key && 'bytes' in key) return key
    const parsed = parseKey(typeof key === 'string' ? key : Buffer.from(key).toString('hex'))
    if ('problem' in parsed) throw new FiledgeError('KEY_INVALID', `key ${index + 1} ${parsed.problem}`)
    return parsed
  })
}

/**
 * Opens a value a protected column stored (`encrypt`), for authorised reads:
 * `decrypt(row.ssn, process.env.PII_KEY)`. Several keys may be given while
 * keys rotate; the frame's key id picks one. NULL stays null.
 */
export function decrypt(value: string | null, keys: string | Uint8Array | readonly (string | Uint8Array)[]): string | null {
  if (value === null) return null
  const list = typeof keys === 'string' || keys instanceof Uint8Array ? [keys] : keys
  return openFrame(value, toKeys(list))
}
