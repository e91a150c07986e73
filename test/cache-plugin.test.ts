import { randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './helpers/postgres.js'
import { setEnv, startS3, S3RVER_CREDENTIALS, type S3Server } from './helpers/s3-server.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * The cache plugin in real runs: a Postgres warehouse that refuses the
 * COMMIT (a deferred constraint trigger, checked after every row went in)
 * makes the file fail after it was parsed; the retry replays the parsed
 * rows instead of parsing again, and a remote file is not downloaded again.
 * A `parses` plugin records each time a format is asked to parse a file:
 * what a user would see in a profile, as a line per parse.
 */

const COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer', status: 'string' }"
const csv = (rows: number, label = 'r') => `id,n,status\n${Array.from({ length: rows }, (_, i) => `${label}-${i + 1},${i + 1},open`).join('\n')}\n`
const ROWS = 3000
const SUM = (ROWS * (ROWS + 1)) / 2

const PARSES_PLUGIN = `import { appendFileSync } from 'node:fs'
export const parses = {
  name: 'parses',
  enforce: 'pre',
  apply({ hooks }) {
    hooks.load.tapPromise('parses', async ({ file, validating }) => {
      appendFileSync('parses.log', file.path + (validating ? ' (validate)' : '') + '\\n')
      return undefined
    })
  },
}
`

const workspaces: Workspace[] = []
afterEach(() => {
  for (const ws of workspaces.splice(0)) ws.remove()
})

const parses = (ws: Workspace) => (ws.exists('parses.log') ? readFileSync(ws.file('parses.log'), 'utf8').trim().split('\n') : [])

interface Summary {
  committed: number
  failed: number
  rows: number
}

async function run(ws: Workspace, env: NodeJS.ProcessEnv, args: string[] = []) {
  const result = await ws.cli(['--json', ...args], { env })
  const events = result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown> & { event: string })
  const summary = events.find((event) => event.event === 'run:summary') as unknown as Summary | undefined
  if (summary === undefined) throw new Error(`no summary (exit ${result.code}):\n${result.stdout}\n${result.stderr}`)
  return { ...result, events, summary }
}

async function cacheStats(ws: Workspace, env: NodeJS.ProcessEnv): Promise<{ entries: number; bytes: number; location: string }> {
  const result = await ws.cli(['cache', 'stats', '--json'], { env })
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as { entries: number; bytes: number; location: string }
}

/** Every regular file under a directory, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))
}

describePostgres('cache plugin: a retry after the warehouse refused the commit', () => {
  const schema = freshSchema('filedge_cache')
  const ledger = freshSchema('filedge_cache_ledger')
  const env = { FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL }
  let tables = 0

  afterAll(async () => {
    await dropSchema(schema)
    await dropSchema(ledger)
  })

  /** A project writing to its own table, whose COMMITs the warehouse refuses until `allow()`. */
  async function project(options: { cache?: string; plugins?: string; imports?: string } = {}) {
    const table = `orders_${++tables}`
    const ws = workspace({
      'parses.mjs': PARSES_PLUGIN,
      'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
import { cache } from 'filedge/plugins/cache'
import { parses } from './parses.mjs'
${options.imports ?? ''}
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  plugins: [cache(${options.cache ?? "{ dir: '.cache', batches: { minBytes: 0 } }"}), parses, ${options.plugins ?? ''}],
  pipelines: [{
    name: ${JSON.stringify(table)},
    source: { dir: 'incoming' },
    destination: postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(schema)} }),
    table: ${JSON.stringify(table)},
    columns: ${COLUMNS},
  }],
})
`,
    })
    workspaces.push(ws)
    // A first file creates the table; then the warehouse starts refusing COMMITs.
    ws.write('incoming/seed.csv', csv(1, 'seed'))
    expect((await run(ws, env)).summary.committed).toBe(1)
    await pgQuery(`CREATE TABLE IF NOT EXISTS "${schema}".refuse (tab text PRIMARY KEY);
      CREATE OR REPLACE FUNCTION "${schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF EXISTS (SELECT 1 FROM "${schema}".refuse WHERE tab = TG_TABLE_NAME) THEN RAISE EXCEPTION 'the warehouse refused the commit'; END IF; RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON "${schema}"."${table}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse();
      INSERT INTO "${schema}".refuse VALUES ('${table}')`)
    const rows = async () =>
      (await pgQuery<{ rows: string; numbered: boolean; total: string }>(
        `SELECT count(*) AS rows, count(DISTINCT _source_row_number) = count(*) AND max(_source_row_number) = count(*) AS numbered, sum(n) AS total FROM "${schema}"."${table}" WHERE id NOT LIKE 'seed-%'`,
      ))[0]!
    return {
      ws,
      table,
      allow: () => pgQuery(`DELETE FROM "${schema}".refuse WHERE tab = $1`, [table]),
      rows,
    }
  }

  it('replays the parsed rows instead of parsing the file again, then drops them once the file commits', async () => {
    const { ws, allow, rows } = await project()
    ws.write('incoming/a.csv', csv(ROWS))
    const failed = await run(ws, env)
    expect(failed.code).toBe(1)
    expect(failed.summary.failed).toBe(1)
    expect(failed.stdout + failed.stderr).toContain('the warehouse refused the commit')
    expect(parses(ws).filter((line) => line === 'incoming/a.csv')).toHaveLength(1)
    expect((await cacheStats(ws, env)).entries).toBe(1)

    await allow()
    const retried = await run(ws, env)
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(retried.summary).toMatchObject({ committed: 1, failed: 0, rows: ROWS })
    // Not parsed again: the format was never asked for a.csv a second time.
    expect(parses(ws).filter((line) => line === 'incoming/a.csv')).toHaveLength(1)
    expect(await rows()).toEqual({ rows: String(ROWS), numbered: true, total: String(SUM) })
    // Committed: its rows are no longer kept.
    expect((await cacheStats(ws, env)).entries).toBe(0)
  })

  it('runs transforms again on the replayed rows, and validate always reads the file', async () => {
    const { ws, allow } = await project({
      // Rows changed in place, the batch spread: a replayed batch must carry its rows as a plain one does.
      plugins: `{ name: 'shout', apply({ hooks }) { hooks.transform.tapPromise('shout', async (batches) => (async function* () {
        for await (const batch of batches) {
          const status = batch.columns.indexOf('status')
          for (const row of batch.rows) row[status] = String(row[status]).toUpperCase()
          yield { ...batch }
        }
      })()) } }`,
    })
    ws.write('incoming/a.csv', csv(50))
    expect((await run(ws, env)).summary.failed).toBe(1)
    const validated = await ws.cli(['validate', 'incoming/a.csv'], { env })
    expect(validated.code, validated.stdout + validated.stderr).toBe(0)
    expect(parses(ws)).toEqual(['incoming/seed.csv', 'incoming/a.csv', 'incoming/a.csv (validate)'])
    await allow()
    expect((await run(ws, env)).summary.committed).toBe(1)
    expect(parses(ws)).toEqual(['incoming/seed.csv', 'incoming/a.csv', 'incoming/a.csv (validate)'])
    const statuses = await pgQuery<{ status: string; count: string }>(`SELECT status, count(*) FROM "${schema}"."orders_${tables}" WHERE id LIKE 'r-%' GROUP BY 1`)
    expect(statuses).toEqual([{ status: 'OPEN', count: '50' }])
  })

  it('by default keeps no rows of files under 1 MiB, which parse again faster', async () => {
    const { ws, allow } = await project({ cache: "{ dir: '.cache' }" })
    ws.write('incoming/a.csv', csv(ROWS))
    expect((await run(ws, env)).summary.failed).toBe(1)
    expect((await cacheStats(ws, env)).entries).toBe(0)
    await allow()
    expect((await run(ws, env)).summary.committed).toBe(1)
    expect(parses(ws).filter((line) => line === 'incoming/a.csv')).toHaveLength(2)
  })

  it('with batches: false, or a damaged entry, the retry parses the file again and commits the same rows', async () => {
    const off = await project({ cache: "{ dir: '.cache', batches: false }" })
    off.ws.write('incoming/a.csv', csv(ROWS))
    expect((await run(off.ws, env)).summary.failed).toBe(1)
    expect((await cacheStats(off.ws, env)).entries).toBe(0)
    await off.allow()
    expect((await run(off.ws, env)).summary.committed).toBe(1)
    expect(parses(off.ws).filter((line) => line === 'incoming/a.csv')).toHaveLength(2)

    const damaged = await project()
    damaged.ws.write('incoming/a.csv', csv(ROWS))
    expect((await run(damaged.ws, env)).summary.failed).toBe(1)
    // Flip one byte in the middle of the largest file the cache holds (the rows).
    const largest = filesUnder(damaged.ws.file('.cache')).sort((a, b) => statSync(b).size - statSync(a).size)[0]!
    const bytes = readFileSync(largest)
    bytes[bytes.length >> 1] ^= 0xff
    writeFileSync(largest, bytes)
    await damaged.allow()
    const retried = await run(damaged.ws, env)
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(parses(damaged.ws).filter((line) => line === 'incoming/a.csv')).toHaveLength(2)
    expect(await damaged.rows()).toEqual({ rows: String(ROWS), numbered: true, total: String(SUM) })
  })

  it('keeps the rows after the commit with batches: { keep: true }; filedge cache prune and clear', async () => {
    const { ws } = await project({ cache: "{ dir: '.cache', batches: { keep: true, minBytes: 0 } }" })
    await pgQuery(`DELETE FROM "${schema}".refuse`)
    ws.write('incoming/a.csv', csv(100))
    ws.write('incoming/b.csv', csv(100, 'b'))
    expect((await run(ws, env)).summary.committed).toBe(2)
    // The seed file's rows, a's and b's.
    const stats = await cacheStats(ws, env)
    expect(stats.entries).toBe(3)
    expect(stats.location).toBe(ws.file('.cache'))
    const human = await ws.cli(['cache', 'stats'], { env })
    expect(human.stdout).toMatch(/entries\s+3 \(limit: no limit\)/)
    expect(human.stdout).toMatch(/stored\s+[\d.]+ KiB \(limit: 5\.0 GiB\)/)
    const pruned = await ws.cli(['cache', 'prune', '--json'], { env })
    expect(JSON.parse(pruned.stdout)).toMatchObject({ removed: 0 })
    const cleared = await ws.cli(['cache', 'clear'], { env })
    expect(cleared.stdout).toMatch(/^cleared .*\.cache: 3 entries removed, [\d.]+ KiB freed/)
    expect((await cacheStats(ws, env)).entries).toBe(0)
  })
})

describe('cache plugin: a destination that fails the moment it has read the rows', () => {
  it('still keeps them (the end of the run waits for the write), and the retry replays them into SQLite', async () => {
    const rows = 200_000
    const ws = workspace({
      'parses.mjs': PARSES_PLUGIN,
      // Reads every row, then fails as a warehouse would that drops the connection at COMMIT; the run ends right after.
      'refuse.mjs': `export const refuse = { name: 'refuse', enforce: 'pre', apply({ hooks }) {
  hooks.commit.tapPromise({ name: 'refuse', stage: -1000 }, async (job) => {
    if (process.env.REFUSE !== '1') return undefined
    for await (const batch of job.batches) void batch
    throw new Error('the connection dropped at COMMIT')
  })
} }
`,
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { cache } from 'filedge/plugins/cache'
import { parses } from './parses.mjs'
import { refuse } from './refuse.mjs'
export default defineConfig({
  plugins: [cache(), parses, refuse],
  pipelines: [{ name: 'o', source: { dir: 'incoming' }, destination: sqlite({ path: 'w.db' }), table: 'o', columns: ${COLUMNS} }],
})
`,
    })
    workspaces.push(ws)
    // A status of a few words and empty (null) ones: the replay binds it through its dictionary.
    const statuses = ['open', 'closed', 'held', '']
    ws.write('incoming/big.csv', `id,n,status\n${Array.from({ length: rows }, (_, i) => `r-${i + 1},${i + 1},${statuses[i % 4]}`).join('\n')}\n`)
    expect(statSync(ws.file('incoming/big.csv')).size).toBeGreaterThan(1024 * 1024)
    const failed = await run(ws, { REFUSE: '1' })
    expect(failed.summary.failed).toBe(1)
    expect(failed.stdout + failed.stderr).toContain('the connection dropped at COMMIT')
    // The default place and limits, as `filedge cache stats` reports them.
    const stats = await cacheStats(ws, {})
    expect(stats).toMatchObject({ entries: 1, location: ws.file('.filedge/cache'), maxBytes: 5 * 1024 ** 3 })
    const retried = await run(ws, {})
    expect(retried.summary).toMatchObject({ committed: 1, rows })
    expect(parses(ws)).toEqual(['incoming/big.csv'])
    // Each row with its own record number (row i holds n = i), and its status.
    const [table] = ws.query<{ rows: number; total: number; numbered: number }>('w.db', 'SELECT count(*) AS rows, sum(n) AS total, sum(_source_row_number = n) AS numbered FROM o')
    expect(table).toEqual({ rows, total: (rows * (rows + 1)) / 2, numbered: rows })
    const byStatus = ws.query<{ status: string | null; rows: number; first: number }>('w.db', 'SELECT status, count(*) AS rows, min(n) AS first FROM o GROUP BY status ORDER BY first')
    expect(byStatus).toEqual([
      { status: 'open', rows: rows / 4, first: 1 },
      { status: 'closed', rows: rows / 4, first: 2 },
      { status: 'held', rows: rows / 4, first: 3 },
      { status: null, rows: rows / 4, first: 4 },
    ])
    expect(ws.query('w.db', "SELECT count(*) AS wrong FROM o WHERE status IS NOT (CASE (n - 1) % 4 WHEN 0 THEN 'open' WHEN 1 THEN 'closed' WHEN 2 THEN 'held' END)")).toEqual([{ wrong: 0 }])
    expect((await cacheStats(ws, {})).entries).toBe(0)
  })
})

describe('filedge cache without a cache plugin', () => {
  it('says how to add one, and --dir opens a directory directly', async () => {
    const ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default defineConfig({ pipelines: [{ name: 'o', source: { dir: 'incoming' }, destination: sqlite({ path: 'w.db' }), table: 'o', columns: ${COLUMNS} }] })
`,
    })
    workspaces.push(ws)
    const none = await ws.cli(['cache', 'stats'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('the config has no cache plugin (add cache() from filedge/plugins/cache to plugins), or name a directory with --dir')
    const direct = await ws.cli(['cache', 'stats', '--json', '--dir', 'somewhere'])
    expect(direct.code, direct.stderr).toBe(0)
    expect(JSON.parse(direct.stdout)).toMatchObject({ entries: 0, bytes: 0, location: ws.file('somewhere') })
  })
})

describePostgres('cache plugin: remote files are downloaded once', () => {
  let savedEnv: Record<string, string | undefined> = {}
  let server: S3Server
  const schema = freshSchema('filedge_cache_s3')
  const ledger = freshSchema('filedge_cache_s3_ledger')
  const env = { ...S3RVER_CREDENTIALS, FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL }

  beforeAll(async () => {
    savedEnv = setEnv(S3RVER_CREDENTIALS)
    server = await startS3()
  })
  afterAll(async () => {
    await server?.close()
    setEnv(savedEnv)
    await dropSchema(schema)
    await dropSchema(ledger)
  })

  it('a retry and a second pipeline read the object from the cache, not the bucket', async () => {
    const bucket = `cache-${randomBytes(3).toString('hex')}`
    await server.createBucket(bucket)
    // Over 1 MiB (spooled while hashed) and a small one (kept in memory).
    const big = csv(60_000)
    expect(Buffer.byteLength(big)).toBeGreaterThan(1024 * 1024)
    await server.put(bucket, 'in/big.csv', big)
    await server.put(bucket, 'in/small.csv', csv(10, 's'))
    const pipeline = (name: string) => `{
      name: ${JSON.stringify(name)},
      source: s3({ bucket: ${JSON.stringify(bucket)}, prefix: 'in/', endpoint: ${JSON.stringify(server.endpoint)}, forcePathStyle: true }),
      destination: postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(schema)} }),
      table: ${JSON.stringify(name)},
      columns: ${COLUMNS},
    }`
    const ws = workspace({
      'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
import { s3 } from 'filedge/plugins/s3'
import { cache } from 'filedge/plugins/cache'
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  plugins: [cache({ dir: '.cache', batches: false })],
  pipelines: [${pipeline('first')}, ${pipeline('second')}],
})
`,
    })
    workspaces.push(ws)
    mkdirSync(ws.file('tmp'))
    const cliEnv = { ...env, TMPDIR: ws.file('tmp') }
    await pgQuery(`CREATE SCHEMA IF NOT EXISTS "${schema}";
      CREATE TABLE "${schema}".first (id text NOT NULL, n bigint, status text, _source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL);
      CREATE FUNCTION "${schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the warehouse refused the commit'; END $$;
      CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON "${schema}".first DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse()`)
    await server.takeRequests()
    const gets = (requests: string[]) => requests.filter((request) => request.startsWith(`GET /${bucket}/in/`)).map((request) => request.replace(/\?.*$/, '')).sort()

    const failed = await run(ws, cliEnv, ['--pipeline', 'first'])
    expect(failed.summary.failed).toBe(2)
    expect(gets(await server.takeRequests())).toEqual([`GET /${bucket}/in/big.csv`, `GET /${bucket}/in/small.csv`])

    await pgQuery(`DROP TRIGGER refuse ON "${schema}".first`)
    const retried = await run(ws, cliEnv, ['--pipeline', 'first'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(retried.summary).toMatchObject({ committed: 2, rows: 60_010 })
    expect(gets(await server.takeRequests())).toEqual([])

    const second = await run(ws, cliEnv, ['--pipeline', 'second'])
    expect(second.summary).toMatchObject({ committed: 2, rows: 60_010 })
    expect(gets(await server.takeRequests())).toEqual([])
    const [counted] = await pgQuery<{ first: string; second: string }>(`SELECT (SELECT sum(n) FROM "${schema}".first) AS first, (SELECT sum(n) FROM "${schema}".second) AS second`)
    expect(counted).toEqual({ first: String((60_000 * 60_001) / 2 + 55), second: String((60_000 * 60_001) / 2 + 55) })
    // Nothing spooled is left behind.
    expect(readdirSync(ws.file('tmp')).flatMap((entry) => readdirSync(path.join(ws.file('tmp'), entry)))).toEqual([])
  })
})
