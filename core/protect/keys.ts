import { createHmac } from 'node:crypto'

/**
 * Keys of protected columns and of sealed quarantine records: 32 random
 * bytes (AES-256, and HMAC-SHA256 keys of the hash's size), written as 64
 * hex digits or as base64 (44 characters with padding, 43 without; the
 * URL-safe alphabet too). `openssl rand -hex 32` makes one.
 *
 * A key is only ever read from the environment (`env('PII_KEY')`): never
 * written in a config, never printed, never stored. What is stored and
 * shown is its id: the first 8 hex digits of HMAC-SHA256(key, "filedge key
 * id"), which names the key a value was sealed with (so keys can rotate)
 * and says nothing about it.
 */

export const KEY_BYTES = 32

export interface ProtectKey {
  readonly id: string
  readonly bytes: Buffer
}

const HEX = /^[0-9a-fA-F]{64}$/
const BASE64 = /^[A-Za-z0-9+/_-]{43}={0,1}$/

/** The key a text holds, or why it holds none. The text itself never appears in the reason. */
export function parseKey(text: string): ProtectKey | { readonly problem: string } {
  const trimmed = text.trim()
  let bytes: Buffer | undefined
  if (HEX.test(trimmed)) bytes = Buffer.from(trimmed, 'hex')
  else if (BASE64.test(trimmed)) bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
  if (bytes === undefined || bytes.length !== KEY_BYTES) {
    const what = trimmed.length === 0 ? 'is empty' : `is ${trimmed.length} characters, not a 32-byte key`
    return { problem: `${what}; expected 32 random bytes as 64 hex digits or 44 base64 characters (e.g. openssl rand -hex 32)` }
  }
  return { id: keyId(bytes), bytes }
}

export function keyId(bytes: Uint8Array): string {
  return createHmac('sha256', bytes).update('filedge key id').digest('hex').slice(0, 8)
}
