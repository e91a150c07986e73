import type { ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { s3 } from '../plugins/s3/index.js'
import { testSource } from './conformance/source.js'
import { readDuckdb } from './helpers/duckdb.js'
import { setEnv, startS3, S3RVER_CREDENTIALS, type S3Server } from './helpers/s3-server.js'
import { exited, REPO_ROOT, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The S3 source through the whole pipeline: the conformance kit against a
 * loopback S3 API (s3rver), then the real CLI (`bin/filedge.js`) reading a
 * bucket into SQLite (and once into DuckDB). The CLI finds its credentials
 * the way it does in production, through the AWS SDK's chain: here the
 * environment of the spawned process. One server for the file, a fresh
 * bucket per test.
 */

let savedEnv: Record<string, string | undefined> = {}
let server: S3Server

beforeAll(async () => {
  savedEnv = setEnv(S3RVER_CREDENTIALS)
  server = await startS3()
})

afterAll(async () => {
  await server?.close()
  setEnv(savedEnv)
})

let buckets = 0
/** A new bucket per test, so tests share the server but never each other's objects. */
async function freshBucket(): Promise<string> {
  const name = `pipeline-${++buckets}-${randomBytes(3).toString('hex')}`
  await server.createBucket(name)
  return name
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
    return true
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false
    throw error
  }
}

async function keys(bucket: string): Promise<string[]> {
  const listed = await server.client.send(new ListObjectsV2Command({ Bucket: bucket }))
  return (listed.Contents ?? []).map((object) => object.Key!).sort()
}

async function bytesAt(bucket: string, key: string): Promise<Buffer> {
  const object = await server.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
  return Buffer.from(await object.Body!.transformToByteArray())
}

const sha256 = (bytes: string | Buffer) => createHash('sha256').update(bytes).digest('hex')

// 1. The conformance kit every source passes: a fresh bucket, the keys under `in/`, two keys a page.
testSource({
  name: 's3',
  async make() {
    const bucket = await freshBucket()
    const key = (relative: string) => `in/${relative}`
    return {
      source: s3({ bucket, prefix: 'in/', endpoint: server.endpoint, forcePathStyle: true, pageSize: 2 }),
      put: async (relative, bytes) => void (await server.put(bucket, key(relative), bytes)),
      remove: (relative) => server.remove(bucket, key(relative)),
      pathOf: (relative) => `s3://${bucket}/${key(relative)}`,
      exists: (relative) => exists(bucket, key(relative)),
      // `to: 'archived/'` is a key prefix in the same bucket, and the moved key keeps its path below the source's prefix.
      archived: (relative) => exists(bucket, `archived/${relative}`),
    }
  },
})

// 2. The real CLI.

const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')
/** The wrong secret one test gives the CLI: never printed, even by a failing test. */
const SECRET = 'sekrit-value-123'
const COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer' }"
const csv = (label: string, rows: number, from = 1) => `id,n\n${Array.from({ length: rows }, (_, i) => `${label}-${from + i},${from + i}`).join('\n')}\n`
/** A CSV over 1 MiB: hashing spools it to local disk instead of keeping it in memory. */
const BIG_ROWS = 80_000
const bigCsv = () => csv('big', BIG_ROWS)

const workspaces: Workspace[] = []
let watcher: ChildProcess | undefined
afterEach(async () => {
  if (watcher !== undefined && watcher.exitCode === null && watcher.signalCode === null) {
    watcher.kill('SIGKILL')
    await exited(watcher)
  }
  watcher = undefined
  for (const ws of workspaces.splice(0)) ws.remove()
})

interface PipelineOptions {
  readonly name?: string
  readonly bucket: string
  readonly table?: string
  /** More options of s3(), as source text. */
  readonly s3?: string
  /** More pipeline keys, as source text. */
  readonly extra?: string
}

/** One S3 pipeline, as config source text. */
function s3Pipeline(options: PipelineOptions): string {
  return `{
    name: ${JSON.stringify(options.name ?? 'orders')},
    source: s3({ bucket: ${JSON.stringify(options.bucket)}, prefix: 'in/', endpoint: ${JSON.stringify(server.endpoint)}, forcePathStyle: true, ${options.s3 ?? ''} }),
    destination: warehouse,
    table: ${JSON.stringify(options.table ?? 'orders')},
    columns: ${COLUMNS},
    ${options.extra ?? ''}
  }`
}

/** A project whose config imports the S3 source as users do (`filedge/plugins/s3`); the destination is `warehouse`. */
function project(options: { pipelines: string[]; top?: string; imports?: string; plugins?: string; destination?: string }): Workspace {
  const ws = workspace({
    'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { s3 } from 'filedge/plugins/s3'
${options.imports ?? ''}
const warehouse = ${options.destination ?? "sqlite({ path: 'warehouse.db' })"}
export default defineConfig({
  ${options.top ?? ''}
  plugins: [${options.plugins ?? ''}],
  pipelines: [${options.pipelines.join(', ')}],
})
`,
  })
  // Spool files go under the project, so a test can see that none is left behind.
  mkdirSync(ws.file('tmp'))
  workspaces.push(ws)
  return ws
}

interface Summary {
  committed: number
  failed: number
  skipped: number
  healed: number
  reclaimed: number
  rows: number
  sourceErrors: number
  aborted?: { code: string; message: string }
}

type Event = Record<string, unknown> & { event: string }

function cliEnv(ws: Workspace, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...S3RVER_CREDENTIALS, TMPDIR: ws.file('tmp'), ...extra }
}

/** Runs `filedge --json` and parses its events; the summary is the last. */
async function run(ws: Workspace, env: NodeJS.ProcessEnv = {}) {
  const result = await ws.cli(['--json'], { env: cliEnv(ws, env) })
  const events = result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Event)
  const summary = events.find((event) => event.event === 'run:summary') as unknown as Summary | undefined
  if (summary === undefined) throw new Error(`no summary from the run (exit ${result.code}):\n${result.stdout}\n${result.stderr}`.replaceAll(SECRET, '[the secret]'))
  const of = (name: string) => events.filter((event) => event.event === name)
  return { ...result, events, summary, of }
}

interface LedgerFile {
  hash: string
  path: string
  state: string
  rows: number | null
}

function ledgerFiles(ws: Workspace): LedgerFile[] {
  return ws.query<LedgerFile>('.filedge/ledger.db', 'SELECT hash, path, state, rows FROM files ORDER BY path, hash')
}

/** Per `_source_file_hash`: its rows, whether their row numbers are exactly 1..n, and the sum of n (a content checksum). */
function rowsByHash(ws: Workspace, table = 'orders'): Record<string, { rows: number; numbered: boolean; sum: number }> {
  const found = ws.query<{ hash: string; rows: number; distinct_numbers: number; low: number; high: number; total: number }>(
    'warehouse.db',
    `SELECT _source_file_hash AS hash, count(*) AS rows, count(DISTINCT _source_row_number) AS distinct_numbers, min(_source_row_number) AS low, max(_source_row_number) AS high, sum(n) AS total FROM "${table}" GROUP BY 1`,
  )
  return Object.fromEntries(
    found.map((row) => [row.hash, { rows: row.rows, numbered: row.distinct_numbers === row.rows && row.low === 1 && row.high === row.rows, sum: row.total }]),
  )
}

/** What a CSV of `csv(label, rows, from)` puts in the table. */
const expected = (rows: number, from = 1) => ({ rows, numbered: true, sum: Array.from({ length: rows }, (_, i) => from + i).reduce((a, b) => a + b, 0) })

/** Requests that only list the bucket (ListObjectsV2, path-style): no object is read or even looked at. */
const isListing = (bucket: string) => (request: string) => (request.startsWith(`GET /${bucket}?`) || request.startsWith(`GET /${bucket}/?`)) && /[?&]list-type=2(&|$)/.test(request)
/** GetObject requests for a key, path-style (a listing has a query instead of a key). */
const downloads = (requests: string[], bucket: string, key: string) => requests.filter((request) => request.split('?')[0] === `GET /${bucket}/${key}`).length

describe('filedge run over an S3 bucket', () => {
  it('loads CSV, a spooled CSV over 1 MiB and a .csv.gz, each object downloaded once; a rerun lists the bucket and reads nothing', async () => {
    const bucket = await freshBucket()
    const small = csv('a', 3)
    const big = bigCsv()
    const gz = gzipSync(csv('gz', 4, 10))
    expect(big.length).toBeGreaterThan(1024 * 1024)
    await server.put(bucket, 'in/a.csv', small)
    await server.put(bucket, 'in/sub/big.csv', big)
    await server.put(bucket, 'in/c.csv.gz', gz)
    await server.put(bucket, 'in/notes.txt', 'not a data file')
    await server.put(bucket, 'elsewhere/x.csv', csv('x', 1))
    const ws = project({ pipelines: [s3Pipeline({ bucket })] })
    await server.takeRequests()

    const first = await run(ws)
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.summary).toMatchObject({ committed: 3, failed: 0, skipped: 0, sourceErrors: 0, rows: 3 + BIG_ROWS + 4 })
    const requests = await server.takeRequests()
    for (const key of ['in/a.csv', 'in/sub/big.csv', 'in/c.csv.gz']) expect(downloads(requests, bucket, key), `GetObject ${key}`).toBe(1)
    expect(requests.filter((request) => request.includes('/elsewhere/') || request.includes('notes.txt'))).toEqual([])

    // The ledger names each object by its S3 URL; the hash is the SHA-256 of the bytes as stored (the gzip, not what it inflates to).
    const url = (key: string) => `s3://${bucket}/${key}`
    expect(ledgerFiles(ws)).toEqual(
      [
        { hash: sha256(small), path: url('in/a.csv'), state: 'COMMITTED', rows: 3 },
        { hash: sha256(gz), path: url('in/c.csv.gz'), state: 'COMMITTED', rows: 4 },
        { hash: sha256(big), path: url('in/sub/big.csv'), state: 'COMMITTED', rows: BIG_ROWS },
      ],
    )
    // Every row once, carrying its file's hash and its record number.
    expect(rowsByHash(ws)).toEqual({ [sha256(small)]: expected(3), [sha256(big)]: expected(BIG_ROWS), [sha256(gz)]: expected(4, 10) })
    expect(ws.query('warehouse.db', "SELECT id, n, _source_row_number AS row FROM orders WHERE id NOT LIKE 'big-%' ORDER BY n")).toEqual([
      { id: 'a-1', n: 1, row: 1 },
      { id: 'a-2', n: 2, row: 2 },
      { id: 'a-3', n: 3, row: 3 },
      { id: 'gz-10', n: 10, row: 1 },
      { id: 'gz-11', n: 11, row: 2 },
      { id: 'gz-12', n: 12, row: 3 },
      { id: 'gz-13', n: 13, row: 4 },
    ])
    const [ingested] = ws.query<{ at: string }>('warehouse.db', 'SELECT min(_ingested_at) AS at FROM orders')
    expect(Date.now() - Date.parse(ingested.at)).toBeLessThan(5 * 60_000)
    // The spooled download is deleted once the file is done.
    expect(readdirSync(ws.file(`tmp/filedge-spool-${process.getuid!()}`))).toEqual([])

    const second = await run(ws)
    expect(second.stderr).toBe('')
    expect(second.code).toBe(0)
    expect(second.summary).toMatchObject({ committed: 0, failed: 0, skipped: 3, rows: 0, sourceErrors: 0 })
    expect(
      second
        .of('file:skipped')
        .map(({ path, reason, message }) => ({ path, reason, message }))
        .sort((a, b) => String(a.path).localeCompare(String(b.path))),
    ).toEqual(['in/a.csv', 'in/c.csv.gz', 'in/sub/big.csv'].map((key) => ({ path: url(key), reason: 'committed', message: 'already committed (unchanged since it was read)' })))
    expect(second.of('file:claimed')).toEqual([])
    // Not a byte read, not even a HEAD: the rerun is the listing and nothing else.
    const rerun = await server.takeRequests()
    expect(rerun.length).toBeGreaterThan(0)
    expect(rerun.filter((request) => !isListing(bucket)(request))).toEqual([])
    expect(rowsByHash(ws)).toEqual({ [sha256(small)]: expected(3), [sha256(big)]: expected(BIG_ROWS), [sha256(gz)]: expected(4, 10) })
  })

  it('SIGKILL after the destination committed and before the ledger heard: the rerun heals the file, every row once', async () => {
    const bucket = await freshBucket()
    const a = csv('a', 3)
    const b = csv('b', 2, 100)
    await server.put(bucket, 'in/a.csv', a)
    await server.put(bucket, 'in/b.csv', b)
    const ws = project({
      top: "lease: { ttl: '2s', heartbeat: '500ms' }, concurrency: 1,",
      imports: `import { pauseAfterWrite } from ${JSON.stringify(PAUSE)}`,
      destination: "pauseAfterWrite(sqlite({ path: 'warehouse.db' }))",
      pipelines: [s3Pipeline({ bucket })],
    })

    const child = ws.spawn(['--reporter', 'silent'], { env: cliEnv(ws, { PAUSE_AT: 'written' }) })
    let output = ''
    child.stdout!.on('data', (chunk) => (output += chunk))
    child.stderr!.on('data', (chunk) => (output += chunk))
    const exit = exited(child)
    await Promise.race([waitFor(() => ws.exists('paused'), 45_000, 'the run to pause after the destination commit'), exit])
    expect(ws.exists('paused'), `the run to pause after the destination commit (${output})`).toBe(true)
    child.kill('SIGKILL')
    expect((await exit).signal).toBe('SIGKILL')
    rmSync(ws.file('paused'))

    // The destination holds a.csv's rows; the ledger still has it PROCESSING under the dead worker's lease.
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([[`s3://${bucket}/in/a.csv`, 'PROCESSING']])
    expect(rowsByHash(ws)).toEqual({ [sha256(a)]: expected(3) })
    // The lease runs out by the ledger's clock (this machine's), as a reclaiming worker sees it.
    await waitFor(
      () => ws.query<{ expires: number }>('.filedge/ledger.db', 'SELECT lease_expires_at AS expires FROM files').every((file) => file.expires < Date.now()),
      30_000,
      "the dead worker's lease to expire",
    )

    const rerun = await run(ws)
    expect(rerun.stderr).toBe('')
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 2, failed: 0, healed: 1, reclaimed: 1, rows: 2 })
    expect(ledgerFiles(ws).map((file) => [file.path, file.state, file.rows])).toEqual([
      [`s3://${bucket}/in/a.csv`, 'COMMITTED', 3],
      [`s3://${bucket}/in/b.csv`, 'COMMITTED', 2],
    ])
    expect(rowsByHash(ws)).toEqual({ [sha256(a)]: expected(3), [sha256(b)]: expected(2, 100) })
    const events = ws.query<{ event: string; error: string | null }>('.filedge/ledger.db', 'SELECT event, error FROM events WHERE hash = ? ORDER BY id', sha256(a))
    expect(events.at(-1)!.event).toBe('file:healed')
    expect(events.at(-1)!.error).toMatch(/^already committed in the destination by an earlier attempt \(load [0-9a-f]{8}, 3 rows\)/)

    // Healed for good: nothing is loaded again.
    const again = await run(ws)
    expect(again.summary).toMatchObject({ committed: 0, failed: 0, skipped: 2 })
    expect(rowsByHash(ws)).toEqual({ [sha256(a)]: expected(3), [sha256(b)]: expected(2, 100) })
  })

  it('the S3 server down: that pipeline fails to list, naming s3://bucket/in/, while a local pipeline of the same config commits; back up, a rerun loads the bucket', async () => {
    const bucket = await freshBucket()
    const remote = csv('remote', 2)
    await server.put(bucket, 'in/remote.csv', remote)
    const ws = project({
      pipelines: [
        s3Pipeline({ name: 'from-s3', bucket, table: 'remote' }),
        `{ name: 'from-disk', source: 'incoming', destination: warehouse, table: 'local', columns: ${COLUMNS} }`,
      ],
    })
    const local = csv('local', 3)
    ws.write('incoming/local.csv', local)

    await server.stop()
    let down: Awaited<ReturnType<typeof run>>
    try {
      down = await run(ws)
    } finally {
      await server.restart()
    }
    expect(down.code).toBe(1)
    expect(down.summary).toMatchObject({ committed: 1, failed: 0, sourceErrors: 1 })
    expect(down.summary.aborted).toBeUndefined()
    const errors = down.of('log').filter((event) => event.level === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0].message).toMatch(
      new RegExp(`^pipeline "from-s3": cannot list s3://${bucket}/in/ at 127\\.0\\.0\\.1:${server.port}: cannot reach 127\\.0\\.0\\.1:${server.port} \\(ECONNREFUSED\\)`),
    )
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([['incoming/local.csv', 'COMMITTED']])
    expect(rowsByHash(ws, 'local')).toEqual({ [sha256(local)]: expected(3) })

    const back = await run(ws)
    expect(back.stderr).toBe('')
    expect(back.code).toBe(0)
    expect(back.summary).toMatchObject({ committed: 1, failed: 0, skipped: 1, sourceErrors: 0 })
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([
      ['incoming/local.csv', 'COMMITTED'],
      [`s3://${bucket}/in/remote.csv`, 'COMMITTED'],
    ])
    expect(rowsByHash(ws, 'remote')).toEqual({ [sha256(remote)]: expected(2) })
  })

  it('wrong credentials: a clear error naming the bucket and the fix; the secret is in no output and no database', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/a.csv', csv('a', 1))
    const ws = project({ pipelines: [s3Pipeline({ bucket })] })
    const secret = SECRET
    const wrong = { AWS_ACCESS_KEY_ID: 'wrong', AWS_SECRET_ACCESS_KEY: secret }
    const denied = new RegExp(`s3://${bucket}/in/ at 127\\.0\\.0\\.1:${server.port}: access denied \\(InvalidAccessKeyId\\): check the credentials the AWS SDK found`)

    const json = await run(ws, wrong)
    // The human reporter too.
    const human = await ws.cli(['--reporter', 'simple'], { env: cliEnv(ws, wrong) })
    // Checked first, and as a yes or no: an assertion below that fails prints the output.
    for (const output of [json.stdout, json.stderr, human.stdout, human.stderr]) expect(output.includes(secret), 'the secret in the output').toBe(false)
    expect(json.code).toBe(1)
    expect(json.summary).toMatchObject({ committed: 0, failed: 0, sourceErrors: 1 })
    expect(json.summary.aborted).toBeUndefined()
    expect(json.stdout).toMatch(denied)
    expect(human.code).toBe(1)
    expect(human.stdout + human.stderr).toMatch(denied)

    // The right credentials load it: the failure was the credentials, nothing else.
    const right = await run(ws)
    expect(right.code).toBe(0)
    expect(right.summary).toMatchObject({ committed: 1 })
    const databases = ['.', '.filedge'].flatMap((dir) => readdirSync(ws.file(dir)).map((file) => path.join(dir, file))).filter((file) => /\.db(-wal|-shm|-journal)?$/.test(file))
    expect(databases).toEqual(expect.arrayContaining([path.join('.filedge', 'ledger.db'), 'warehouse.db']))
    for (const file of databases) expect(readFileSync(ws.file(file)).includes(secret), `the secret in ${file}`).toBe(false)
  })

  it("onCommitted 'delete' removes committed objects only, { moveTo } moves them; each is a file:archived event; a second run does nothing more", async () => {
    const deleting = await freshBucket()
    const moving = await freshBucket()
    const good = csv('good', 2)
    const bad = 'id,n\nbad-1,1\nbad-2,not-a-number\n'
    const a = csv('a', 1, 10)
    const b = csv('b', 2, 20)
    await server.put(deleting, 'in/good.csv', good)
    await server.put(deleting, 'in/bad.csv', bad)
    await server.put(moving, 'in/a.csv', a)
    await server.put(moving, 'in/sub/b.csv', b)
    const ws = project({
      pipelines: [
        s3Pipeline({ name: 'deleting', bucket: deleting, table: 'deleted', extra: "onCommitted: 'delete', retry: { attempts: 1 }," }),
        s3Pipeline({ name: 'moving', bucket: moving, table: 'moved', extra: "onCommitted: { moveTo: 'archive/' }," }),
      ],
    })

    const first = await run(ws)
    expect(first.code).toBe(1)
    expect(first.summary).toMatchObject({ committed: 3, failed: 1 })
    expect(first.of('file:failed').map((event) => event.path)).toEqual([`s3://${deleting}/in/bad.csv`])
    // The file that failed is not committed, so it stays where it was.
    expect(await keys(deleting)).toEqual(['in/bad.csv'])
    expect(await keys(moving)).toEqual(['archive/a.csv', 'archive/sub/b.csv'])
    expect((await bytesAt(moving, 'archive/sub/b.csv')).toString()).toBe(b)

    const events = () => ws.query<{ id: number; event: string; hash: string; path: string; error: string | null }>('.filedge/ledger.db', 'SELECT id, event, hash, path, error FROM events ORDER BY id')
    const archived = events().filter((event) => event.event === 'file:archived')
    expect(archived.map(({ path, error }) => ({ path, error })).sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      { path: `s3://${deleting}/in/good.csv`, error: 'deleted' },
      { path: `s3://${moving}/in/a.csv`, error: `moved to s3://${moving}/archive/a.csv` },
      { path: `s3://${moving}/in/sub/b.csv`, error: `moved to s3://${moving}/archive/sub/b.csv` },
    ])
    // Each after its file's COMMITTED.
    for (const event of archived) {
      const committed = events().find((other) => other.event === 'file:committed' && other.hash === event.hash)
      expect(committed, `file:committed for ${event.path}`).toBeDefined()
      expect(committed!.id).toBeLessThan(event.id)
    }
    expect(rowsByHash(ws, 'deleted')).toEqual({ [sha256(good)]: expected(2) })
    expect(rowsByHash(ws, 'moved')).toEqual({ [sha256(a)]: expected(1, 10), [sha256(b)]: expected(2, 20) })

    const before = events().length
    const second = await run(ws)
    expect(second.code).toBe(0)
    expect(second.summary).toMatchObject({ committed: 0, failed: 0, skipped: 1 })
    expect(second.of('file:skipped').map(({ path, reason }) => ({ path, reason }))).toEqual([{ path: `s3://${deleting}/in/bad.csv`, reason: 'terminal' }])
    expect(events()).toHaveLength(before)
    expect(await keys(deleting)).toEqual(['in/bad.csv'])
    expect(await keys(moving)).toEqual(['archive/a.csv', 'archive/sub/b.csv'])
  })

  it('adversarial listings across pages: equal LastModified seconds, a later key that sorts first, an overwrite with new bytes of the same size; none missed, none twice', async () => {
    const bucket = await freshBucket()
    const ws = project({ pipelines: [s3Pipeline({ bucket, s3: 'pageSize: 2' })] })
    const contents: Record<string, string> = {
      'in/b1.csv': csv('b1', 2, 10),
      'in/b2.csv': csv('b2', 2, 20),
      'in/m.csv': csv('m', 3, 30),
      'in/z.csv': csv('z', 1, 40),
    }
    // b1 and b2 stored within one second: a listing that went by "modified since" would have to tell them apart.
    const second = (key: string, listed: { Key?: string; LastModified?: Date }[]) => Math.floor(listed.find((object) => object.Key === key)!.LastModified!.getTime() / 1000)
    for (let tries = 0; ; tries++) {
      await server.put(bucket, 'in/b1.csv', contents['in/b1.csv'])
      await server.put(bucket, 'in/b2.csv', contents['in/b2.csv'])
      const listed = (await server.client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []
      if (second('in/b1.csv', listed) === second('in/b2.csv', listed)) break
      // Stored across a second boundary: write both again (the next pair lands well within one second).
      expect(tries, 'two puts within one LastModified second').toBeLessThan(5)
    }
    await server.put(bucket, 'in/m.csv', contents['in/m.csv'])
    await server.put(bucket, 'in/z.csv', contents['in/z.csv'])

    const first = await run(ws)
    expect(first.code).toBe(0)
    expect(first.summary).toMatchObject({ committed: 4, failed: 0, skipped: 0 })

    // Between runs: a key that sorts before every key seen, and m.csv overwritten in place with other bytes of the same size.
    const early = csv('early', 2, 50)
    const rewritten = csv('M', 3, 30)
    expect(rewritten.length).toBe(contents['in/m.csv'].length)
    await server.put(bucket, 'in/0-early.csv', early)
    await server.put(bucket, 'in/m.csv', rewritten)

    const next = await run(ws)
    expect(next.code).toBe(0)
    expect(next.summary).toMatchObject({ committed: 2, failed: 0, skipped: 3 })
    expect(next.of('file:committed').map((event) => event.path).sort()).toEqual([`s3://${bucket}/in/0-early.csv`, `s3://${bucket}/in/m.csv`])
    expect(new Set(next.of('file:skipped').map((event) => event.message))).toEqual(new Set(['already committed (unchanged since it was read)']))

    // Both versions of m.csv are committed files, each loaded once under its own hash.
    const url = (key: string) => `s3://${bucket}/${key}`
    expect(ledgerFiles(ws).map(({ path, hash, state }) => ({ path, hash, state }))).toEqual(
      [
        { path: url('in/0-early.csv'), hash: sha256(early), state: 'COMMITTED' },
        { path: url('in/b1.csv'), hash: sha256(contents['in/b1.csv']), state: 'COMMITTED' },
        { path: url('in/b2.csv'), hash: sha256(contents['in/b2.csv']), state: 'COMMITTED' },
        { path: url('in/m.csv'), hash: sha256(contents['in/m.csv']), state: 'COMMITTED' },
        { path: url('in/m.csv'), hash: sha256(rewritten), state: 'COMMITTED' },
        { path: url('in/z.csv'), hash: sha256(contents['in/z.csv']), state: 'COMMITTED' },
      ].sort((x, y) => (x.path === y.path ? x.hash.localeCompare(y.hash) : x.path.localeCompare(y.path))),
    )
    const loaded = {
      [sha256(contents['in/b1.csv'])]: expected(2, 10),
      [sha256(contents['in/b2.csv'])]: expected(2, 20),
      [sha256(contents['in/m.csv'])]: expected(3, 30),
      [sha256(contents['in/z.csv'])]: expected(1, 40),
      [sha256(early)]: expected(2, 50),
      [sha256(rewritten)]: expected(3, 30),
    }
    expect(rowsByHash(ws)).toEqual(loaded)
    expect(ws.query('warehouse.db', "SELECT id FROM orders WHERE id GLOB 'M-*' ORDER BY n")).toEqual([{ id: 'M-30' }, { id: 'M-31' }, { id: 'M-32' }])

    const third = await run(ws)
    expect(third.summary).toMatchObject({ committed: 0, failed: 0, skipped: 5 })
    expect(rowsByHash(ws)).toEqual(loaded)
  })

  it('DuckDB destination: a spooled S3 object is read by DuckDB natively from the spool file; a small one goes through filedge\'s parser', async () => {
    const bucket = await freshBucket()
    const big = bigCsv()
    const small = csv('small', 2, 7)
    await server.put(bucket, 'in/big.csv', big)
    await server.put(bucket, 'in/small.csv', small)
    // Files whose rows pass through filedge's batches (the JS path) fire fileProgress; DuckDB's native reader never does.
    const ws = project({
      imports: "import { duckdb } from 'filedge/plugins/duckdb'\nimport { appendFileSync } from 'node:fs'",
      destination: "duckdb({ path: 'warehouse.duckdb' })",
      plugins: "{ name: 'js-path', apply({ hooks }) { hooks.fileProgress.tap('js-path', ({ file }) => appendFileSync('js-path.log', file.path + '\\n')) } }",
      pipelines: [s3Pipeline({ bucket })],
    })
    const result = await run(ws)
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(result.summary).toMatchObject({ committed: 2, failed: 0, rows: BIG_ROWS + 2 })
    const viaJs = new Set(readFileSync(ws.file('js-path.log'), 'utf8').trim().split('\n'))
    expect(viaJs).toEqual(new Set([`s3://${bucket}/in/small.csv`]))
    const rows = await readDuckdb(
      ws.file('warehouse.duckdb'),
      'SELECT _source_file_hash AS hash, CAST(count(*) AS INTEGER) AS rows, CAST(count(DISTINCT _source_row_number) AS INTEGER) AS numbers, CAST(max(_source_row_number) AS INTEGER) AS high, CAST(sum(n) AS DOUBLE) AS total FROM orders GROUP BY 1 ORDER BY 2',
    )
    expect(rows).toEqual([
      { hash: sha256(small), rows: 2, numbers: 2, high: 2, total: 15 },
      { hash: sha256(big), rows: BIG_ROWS, numbers: BIG_ROWS, high: BIG_ROWS, total: (BIG_ROWS * (BIG_ROWS + 1)) / 2 },
    ])
    expect(readdirSync(ws.file(`tmp/filedge-spool-${process.getuid!()}`))).toEqual([])
  })
})

describe('filedge --watch over an S3 bucket', () => {
  it('started while the server is down, it keeps polling and loads once it is back; objects put later are committed, an overwrite loads as a new file; SIGTERM exits 0', async () => {
    const bucket = await freshBucket()
    await server.put(bucket, 'in/before.csv', csv('before', 1, 1))
    const ws = project({ top: "watch: { poll: '300ms', settle: '100ms' },", pipelines: [s3Pipeline({ bucket })] })
    const rows = () => {
      if (!ws.exists('warehouse.db')) return []
      try {
        return ws.query<{ id: string }>('warehouse.db', 'SELECT id FROM orders ORDER BY n').map((row) => row.id)
      } catch {
        return [] // the table is created by the watcher's start
      }
    }
    let output = ''
    await server.stop()
    try {
      const child = ws.spawn(['--watch', '--reporter', 'simple'], { env: cliEnv(ws) })
      watcher = child
      child.stdout!.on('data', (chunk) => (output += chunk))
      child.stderr!.on('data', (chunk) => (output += chunk))
      const ended = () => child.exitCode !== null || child.signalCode !== null
      // A connect that failed used to end the watcher at its start.
      await waitFor(() => ended() || output.includes(`cannot list s3://${bucket}/in/`), 30_000, 'a listing to fail while the server is down')
      expect(ended(), `the watcher exited while the server was down:\n${output}`).toBe(false)
      expect(output).toContain(`watching s3://${bucket}/in/ at 127.0.0.1:${server.port}`)
      expect(output).toContain(`cannot reach 127.0.0.1:${server.port} (ECONNREFUSED)`)
    } finally {
      await server.restart()
    }
    const child = watcher!
    /** Waits for `check`, failing at once (with what the watcher said) if it exits meanwhile. */
    const alive = () => child.exitCode === null && child.signalCode === null
    const until = async (check: () => boolean, what: string) => {
      await waitFor(() => !alive() || check(), 30_000, what)
      expect(alive(), `the watcher exited while waiting for ${what}:\n${output}`).toBe(true)
    }
    await until(() => rows().includes('before-1'), 'the object already there to load once the server is back')

    await server.put(bucket, 'in/later.csv', csv('later', 2, 10))
    await until(() => rows().includes('later-11'), 'the object put after the start to load')
    await server.put(bucket, 'in/before.csv', csv('again', 1, 20))
    await until(() => rows().includes('again-20'), 'the overwritten object to load')
    expect(rows()).toEqual(['before-1', 'later-10', 'later-11', 'again-20'])

    child.kill('SIGTERM')
    expect(await exited(child)).toEqual({ code: 0, signal: null })
    expect(output).toMatch(/committed 3 · failed 0/)
    expect(ledgerFiles(ws).map((file) => file.state)).toEqual(['COMMITTED', 'COMMITTED', 'COMMITTED'])
  })
})
