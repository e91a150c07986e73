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

const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@/?#\s]+)@/gi
const QUERY_SECRET = /([?&](?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key)=)[^&\s]+/gi

/** Blanks passwords in URLs, secret-looking query parameters, and every value read through `env()`. */
export function redact(text: string): string {
  let out = text.replace(URL_PASSWORD, '$1***@').replace(QUERY_SECRET, '$1***')
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('***')
  }
  return out
}
