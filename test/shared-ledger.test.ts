import { readFileSync, utimesSync } from 'node:fs'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import type { ClaimInput, LedgerStore } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './helpers/postgres.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Workers sharing a Postgres ledger ask it, before reading a file, whether
 * another worker has committed or holds it since their run began
 * (`knownStats`, through the stat cache): what the claim would answer, without
 * reading, hashing or claiming the file. They start asking once another
 * worker shows itself (a file it holds); a worker alone never asks. A lease
 * that has expired is not held: that file is read and reclaimed as before.
 */

const input = (name: string, overrides: Partial<ClaimInput> = {}): ClaimInput => ({
  pipeline: 'orders',
  hash: name.padEnd(64, '0'),
  path: `incoming/${name}.csv`,
  size: 10,
  worker: 'A',
  maxAttempts: 2,
  maxLapses: 5,
  ttlMs: 60_000,
  remember: true,
  version: `v-${name}`,
  ...overrides,
})

describePostgres('a ledger shared by workers', () => {
  let schema: string
  let stores: LedgerStore[]
  let ws: Workspace | undefined
  beforeEach(() => {
    schema = freshSchema('filedge_shared')
    stores = []
  })
  afterEach(async () => {
    for (const store of stores) await store.close()
    ws?.remove()
    await dropSchema(schema)
  })
  const open = async (now?: () => number) => {
    const store = await openPostgresLedger(PG_URL, { schema, ...(now === undefined ? {} : { now }) })
    stores.push(store)
    return store
  }

  it('says which of the paths asked about are committed, terminally failed or held by a live lease, and nothing of the others', async () => {
    let clock = Date.parse('2026-01-01T00:00:00Z')
    const ledger = await open(() => clock)
    const claim = async (name: string, ttlMs = 60_000) => {
      const result = await ledger.claim(input(name, { ttlMs }))
      if (result.status !== 'claimed') throw new Error(`${name}: ${result.status}`)
      return { pipeline: 'orders', hash: input(name).hash, token: result.token, worker: 'A', attempt: result.attempt }
    }
    await ledger.complete(await claim('a1'), 3)
    const failing = await claim('b1')
    await ledger.fail(failing, 'bad', 2)
    await ledger.fail({ ...(await claim('b1')), attempt: 2 }, 'bad again', 2)
    const retryable = await claim('c1')
    await ledger.fail(retryable, 'bad', 2)
    await claim('d1')
    await claim('e1', 1_000)
    clock += 5_000
    const known = await ledger.knownStats!('orders', ['incoming/a1.csv', 'incoming/b1.csv', 'incoming/c1.csv', 'incoming/d1.csv', 'incoming/e1.csv', 'incoming/x1.csv'], 2)
    expect(known.map(({ path, state }) => [path, state]).sort()).toEqual([
      ['incoming/a1.csv', 'COMMITTED'],
      ['incoming/b1.csv', 'FAILED'],
      ['incoming/d1.csv', 'PROCESSING'],
    ])
    expect(known.find((entry) => entry.path === 'incoming/d1.csv')).toMatchObject({ hash: input('d1').hash, version: 'v-d1', size: 10, worker: 'A' })
  })

  it('once it met a file another worker holds, skips unread the next it holds, and reads and reclaims one whose lease has expired', { timeout: 60_000 }, async () => {
    const hashLog = `{ name: 'hash-log', apply({ hooks }) { hooks.beforeHash.tapPromise('hash-log', async (candidate) => { appendFileSync('hashed.log', candidate.path + '\\n') }) } }`
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: `{ id: { type: 'string', required: true }, n: 'integer' }`,
        imports: "import { appendFileSync } from 'node:fs'\nimport { env } from 'filedge'",
        plugins: hashLog,
        // One file at a time, in path order: the first held file shows the other worker before the next is asked about.
        top: "ledger: env('FILEDGE_LEDGER_URL'), concurrency: 1,",
      }),
      'incoming/held-a.csv': 'id,n\nh1,1\n',
      'incoming/held-b.csv': 'id,n\nh2,2\n',
      'incoming/lapsed.csv': 'id,n\nl1,3\n',
    })
    const w = ws
    // Old enough that the stat vouches for the bytes: the claim records it in the stat cache.
    for (const name of ['held-a', 'held-b', 'lapsed']) utimesSync(w.file(`incoming/${name}.csv`), Date.now() / 1000 - 3600, Date.now() / 1000 - 3600)
    const env = { FILEDGE_LEDGER_URL: ledgerUrl(schema) }
    expect((await w.cli(['--reporter', 'silent'], { env })).code).toBe(0)
    // Another worker took the files back, as if they had arrived again: two leases live, one long expired.
    await pgQuery(
      `UPDATE "${schema}".files SET state = 'PROCESSING', lease_token = 'theirs', worker = 'other-worker',
         lease_expires_at = CASE WHEN path LIKE 'incoming/held-%' THEN now() + interval '1 hour' ELSE now() - interval '1 hour' END`,
    )
    const before = readFileSync(w.file('hashed.log'), 'utf8')
    const result = await w.cli(['--json'], { env })
    expect(result.code).toBe(0)
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    // The first held file is read and its claim says held; the second is known held without reading it.
    expect(lines.filter((line) => line.event === 'file:skipped').map(({ path, reason, message }) => ({ path, reason, message }))).toEqual([
      { path: 'incoming/held-a.csv', reason: 'held', message: 'being loaded by other-worker' },
      { path: 'incoming/held-b.csv', reason: 'held', message: 'being loaded by other-worker' },
    ])
    expect(lines.filter((line) => line.event === 'file:claimed').map(({ path, reclaimed }) => ({ path, reclaimed }))).toEqual([{ path: 'incoming/lapsed.csv', reclaimed: true }])
    expect(readFileSync(w.file('hashed.log'), 'utf8').slice(before.length).split('\n').filter(Boolean)).toEqual(['incoming/held-a.csv', 'incoming/lapsed.csv'])
  })
})
