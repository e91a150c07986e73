import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { readDuckdb } from './helpers/duckdb.js'
import { makeRecords, startApi, type Api, type ApiRecord, type ApiRequest } from './helpers/paginated-api.js'
import { exited, REPO_ROOT, waitFor, workspace, type CliResult, type Workspace } from './helpers/workspace.js'

/**
 * The fetch source through the real CLI: a loopback API (started here, per
 * test) paged by cursor and by Link header, failing with 500s and 429s,
 * answering badly, and a filedge process killed with SIGKILL mid-fetch.
 * What is checked is what a user sees: the rows in the table (each record
 * exactly once), the files and manifests in the fetch folder, the ledger's
 * cursor, the messages, and that no secret appears in any of them.
 */

const FOLDER = '.filedge/fetch/orders'
const COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer' }"

interface Project {
  readonly ws: Workspace
  readonly api: Api
  /** The real CLI with the API's credentials in the environment, as a user would give them. */
  cli(args?: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>
  spawn(args?: string[]): ChildProcess
  dataFiles(): string[]
  /** Every record in the promoted files. */
  promoted(): { id: string; n: number }[]
  manifest(file: string): Record<string, unknown> & { cursor: { from: unknown; to: unknown }; pages: { url: string }[]; sha256: string; records: number }
  rows(): { id: string; n: number; _source_file_hash: string }[]
  cursorEvents(): { from_cursor: string | null; to_cursor: string; file: string | null; records: number }[]
  /** Everything a user or an auditor can read afterwards: outputs, manifests, the ledger. */
  everythingWritten(outputs: CliResult[]): string
}

const projects: Project[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited(child)
  }
  for (const p of projects.splice(0)) {
    await p.api.close()
    p.ws.remove()
  }
})

async function project(options: { records: number; source: (api: Api) => string; destination?: 'sqlite' | 'duckdb'; top?: string }): Promise<Project> {
  const api = await startApi(makeRecords(options.records))
  const destination = options.destination === 'duckdb' ? "duckdb({ path: 'warehouse.duckdb' })" : "sqlite({ path: 'warehouse.db' })"
  const ws = workspace({
    'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { duckdb } from 'filedge/plugins/duckdb'
import { fetch } from 'filedge/plugins/fetch'
export default defineConfig({
  ${options.top ?? ''}
  pipelines: [{
    name: 'orders',
    source: fetch({ query: { api_key: env('PARTNER_KEY') }, bearer: env('PARTNER_TOKEN'), retry: { minDelay: '10ms', maxDelay: '50ms' }, ${options.source(api)} }),
    destination: ${destination},
    table: 'orders',
    columns: ${COLUMNS},
  }],
})
`,
  })
  const env = () => ({ PARTNER_KEY: api.key, PARTNER_TOKEN: api.token })
  const dir = ws.file(FOLDER)
  const p: Project = {
    ws,
    api,
    cli: (args = [], extra = {}) => ws.cli(args, { env: { ...env(), ...extra } }),
    spawn(args = []) {
      const child = ws.spawn(args, { env: env() })
      children.push(child)
      return child
    },
    dataFiles: () => (existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.ndjson.gz')).sort() : []),
    promoted: () =>
      p.dataFiles().flatMap((name) =>
        gunzipSync(readFileSync(path.join(dir, name)))
          .toString('utf8')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as { id: string; n: number }),
      ),
    manifest: (file) => JSON.parse(readFileSync(path.join(dir, `${file}.manifest.json`), 'utf8')),
    rows: () => ws.query('warehouse.db', 'SELECT id, n, _source_file_hash FROM orders ORDER BY n'),
    cursorEvents: () => ws.query('.filedge/ledger.db', 'SELECT from_cursor, to_cursor, file, records FROM cursor_events ORDER BY id'),
    everythingWritten(outputs) {
      const manifests = existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.manifest.json')).map((name) => readFileSync(path.join(dir, name), 'utf8')) : []
      const ledger = ws.exists('.filedge/ledger.db')
        ? ['events', 'cursor_events', 'files', 'file_paths'].map((table) => JSON.stringify(ws.query('.filedge/ledger.db', `SELECT * FROM ${table}`))).join('\n')
        : ''
      return [...outputs.map((output) => output.stdout + output.stderr), ...manifests, ledger, ...p.dataFiles()].join('\n')
    },
  }
  projects.push(p)
  return p
}

const cursorSource = (pageSize: number, pagesPerFile: number) => (api: Api) =>
  `url: '${api.origin}/cursor', pagination: { type: 'cursor', param: 'cursor', field: 'meta.next_cursor' }, records: 'data', pageSize: ${pageSize}, pagesPerFile: ${pagesPerFile}`
const ids = (count: number, from = 1) => makeRecords(count, from).map((record) => record.id)
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('filedge with a fetch source', () => {
  it('pages an API by cursor into files and the table, each record once; a rerun with nothing new writes no file; new records land in one new file', async () => {
    const p = await project({ records: 7, source: cursorSource(2, 2) })
    const outputs: CliResult[] = []
    const first = await p.cli(['--reporter', 'simple'])
    outputs.push(first)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toMatch(/committed 2 · failed 0/)
    expect(p.rows().map((row) => row.id)).toEqual(ids(7))
    const files = p.dataFiles()
    expect(files).toEqual([expect.stringMatching(/^00000001-[0-9a-f]{12}\.ndjson\.gz$/), expect.stringMatching(/^00000002-[0-9a-f]{12}\.ndjson\.gz$/)])

    // The file's hash is the rows' _source_file_hash, and its manifest names the pages behind it.
    const bytes = readFileSync(p.ws.file(`${FOLDER}/${files[0]}`))
    const manifest = p.manifest(files[0])
    expect(manifest).toMatchObject({
      format: 'filedge-fetch/1',
      source: 'orders',
      url: `${p.api.origin}/cursor?api_key=***&limit=2`,
      pagination: 'cursor',
      cursor: { from: null, to: { at: 'c4', skip: 0 } },
      pages: [
        { page: 1, url: `${p.api.origin}/cursor?api_key=***&limit=2`, records: 2, taken: 2 },
        { page: 2, url: `${p.api.origin}/cursor?api_key=***&limit=2&cursor=c2`, records: 2, taken: 2 },
      ],
      records: 4,
      file: files[0],
      bytes: bytes.length,
      sha256: sha256(bytes),
    })
    expect(new Set(p.rows().filter((row) => row.n <= 4).map((row) => row._source_file_hash))).toEqual(new Set([sha256(bytes)]))
    expect(p.cursorEvents()).toEqual([
      { from_cursor: null, to_cursor: '{"at":"c4","skip":0}', file: `${FOLDER}/${files[0]}`, records: 4 },
      { from_cursor: '{"at":"c4","skip":0}', to_cursor: '{"at":"c6","skip":1}', file: `${FOLDER}/${files[1]}`, records: 3 },
    ])

    // Nothing new: the last page is asked for again, and nothing is written.
    const again = await p.cli(['--reporter', 'simple'])
    outputs.push(again)
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/committed 0 · failed 0/)
    expect(p.dataFiles()).toEqual(files)
    expect(p.cursorEvents()).toHaveLength(2)

    // Three new records, one of them on the page that was the last: a dry run says what would come, and writes nothing.
    p.api.records.push(...makeRecords(3, 8))
    const dry = await p.cli(['fetch', '--dry-run', '--json'])
    outputs.push(dry)
    expect(dry.code).toBe(0)
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      sources: [{ pipelines: ['orders'], status: 'fetched', pages: 2, records: 3, files: [{ records: 3, pages: 2, path: expect.stringMatching(/^\.filedge\/fetch\/orders\/00000003-/) }], cursor: { from: '"c6" +1', to: '"c8" +2' } }],
    })
    expect(p.dataFiles()).toEqual(files)
    expect(p.cursorEvents()).toHaveLength(2)

    const more = await p.cli(['--reporter', 'simple'])
    outputs.push(more)
    expect(more.code).toBe(0)
    expect(more.stdout).toMatch(/committed 1 · failed 0 .* rows 3/)
    expect(p.rows().map((row) => row.id)).toEqual(ids(10))
    expect(p.promoted().map((record) => record.id)).toEqual(ids(10))
    expect(p.dataFiles()).toHaveLength(3)

    // Lineage: a row's hash leads to its file, the file's manifest to the API pages.
    const lineage = await p.cli(['lineage'])
    outputs.push(lineage)
    expect(lineage.stdout).toContain(`↳ GET ${p.api.origin}/cursor?api_key=***&limit=2 · pages 1–2 of the fetch at`)
    expect(lineage.stdout).toMatch(/4 records · cursor start → "c4" · 00000001-[0-9a-f]{12}\.ndjson\.gz\.manifest\.json/)
    expect(lineage.stdout).toMatch(/3 records · cursor "c6" \+1 → "c8" \+2/)
    const json = JSON.parse((await p.cli(['lineage', '--json'])).stdout)
    expect(json.pipelines[0].files[2].origin.details).toMatchObject({ records: 3, pages: [{ url: `${p.api.origin}/cursor?api_key=***&limit=2&cursor=c6` }, { url: expect.stringContaining('cursor=c8') }] })

    const written = p.everythingWritten(outputs)
    expect(written).not.toContain(p.api.key)
    expect(written).not.toContain(p.api.token)
  })

  it('pages by Link header into DuckDB through 500s and a 429 with Retry-After: every record once, the wait honoured, no secret in the cursor', async () => {
    const p = await project({
      records: 9,
      destination: 'duckdb',
      source: (api) => `url: '${api.origin}/link', pagination: { type: 'link' }, records: '$', pageSize: 2, pageSizeParam: 'per_page', pagesPerFile: 2`,
    })
    const tries = new Map<string, number>()
    p.api.fault = (request) => {
      const page = request.query.get('page') ?? '1'
      const seen = (tries.get(page) ?? 0) + 1
      tries.set(page, seen)
      if (page === '2' && seen <= 2) return { status: 500 }
      if (page === '4' && seen === 1) return { status: 429, headers: { 'retry-after': '1' } }
      return undefined
    }
    const result = await p.cli(['--reporter', 'simple'])
    expect(result.code, result.stderr).toBe(0)
    const rows = await readDuckdb(p.ws.file('warehouse.duckdb'), 'SELECT id FROM orders ORDER BY n')
    expect(rows.map((row) => row.id)).toEqual(ids(9))
    const page = (n: string) => p.api.requests.filter((request: ApiRequest) => (request.query.get('page') ?? '1') === n)
    expect(page('2')).toHaveLength(3)
    const [limited, retried] = page('4')
    expect(retried.at - limited.at).toBeGreaterThanOrEqual(1000)
    // The API's next links echo the key; the cursor in the ledger (and the manifests) must not keep it.
    expect(p.cursorEvents().map((event) => event.to_cursor)).toEqual([
      `{"at":"${p.api.origin}/link?per_page=2&page=3","skip":0}`,
      `{"at":"${p.api.origin}/link?per_page=2&page=5","skip":0}`,
      `{"at":"${p.api.origin}/link?per_page=2&page=5","skip":1}`,
    ])
    expect(p.everythingWritten([result])).not.toContain(p.api.key)
  })

  it('SIGKILL mid-fetch: the rerun goes on from the last promoted file, and every record lands once, in files that are never duplicated', async () => {
    const p = await project({ records: 10, source: cursorSource(2, 1), top: "lease: { ttl: '2s', heartbeat: '500ms' }," })
    let stalled = false
    p.api.fault = (request) => {
      if (request.query.get('cursor') !== 'c6' || stalled) return undefined
      stalled = true
      return { stall: true }
    }
    const child = p.spawn(['--reporter', 'silent'])
    await p.api.waitForRequest((request) => request.query.get('cursor') === 'c6')
    child.kill('SIGKILL')
    expect((await exited(child)).signal).toBe('SIGKILL')
    // Three pages were promoted, each with its cursor advance; nothing was loaded yet (a run fetches, then loads).
    expect(p.dataFiles()).toHaveLength(3)
    expect(p.cursorEvents().map((event) => event.to_cursor)).toEqual(['{"at":"c2","skip":0}', '{"at":"c4","skip":0}', '{"at":"c6","skip":0}'])

    // The dead process's lease runs out by the ledger's clock; until then another run would leave the source to it.
    const [{ expires }] = p.ws.query<{ expires: number }>('.filedge/ledger.db', `SELECT expires_at AS expires FROM leases WHERE name = 'fetch:orders'`)
    await waitFor(() => Date.now() > expires + 50, 10_000, 'the lease to expire')
    const rerun = await p.cli(['--reporter', 'simple'])
    expect(rerun.code, rerun.stderr).toBe(0)
    expect(p.rows().map((row) => row.id)).toEqual(ids(10))
    expect(p.promoted().map((record) => record.id)).toEqual(ids(10))
    const hashes = p.dataFiles().map((file) => sha256(readFileSync(p.ws.file(`${FOLDER}/${file}`))))
    expect(new Set(hashes).size).toBe(hashes.length)
    // The pages before the kill were never asked for again.
    expect(p.api.requests.map((request) => request.query.get('cursor'))).toEqual([null, 'c2', 'c4', 'c6', 'c6', 'c8'])
    expect(readdirSync(p.ws.file(`${FOLDER}/.staging`))).toEqual([])
  })

  it('bad answers stop the source with an error naming the page and no secret, promote nothing partial, and leave the cursor where it was', async () => {
    const p = await project({ records: 4, source: cursorSource(2, 10) })
    const setup = await p.cli(['fetch'])
    expect(setup.code, setup.stderr).toBe(0)
    const files = p.dataFiles()
    const cursor = p.cursorEvents()
    expect(cursor).toHaveLength(1)
    // The next fetch reads c2 (seen), c4 (new records), c6 (the broken page).
    p.api.records.push(...makeRecords(4, 5))
    const page3 = `GET ${p.api.origin}/cursor?api_key=***&limit=2&cursor=c6 (page 3)`
    const outputs: CliResult[] = [setup]
    const expectStopped = (result: CliResult, message: RegExp) => {
      outputs.push(result)
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(message)
      expect(p.dataFiles()).toEqual(files)
      expect(p.cursorEvents()).toEqual(cursor)
      expect(readdirSync(p.ws.file(`${FOLDER}/.staging`))).toEqual([])
    }

    // Not JSON. Through a run: the file promoted before loads; the run fails, saying which page.
    p.api.fault = (request) => (request.query.get('cursor') === 'c6' ? { body: '<html>Service Unavailable</html>', contentType: 'text/html' } : undefined)
    const run = await p.cli(['--reporter', 'simple'])
    expectStopped(
      run,
      new RegExp(`pipeline "orders": cannot list fetch orders \\(GET ${escaped(p.api.origin)}/cursor\\): ${escaped(page3)}: the answer is not JSON \\(text/html, 32 characters\\): .*; the file listed before the error is loaded`),
    )
    expect(p.rows().map((row) => row.id)).toEqual(ids(4))

    // A records path that matches nothing.
    p.api.fault = (request) => (request.query.get('cursor') === 'c6' ? { body: '{"items": [], "meta": {"next_cursor": null}}' } : undefined)
    expectStopped(await p.cli(['fetch']), new RegExp(`^\\[filedge\\] orders: nothing promoted \\(cursor "c2" \\+2\\): ${escaped(page3)}: the records path "data" matches nothing in the answer\\n$`))

    // A cursor that does not advance (with records: the API would serve this page forever).
    p.api.fault = undefined
    p.api.nextCursor = (request, computed) => (request.query.get('cursor') === 'c6' ? 'c6' : computed)
    expectStopped(await p.cli(['fetch']), new RegExp(`${escaped(page3)}: the next cursor \\(meta\\.next_cursor\\) is "c6" again, the cursor this page was fetched with: the API does not advance`))
    p.api.nextCursor = undefined

    // An auth failure: at once, not retried, the wrong token nowhere.
    const wrong = 'wrong-token-5d1e'
    const before = p.api.requests.length
    expectStopped(
      await p.cli(['fetch'], { PARTNER_TOKEN: wrong }),
      new RegExp(`GET ${escaped(p.api.origin)}/cursor\\?api_key=\\*\\*\\*&limit=2&cursor=c2 \\(page 1\\): 401 Unauthorized: the API refused the credentials .*; not retried`),
    )
    expect(p.api.requests.length - before).toBe(1)

    // Fixed: everything lands once.
    const fixed = await p.cli(['--reporter', 'simple'])
    outputs.push(fixed)
    expect(fixed.code, fixed.stderr).toBe(0)
    expect(p.rows().map((row) => row.id)).toEqual(ids(8))
    const written = p.everythingWritten(outputs)
    for (const secret of [p.api.key, p.api.token, wrong]) expect(written).not.toContain(secret)
  })

  it('filedge --watch fetches again every `every` and loads what is new', async () => {
    const p = await project({ records: 3, source: (api) => `${cursorSource(2, 5)(api)}, every: '200ms'`, top: "watch: { settle: '50ms' }," })
    const child = p.spawn(['--watch', '--reporter', 'simple'])
    let output = ''
    child.stdout!.on('data', (chunk) => (output += chunk))
    child.stderr!.on('data', (chunk) => (output += chunk))
    const loaded = (count: number) => () => {
      try {
        return p.rows().length === count
      } catch {
        return false
      }
    }
    await waitFor(loaded(3), 20_000, 'the first records').catch((error) => {
      throw new Error(`${error.message}:\n${output}`)
    })
    p.api.records.push(...makeRecords(2, 4))
    await waitFor(loaded(5), 20_000, 'the records added while watching').catch((error) => {
      throw new Error(`${error.message}:\n${output}`)
    })
    child.kill('SIGTERM')
    expect((await exited(child)).code).toBe(0)
    expect(p.rows().map((row) => row.id)).toEqual(ids(5))
  })

  it("docs/fetch.md's example, as written, loads a cursor-paged API", async () => {
    const docs = readFileSync(path.join(REPO_ROOT, 'docs/fetch.md'), 'utf8')
    const example = /```ts\n\/\/ filedge\.config\.ts\n([\s\S]*?)```/.exec(docs)?.[1]
    expect(example).toBeDefined()
    const orders = Array.from({ length: 5 }, (_, i) => ({ id: `r${i + 1}`, amount: 12.5 + i, status: 'paid', created_at: `2026-05-0${i + 1}T08:00:00Z`, customer: { id: 7, name: 'Ada' } }))
    const api = await startApi(orders as unknown as ApiRecord[])
    const ws = workspace({ 'filedge.config.ts': example!.replace('https://api.partner.example/v2/orders', `${api.origin}/cursor`) })
    try {
      const result = await ws.cli(['--reporter', 'simple'], { env: { PARTNER_API_KEY: api.key, PARTNER_TOKEN: api.token } })
      expect(result.code, result.stderr).toBe(0)
      const rows = await readDuckdb(ws.file('.filedge/warehouse.duckdb'), 'SELECT id, CAST(amount AS VARCHAR) AS amount, customer FROM orders ORDER BY id')
      expect(rows.map((row) => row.id)).toEqual(ids(5))
      expect(rows[1]).toMatchObject({ amount: '13.50' })
      expect(String(rows[0].customer)).toContain('Ada')
      expect(api.requests[0].query.toString()).toBe(`api_key=${api.key}&status=all&limit=100`)
    } finally {
      await api.close()
      ws.remove()
    }
  })

  it('filedge fetch names what it needs: a config without a fetch source is a usage error', async () => {
    const ws = workspace({ 'filedge.config.ts': `import { defineConfig } from 'filedge'\nimport { sqlite } from 'filedge/plugins/sqlite'\nexport default defineConfig({ pipelines: [{ name: 'orders', source: 'incoming', destination: sqlite({ path: 'w.db' }), table: 't', columns: { id: 'string' } }] })\n` })
    try {
      const result = await ws.cli(['fetch'])
      expect(result.code).toBe(2)
      expect(result.stderr).toBe('[filedge] fetch: no pipeline has a fetch source (fetch() from filedge/plugins/fetch)\n')
    } finally {
      ws.remove()
    }
  })
})
