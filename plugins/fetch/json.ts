/**
 * Reading an API's answer without re-encoding it. Records are written to the
 * promoted file as the API sent them, only without the whitespace between
 * tokens: JSON.parse and JSON.stringify would turn `12345678901234567890`
 * into 12345678901234567000 and `3.0` into 3 (an id or an amount silently
 * changed in an audit trail), and would make a file's bytes depend on this
 * code's encoder rather than on the API.
 *
 * The text is always validated by JSON.parse first (native, and it says
 * where the syntax breaks); the scanner here then trusts the syntax and only
 * finds where values start and end.
 */

export type Located =
  | { readonly kind: 'array'; readonly elements: readonly string[] }
  | { readonly kind: 'value'; readonly raw: string; readonly type: 'object' | 'string' | 'number' | 'boolean' | 'null' }

const SPACE = new Set([32, 9, 10, 13])

function skipSpace(text: string, i: number): number {
  while (SPACE.has(text.charCodeAt(i))) i++
  return i
}

/** The index after the string that opens at `i` (a `"`). */
function endOfString(text: string, i: number): number {
  for (i++; ; i++) {
    const c = text.charCodeAt(i)
    if (c === 92) i++
    else if (c === 34) return i + 1
  }
}

/** The index after the value that starts at `i` (no leading space). */
function endOfValue(text: string, i: number): number {
  const c = text[i]
  if (c === '"') return endOfString(text, i)
  if (c === '{' || c === '[') {
    let depth = 0
    for (; ; i++) {
      const d = text[i]
      if (d === '"') i = endOfString(text, i) - 1
      else if (d === '{' || d === '[') depth++
      else if (d === '}' || d === ']') {
        depth--
        if (depth === 0) return i + 1
      }
    }
  }
  // A number, true, false or null: up to the next delimiter.
  while (i < text.length && !SPACE.has(text.charCodeAt(i)) && !',]}'.includes(text[i])) i++
  return i
}

/** Calls `each(start, end)` for every element of the array whose `[` is at `i`; returns the index after its `]`. */
function forEachElement(text: string, i: number, each: (start: number, end: number) => void): number {
  i = skipSpace(text, i + 1)
  if (text[i] === ']') return i + 1
  for (;;) {
    const end = endOfValue(text, i)
    each(i, end)
    i = skipSpace(text, end)
    if (text[i] === ']') return i + 1
    i = skipSpace(text, i + 1)
  }
}

/** The start of the value of `key` in the object whose `{` is at `i`, or -1. */
function member(text: string, i: number, key: string): number {
  i = skipSpace(text, i + 1)
  if (text[i] === '}') return -1
  for (;;) {
    const keyEnd = endOfString(text, i)
    const name = JSON.parse(text.slice(i, keyEnd)) as string
    const valueStart = skipSpace(text, skipSpace(text, keyEnd) + 1)
    if (name === key) return valueStart
    i = skipSpace(text, endOfValue(text, valueStart))
    if (text[i] === '}') return -1
    i = skipSpace(text, i + 1)
  }
}

/** The value's text without the whitespace between its tokens (strings kept byte for byte, escapes included). */
export function compact(text: string, start = 0, end = text.length): string {
  let out = ''
  let copied = start
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i)
    if (c === 34) i = endOfString(text, i) - 1
    else if (SPACE.has(c)) {
      out += text.slice(copied, i)
      copied = i + 1
    }
  }
  return out + text.slice(copied, end)
}

function typeOf(text: string, i: number): Exclude<Located, { kind: 'array' }>['type'] {
  const c = text[i]
  return c === '{' ? 'object' : c === '"' ? 'string' : c === 't' || c === 'f' ? 'boolean' : c === 'n' ? 'null' : 'number'
}

/**
 * What is at `path` in valid JSON `text`: an array's elements (each compacted)
 * or another value's compacted text; undefined when the path matches
 * nothing. A path part that is a whole number indexes an array.
 */
export function locate(text: string, path: readonly string[]): Located | undefined {
  let i = skipSpace(text, 0)
  for (const part of path) {
    if (text[i] === '{') i = member(text, i, part)
    else if (text[i] === '[' && /^\d+$/.test(part)) {
      let found = -1
      let index = 0
      forEachElement(text, i, (start) => {
        if (index++ === Number(part)) found = start
      })
      i = found
    } else i = -1
    if (i === -1) return undefined
  }
  if (text[i] === '[') {
    const elements: string[] = []
    forEachElement(text, i, (start, end) => elements.push(compact(text, start, end)))
    return { kind: 'array', elements }
  }
  return { kind: 'value', raw: compact(text, i, endOfValue(text, i)), type: typeOf(text, i) }
}
