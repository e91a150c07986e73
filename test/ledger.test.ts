import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import type { ClaimInput, ClaimResult, LeaseKey, LedgerStore } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'

/**
 * Ledger semantics, run against both stores with the same tests: SQLite on a
 * real file, Postgres on the real server in a schema of its own.
 *
 * Time: both stores take a `now` option, and these tests move a fake clock
 * instead of sleeping, so they are exact and fast. For Postgres that clock
 * replaces the server's `statement_timestamp()` in every lease decision; the
 * suite at the end of this file checks the real database clock with short
 * real TTLs, so both paths are covered.
 */

interface Backend {
  readonly name: string
  setup(): Promise<void>
  teardown(): Promise<void>
  open(now: () => number): Promise<LedgerStore>
  /** Tries to rewrite history behind the ledger's back; each entry is what the database answered. */
  rewriteHistory(): Promise<unknown[]>
  migrations(): Promise<number[]>
  /** The store's migrations, each of which must be applied exactly once, in order. */
  readonly migrationVersions: readonly number[]
}

const sqliteBackend = (): Backend => {
  let dir = ''
  return {
    name: 'SQLite',
    async setup() {
      dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-ledger-'))
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true })
    },
    async open(now) {
      return openSqliteLedger(path.join(dir, 'ledger.db'), { now })
    },
    async rewriteHistory() {
      const db = new Database(path.join(dir, 'ledger.db'))
      const attempt = (sql: string) => {
        try {
          return db.prepare(sql).run()
        } catch (error) {
          return error
        }
      }
      try {
        // INSERT OR REPLACE (and REPLACE) on an existing id deletes the old row without firing DELETE triggers.
        const replace = (verb: string) => `${verb} INTO events (id, at, pipeline, hash, event) SELECT min(id), at, pipeline, hash, 'x' FROM events`
        return [attempt("UPDATE events SET event = 'x'"), attempt('DELETE FROM events'), attempt(replace('INSERT OR REPLACE')), attempt(replace('REPLACE'))]
      } finally {
        db.close()
      }
    },
    // 1: files, paths, events; 2: the stat cache; 3: no REPLACE into events; 7: ponds; 8: named leases and cursors; 10: failures indexed.
    migrationVersions: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    async migrations() {
      const db = new Database(path.join(dir, 'ledger.db'), { readonly: true })
      try {
        return (db.prepare('SELECT version FROM filedge_migrations').all() as { version: number }[]).map((row) => row.version)
      } finally {
        db.close()
      }
    },
  }
}

const postgresBackend = (): Backend => {
  let schema = ''
  return {
    name: 'Postgres',
    async setup() {
      schema = freshSchema('filedge_ledger')
    },
    async teardown() {
      await dropSchema(schema)
    },
    open: (now) => openPostgresLedger(PG_URL, { schema, now }),
    async rewriteHistory() {
      const attempt = (sql: string) => pgQuery(sql).catch((error: unknown) => error)
      const upsert = `INSERT INTO "${schema}".events (id, at, pipeline, hash, event) OVERRIDING SYSTEM VALUE
        SELECT id, at, pipeline, hash, 'x' FROM "${schema}".events ORDER BY id LIMIT 1 ON CONFLICT (id) DO UPDATE SET event = 'x'`
      return [
        await attempt(`UPDATE "${schema}".events SET event = 'x'`),
        await attempt(`DELETE FROM "${schema}".events`),
        await attempt(`TRUNCATE "${schema}".events`),
        await attempt(upsert),
      ]
    },
    // 1: files, paths, events; 2: the stat cache; 6: ponds; 7: named leases and cursors.
    migrationVersions: [1, 2, 3, 4, 5, 6, 7, 8],
    async migrations() {
      return (await pgQuery<{ version: number }>(`SELECT version FROM "${schema}".filedge_migrations ORDER BY version`)).map((row) => row.version)
    },
  }
}

const input = (worker: string, overrides: Partial<ClaimInput> = {}): ClaimInput => ({
  pipeline: 'orders',
  hash: 'a'.repeat(64),
  path: 'incoming/a.csv',
  size: 10,
  worker,
  maxAttempts: 3,
  maxLapses: 5,
  ttlMs: 1_000,
  ...overrides,
})

async function claimed(store: LedgerStore, worker: string, overrides: Partial<ClaimInput> = {}): Promise<LeaseKey & { result: Extract<ClaimResult, { status: 'claimed' }> }> {
  const result = await store.claim(input(worker, overrides))
  if (result.status !== 'claimed') throw new Error(`expected a claim, got ${result.status}: ${result.message}`)
  return { pipeline: 'orders', hash: overrides.hash ?? 'a'.repeat(64), token: result.token, worker, attempt: result.attempt, result }
}

function ledgerSemantics(backend: Backend): void {
  let clock: number
  let stores: LedgerStore[]
  const open = async () => {
    const store = await backend.open(() => clock)
    stores.push(store)
    return store
  }

  beforeEach(async () => {
    clock = Date.parse('2026-01-01T00:00:00Z')
    stores = []
    await backend.setup()
  })
  afterEach(async () => {
    for (const store of stores) await store.close()
    await backend.teardown()
  })

  it('registers a file once however many workers discover it', async () => {
    const a = await open()
    const b = await open()
    const first = await a.claim(input('A'))
    const second = await b.claim(input('B'))
    expect(first).toMatchObject({ status: 'claimed', isNew: true })
    expect(second).toMatchObject({ status: 'skipped', reason: 'held', isNew: false })
  })

  it('lets a live lease be renewed and keeps others off it', async () => {
    const a = await open()
    const key = await claimed(a, 'A')
    clock += 900
    expect(await a.heartbeat(key, 1_000)).toBe(true)
    clock += 900 // past the original expiry, within the renewed one
    expect(await (await open()).claim(input('B'))).toMatchObject({ status: 'skipped', reason: 'held' })
  })

  it('fences a worker whose lease expired and was reclaimed: it cannot complete, fail, renew or release', async () => {
    const a = await open()
    const b = await open()
    const stale = await claimed(a, 'A')
    clock += 1_001
    const fresh = await claimed(b, 'B')
    // A lapse is not an attempt: the reclaim continues attempt 1, and counts the lapse.
    expect(fresh.attempt).toBe(1)

    expect(await a.complete(stale, 5)).toBe(false)
    expect(await a.fail(stale, 'late failure', 3)).toEqual({ lost: true, terminal: false })
    expect(await a.heartbeat(stale, 1_000)).toBe(false)
    expect(await a.release(stale)).toBe(false)
    expect(await a.holds(stale)).toBe(false)

    const [file] = await b.find('a'.repeat(64))
    expect(file).toMatchObject({ state: 'PROCESSING', worker: 'B', attempts: 1, lapses: 1 })
    expect(await b.complete(fresh, 7)).toBe(true)
    const [done] = await b.find('aaaaaa')
    expect(done).toMatchObject({ state: 'COMMITTED', rows: 7, paths: ['incoming/a.csv'] })
    const events = await b.events('orders', 'a'.repeat(64))
    expect(events.map((event) => [event.event, event.worker])).toEqual([
      ['file:discovered', 'A'],
      ['file:claimed', 'A'],
      ['file:reclaimed', 'B'],
      ['file:committed', 'B'],
    ])
    expect(events[2]).toMatchObject({ fromState: 'PROCESSING', toState: 'PROCESSING', attempt: 1, error: 'lease of A expired (lapse 1 of 5)' })
    expect((await b.find('aaaaaa'))[0]).toMatchObject({ lapses: 0 })
  })

  it('still lets the holder finish when its lease expired but nobody took the file', async () => {
    const a = await open()
    const key = await claimed(a, 'A')
    clock += 5_000
    expect(await a.complete(key, 1)).toBe(true)
  })

  it('counts attempts toward the cap, then skips the file as terminal until requeued', async () => {
    const a = await open()
    for (let attempt = 1; attempt <= 3; attempt++) {
      const key = await claimed(a, 'A')
      expect(key.attempt).toBe(attempt)
      expect(await a.fail(key, `boom ${attempt}`, 3)).toEqual({ lost: false, terminal: attempt === 3 })
    }
    expect(await a.claim(input('A'))).toMatchObject({ status: 'skipped', reason: 'terminal' })
    const status = await a.status(() => 3)
    expect(status.pipelines).toEqual([{ pipeline: 'orders', PENDING: 0, PROCESSING: 0, COMMITTED: 0, FAILED: 1, terminal: 1, expired: 0, rows: 0, quarantined: 0 }])
    expect(status.recentFailures.map((file) => file.error)).toEqual(['boom 3'])
    const { requeued } = await a.requeue({ failed: true }, 'operator')
    expect(requeued).toHaveLength(1)
    expect(requeued[0]).toMatchObject({ state: 'PENDING', attempts: 0 })
    expect((await claimed(a, 'A')).attempt).toBe(1)
    const events = (await a.events('orders', 'a'.repeat(64))).map((event) => event.event)
    expect(events).toEqual(['file:discovered', 'file:claimed', 'file:failed', 'file:retried', 'file:failed', 'file:retried', 'file:failed', 'file:requeued', 'file:claimed'])
  })

  // Issue 14: an expired lease counted as an attempt, so three unrelated crashes made a good file terminal,
  // and the lapse on the last attempt was decided inside the claim, without asking the destination.
  it('gives lapses a budget of their own: a lapse on the last attempt is reclaimed; too many in a row hand the claimer a lapsed lease', async () => {
    const a = await open()
    const first = await claimed(a, 'A', { maxAttempts: 1, maxLapses: 3 })
    clock += 2_000
    const second = await claimed(a, 'B', { maxAttempts: 1, maxLapses: 3 })
    expect(second).toMatchObject({ attempt: 1, result: { reclaimed: true, verify: true, loadId: first.result.loadId } })
    expect(second.result.lapsed).toBeUndefined()
    clock += 2_000
    expect((await claimed(a, 'C', { maxAttempts: 1, maxLapses: 3 })).result.lapsed).toBeUndefined()
    clock += 2_000
    const last = await claimed(a, 'D', { maxAttempts: 1, maxLapses: 3 })
    expect(last.result.lapsed).toMatch(/^lease expired 3 times in a row \(retry\.lapses is 3\): worker C stopped during attempt 1/)
    // The caller asked the destination, which does not have the load: the file fails, terminally.
    expect(await a.fail(last, last.result.lapsed!, 1, true)).toEqual({ lost: false, terminal: true })
    expect(await a.claim(input('E', { maxAttempts: 1, maxLapses: 3 }))).toMatchObject({ status: 'skipped', reason: 'terminal' })
    const [file] = await a.find('aaaaaa')
    expect(file).toMatchObject({ state: 'FAILED', attempts: 1, lapses: 3 })
    expect(file.error).toMatch(/^lease expired 3 times in a row/)
  })

  it('charges a lapsed file all its attempts, and resets lapses on an outcome', async () => {
    const a = await open()
    await claimed(a, 'A', { maxLapses: 1 })
    clock += 2_000
    const lapsed = await claimed(a, 'B', { maxLapses: 1 })
    expect(lapsed.result.lapsed).toBeDefined()
    expect(await a.fail(lapsed, 'gave up', 3, true)).toEqual({ lost: false, terminal: true })
    expect((await a.find('aaaaaa'))[0]).toMatchObject({ state: 'FAILED', attempts: 3 })
    expect((await a.status(() => 3)).pipelines[0]).toMatchObject({ FAILED: 1, terminal: 1 })

    const other = 'b'.repeat(64)
    await claimed(a, 'A', { hash: other })
    clock += 2_000
    const reclaimed = await claimed(a, 'B', { hash: other })
    expect(await a.fail(reclaimed, 'a real failure', 3)).toEqual({ lost: false, terminal: false })
    expect((await a.find(other))[0]).toMatchObject({ state: 'FAILED', attempts: 1, lapses: 0 })
  })

  it('names each load: kept by reclaims, retries, releases and requeues of a failure; new for a requeued commit', async () => {
    const a = await open()
    const first = await claimed(a, 'A')
    expect(first.result).toMatchObject({ verify: false, reopened: false })
    const load = first.result.loadId
    expect(await a.release(first)).toBe(true)
    const released = await claimed(a, 'A')
    expect(released.result).toMatchObject({ loadId: load, verify: true })
    await a.fail(released, 'commit outcome unknown', 3)
    const retried = await claimed(a, 'A')
    expect(retried.result).toMatchObject({ loadId: load, verify: true, retried: true })
    await a.fail(retried, 'again', 3)
    await a.requeue({ failed: true }, 'operator')
    const requeued = await claimed(a, 'A')
    expect(requeued.result).toMatchObject({ loadId: load, verify: true })
    expect(await a.complete(requeued, 4)).toBe(true)
    expect((await a.find('aaaaaa'))[0].loadId).toBe(load)
    await a.requeue({ files: [{ pipeline: 'orders', hash: 'a'.repeat(64) }] }, 'operator')
    const reload = await claimed(a, 'A')
    expect(reload.result.verify).toBe(false)
    expect(reload.result.loadId).not.toBe(load)
  })

  it('records a healed file with its own event and how it was healed', async () => {
    const a = await open()
    const key = await claimed(a, 'A')
    expect(await a.complete(key, 12, { healed: 'already committed in the destination' })).toBe(true)
    const [file] = await a.find('aaaaaa')
    expect(file).toMatchObject({ state: 'COMMITTED', rows: 12 })
    expect((await a.events('orders', 'a'.repeat(64))).at(-1)).toMatchObject({ event: 'file:healed', fromState: 'PROCESSING', toState: 'COMMITTED', error: 'already committed in the destination' })
  })

  // Issue 14: a truncate snapshot equal to an older one was skipped as committed, and the table kept the newer one.
  it('reopens committed bytes that arrive again, when asked to: a new path, or a new version at a known path', async () => {
    const a = await open()
    const truncate = { reopenOnArrival: true }
    const first = await claimed(a, 'A', { ...truncate, path: 'in/01.csv', version: 'v1' })
    await a.complete(first, 3)
    // The same arrival seen again (a rerun): committed.
    expect(await a.claim(input('A', { ...truncate, path: 'in/01.csv', version: 'v1' }))).toMatchObject({ status: 'skipped', reason: 'committed' })
    // An append pipeline never reopens, whatever arrives.
    expect(await a.claim(input('A', { path: 'in/02.csv', version: 'v1' }))).toMatchObject({ status: 'skipped', reason: 'committed' })
    // The same bytes under a new name, in a truncate pipeline: a new load.
    const again = await claimed(a, 'A', { ...truncate, path: 'in/03.csv', version: 'v3' })
    expect(again.result).toMatchObject({ reopened: true, verify: false, isNew: false })
    expect(again.attempt).toBe(1)
    expect(again.result.loadId).not.toBe(first.result.loadId)
    await a.complete(again, 3)
    expect(await a.claim(input('A', { ...truncate, path: 'in/03.csv', version: 'v3' }))).toMatchObject({ status: 'skipped', reason: 'committed' })
    // A known path written again with the same bytes (a new version).
    const rewritten = await claimed(a, 'A', { ...truncate, path: 'in/01.csv', version: 'v9' })
    expect(rewritten.result.reopened).toBe(true)
    // Seen while another worker holds the file: not taken as seen, so the claim after the holder finishes reopens it.
    expect(await a.claim(input('B', { ...truncate, path: 'in/03.csv', version: 'v4' }))).toMatchObject({ status: 'skipped', reason: 'held' })
    await a.complete(rewritten, 3)
    expect((await claimed(a, 'B', { ...truncate, path: 'in/03.csv', version: 'v4' })).result.reopened).toBe(true)
    const events = (await a.events('orders', 'a'.repeat(64))).filter((event) => event.event === 'file:reopened')
    expect(events.map((event) => [event.fromState, event.toState, event.attempt, event.path])).toEqual([
      ['COMMITTED', 'PROCESSING', 1, 'in/03.csv'],
      ['COMMITTED', 'PROCESSING', 1, 'in/01.csv'],
      ['COMMITTED', 'PROCESSING', 1, 'in/03.csv'],
    ])
  })

  it('reports an expired lease in status until a worker reclaims it', async () => {
    const a = await open()
    await claimed(a, 'A')
    clock += 1_500
    expect((await a.status(() => 3)).pipelines[0]).toMatchObject({ PROCESSING: 1, expired: 1 })
  })

  it('gives the attempt back on release', async () => {
    const a = await open()
    const key = await claimed(a, 'A')
    expect(await a.release(key)).toBe(true)
    expect((await claimed(a, 'A')).attempt).toBe(1)
  })

  it('refuses to requeue a file a live worker holds', async () => {
    const a = await open()
    await claimed(a, 'A')
    const result = await a.requeue({ files: [{ pipeline: 'orders', hash: 'a'.repeat(64) }] }, 'operator')
    expect(result.requeued).toHaveLength(0)
    expect(result.refused[0].reason).toContain('being loaded by A')
  })

  it('remembers every name the same bytes arrived under, and finds the file by any of them', async () => {
    const a = await open()
    const key = await claimed(a, 'A')
    await a.complete(key, 3)
    expect(await a.claim(input('B', { path: 'incoming/copy.csv' }))).toMatchObject({ status: 'skipped', reason: 'committed', isNew: false })
    const [byAlias] = await a.find('incoming/copy.csv')
    expect(byAlias).toMatchObject({ path: 'incoming/a.csv', paths: ['incoming/a.csv', 'incoming/copy.csv'], rows: 3 })
    const events = await a.events('orders', 'a'.repeat(64))
    expect(events.at(-1)).toMatchObject({ event: 'file:alias', fromState: 'COMMITTED', toState: 'COMMITTED', path: 'incoming/copy.csv', worker: 'B' })
  })

  it('keeps the event history append-only', async () => {
    const a = await open()
    await claimed(a, 'A')
    const answers = await backend.rewriteHistory()
    expect(answers.length).toBeGreaterThan(0)
    for (const answer of answers) expect(String(answer)).toMatch(/append-only/)
    expect((await a.events('orders', 'a'.repeat(64))).map((event) => event.event)).toEqual(['file:discovered', 'file:claimed'])
  })

  it('applies migrations once when several connections open a new ledger together', async () => {
    const opened = await Promise.all(Array.from({ length: 4 }, () => open()))
    expect(opened).toHaveLength(4)
    // Each migration exactly once, in order (SQLite 3 to 5 and Postgres 3 and 4 included: the events guard, load ids, lapses, versions, the stat cache by version).
    expect(await backend.migrations()).toEqual(backend.migrationVersions)
  })
}

describe('SQLite ledger', () => ledgerSemantics(sqliteBackend()))
describePostgres('Postgres ledger', () => ledgerSemantics(postgresBackend()))
