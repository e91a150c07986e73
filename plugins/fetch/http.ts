import { FiledgeError, sleep } from '../../core/index.js'
import type { Answer } from './pagination.js'

/**
 * GET with what an API client needs and `fetch` alone does not do: a timeout
 * per request (the body included), retries with exponential backoff and full
 * jitter on network errors, timeouts, 5xx and 408, a 429's Retry-After
 * honoured (seconds or an HTTP date), a bound on the whole fetch's time, at
 * most so many requests a second, and errors that name the page and its URL
 * without secrets. Node's global `fetch` (undici) does the HTTP: no
 * dependency to install.
 *
 * Redirects are followed by hand, and only within the origin: `fetch` keeps
 * custom headers (an API key) on a redirect to another host.
 */

export interface HttpSettings {
  readonly headers: readonly (readonly [string, string])[]
  readonly timeoutMs: number
  readonly attempts: number
  readonly minDelayMs: number
  readonly maxDelayMs: number
  readonly minIntervalMs: number
}

export interface Request {
  readonly url: URL
  /** `GET https://api…/orders?cursor=c2&api_key=*** (page 3)`: what every message about this request starts with. */
  readonly label: string
  /** When the whole fetch must be over, in ms since the epoch (`maxTime`). */
  readonly deadline: number
  readonly signal: AbortSignal
}

const MAX_REDIRECTS = 5
const SNIPPET = 200

export function httpError(label: string, message: string, cause?: unknown): FiledgeError {
  return new FiledgeError('PLUGIN_ERROR', `${label}: ${message}`, { plugin: 'fetch', cause })
}

/** The start of a body for a message: one line, cut. */
function snippet(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim()
  return line === '' ? '' : `: ${JSON.stringify(line.length > SNIPPET ? `${line.slice(0, SNIPPET)}…` : line)}`
}

/** Retry-After in ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** What a failed try means: try again (after a backoff, or after the server's wait), or stop now. */
type Failure = { readonly retry: true; readonly reason: string; readonly waitMs?: number; readonly counts: boolean } | { readonly retry: false; readonly error: FiledgeError }

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause
  if (cause?.code !== undefined) return `${cause.code}${cause.message !== undefined && !cause.message.includes(cause.code) ? ` (${cause.message})` : ''}`
  return error instanceof Error ? (cause?.message ?? error.message) : String(error)
}

export function createHttp(settings: HttpSettings) {
  let nextStart = 0
  const headers = new Headers({ accept: 'application/json' })
  for (const [key, value] of settings.headers) headers.set(key, value)

  /** Waits for the rate limit's next slot. */
  const slot = async (signal: AbortSignal) => {
    const now = Date.now()
    const start = Math.max(now, nextStart)
    nextStart = start + settings.minIntervalMs
    if (start > now) await sleep(start - now, signal)
  }

  const backoff = (attempt: number) => Math.random() * Math.min(settings.maxDelayMs, settings.minDelayMs * 2 ** (attempt - 1))

  /** One try, redirects within the origin included. */
  async function once(request: Request): Promise<Answer | Failure> {
    const { label, deadline } = request
    let url = request.url
    for (let hop = 0; ; hop++) {
      await slot(request.signal)
      const left = deadline - Date.now()
      if (left <= 0) return { retry: false, error: httpError(label, 'maxTime ran out before the page was fetched') }
      const timeout = AbortSignal.timeout(Math.min(settings.timeoutMs, left))
      const signal = AbortSignal.any([request.signal, timeout])
      let response: Response
      let text: string
      try {
        response = await fetch(url, { headers, redirect: 'manual', signal })
        text = await response.text()
      } catch (error) {
        if (request.signal.aborted) throw request.signal.reason ?? error
        if (timeout.aborted) return { retry: true, reason: `no answer within ${Math.min(settings.timeoutMs, left)} ms`, counts: true }
        return { retry: true, reason: `network error: ${describeNetworkError(error)}`, counts: true }
      }
      const { status } = response
      if (status >= 200 && status < 300) return { url, headers: response.headers, text }
      if (status >= 300 && status < 400 && response.headers.has('location')) {
        const location = new URL(response.headers.get('location')!, url)
        if (location.origin !== url.origin) return { retry: false, error: httpError(label, `${status} redirect to another origin (${location.origin}); not followed, its requests would carry the headers meant for ${url.origin}`) }
        if (hop >= MAX_REDIRECTS) return { retry: false, error: httpError(label, `more than ${MAX_REDIRECTS} redirects`) }
        url = location
        continue
      }
      const said = `${status} ${response.statusText}`.trim()
      if (status === 401 || status === 403) {
        return { retry: false, error: httpError(label, `${said}: the API refused the credentials (check headers, bearer or the query's env() values); not retried${snippet(text)}`) }
      }
      if (status === 429) return { retry: true, reason: `${said}${snippet(text)}`, waitMs: retryAfterMs(response.headers.get('retry-after')), counts: false }
      if (status >= 500 || status === 408) return { retry: true, reason: `${said}${snippet(text)}`, counts: true }
      return { retry: false, error: httpError(label, `${said}; not retried${snippet(text)}`) }
    }
  }

  return {
    /** The page's answer, or a FiledgeError naming the page; aborting `signal` throws its reason. */
    async get(request: Request): Promise<Answer> {
      let attempt = 0
      for (;;) {
        const outcome = await once(request)
        if (!('retry' in outcome)) return outcome
        if (!outcome.retry) throw outcome.error
        if (outcome.counts) attempt++
        if (attempt >= settings.attempts) throw httpError(request.label, `${outcome.reason} (gave up after ${attempt} ${attempt === 1 ? 'try' : 'tries'})`)
        const waitMs = outcome.waitMs ?? backoff(Math.max(1, attempt))
        const left = request.deadline - Date.now()
        if (waitMs >= left) {
          const why = outcome.waitMs === undefined ? 'the next try' : `the ${Math.ceil(waitMs / 1000)} s the server asked to wait (Retry-After)`
          throw httpError(request.label, `${outcome.reason}; ${why} would run past maxTime (${Math.max(0, Math.round(left / 1000))} s left)`)
        }
        await sleep(waitMs, request.signal)
        if (request.signal.aborted) throw request.signal.reason
      }
    },
  }
}
