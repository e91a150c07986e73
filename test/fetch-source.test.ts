import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { env, isFiledgeError, resolveConfig, type Destination, type LedgerStore, type LogEntry, type SourceEntry } from '../core/index.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import { fetch, type FetchOptions, type FetchSource } from '../plugins/fetch/index.js'
import { retryAfterMs } from '../plugins/fetch/http.js'
import { compact, locate } from '../plugins/fetch/json.js'
import { nextLink } from '../plugins/fetch/pagination.js'
import { makeRecords, startApi, type Api } from './helpers/paginated-api.js'

/**
 * The fetch source driven directly (no CLI), against a loopback API: crashes
 * at the points a process can die between promotion and the ledger, the
 * lease between two sources in one process, pagination by page and offset,
 * and HTTP behaviour that needs short timeouts. The CLI and SIGKILL tests
 * are in fetch.test.ts.
 */

const none: Destination = {
  name: 'none',
  capabilities: { transactions: true, writeModes: ['append'] },
  describe: () => 'nowhere',
  prepare: async () => {},
  write: async () => ({ rows: 0 }),
}

interface Project {
  readonly root: string
  readonly api: Api
  readonly logs: LogEntry[]
  readonly ledgers: LedgerStore[]
  ledger(file?: string): LedgerStore
  /** A connected source (a new object: as a new process would make). */
  source(options?: Partial<FetchOptions>, ledger?: LedgerStore, worker?: string): Promise<FetchSource>
  /** Every record in the promoted files, in file order. */
  records(): { id: string; n: number; [key: string]: unknown }[]
  dataFiles(): string[]
}

const projects: Project[] = []
const sources: FetchSource[] = []
afterEach(async () => {
  for (const source of sources.splice(0)) await source.close?.()
  for (const project of projects.splice(0)) {
    for (const ledger of project.ledgers) await ledger.close()
    await project.api.close()
    rmSync(project.root, { recursive: true, force: true })
  }
})

const cursorOptions = (api: Api): FetchOptions => ({
  url: `${api.origin}/cursor`,
  query: { api_key: env('FETCH_TEST_KEY') },
  bearer: env('FETCH_TEST_TOKEN'),
  pagination: { type: 'cursor', param: 'cursor', field: 'meta.next_cursor' },
  records: 'data',
  pageSize: 2,
  pagesPerFile: 1,
  retry: { minDelay: '5ms', maxDelay: '20ms' },
})

async function project(count = 5, options: (api: Api) => FetchOptions = cursorOptions): Promise<Project> {
  const api = await startApi(makeRecords(count))
  process.env.FETCH_TEST_KEY = api.key
  process.env.FETCH_TEST_TOKEN = api.token
  const root = mkdtempSync(path.join(os.tmpdir(), 'filedge-fetch-source-'))
  const logs: LogEntry[] = []
  const ledgers: LedgerStore[] = []
  const dir = path.join(root, '.filedge/fetch/orders')
  const p: Project = {
    root,
    api,
    logs,
    ledgers,
    ledger(file = '.filedge/ledger.db') {
      const ledger = openSqliteLedger(path.join(root, file))
      ledgers.push(ledger)
      return ledger
    },
    async source(overrides = {}, ledger = p.ledgers[0] ?? p.ledger(), worker = 'test-worker') {
      const source = fetch({ ...options(api), ...overrides })
      sources.push(source)
      const config = resolveConfig({ lease: { ttl: '2s' }, pipelines: [{ name: 'orders', source, destination: none, table: 'orders', columns: { id: 'string' } }] }, { cwd: root })
      const logger = { debug() {}, info: (message: string) => logs.push({ level: 'info', message }), warn: (message: string) => logs.push({ level: 'warn', message }), error() {} }
      await source.connect!({ config, logger, defaultInclude: [], pipelines: ['orders'], ledger, worker })
      return source
    },
    dataFiles: () => (existsSync(dir) ? readdirSync(dir).filter((name) => /\.ndjson(\.gz)?$/.test(name)).sort() : []),
    records: () =>
      p.dataFiles().flatMap((name) => {
        const bytes = readFileSync(path.join(dir, name))
        const text = name.endsWith('.gz') ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8')
        return text
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as { id: string; n: number })
      }),
  }
  projects.push(p)
  return p
}

const ids = (records: { id: string }[]) => records.map((record) => record.id)
const expected = (count: number) => makeRecords(count).map((record) => record.id)
const signal = () => new AbortController().signal

async function listAll(source: FetchSource): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = []
  for await (const entry of source.list({ signal: signal(), warn: () => {} })) entries.push(entry)
  return entries
}

/** The ledger with advanceCursor failing once, after promotion: a process dying between the two. */
function crashingOnAdvance(ledger: LedgerStore): LedgerStore {
  let crashed = false
  return new Proxy(ledger, {
    get(target, key, receiver) {
      if (key === 'advanceCursor' && !crashed) {
        return async () => {
          crashed = true
          throw new Error('the process died here')
        }
      }
      const value = Reflect.get(target, key, receiver) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

describe('crashes between promotion and the ledger', () => {
  it('a file promoted but not yet in the ledger: the next fetch moves the cursor past it instead of fetching its pages again', async () => {
    const p = await project(5)
    const crashing = await p.source({}, crashingOnAdvance(p.ledger()))
    const first = await crashing.fetchNow({ signal: signal() })
    expect(first.status).toBe('failed')
    expect(p.dataFiles()).toHaveLength(1)
    expect(await p.ledgers[0].cursorOf('orders')).toBeUndefined()

    const requestsBefore = p.api.requests.length
    const again = await p.source()
    const report = await again.fetchNow({ signal: signal() })
    expect(report.status).toBe('fetched')
    expect(p.logs.map((entry) => entry.message).join('\n')).toMatch(/00000001-[0-9a-f]{12}\.ndjson\.gz: promoted before the last fetch stopped; the cursor now moves past it/)
    // The first page was not asked for again: the fetch went on from the promoted file's end.
    expect(p.api.requests.slice(requestsBefore).map((request) => request.query.get('cursor'))).toEqual(['c2', 'c4'])
    expect(ids(p.records())).toEqual(expected(5))
    const events = await p.ledgers[0].cursorEvents('orders')
    expect(events.map((event) => [event.from, event.to, event.records])).toEqual([
      [null, '{"at":"c2","skip":0}', 2],
      ['{"at":"c2","skip":0}', '{"at":"c4","skip":0}', 2],
      ['{"at":"c4","skip":0}', '{"at":"c4","skip":1}', 1],
    ])
    expect(events[0].file).toBe(`.filedge/fetch/orders/${p.dataFiles()[0]}`)
  })

  it('a manifest whose data file a crash left in staging: finished from staging; one whose data is gone: removed, and its pages fetched again', async () => {
    const p = await project(4)
    const dir = path.join(p.root, '.filedge/fetch/orders')
    await (await p.source({}, crashingOnAdvance(p.ledger()))).fetchNow({ signal: signal() })
    const [name] = p.dataFiles()
    renameSync(path.join(dir, name), path.join(dir, '.staging', name))
    // A listing while another process holds the lease (so nothing is repaired) offers neither half.
    const held = (await p.ledgers[0].takeLease('fetch:orders', 'another process', 60_000))!
    const lister = await p.source()
    expect(await listAll(lister)).toEqual([])
    await p.ledgers[0].releaseLease('fetch:orders', held)
    await lister.fetchNow({ signal: signal() })
    expect(p.dataFiles()).toEqual([name, expect.stringMatching(/^00000002-/)])
    expect(ids(p.records())).toEqual(expected(4))

    const q = await project(4)
    const qdir = path.join(q.root, '.filedge/fetch/orders')
    await (await q.source({}, crashingOnAdvance(q.ledger()))).fetchNow({ signal: signal() })
    const [lost] = q.dataFiles()
    rmSync(path.join(qdir, lost))
    await (await q.source()).fetchNow({ signal: signal() })
    // The same pages again, into the same bytes (so the same name): the file is whole again, once.
    expect(q.api.requests.filter((request) => !request.query.has('cursor'))).toHaveLength(2)
    expect(readdirSync(qdir).filter((file) => file.startsWith('00000001-'))).toEqual([lost, `${lost}.manifest.json`])
    expect(ids(q.records())).toEqual(expected(4))
  })

  it('a new ledger next to a folder of promoted files follows their manifests instead of fetching everything again', async () => {
    const p = await project(5)
    await (await p.source()).fetchNow({ signal: signal() })
    const files = p.dataFiles()
    expect(files).toHaveLength(3)
    const fresh = p.ledger('.filedge/other-ledger.db')
    const report = await (await p.source({}, fresh)).fetchNow({ signal: signal() })
    expect(report).toMatchObject({ status: 'unchanged', records: 0, files: [] })
    expect(p.dataFiles()).toEqual(files)
    expect((await fresh.cursorOf('orders'))?.to).toBe('{"at":"c4","skip":1}')
    expect((await fresh.cursorEvents('orders')).map((event) => event.file)).toEqual(files.map((file) => `.filedge/fetch/orders/${file}`))
  })
})

describe('the lease', () => {
  it('one source fetches at a time: another (another process) skips the fetch and lists what is promoted', async () => {
    const p = await project(4)
    const a = await p.source({}, p.ledger(), 'A')
    const b = await p.source({}, p.ledger(), 'B')
    await a.fetchNow({ signal: signal() })
    p.api.records.push(...makeRecords(2, 5))
    p.api.fault = (request) => (request.query.get('cursor') === 'c2' ? { stall: true } : undefined)
    const before = p.api.requests.length
    const fetching = a.fetchNow({ signal: signal() })
    await p.api.waitForRequest((request) => request.number > before)
    expect(await b.fetchNow({ signal: signal() })).toMatchObject({ status: 'busy', files: [] })
    expect((await listAll(b)).map((entry) => path.basename(entry.path))).toEqual(p.dataFiles())
    p.api.fault = undefined
    p.api.release()
    expect((await fetching).status).toBe('fetched')
    expect(ids(p.records())).toEqual(expected(6))
    // Released: the other one fetches now.
    expect((await b.fetchNow({ signal: signal() })).status).toBe('unchanged')
  })
})

describe('pagination', () => {
  it('by page number and by offset: the tail page is asked for again and only its new records are taken', async () => {
    for (const options of [
      (api: Api): FetchOptions => ({ ...cursorOptions(api), url: `${api.origin}/pages`, pagination: { type: 'page' }, records: 'results', pageSize: 2 }),
      (api: Api): FetchOptions => ({ ...cursorOptions(api), url: `${api.origin}/offset`, pagination: { type: 'offset' }, records: '$.items', pageSize: 2 }),
    ]) {
      const p = await project(3, options)
      const source = await p.source()
      expect(await source.fetchNow({ signal: signal() })).toMatchObject({ status: 'fetched', records: 3 })
      expect(await source.fetchNow({ signal: signal() })).toMatchObject({ status: 'unchanged', records: 0 })
      p.api.records.push(...makeRecords(4, 4))
      expect(await source.fetchNow({ signal: signal() })).toMatchObject({ status: 'fetched', records: 4 })
      expect(ids(p.records())).toEqual(expected(7))
    }
  })

  it('refuses answers that would loop: a page that repeats the one before, a cursor that comes back, a next link to another origin', async () => {
    const p = await project(6, (api) => ({ ...cursorOptions(api), url: `${api.origin}/pages`, pagination: { type: 'page' }, records: 'results' }))
    // The API ignores the page parameter: every page is the first.
    p.api.fault = () => ({ body: JSON.stringify({ results: p.api.records.slice(0, 2) }) })
    const repeated = await (await p.source()).fetchNow({ signal: signal() })
    expect(repeated.error?.message).toMatch(/^GET [^ ]*&page=2 \(page 2\): the same records as the page before it: the API does not advance/)

    const q = await project(8)
    q.api.nextCursor = (request, computed) => (request.query.get('cursor') === 'c4' ? 'c2' : computed)
    const cycle = await (await q.source({ pagesPerFile: 10 })).fetchNow({ signal: signal() })
    expect(cycle.error?.message).toMatch(/^GET [^ ]*&cursor=c4 \(page 3\): the next page \("c2"\) was already fetched in this run: the API would loop forever$/)
    expect(q.dataFiles()).toEqual([])

    const r = await project(2, (api) => ({ ...cursorOptions(api), url: `${api.origin}/link`, pagination: { type: 'link' }, records: '$' }))
    r.api.fault = () => ({ status: 200, headers: { link: '<http://elsewhere.example/link?page=2>; rel="next"' }, body: '[{"id":"r1","n":1}]' })
    const away = await (await r.source()).fetchNow({ signal: signal() })
    expect(away.error?.message).toMatch(/^GET [^ ]* \(page 1\): the Link header's next page is on another origin \(http:\/\/elsewhere\.example\)/)
  })

  it('writes records as the API sent them: digits, key order and escapes kept, whitespace between tokens gone', async () => {
    const p = await project(0)
    const raw = '{ "id": "big",\n  "n": 12345678901234567890, "amount": 3.10, "z": 1, "a": "caf\\u00e9 \\" x" }'
    p.api.fault = () => ({ body: `{"data": [${raw}], "meta": {"next_cursor": null}}` })
    await (await p.source({ gzip: false })).fetchNow({ signal: signal() })
    const [file] = p.dataFiles()
    expect(readFileSync(path.join(p.root, '.filedge/fetch/orders', file), 'utf8')).toBe('{"id":"big","n":12345678901234567890,"amount":3.10,"z":1,"a":"caf\\u00e9 \\" x"}\n')
  })
})

describe('HTTP', () => {
  it('a request with no answer times out and is tried again; past its tries the fetch fails naming the page', async () => {
    const p = await project(2)
    p.api.fault = () => ({ stall: true })
    const started = Date.now()
    const report = await (await p.source({ timeout: '150ms', retry: { attempts: 2, minDelay: '5ms', maxDelay: '5ms' } })).fetchNow({ signal: signal() })
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(report.status).toBe('failed')
    expect(report.error?.message).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/cursor\?api_key=\*\*\*&limit=2 \(page 1\): no answer within 150 ms \(gave up after 2 tries\)$/)
    expect(p.api.requests).toHaveLength(2)
  })

  it('a Retry-After the fetch cannot wait within maxTime fails at once, saying so', async () => {
    const p = await project(2)
    p.api.fault = () => ({ status: 429, headers: { 'retry-after': new Date(Date.now() + 3_600_000).toUTCString() } })
    const report = await (await p.source({ maxTime: '2s' })).fetchNow({ signal: signal() })
    expect(report.error?.message).toMatch(/^GET [^ ]* \(page 1\): 429 Too Many Requests: "\{\\"error\\":\\"injected\\"\}"; the 3600 s the server asked to wait \(Retry-After\) would run past maxTime \(2 s left\)$/)
    expect(p.api.requests).toHaveLength(1)
  })

  it('follows a redirect within the origin, refuses one to another origin (the headers would go there)', async () => {
    const p = await project(2)
    // The API moved: /old/pages answers with a redirect to /pages, query and all.
    p.api.fault = (request) => (request.path === '/old/pages' ? { status: 302, headers: { location: `/pages?${request.query}` } } : undefined)
    const report = await (await p.source({ url: `${p.api.origin}/old/pages`, records: 'results', pagination: { type: 'page' } })).fetchNow({ signal: signal() })
    expect(report).toMatchObject({ status: 'fetched', records: 2 })
    p.api.fault = () => ({ status: 301, headers: { location: 'http://elsewhere.example/steal' } })
    // Without a page size the secret is the URL's last parameter: the message still reads whole (redact() blanks up to a space).
    const refused = await (await p.source({ name: 'elsewhere', pageSize: undefined })).fetchNow({ signal: signal() })
    expect(refused.error?.message).toBe(
      `GET ${p.api.origin}/cursor?api_key=*** (page 1): 301 redirect to another origin (http://elsewhere.example); not followed, its requests would carry the headers meant for ${p.api.origin}`,
    )
  })

  it('reads Retry-After as seconds or an HTTP date, and Link headers as RFC 8288 writes them', () => {
    expect(retryAfterMs('3')).toBe(3000)
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6000)
    expect(retryAfterMs('soon')).toBeUndefined()
    expect(nextLink('<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=9>; rel="last"')).toBe('https://api.github.com/x?page=2')
    expect(nextLink('<https://a/1>; rel="prev", <https://a/3>; title="n, m"; rel="next prefetch"')).toBe('https://a/3')
    expect(nextLink('<https://a/1>; rel=next')).toBe('https://a/1')
    expect(nextLink('<https://a/1>; rel="last"')).toBeUndefined()
    expect(nextLink(null)).toBeUndefined()
  })

  it('finds values by path in JSON text without re-encoding them', () => {
    const text = '{ "data": { "items": [ {"a": 1.50}, { "b" : [1, 2] } ] }, "next": 98765432109876543210, "s": "x y" }'
    expect(locate(text, ['data', 'items'])).toEqual({ kind: 'array', elements: ['{"a":1.50}', '{"b":[1,2]}'] })
    expect(locate(text, ['next'])).toEqual({ kind: 'value', raw: '98765432109876543210', type: 'number' })
    expect(locate(text, ['s'])).toEqual({ kind: 'value', raw: '"x y"', type: 'string' })
    expect(locate(text, ['data', 'items', '1', 'b'])).toEqual({ kind: 'array', elements: ['1', '2'] })
    expect(locate(text, ['data', 'missing'])).toBeUndefined()
    expect(locate('[1, {"x": " a "}]', [])).toEqual({ kind: 'array', elements: ['1', '{"x":" a "}'] })
    expect(compact('{ "k" : "v \\" w" }')).toBe('{"k":"v \\" w"}')
  })
})

describe('options', () => {
  it('are checked when the config loads, naming the option and the fix', () => {
    const base = { url: 'https://api.example.com/v1/orders', pagination: { type: 'link' }, records: 'data' } as FetchOptions
    const refused = (options: unknown) => {
      try {
        fetch(options as FetchOptions)
        return 'accepted'
      } catch (error) {
        return isFiledgeError(error) ? `${error.code}: ${error.message}` : String(error)
      }
    }
    expect(refused({ ...base, pagesize: 5 })).toMatch(/^CONFIG_INVALID: fetch\.pagesize: unknown option/)
    expect(refused({ ...base, url: 'https://user:pw@api.example.com/x' })).toMatch(/^CONFIG_INVALID: fetch\.url: credentials in the URL/)
    expect(refused({ ...base, pagination: { type: 'page' } })).toMatch(/^CONFIG_INVALID: fetch\.pageSize: page pagination needs the API's page size/)
    expect(refused({ ...base, pagination: { type: 'cursor', param: 'after' } })).toMatch(/^CONFIG_INVALID: fetch\.pagination\.field/)
    expect(refused({ ...base, timeout: 'soon' })).toMatch(/^CONFIG_INVALID: fetch\.timeout: expected a duration/)
    expect(refused({ ...base, query: { limit: 5 }, pageSize: 5 })).toMatch(/parameter "limit" is set twice/)
    expect(refused(base)).toBe('accepted')
  })
})
