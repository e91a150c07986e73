import { FiledgeError, isEnvRef, readEnv, toMs, type Duration, type MaybeEnv } from '../../core/index.js'

/** How the API says where the next page is. */
export type Pagination =
  /** The next page's cursor is a field of the answer (`field`, a path such as `meta.next_cursor`), sent back as the query parameter `param`. */
  | { readonly type: 'cursor'; readonly param: string; readonly field: string }
  /** The answer's `Link` header names the next page (`rel="next"`), as GitHub's does. */
  | { readonly type: 'link' }
  /** Pages are numbered: `param` (default `page`) from `start` (default 1). */
  | { readonly type: 'page'; readonly param?: string; readonly start?: number }
  /** Records are numbered: `param` (default `offset`) is how many to skip. */
  | { readonly type: 'offset'; readonly param?: string }

export interface FetchRetry {
  /** Tries per page for a network error, a timeout or a 5xx answer (408 too). Default 5. A 429 does not count: it waits as told, within `maxTime`. */
  attempts?: number
  /** The backoff before the second try; it doubles each try, up to `maxDelay`, and each wait is drawn at random below it (full jitter). Default `'250ms'`. */
  minDelay?: Duration
  /** Default `'30s'`. */
  maxDelay?: Duration
}

export interface FetchOptions {
  /**
   * The first page: `https://api.example.com/v1/orders`. Its query
   * parameters are sent as they are; a secret goes in `query` or `headers`
   * with `env()`, never here (a URL with a password is refused).
   */
  url: string
  /** Query parameters of every request. Values given with `env('NAME')` are secrets: never written to a manifest, the ledger or a message. */
  query?: Record<string, MaybeEnv | number | boolean>
  /** Headers of every request, `{ 'x-api-key': env('PARTNER_KEY') }`. Never written anywhere. */
  headers?: Record<string, MaybeEnv>
  /** Sent as `Authorization: Bearer <token>`: `bearer: env('GITHUB_TOKEN')`. */
  bearer?: MaybeEnv
  pagination: Pagination
  /**
   * Where the records are in each answer: a path of field names (`data`,
   * `data.items`, `$.results`; `$` when the answer is the array itself).
   * Each record must be a JSON object; it is written as sent, number digits
   * and key order included.
   */
  records: string
  /** Records per page, sent as `pageSizeParam`. Page and offset pagination also end on a page shorter than this. */
  pageSize?: number
  /** The query parameter that carries `pageSize`. Default `limit`. */
  pageSizeParam?: string
  /** Pages per promoted file: the cursor advances once per file. Default 20. */
  pagesPerFile?: number
  /** Pages one fetch reads at most; the next fetch goes on from there. Default: until the API has no next page. */
  maxPages?: number
  /** At most `requests` requests started per `per`, e.g. `{ requests: 5, per: '1s' }`. */
  rateLimit?: { requests: number; per: Duration }
  /** How long one request may take, body included. Default `'30s'`. */
  timeout?: Duration
  retry?: FetchRetry
  /** How long one fetch may take in all, retries and waits included; past it the fetch fails and promotes nothing more. Default `'15m'`. */
  maxTime?: Duration
  /** `filedge --watch` fetches again this often (`'5m'`). Default: only when the pipeline is listed (each run, and when a watcher starts). */
  every?: Duration
  /** The source's id: its cursor and lease in the ledger, its folder. Default: the pipeline's name. */
  name?: string
  /** Where promoted files and their manifests go, relative to the project root. Default `.filedge/fetch/<name>`. */
  dir?: string
  /** Write `.ndjson.gz` (default) or plain `.ndjson` files. */
  gzip?: boolean
}

/** The options, checked and with their defaults; secrets still as references (read at connect). */
export interface Settings {
  readonly url: URL
  readonly query: readonly (readonly [string, MaybeEnv])[]
  /** Names of query parameters whose values are secrets. */
  readonly secretParams: ReadonlySet<string>
  readonly headers: readonly (readonly [string, MaybeEnv])[]
  readonly bearer?: MaybeEnv
  readonly pagination: CheckedPagination
  readonly records: readonly string[]
  readonly recordsText: string
  readonly pageSize?: number
  readonly pageSizeParam: string
  readonly pagesPerFile: number
  readonly maxPages?: number
  readonly minIntervalMs: number
  readonly timeoutMs: number
  readonly attempts: number
  readonly minDelayMs: number
  readonly maxDelayMs: number
  readonly maxTimeMs: number
  readonly everyMs?: number
  readonly name?: string
  readonly dir?: string
  readonly gzip: boolean
}

export type CheckedPagination =
  | { readonly type: 'cursor'; readonly param: string; readonly field: readonly string[]; readonly fieldText: string }
  | { readonly type: 'link' }
  | { readonly type: 'page'; readonly param: string; readonly start: number }
  | { readonly type: 'offset'; readonly param: string }

const OPTION_NAMES = new Set([
  'url',
  'query',
  'headers',
  'bearer',
  'pagination',
  'records',
  'pageSize',
  'pageSizeParam',
  'pagesPerFile',
  'maxPages',
  'rateLimit',
  'timeout',
  'retry',
  'maxTime',
  'every',
  'name',
  'dir',
  'gzip',
])

function invalid(message: string): FiledgeError {
  return new FiledgeError('CONFIG_INVALID', `fetch.${message}`, { plugin: 'fetch' })
}

function shown(value: unknown): string {
  return (isEnvRef(value) ? String(value) : JSON.stringify(value)) ?? String(value)
}

function duration(key: string, value: Duration | undefined, fallback: Duration): number {
  try {
    const ms = toMs(value ?? fallback)
    if (!(ms > 0)) throw new Error('not positive')
    return ms
  } catch {
    throw invalid(`${key}: expected a duration such as '30s' or '500ms'; got ${shown(value)}`)
  }
}

function positive(key: string, value: unknown, allowZero = false): number | undefined {
  if (value === undefined) return undefined
  if (!Number.isSafeInteger(value) || (value as number) < (allowZero ? 0 : 1)) throw invalid(`${key}: expected a whole number${allowZero ? '' : ' ≥ 1'}; got ${shown(value)}`)
  return value as number
}

function name(key: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${key}: expected a non-empty name; got ${shown(value)}`)
  return value
}

/**
 * A records or field path: `data.items` → ['data', 'items']; `$` and `$.`
 * (the answer itself) → []. Names only: a field whose name holds a dot
 * cannot be named, which no API we know needs.
 */
export function parsePath(key: string, text: unknown): string[] {
  if (typeof text !== 'string') throw invalid(`${key}: expected a path such as "data" or "data.items"; got ${shown(text)}`)
  const trimmed = text.trim().replace(/^\$\.?/, '')
  if (trimmed === '') return []
  const parts = trimmed.split('.')
  if (parts.some((part) => part === '')) throw invalid(`${key}: expected a path such as "data" or "data.items"; got ${shown(text)}`)
  return parts
}

function checkPagination(value: unknown): CheckedPagination {
  const fail = () => invalid(`pagination: expected { type: 'cursor', param, field }, { type: 'link' }, { type: 'page', param?, start? } or { type: 'offset', param? }; got ${shown(value)}`)
  if (typeof value !== 'object' || value === null) throw fail()
  const options = value as Record<string, unknown>
  const allowed: Record<string, string[]> = { cursor: ['type', 'param', 'field'], link: ['type'], page: ['type', 'param', 'start'], offset: ['type', 'param'] }
  const keys = allowed[options.type as string]
  if (keys === undefined) throw fail()
  for (const key of Object.keys(options)) if (!keys.includes(key)) throw invalid(`pagination.${key}: unknown option for ${options.type} pagination (expected ${keys.join(', ')})`)
  switch (options.type) {
    case 'cursor': {
      const field = parsePath('pagination.field', options.field)
      if (field.length === 0) throw invalid('pagination.field: expected the path of the next cursor in each answer, such as "next_cursor" or "meta.next"')
      return { type: 'cursor', param: name('pagination.param', options.param), field, fieldText: options.field as string }
    }
    case 'link':
      return { type: 'link' }
    case 'page':
      return { type: 'page', param: options.param === undefined ? 'page' : name('pagination.param', options.param), start: positive('pagination.start', options.start, true) ?? 1 }
    default:
      return { type: 'offset', param: options.param === undefined ? 'offset' : name('pagination.param', options.param) }
  }
}

function checkValues(key: string, value: unknown, allowScalars: boolean): [string, MaybeEnv][] {
  if (value === undefined) return []
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${key}: expected an object of names to values`)
  return Object.entries(value).map(([entry, v]) => {
    if (isEnvRef(v) || typeof v === 'string') return [entry, v]
    if (allowScalars && (typeof v === 'number' || typeof v === 'boolean')) return [entry, String(v)]
    throw invalid(`${key}.${entry}: expected a string${allowScalars ? ', a number' : ''} or env('NAME'); got ${shown(v)}`)
  })
}

/** Every option checked when the config loads, so a typo fails before any request. */
export function checkOptions(options: FetchOptions): Settings {
  if (typeof options !== 'object' || options === null) throw invalid(`: expected options ({ url, pagination, records }); got ${shown(options)}`)
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw invalid(`${key}: unknown option (expected one of ${[...OPTION_NAMES].join(', ')})`)
  }
  if (typeof options.url !== 'string' || !URL.canParse(options.url) || !/^https?:$/.test(new URL(options.url).protocol)) {
    throw invalid(`url: expected an http(s) URL such as "https://api.example.com/v1/orders"; got ${shown(options.url)}`)
  }
  const url = new URL(options.url)
  if (url.username !== '' || url.password !== '') throw invalid("url: credentials in the URL would be written to manifests and messages; send them with headers or bearer and env('NAME')")
  url.hash = ''
  const query = checkValues('query', options.query, true)
  const headers = checkValues('headers', options.headers, false)
  if (options.bearer !== undefined) {
    if (!isEnvRef(options.bearer) && typeof options.bearer !== 'string') throw invalid(`bearer: expected env('NAME') or a string; got ${shown(options.bearer)}`)
    if (headers.some(([key]) => key.toLowerCase() === 'authorization')) throw invalid('bearer: headers already set authorization; use one or the other')
  }
  const records = parsePath('records', options.records)
  const pagination = checkPagination(options.pagination)
  const pageSize = positive('pageSize', options.pageSize)
  const pageSizeParam = options.pageSizeParam === undefined ? 'limit' : name('pageSizeParam', options.pageSizeParam)
  // Where a new record lands depends on how full the last page was: numbered pages must know when one is full.
  if (pagination.type === 'page' && pageSize === undefined) throw invalid("pageSize: page pagination needs the API's page size, to tell the last page (where new records arrive) from a full one")
  const paramNames = [...query.map(([key]) => key), ...('param' in pagination ? [pagination.param] : []), ...(pageSize === undefined ? [] : [pageSizeParam])]
  const repeated = paramNames.find((param, index) => paramNames.indexOf(param) !== index)
  if (repeated !== undefined) throw invalid(`query: the parameter "${repeated}" is set twice (by query, pagination.param or pageSizeParam)`)
  let minIntervalMs = 0
  if (options.rateLimit !== undefined) {
    const { requests, per } = options.rateLimit as { requests?: unknown; per?: Duration }
    const count = positive('rateLimit.requests', requests)
    if (count === undefined) throw invalid("rateLimit: expected { requests, per }, such as { requests: 5, per: '1s' }")
    minIntervalMs = duration('rateLimit.per', per, '1s') / count
  }
  const retry = (options.retry ?? {}) as FetchRetry
  if (typeof retry !== 'object' || retry === null) throw invalid('retry: expected { attempts?, minDelay?, maxDelay? }')
  for (const key of Object.keys(retry)) if (!['attempts', 'minDelay', 'maxDelay'].includes(key)) throw invalid(`retry.${key}: unknown option (expected attempts, minDelay, maxDelay)`)
  const minDelayMs = duration('retry.minDelay', retry.minDelay, '250ms')
  const maxDelayMs = duration('retry.maxDelay', retry.maxDelay, '30s')
  if (maxDelayMs < minDelayMs) throw invalid('retry.maxDelay: must not be shorter than retry.minDelay')
  if (options.gzip !== undefined && typeof options.gzip !== 'boolean') throw invalid(`gzip: expected true or false; got ${shown(options.gzip)}`)
  const sourceName = options.name === undefined ? undefined : name('name', options.name)
  if (options.dir !== undefined) name('dir', options.dir)
  return {
    url,
    query,
    secretParams: new Set(query.filter(([, value]) => isEnvRef(value)).map(([key]) => key)),
    headers,
    ...(options.bearer === undefined ? {} : { bearer: options.bearer }),
    pagination,
    records,
    recordsText: options.records,
    ...(pageSize === undefined ? {} : { pageSize }),
    pageSizeParam,
    pagesPerFile: positive('pagesPerFile', options.pagesPerFile) ?? 20,
    ...(options.maxPages === undefined ? {} : { maxPages: positive('maxPages', options.maxPages)! }),
    minIntervalMs,
    timeoutMs: duration('timeout', options.timeout, '30s'),
    attempts: positive('retry.attempts', retry.attempts) ?? 5,
    minDelayMs,
    maxDelayMs,
    maxTimeMs: duration('maxTime', options.maxTime, '15m'),
    ...(options.every === undefined ? {} : { everyMs: duration('every', options.every, '5m') }),
    ...(sourceName === undefined ? {} : { name: sourceName }),
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    gzip: options.gzip ?? true,
  }
}

/** Reads the env() references of query values and headers; an unset variable is a config error naming it (never a value). */
export function readSecrets(settings: Settings, where: string): { query: [string, string][]; headers: [string, string][]; secrets: string[] } {
  const secrets: string[] = []
  const read = (kind: string, [key, value]: readonly [string, MaybeEnv]): [string, string] => {
    const resolved = readEnv(value)
    if (resolved === undefined) throw new FiledgeError('CONFIG_INVALID', `${where}: environment variable ${isEnvRef(value) ? value.name : '?'} (${kind}) is not set`, { plugin: 'fetch' })
    if (isEnvRef(value)) secrets.push(resolved)
    return [key, resolved]
  }
  const headers = settings.headers.map((entry) => read(`header ${entry[0]}`, entry))
  if (settings.bearer !== undefined) headers.push(['authorization', `Bearer ${read('bearer', ['authorization', settings.bearer])[1]}`])
  return { query: settings.query.map((entry) => read(`query parameter ${entry[0]}`, entry)), headers, secrets }
}
