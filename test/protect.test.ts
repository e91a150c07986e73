import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { decrypt, pseudonym } from '../core/index.js'
import { openFrame, sealTexts } from '../core/protect/frame.js'
import { gcmSealBatch, type GcmItem } from '../core/protect/gcm.js'
import { packTexts, pseudonymBytes, unpackValues } from '../core/protect/seal.js'
import { parseKey, type ProtectKey } from '../core/protect/keys.js'

const KEY_HEX = 'a1'.repeat(32)
const key = parseKey(KEY_HEX) as ProtectKey

describe('AES-256-GCM over a batch', () => {
  it('writes what OpenSSL writes, for every length from 0 to 100 bytes', () => {
    const raw = randomBytes(32)
    const lengths = Array.from({ length: 101 }, (_, n) => n)
    const plain = randomBytes(lengths.reduce((sum, n) => sum + n, 0))
    let from = 0
    let at = 0
    const items: GcmItem[] = lengths.map((length) => {
      const item = { from, length, at }
      from += length
      at += 4 + length + 16
      return item
    })
    const out = Buffer.alloc(at)
    gcmSealBatch(raw, plain, items, out)
    items.forEach((item, index) => {
      // The nonce: 8 zero bytes, then the value's index, which is what the frame stores.
      expect(out.readUInt32BE(item.at)).toBe(index)
      const nonce = Buffer.concat([Buffer.alloc(8), out.subarray(item.at, item.at + 4)])
      const cipher = createCipheriv('aes-256-gcm', raw, nonce)
      const expected = Buffer.concat([cipher.update(plain.subarray(item.from, item.from + item.length)), cipher.final(), cipher.getAuthTag()])
      expect(out.subarray(item.at + 4, item.at + 4 + item.length + 16).equals(expected), `length ${item.length}`).toBe(true)
    })
  })
})

describe('sealed values', () => {
  it('round-trip: text, unicode, empty, long; frame versioned with the key id', () => {
    const texts = ['123-45-6789', 'Zoë Ünïcødé 🧪', '', 'x'.repeat(10_000), '2024-05-01']
    const frames = sealTexts(key, texts)
    for (const [index, frame] of frames.entries()) {
      expect(frame.startsWith(`fe1:${key.id}:`)).toBe(true)
      expect(frame).not.toContain(texts[index] || '\u0000')
      expect(openFrame(frame, [key])).toBe(texts[index])
      expect(decrypt(frame, KEY_HEX)).toBe(texts[index])
    }
  })

  it('opens with any standard AES-GCM: HKDF-SHA256 for the value key, then the nonce (8 zero bytes and the index), ciphertext and tag', () => {
    const [, frame] = sealTexts(key, ['first', 'standard'])
    const bytes = Buffer.from(frame.split(':')[2], 'base64')
    expect(bytes.length).toBe(16 + 4 + 'standard'.length + 16)
    const valueKey = Buffer.from(hkdfSync('sha256', key.bytes, bytes.subarray(0, 16), 'filedge fe1', 32))
    const decipher = createDecipheriv('aes-256-gcm', valueKey, Buffer.concat([Buffer.alloc(8), bytes.subarray(16, 20)]))
    decipher.setAuthTag(bytes.subarray(bytes.length - 16))
    expect(Buffer.concat([decipher.update(bytes.subarray(20, bytes.length - 16)), decipher.final()]).toString()).toBe('standard')
  })

  it('the same text sealed twice gives two different frames (fresh salt per batch, own nonce per value)', () => {
    const [a, b] = sealTexts(key, ['same', 'same'])
    const [c] = sealTexts(key, ['same'])
    expect(new Set([a, b, c]).size).toBe(3)
  })

  it('a wrong key fails loudly, naming key ids only', () => {
    const [frame] = sealTexts(key, ['secret'])
    const other = 'b2'.repeat(32)
    expect(() => decrypt(frame, other)).toThrow(expect.objectContaining({ code: 'DECRYPT_FAILED' }))
    try {
      decrypt(frame, other)
    } catch (error) {
      expect((error as Error).message).toContain(key.id)
      expect((error as Error).message).not.toContain(other)
      expect((error as Error).message).not.toContain(KEY_HEX)
    }
    // Several keys (rotation): the frame's id picks the right one.
    expect(decrypt(frame, [other, KEY_HEX])).toBe('secret')
  })

  it('a changed byte fails the tag, even with the right key id', () => {
    const [frame] = sealTexts(key, ['secret value'])
    const bytes = Buffer.from(frame.split(':')[2], 'base64')
    bytes[30] ^= 1
    const tampered = `fe1:${key.id}:${bytes.toString('base64')}`
    expect(() => decrypt(tampered, KEY_HEX)).toThrow(expect.objectContaining({ code: 'DECRYPT_FAILED', message: expect.stringContaining('does not authenticate') }))
    expect(() => decrypt('123-45-6789', KEY_HEX)).toThrow(expect.objectContaining({ code: 'DECRYPT_FAILED', message: expect.stringContaining('not an encrypted value') }))
  })

  it('NULL stays null', () => {
    expect(decrypt(null, KEY_HEX)).toBeNull()
  })
})

describe('keys', () => {
  it('accepts 32 bytes as hex or base64 (padded, unpadded, URL-safe), with the same id', () => {
    const bytes = Buffer.from(KEY_HEX, 'hex')
    for (const text of [KEY_HEX, KEY_HEX.toUpperCase(), bytes.toString('base64'), bytes.toString('base64').replace(/=$/, ''), bytes.toString('base64url'), ` ${KEY_HEX}\n`]) {
      const parsed = parseKey(text)
      expect('id' in parsed && parsed.id, text).toBe(key.id)
    }
  })

  it('refuses anything else without echoing it', () => {
    for (const text of ['', 'short', 'a1'.repeat(16), 'a1'.repeat(33), 'zz'.repeat(32), Buffer.alloc(31).toString('base64')]) {
      const parsed = parseKey(text)
      expect('problem' in parsed, text).toBe(true)
      if ('problem' in parsed && text.length > 0) expect(parsed.problem).not.toContain(text)
    }
  })
})

describe('pseudonyms', () => {
  it('are HMAC-SHA256 in hex: equal values join, other keys differ', () => {
    expect(pseudonym('ann@example.com', KEY_HEX)).toBe(createHmac('sha256', key.bytes).update('ann@example.com').digest('hex'))
    expect(pseudonym('ann@example.com', KEY_HEX)).toBe(pseudonym('ann@example.com', key.bytes))
    expect(pseudonym('ann@example.com', 'b2'.repeat(32))).not.toBe(pseudonym('ann@example.com', KEY_HEX))
    expect(pseudonym(null, KEY_HEX)).toBeNull()
    // What a load stores is the same value.
    expect(unpackValues(pseudonymBytes({ id: 0, kind: 'hash', key: key.bytes, keyId: key.id, ...packTexts(['ann@example.com', 'Zoë']) }))).toEqual([pseudonym('ann@example.com', KEY_HEX), pseudonym('Zoë', KEY_HEX)])
  })
})
