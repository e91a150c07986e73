/**
 * Values from the environment. `env('DATABASE_URL')` in a config is a
 * reference, resolved when the value is needed; every resolved value is
 * remembered so `redact` can blank it out of anything filedge prints or stores.
 */

const ENV_REF = Symbol.for('filedge.env')

export interface EnvRef {
  readonly [ENV_REF]: true
  readonly name: string
  readonly fallback?: string
}

export type MaybeEnv<T = string> = T | EnvRef

/** Reference an environment variable from a config: `url: env('DATABASE_URL')`. */
export function env(name: string, fallback?: string): EnvRef {
  return Object.freeze({ [ENV_REF]: true as const, name, fallback, toString: () => `env(${name})`, toJSON: () => `env(${name})` })
}

export function isEnvRef(value: unknown): value is EnvRef {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[ENV_REF] === true
}

const secrets = new Set<string>()

/** Remember a value that must never be printed. Short values are not tracked: blanking "1" everywhere would garble output. */
export function registerSecret(value: string): void {
  if (value.length >= 4) secrets.add(value)
}

/** Resolves an `env()` reference (or passes a plain value through). Returns undefined for an unset variable without fallback. */
export function readEnv(value: MaybeEnv | undefined): string | undefined {
  if (!isEnvRef(value)) return value
  const raw = process.env[value.name] ?? value.fallback
  if (raw !== undefined) registerSecret(raw)
  return raw
}

/**
 * Blanks every secret filedge can recognise in `text`: the password of each
 * URL (`postgres://user:***@host/db`), `password=` and `sslpassword=` in libpq
 * keyword/value strings (`host=db password='***'`), secret-looking query
 * parameters (`?token=***`), and every value read through `env()`. Applied to
 * every message filedge prints or stores, so it must stay cheap on text with
 * no secret in it: both parsers only look where `://` or a keyword followed
 * by `=` occurs.
 */
export function redact(text: string): string {
  let out = redactKeywords(redactUrlPasswords(text))
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('***')
  }
  return out
}

/** ASCII whitespace: where a URL or an unquoted value ends. A char-code test; a regex per character was most of the cost. */
function isSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13)
}

function isSchemeChar(code: number): boolean {
  return (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || (code >= 48 && code <= 57) || code === 43 || code === 45 || code === 46
}

/**
 * Passwords in URLs, found by parsing the text around each `://` rather than
 * by a pattern for the password: a password may hold `#`, `@`, `/`, `:` or
 * `%`-escapes (and people paste them unencoded), which a pattern of "the
 * characters a password has" always misses. WHATWG URL parsing cannot be
 * trusted with them either: `postgres://u:12/ss@host/db` parses as host `u`,
 * port 12 and no password at all. So the rule is libpq's and the URL
 * standard's reading of the authority, made tolerant: the user info runs to
 * the last `@` before the query (`?`) or the end of the URL, the user name to
 * the first `:` (a user name has no `/` or `[`, which tells a path,
 * `https://host/a:b@c`, or an IPv6 host from user info), and the password is
 * everything in between.
 *
 * In free text a URL ends at whitespace, or where the next `scheme://` starts
 * (which also keeps the scan linear). A password with a space in it (never
 * valid unencoded in a URL, but written so) continues to the next `@` on the
 * same line, unless what follows the `:` is a port.
 */
function redactUrlPasswords(text: string): string {
  const out: string[] = []
  let copied = 0
  for (let marker = text.indexOf('://'); marker !== -1; marker = text.indexOf('://', marker + 3)) {
    let schemeStart = marker
    while (schemeStart > 0 && isSchemeChar(text.charCodeAt(schemeStart - 1))) schemeStart--
    const start = marker + 3
    if (schemeStart === marker || !/[A-Za-z]/.test(text[schemeStart]) || start < copied) continue
    // One pass over the user info and host: the first `:` and the last `@` before the URL or its query ends.
    let end = start
    let colon = -1
    let at = -1
    let query = false
    for (; end < text.length; end++) {
      const code = text.charCodeAt(end)
      if (isSpace(code)) break
      if (code === 63 /* ? */) {
        query = true
        break
      }
      if (code === 64 /* @ */) at = end
      else if (code === 58 /* : */) {
        if (text.startsWith('//', end + 1)) break
        if (colon === -1) colon = end
      }
    }
    if (colon === -1 || (at !== -1 && colon > at) || /[/[]/.test(text.slice(start, colon))) continue
    const userInfoEnd = at !== -1 ? at : query ? -1 : spacedPasswordEnd(text, colon, end)
    if (userInfoEnd === -1) continue
    out.push(text.slice(copied, colon + 1), '***')
    copied = userInfoEnd
    marker = userInfoEnd
  }
  if (copied === 0) return text
  out.push(text.slice(copied))
  return out.join('')
}

/** How far a password with spaces is looked for: no password is longer, and the look-ahead stays linear. */
const MAX_SPACED_PASSWORD = 256

/** Where the user info of `user:pass word@host` ends when the URL stopped at a space: the next `@` on the line, or -1. */
function spacedPasswordEnd(text: string, colon: number, urlEnd: number): number {
  if (text[urlEnd] !== ' ' || /^\d*(\/|$)/.test(text.slice(colon + 1, urlEnd))) return -1
  const limit = Math.min(text.length, colon + MAX_SPACED_PASSWORD)
  for (let at = urlEnd; at < limit; at++) {
    const char = text[at]
    if (char === '@') return at
    // Another URL, or the end of the line, before any `@`: it was not a password.
    if (char === '\n' || (char === ':' && text.startsWith('//', at + 1))) return -1
  }
  return -1
}

const KEYWORD = /(?:ssl)?password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key/gi
const QUERY_SEPARATORS = new Set(['?', '&'])
const KEYWORD_BOUNDARIES = new Set(['?', '&', ';', ',', '(', '{', '"', "'", '_', '-', '.'])

/**
 * `keyword=value` secrets: libpq keyword/value strings (`host=db
 * password='a b' sslpassword=x`) and query parameters (`?token=…&…`). The
 * value is read as libpq reads it: a single-quoted value runs to the closing
 * quote (`\'` and `\\` escaped inside), an unquoted one to whitespace, and in
 * a query (after `?` or `&`) to the next `&` too. It is rebuilt as `***`,
 * quoted if it was.
 */
function redactKeywords(text: string): string {
  const out: string[] = []
  let copied = 0
  KEYWORD.lastIndex = 0
  for (let match = KEYWORD.exec(text); match !== null; match = KEYWORD.exec(text)) {
    const before = match.index === 0 ? ' ' : text[match.index - 1]
    if (!isSpace(before.charCodeAt(0)) && !KEYWORD_BOUNDARIES.has(before)) continue
    let equals = match.index + match[0].length
    while (text[equals] === ' ') equals++
    if (text[equals] !== '=') continue
    let valueStart = equals + 1
    while (text[valueStart] === ' ') valueStart++
    const quote = text[valueStart] === "'" ? "'" : undefined
    const valueEnd = quote === undefined ? unquotedEnd(text, valueStart, QUERY_SEPARATORS.has(before)) : quotedEnd(text, valueStart)
    if (valueEnd === valueStart) continue
    out.push(text.slice(copied, valueStart), quote === undefined ? '***' : "'***'")
    copied = valueEnd
    KEYWORD.lastIndex = valueEnd
  }
  if (copied === 0) return text
  out.push(text.slice(copied))
  return out.join('')
}

function unquotedEnd(text: string, from: number, inQuery: boolean): number {
  let end = from
  for (; end < text.length; end++) {
    const code = text.charCodeAt(end)
    // Not at `#`: a fragment after a secret is rare, a raw `#` inside one is not.
    if (isSpace(code) || (inQuery && code === 38) /* & */) break
  }
  return end
}

/** After the closing quote; an unclosed value runs to the end of the line. */
function quotedEnd(text: string, open: number): number {
  for (let at = open + 1; at < text.length; at++) {
    if (text[at] === '\\') at++
    else if (text[at] === "'") return at + 1
    else if (text[at] === '\n') return at
  }
  return text.length
}
