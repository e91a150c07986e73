import { NumberText } from '../rows.js'

/**
 * JSON text to values, without losing what JSON.parse loses: JSON.parse
 * turns `12345678901234567890` into 12345678901234567000, `3.0` into 3 and
 * `0.1234567890123456789` into 0.12345678901234568 — silently, and coercion
 * must see the number as written to refuse `3.0` for an integer or keep a
 * decimal exact.
 *
 * JSON.parse stays the parser (it is native and validates). Only text that
 * holds a number JSON.parse could misrepresent — 16+ digits, an exponent,
 * a fraction of zeros, or six leading fraction zeros (which String() would
 * print in exponent form) — is parsed a second time here, keeping such
 * numbers as NumberText. The regular expression also fires on strings that
 * look like that (a 16-digit id in quotes): they only take the slower path.
 */
const RISKY = /[\d.]{16}|\d[eE]|\d\.0+(?![\d])|\.0{6}/

export function parseJson(text: string): unknown {
  const value = JSON.parse(text)
  return RISKY.test(text) ? parseExact(text) : value
}

/** A number whose JS value prints back as written is a plain number; anything else keeps its text. */
function exactNumber(text: string): number | NumberText {
  const value = Number(text)
  return String(value) === text ? value : new NumberText(text)
}

/** Second pass over text JSON.parse has already accepted, so it can trust the syntax. */
function parseExact(text: string): unknown {
  let i = 0
  const skipSpace = () => {
    for (;;) {
      const c = text.charCodeAt(i)
      if (c === 32 || c === 9 || c === 10 || c === 13) i++
      else return
    }
  }
  const string = (): string => {
    const start = i++
    for (;;) {
      const c = text.charCodeAt(i)
      if (c === 92) i += 2
      else if (c === 34) break
      else i++
    }
    i++
    return JSON.parse(text.slice(start, i)) as string
  }
  const value = (): unknown => {
    skipSpace()
    const c = text[i]
    if (c === '{') {
      i++
      const object: Record<string, unknown> = {}
      skipSpace()
      if (text[i] === '}') {
        i++
        return object
      }
      for (;;) {
        skipSpace()
        const key = string()
        skipSpace()
        i++
        // defineProperty: `"__proto__"` is data in JSON, never the prototype.
        Object.defineProperty(object, key, { value: value(), enumerable: true, writable: true, configurable: true })
        skipSpace()
        if (text[i++] === '}') return object
      }
    }
    if (c === '[') {
      i++
      const array: unknown[] = []
      skipSpace()
      if (text[i] === ']') {
        i++
        return array
      }
      for (;;) {
        array.push(value())
        skipSpace()
        if (text[i++] === ']') return array
      }
    }
    if (c === '"') return string()
    if (c === 't') return (i += 4), true
    if (c === 'f') return (i += 5), false
    if (c === 'n') return (i += 4), null
    const start = i
    while (i < text.length && '+-0123456789.eE'.includes(text[i])) i++
    return exactNumber(text.slice(start, i))
  }
  return value()
}

/**
 * Canonical JSON text for a value from `parseJson`: JSON.stringify, with any
 * NumberText written as its digits (JSON.rawJSON does this in newer engines;
 * Node 20 has no equivalent).
 */
export function stringifyJson(value: unknown): string {
  let found = false
  const mark = `\u0000${Math.random().toString(36).slice(2)}:`
  const text = JSON.stringify(value, (_key, item: unknown) => {
    if (item instanceof NumberText) {
      found = true
      return `${mark}${item.text}`
    }
    return item
  })
  if (!found) return text
  const escaped = JSON.stringify(mark).slice(1, -1).replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')
  return text.replace(new RegExp(`"${escaped}([^"]*)"`, 'g'), '$1')
}
