import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { POSTGRES_MIGRATIONS } from '../core/ledger/postgres/migrations.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import { SQLITE_MIGRATIONS } from '../core/ledger/sqlite/migrations.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import type { CursorAdvanceInput, LedgerStore } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'

/**
 * What the fetch source keeps in the ledger, on both stores with the same
 * tests: named leases (`fetch:<source>`, and ponds' `pond:<pond>` since the
 * migration that generalized them) and the append-only history of cursors,
 * whose advances are fenced by a lease token and by the cursor they start
 * from. Real clocks: a lease expires because time passed.
 */

interface Backend {
  readonly name: string
  setup(): Promise<void>
  teardown(): Promise<void>
  open(): Promise<LedgerStore>
  /** Tries to rewrite cursor history behind the ledger's back; each entry is what the database answered. */
  rewriteHistory(): Promise<unknown[]>
  /** Makes the ledger as the release before named leases left it, with a live pond lease `p@1` held by token `t-old`. */
  createWithPondLease(): Promise<void>
}

const sqliteBackend = (): Backend => {
  let dir = ''
  const file = () => path.join(dir, 'ledger.db')
  return {
    name: 'SQLite',
    async setup() {
      dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-fetch-ledger-'))
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true })
    },
    open: async () => openSqliteLedger(file()),
    async rewriteHistory() {
      const db = new Database(file())
      const attempt = (sql: string) => {
        try {
          return db.prepare(sql).run()
        } catch (error) {
          return error
        }
      }
      try {
        return [
          attempt(`UPDATE cursor_events SET to_cursor = 'elsewhere'`),
          attempt('DELETE FROM cursor_events'),
          attempt(`INSERT OR REPLACE INTO cursor_events SELECT id, at, source, event, from_cursor, 'elsewhere', file, hash, records, pages, worker FROM cursor_events`),
        ]
      } finally {
        db.close()
      }
    },
    async createWithPondLease() {
      const db = new Database(file())
      try {
        db.exec('CREATE TABLE filedge_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)')
        for (const migration of SQLITE_MIGRATIONS.filter((m) => m.version <= 7)) {
          db.exec(migration.sql)
          db.prepare('INSERT INTO filedge_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, new Date().toISOString())
        }
        db.prepare('INSERT INTO pond_leases (pond, token, worker, expires_at) VALUES (?, ?, ?, ?)').run('p@1', 't-old', 'old-worker', Date.now() + 600_000)
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
      schema = freshSchema('filedge_fetch_ledger')
    },
    async teardown() {
      await dropSchema(schema)
    },
    open: () => openPostgresLedger(PG_URL, { schema }),
    async rewriteHistory() {
      const attempt = (sql: string) => pgQuery(sql).catch((error: unknown) => error)
      return [
        await attempt(`UPDATE "${schema}".cursor_events SET to_cursor = 'elsewhere'`),
        await attempt(`DELETE FROM "${schema}".cursor_events`),
        await attempt(`TRUNCATE "${schema}".cursor_events`),
      ]
    },
    async createWithPondLease() {
      const statements = [
        `CREATE SCHEMA "${schema}"`,
        `SET LOCAL search_path TO "${schema}"`,
        'CREATE TABLE filedge_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        ...POSTGRES_MIGRATIONS.filter((m) => m.version <= 6).flatMap((m) => [m.sql, `INSERT INTO filedge_migrations (version) VALUES (${m.version})`]),
        `INSERT INTO pond_leases (pond, token, worker, expires_at) VALUES ('p@1', 't-old', 'old-worker', now() + interval '10 minutes')`,
      ]
      await pgQuery(['BEGIN', ...statements, 'COMMIT'].join(';\n'))
    },
  }
}

/** Calls `take` until it returns a token, for at most `ms`: a lease that expired by the store's clock, without guessing how long that takes. */
async function takeOnceExpired(take: () => Promise<string | undefined>, ms = 5_000): Promise<string> {
  const deadline = Date.now() + ms
  for (;;) {
    const token = await take()
    if (token !== undefined) return token
    if (Date.now() > deadline) throw new Error(`the lease did not expire within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const LEASE = 'fetch:orders'
const advance = (token: string, overrides: Partial<CursorAdvanceInput> = {}): CursorAdvanceInput => ({
  source: 'orders',
  lease: LEASE,
  token,
  from: null,
  to: '{"at":"c2","skip":0}',
  worker: 'W',
  file: '.filedge/fetch/orders/000001-abc.ndjson.gz',
  hash: 'a'.repeat(64),
  records: 4,
  pages: 2,
  ...overrides,
})

function suite(make: () => Backend): void {
  const backend = make()
  const opened: LedgerStore[] = []
  const open = async () => {
    const ledger = await backend.open()
    opened.push(ledger)
    return ledger
  }
  beforeEach(() => backend.setup())
  afterEach(async () => {
    for (const ledger of opened.splice(0)) await ledger.close()
    await backend.teardown()
  })

  describe('named leases', () => {
    it('keeps a name to its holder while the lease lives; names are independent, and pond leases are names too', async () => {
      const a = await open()
      const b = await open()
      const token = (await a.takeLease(LEASE, 'A', 60_000))!
      expect(token).toEqual(expect.any(String))
      expect(await b.takeLease(LEASE, 'B', 60_000)).toBeUndefined()
      expect(await a.takeLease(LEASE, 'A', 60_000)).toBeUndefined()
      expect(await b.takeLease('fetch:other', 'B', 60_000)).toEqual(expect.any(String))
      // A pond's lease is the name pond:<pond>.
      const pond = (await b.takePondLease('p@1', 'B', 60_000))!
      expect(await a.takeLease('pond:p@1', 'A', 60_000)).toBeUndefined()
      expect(await b.renewLease('pond:p@1', pond, 60_000)).toBe(true)
      await b.releaseLease('pond:p@1', pond)
      expect(await a.takePondLease('p@1', 'A', 60_000)).toEqual(expect.any(String))

      await a.releaseLease(LEASE, token)
      expect(await b.takeLease(LEASE, 'B', 60_000)).toEqual(expect.any(String))
    })

    it('hands an expired lease to the next taker and fences the old holder out', async () => {
      const a = await open()
      const b = await open()
      const stale = (await a.takeLease(LEASE, 'A', 1))!
      const fresh = await takeOnceExpired(() => b.takeLease(LEASE, 'B', 60_000))
      expect(fresh).not.toBe(stale)
      expect(await a.leaseHeld(LEASE)).toBe(true)
      expect(await a.leaseHeld('fetch:nobody')).toBe(false)
      expect(await a.renewLease(LEASE, stale, 60_000)).toBe(false)
      // Releasing with a stale token leaves the new holder's lease alone.
      await a.releaseLease(LEASE, stale)
      expect(await a.takeLease(LEASE, 'A', 60_000)).toBeUndefined()
      expect(await b.renewLease(LEASE, fresh, 60_000)).toBe(true)
    })

    it('upgrades a ledger with pond_leases: a live pond lease stays with its holder', async () => {
      await backend.createWithPondLease()
      const ledger = await open()
      expect(await ledger.takePondLease('p@1', 'new-worker', 60_000)).toBeUndefined()
      expect(await ledger.pondLeaseHeld('p@1')).toBe(true)
      expect(await ledger.renewPondLease('p@1', 't-old', 60_000)).toBe(true)
      await ledger.releasePondLease('p@1', 't-old')
      expect(await ledger.pondLeaseHeld('p@1')).toBe(false)
      expect(await ledger.takePondLease('p@1', 'new-worker', 60_000)).toEqual(expect.any(String))
    })
  })

  describe('cursors', () => {
    it('starts without a cursor and advances from it, each advance one event, the newest being the cursor', async () => {
      const ledger = await open()
      expect(await ledger.cursorOf('orders')).toBeUndefined()
      expect(await ledger.cursorEvents('orders')).toEqual([])
      const token = (await ledger.takeLease(LEASE, 'W', 60_000))!
      const first = await ledger.advanceCursor(advance(token))
      expect(first).toMatchObject({
        status: 'advanced',
        event: { source: 'orders', event: 'cursor:advanced', from: null, to: '{"at":"c2","skip":0}', file: '.filedge/fetch/orders/000001-abc.ndjson.gz', hash: 'a'.repeat(64), records: 4, pages: 2, worker: 'W' },
      })
      // An advance over pages with no new records names no file.
      const second = await ledger.advanceCursor(advance(token, { from: '{"at":"c2","skip":0}', to: '{"at":"c3","skip":0}', file: undefined, hash: undefined, records: 0, pages: 1 }))
      expect(second).toMatchObject({ status: 'advanced', event: { from: '{"at":"c2","skip":0}', to: '{"at":"c3","skip":0}', file: null, hash: null, records: 0 } })
      expect(await ledger.cursorOf('orders')).toMatchObject({ to: '{"at":"c3","skip":0}' })
      expect((await ledger.cursorEvents('orders')).map((event) => event.to)).toEqual(['{"at":"c2","skip":0}', '{"at":"c3","skip":0}'])
      expect((await ledger.cursorEvents('orders', 1)).map((event) => event.to)).toEqual(['{"at":"c3","skip":0}'])
      expect(await ledger.cursorOf('other')).toBeUndefined()
      const at = Date.parse((await ledger.cursorOf('orders'))!.at)
      expect(Math.abs(at - Date.now())).toBeLessThan(60_000)
    })

    it('refuses an advance from a cursor that is no longer current, and says which one is', async () => {
      const ledger = await open()
      const token = (await ledger.takeLease(LEASE, 'W', 60_000))!
      expect((await ledger.advanceCursor(advance(token))).status).toBe('advanced')
      // The same advance again (a retry after an unknown outcome, a second process): the cursor moved.
      expect(await ledger.advanceCursor(advance(token))).toEqual({ status: 'moved', current: '{"at":"c2","skip":0}' })
      expect(await ledger.cursorEvents('orders')).toHaveLength(1)
    })

    it('refuses an advance under a lease that was lost, taken over, or never held', async () => {
      const a = await open()
      const b = await open()
      expect(await a.advanceCursor(advance('no-such-token'))).toEqual({ status: 'lost' })
      const stale = (await a.takeLease(LEASE, 'A', 1))!
      const fresh = await takeOnceExpired(() => b.takeLease(LEASE, 'B', 60_000))
      expect(await a.advanceCursor(advance(stale))).toEqual({ status: 'lost' })
      expect(await a.cursorOf('orders')).toBeUndefined()
      expect((await b.advanceCursor(advance(fresh))).status).toBe('advanced')
      // A released lease fences nothing either.
      await b.releaseLease(LEASE, fresh)
      expect(await b.advanceCursor(advance(fresh, { from: '{"at":"c2","skip":0}', to: '{"at":"c9","skip":0}' }))).toEqual({ status: 'lost' })
      // The holder of an expired lease nobody took still advances: fencing is by token.
      const late = (await a.takeLease(LEASE, 'A', 1))!
      // Expired by the store's clock once a 1 ms lease taken after it has.
      expect(await a.takeLease('fetch:probe', 'A', 1)).toEqual(expect.any(String))
      await takeOnceExpired(() => a.takeLease('fetch:probe', 'A', 60_000))
      expect((await a.advanceCursor(advance(late, { from: '{"at":"c2","skip":0}', to: '{"at":"c4","skip":0}' }))).status).toBe('advanced')
    })

    it('lets one of two racing advances from the same cursor through', async () => {
      const a = await open()
      const b = await open()
      const token = (await a.takeLease(LEASE, 'W', 60_000))!
      const outcomes = await Promise.all([a.advanceCursor(advance(token, { to: '{"at":"x","skip":0}' })), b.advanceCursor(advance(token, { to: '{"at":"y","skip":0}' }))])
      expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['advanced', 'moved'])
      expect(await a.cursorEvents('orders')).toHaveLength(1)
    })

    it('checks counts and keeps a file with its hash', async () => {
      const ledger = await open()
      const token = (await ledger.takeLease(LEASE, 'W', 60_000))!
      await expect(ledger.advanceCursor(advance(token, { records: -1 }))).rejects.toMatchObject({ code: 'INTERNAL' })
      await expect(ledger.advanceCursor(advance(token, { hash: undefined }))).rejects.toMatchObject({ code: 'INTERNAL' })
      await expect(ledger.cursorEvents('orders', -1)).rejects.toMatchObject({ code: 'INTERNAL' })
    })

    it('keeps the history append-only: the database refuses updates and deletes', async () => {
      const ledger = await open()
      const token = (await ledger.takeLease(LEASE, 'W', 60_000))!
      await ledger.advanceCursor(advance(token))
      const answers = await backend.rewriteHistory()
      for (const answer of answers) expect(String(answer)).toMatch(/cursor_events table is append-only/)
      expect((await ledger.cursorOf('orders'))?.to).toBe('{"at":"c2","skip":0}')
    })
  })
}

describe('fetch ledger: SQLite', () => suite(sqliteBackend))
describePostgres('fetch ledger: Postgres', () => suite(postgresBackend))
