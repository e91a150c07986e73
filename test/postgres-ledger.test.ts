import { createHash } from 'node:crypto'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { resolveConfig } from '../core/index.js'
import { openLedger } from '../core/ledger/open.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import type { LedgerStore } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './helpers/postgres.js'

/**
 * What only the Postgres ledger has to prove: leases judged by the server's
 * clock, and many workers (here many connections) claiming at once. The
 * semantics shared with SQLite are in ledger.test.ts.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const hashOf = (seed: string) => createHash('sha256').update(seed).digest('hex')

describePostgres('Postgres ledger under concurrency and real time', () => {
  let schema: string
  let stores: LedgerStore[]
  const open = async () => {
    const store = await openPostgresLedger(PG_URL, { schema })
    stores.push(store)
    return store
  }
  beforeEach(() => {
    schema = freshSchema('filedge_ledger')
    stores = []
  })
  afterEach(async () => {
    for (const store of stores) await store.close()
    await dropSchema(schema)
  })

  it("judges leases by the database's clock: held while live, reclaimable once expired", async () => {
    const a = await open()
    const b = await open()
    const claim = (worker: string) => ({ pipeline: 'p', hash: hashOf('x'), path: 'x.csv', size: 1, worker, maxAttempts: 3, maxLapses: 5, ttlMs: 1_500 })
    expect(await a.claim(claim('A'))).toMatchObject({ status: 'claimed', attempt: 1 })
    expect(await b.claim(claim('B'))).toMatchObject({ status: 'skipped', reason: 'held' })
    const [file] = await a.find(hashOf('x'))
    const [{ now }] = await pgQuery<{ now: Date }>('SELECT now()')
    const remaining = Date.parse(file.leaseExpiresAt!) - now.getTime()
    expect(remaining).toBeGreaterThan(0)
    expect(remaining).toBeLessThanOrEqual(1_500)
    // Well past the lease, by any clock: the server decides.
    await sleep(2_500)
    expect(await b.claim(claim('B'))).toMatchObject({ status: 'claimed', attempt: 1, reclaimed: true })
  })

  it('gives each of many files to exactly one of many racing workers, and registers each once', async () => {
    const workers = await Promise.all(Array.from({ length: 6 }, () => open()))
    const hashes = Array.from({ length: 40 }, (_, i) => hashOf(`file ${i}`))
    const results = await Promise.all(
      workers.flatMap((store, w) =>
        hashes.map(async (hash) => ({
          hash,
          result: await store.claim({ pipeline: 'p', hash, path: `in/${hash.slice(0, 6)}.csv`, size: 1, worker: `W${w}`, maxAttempts: 3, maxLapses: 5, ttlMs: 60_000 }),
        })),
      ),
    )
    for (const hash of hashes) {
      const mine = results.filter((entry) => entry.hash === hash).map((entry) => entry.result)
      expect(mine.filter((result) => result.status === 'claimed')).toHaveLength(1)
      expect(mine.filter((result) => result.isNew)).toHaveLength(1)
      expect(mine.filter((result) => result.status === 'skipped' && result.reason === 'held')).toHaveLength(workers.length - 1)
    }
    const events = await pgQuery<{ event: string; n: number }>(`SELECT event, count(*)::int AS n FROM "${schema}".events GROUP BY event ORDER BY event`)
    expect(events).toEqual([
      { event: 'file:claimed', n: hashes.length },
      { event: 'file:discovered', n: hashes.length },
    ])
  })

  it('is opened from the config URL, keeps ledgers in separate schemas, and never shows a password', async () => {
    const other = freshSchema('filedge_ledger')
    const withPassword = new URL(ledgerUrl(schema))
    withPassword.password = 's3cret-pw'
    try {
      const config = resolveConfig({ ledger: withPassword.toString(), pipelines: [{ name: 'p', source: 'in', destination: { name: 'x', prepare: async () => {}, write: async () => ({ rows: 0 }), capabilities: { transactions: true, writeModes: ['append'] }, describe: () => 'x' }, table: 't', columns: { id: 'string' } }] }, { cwd: '/' })
      const store = await openLedger(config)
      stores.push(store)
      expect(store.kind).toBe('postgres')
      expect(store.describe()).not.toContain('s3cret-pw')
      expect(store.describe()).toContain(schema)
      await store.claim({ pipeline: 'p', hash: hashOf('y'), path: 'y.csv', size: 1, worker: 'A', maxAttempts: 3, maxLapses: 5, ttlMs: 60_000 })
      const elsewhere = await openPostgresLedger(PG_URL, { schema: other })
      stores.push(elsewhere)
      expect(await elsewhere.find(hashOf('y'))).toEqual([])
      expect(await store.find(hashOf('y'))).toHaveLength(1)

      const unreachable = new URL(withPassword)
      unreachable.port = '1'
      const error = await openPostgresLedger(unreachable.toString(), { schema }).catch((caught: unknown) => caught)
      expect(String((error as Error).message)).toMatch(/cannot open/)
      expect(String((error as Error).message)).not.toContain('s3cret-pw')
    } finally {
      await dropSchema(other)
    }
  })
})
