import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { POSTGRES_MIGRATIONS } from '../core/ledger/postgres/migrations.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import { SQLITE_MIGRATIONS } from '../core/ledger/sqlite/migrations.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import type { LedgerStore, PondEvent, PondEventInput } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'
import { REPO_ROOT } from './helpers/workspace.js'

/**
 * The ledger's record of ponds, run against both stores with the same tests:
 * SQLite on a real file, Postgres on the real server in a schema of its own
 * per test. Real clocks throughout (no `now` option): a lease expires because
 * time passed, by the store's own clock.
 *
 * The race between processes spawns test/helpers/pond-lease-racer.mjs, which
 * runs the built ledger: `npm run build` first.
 */

const RACER = path.join(REPO_ROOT, 'test/helpers/pond-lease-racer.mjs')
const BUILT = path.join(REPO_ROOT, 'dist/core/ledger/sqlite/store.js')

interface Backend {
  readonly name: string
  setup(): Promise<void>
  teardown(): Promise<void>
  open(): Promise<LedgerStore>
  /** Tries to rewrite pond history behind the ledger's back; each entry is what the database answered. */
  rewriteHistory(): Promise<unknown[]>
  /**
   * Makes the ledger as the release before ponds left it: every migration up
   * to `beforePonds`, and one committed file written by hand.
   */
  createBeforePonds(): Promise<void>
  migrations(): Promise<number[]>
  readonly migrationVersions: readonly number[]
  /** Arguments for test/helpers/pond-lease-racer.mjs, after the script. */
  racerArgs(worker: string): string[]
}

const OLD_FILE = { pipeline: 'orders', hash: 'c'.repeat(64), path: 'incoming/old.csv' }

const sqliteBackend = (): Backend => {
  let dir = ''
  const file = () => path.join(dir, 'ledger.db')
  // The last migration before the pond tables (7).
  const beforePonds = 6
  return {
    name: 'SQLite',
    async setup() {
      dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-pond-ledger-'))
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true })
    },
    async open() {
      return openSqliteLedger(file())
    },
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
        const replace = (verb: string) =>
          `${verb} INTO pond_events (id, at, pond, version, run_id, event, outlet, trigger, freshness, worker)
           SELECT min(id), at, pond, version, run_id, 'pond:failed', outlet, trigger, freshness, worker FROM pond_events`
        return [attempt(`UPDATE pond_events SET event = 'pond:failed'`), attempt('DELETE FROM pond_events'), attempt(replace('INSERT OR REPLACE')), attempt(replace('REPLACE'))]
      } finally {
        db.close()
      }
    },
    async createBeforePonds() {
      const db = new Database(file())
      try {
        db.exec('CREATE TABLE filedge_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)')
        for (const migration of SQLITE_MIGRATIONS.filter((m) => m.version <= beforePonds)) {
          db.exec(migration.sql)
          db.prepare('INSERT INTO filedge_migrations (version, applied_at) VALUES (?, ?)').run(migration.version, new Date().toISOString())
        }
        const at = new Date().toISOString()
        db.prepare(`INSERT INTO files (pipeline, hash, path, size, state, attempts, rows, created_at, updated_at, committed_at) VALUES (?, ?, ?, 3, 'COMMITTED', 1, 2, ?, ?, ?)`).run(
          OLD_FILE.pipeline,
          OLD_FILE.hash,
          OLD_FILE.path,
          at,
          at,
          at,
        )
        db.prepare('INSERT INTO file_paths (pipeline, hash, path, first_seen_at) VALUES (?, ?, ?, ?)').run(OLD_FILE.pipeline, OLD_FILE.hash, OLD_FILE.path, at)
      } finally {
        db.close()
      }
    },
    migrationVersions: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    async migrations() {
      const db = new Database(file(), { readonly: true })
      try {
        return (db.prepare('SELECT version FROM filedge_migrations ORDER BY version').all() as { version: number }[]).map((row) => row.version)
      } finally {
        db.close()
      }
    },
    racerArgs: (worker) => ['sqlite', file(), worker],
  }
}

const postgresBackend = (): Backend => {
  let schema = ''
  // The last migration before the pond tables (6).
  const beforePonds = 5
  return {
    name: 'Postgres',
    async setup() {
      schema = freshSchema('filedge_pond_ledger')
    },
    async teardown() {
      await dropSchema(schema)
    },
    open: () => openPostgresLedger(PG_URL, { schema }),
    async rewriteHistory() {
      const attempt = (sql: string) => pgQuery(sql).catch((error: unknown) => error)
      const upsert = `INSERT INTO "${schema}".pond_events (id, at, pond, version, run_id, event, outlet, trigger, freshness, worker) OVERRIDING SYSTEM VALUE
        SELECT id, at, pond, version, run_id, event, outlet, trigger, freshness, worker FROM "${schema}".pond_events ORDER BY id LIMIT 1
        ON CONFLICT (id) DO UPDATE SET event = 'pond:failed'`
      return [
        await attempt(`UPDATE "${schema}".pond_events SET event = 'pond:failed'`),
        await attempt(`DELETE FROM "${schema}".pond_events`),
        await attempt(`TRUNCATE "${schema}".pond_events`),
        await attempt(upsert),
      ]
    },
    async createBeforePonds() {
      // As the store's migrate() did, in one transaction with the ledger's schema on the search path.
      const statements = [
        `CREATE SCHEMA "${schema}"`,
        `SET LOCAL search_path TO "${schema}"`,
        'CREATE TABLE filedge_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        ...POSTGRES_MIGRATIONS.filter((m) => m.version <= beforePonds).flatMap((m) => [m.sql, `INSERT INTO filedge_migrations (version) VALUES (${m.version})`]),
        `INSERT INTO files (pipeline, hash, path, size, state, attempts, rows, created_at, updated_at, committed_at)
         VALUES ('${OLD_FILE.pipeline}', '${OLD_FILE.hash}', '${OLD_FILE.path}', 3, 'COMMITTED', 1, 2, now(), now(), now())`,
        `INSERT INTO file_paths (pipeline, hash, path, first_seen_at) VALUES ('${OLD_FILE.pipeline}', '${OLD_FILE.hash}', '${OLD_FILE.path}', now())`,
      ]
      await pgQuery(['BEGIN', ...statements, 'COMMIT'].join(';\n'))
    },
    migrationVersions: [1, 2, 3, 4, 5, 6, 7, 8],
    async migrations() {
      return (await pgQuery<{ version: number }>(`SELECT version FROM "${schema}".filedge_migrations ORDER BY version`)).map((row) => row.version)
    },
    racerArgs: (worker) => ['postgres', PG_URL, schema, worker],
  }
}

const FULL: PondEventInput = {
  pond: 'daily_revenue@1',
  version: '1.2.0',
  runId: '7f1c2a8e-5b1d-4c53-9a51-0d6f3c1f9b7e',
  event: 'ripple:succeeded',
  ripple: 'revenue_by_day',
  outlet: 'finance_dashboard',
  trigger: 'wave',
  freshness: '2026-03-01T12:00:00.123Z',
  inputVersion: 'in-5f2a',
  dataVersion: 'data-9c1e',
  error: 'no error, but every field set',
  durationMs: 1234,
  rows: 5_000_000_000,
  worker: 'host-1:4242',
}

/** The required fields; `event`, `runId`… overridable. */
const event = (overrides: Partial<PondEventInput> = {}): PondEventInput => ({
  pond: 'daily_revenue@1',
  version: '1.2.0',
  runId: 'run-1',
  event: 'pond:started',
  outlet: 'finance_dashboard',
  trigger: 'pulse',
  freshness: '2026-03-01T12:00:00.000Z',
  worker: 'W',
  ...overrides,
})

/** Calls `take` until it returns a token, for at most `ms`: how a lease that expired by the store's clock is seen, without guessing how long that takes. */
async function takeOnceExpired(take: () => Promise<string | undefined>, ms = 5_000): Promise<string> {
  const deadline = Date.now() + ms
  for (;;) {
    const token = await take()
    if (token !== undefined) return token
    if (Date.now() > deadline) throw new Error(`the lease did not expire within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

interface Racer {
  /** Sends a command and waits for its answer. */
  send(command: string): Promise<unknown>
  /** Ends the racer's input, which makes it close its ledger and exit. */
  end(): Promise<{ code: number | null; stderr: string }>
}

/** Starts test/helpers/pond-lease-racer.mjs and waits until its ledger is open. */
async function racer(args: string[]): Promise<Racer> {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` before this suite`)
  const child = spawn(process.execPath, [RACER, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })))
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async () => {
    const line = await lines.next()
    if (line.done) throw new Error(`racer ${args.join(' ')} exited: ${(await exited).stderr}`)
    return line.value
  }
  expect(await next()).toBe('ready')
  return {
    async send(command) {
      child.stdin.write(`${command}\n`)
      return JSON.parse(await next())
    },
    end() {
      child.stdin.end()
      return exited
    },
  }
}

function pondLedger(backend: Backend): void {
  let stores: LedgerStore[]
  const open = async () => {
    const store = await backend.open()
    stores.push(store)
    return store
  }

  beforeEach(async () => {
    stores = []
    await backend.setup()
  })
  afterEach(async () => {
    for (const store of stores) await store.close()
    await backend.teardown()
  })

  describe('events', () => {
    it('round-trips every field, stamped with the store clock', async () => {
      const ledger = await open()
      const before = Date.now()
      const recorded = await ledger.recordPond(FULL)
      const after = Date.now()
      const expected = { id: recorded.id, at: recorded.at, ...FULL }
      expect(recorded).toEqual(expected)
      expect(recorded.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      // Now, by the store's clock: for Postgres the server's, which FILEDGE_TEST_PG_URL may put on another machine.
      expect(Date.parse(recorded.at)).toBeGreaterThan(before - 60_000)
      expect(Date.parse(recorded.at)).toBeLessThan(after + 60_000)
      expect(await ledger.pondEvents()).toEqual([expected])
    })

    it('reads absent optionals back as null', async () => {
      const ledger = await open()
      const recorded = await ledger.recordPond(event())
      expect(recorded).toEqual({
        id: recorded.id,
        at: recorded.at,
        pond: 'daily_revenue@1',
        version: '1.2.0',
        runId: 'run-1',
        event: 'pond:started',
        ripple: null,
        outlet: 'finance_dashboard',
        trigger: 'pulse',
        freshness: '2026-03-01T12:00:00.000Z',
        inputVersion: null,
        dataVersion: null,
        error: null,
        durationMs: null,
        rows: null,
        worker: 'W',
      })
      expect(await ledger.pondEvents()).toEqual([recorded])
    })

    it('keeps freshness as ISO-8601 UTC with ms whatever offset it came in, durations whole, and refuses what it cannot keep', async () => {
      const ledger = await open()
      expect(await ledger.recordPond(event({ freshness: '2026-03-01T13:00:00.5+01:00', durationMs: 12.6 }))).toMatchObject({ freshness: '2026-03-01T12:00:00.500Z', durationMs: 13 })
      await expect(ledger.recordPond(event({ freshness: 'yesterday' }))).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('freshness') })
      await expect(ledger.recordPond(event({ rows: 1.5 }))).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('rows') })
      await expect(ledger.recordPond(event({ rows: -1 }))).rejects.toMatchObject({ code: 'INTERNAL' })
      await expect(ledger.recordPond(event({ durationMs: Number.NaN }))).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('durationMs') })
      await expect(ledger.pondEvents({ limit: -1 })).rejects.toMatchObject({ code: 'INTERNAL' })
      expect(await ledger.pondEvents()).toHaveLength(1)
    })

    it('lists events oldest first; by pond, by run, and the newest `limit` still oldest first', async () => {
      const ledger = await open()
      const written: PondEvent[] = []
      for (const [pond, runId, name] of [
        ['a@1', 'r1', 'pond:started'],
        ['b@1', 'r2', 'pond:started'],
        ['a@1', 'r1', 'ripple:succeeded'],
        ['a@1', 'r1', 'pond:succeeded'],
        ['b@1', 'r2', 'pond:failed'],
        ['a@1', 'r3', 'pond:started'],
      ] as const) {
        written.push(await ledger.recordPond(event({ pond, runId, event: name })))
      }
      const ids = written.map((e) => e.id)
      expect([...ids].sort((x, y) => x - y)).toEqual(ids)
      expect(new Set(ids).size).toBe(ids.length)
      const positions = (events: PondEvent[]) => events.map((e) => written.findIndex((w) => w.id === e.id))

      expect(await ledger.pondEvents()).toEqual(written)
      expect(await ledger.pondEvents({})).toEqual(written)
      expect(positions(await ledger.pondEvents({ limit: 2 }))).toEqual([4, 5])
      expect(positions(await ledger.pondEvents({ limit: 100 }))).toEqual([0, 1, 2, 3, 4, 5])
      expect(await ledger.pondEvents({ limit: 0 })).toEqual([])
      expect(positions(await ledger.pondEvents({ pond: 'a@1' }))).toEqual([0, 2, 3, 5])
      expect(positions(await ledger.pondEvents({ pond: 'a@1', limit: 3 }))).toEqual([2, 3, 5])
      expect(positions(await ledger.pondEvents({ runId: 'r1' }))).toEqual([0, 2, 3])
      expect(positions(await ledger.pondEvents({ runId: 'r1', limit: 1 }))).toEqual([3])
      expect(positions(await ledger.pondEvents({ pond: 'b@1', runId: 'r2' }))).toEqual([1, 4])
      expect(await ledger.pondEvents({ pond: 'a@1', runId: 'r2' })).toEqual([])
      expect(await ledger.pondEvents({ pond: 'nope@1' })).toEqual([])
    })

    it("gives each pond's latest run outcome, one row per name@major, ripples aside", async () => {
      const ledger = await open()
      expect(await ledger.pondOutcomes()).toEqual([])
      const record = (pond: string, runId: string, name: PondEventInput['event'], ripple?: string) =>
        ledger.recordPond(event({ pond, runId, event: name, ...(ripple === undefined ? {} : { ripple }) }))
      // Interleaved, so the latest per pond is not the latest overall.
      await record('b@1', 'b1', 'pond:started')
      await record('a@1', 'a1', 'pond:started')
      await record('a@1', 'a1', 'ripple:succeeded', 'x')
      await record('a@1', 'a1', 'pond:succeeded')
      await record('b@1', 'b1', 'pond:blocked')
      await record('a@2', 'a2', 'pond:started')
      const aRun2 = await record('a@1', 'a3', 'pond:started')
      await record('a@1', 'a3', 'ripple:failed', 'x')
      const a2 = await record('a@2', 'a2', 'pond:passed')
      await record('c@1', 'c1', 'pond:started')
      const c = await record('c@1', 'c1', 'pond:failed')
      const outcomes = await ledger.pondOutcomes()
      expect(outcomes.map((o) => [o.pond, o.event, o.runId])).toEqual([
        ['a@1', 'pond:started', 'a3'],
        ['a@2', 'pond:passed', 'a2'],
        ['b@1', 'pond:blocked', 'b1'],
        ['c@1', 'pond:failed', 'c1'],
      ])
      expect(outcomes[0]).toEqual(aRun2)
      expect(outcomes[1]).toEqual(a2)
      expect(outcomes[3]).toEqual(c)
    })

    it("finds a pond's last success or pass, whatever failed after it", async () => {
      const ledger = await open()
      expect(await ledger.lastPondSuccess('a@1')).toBeUndefined()
      await ledger.recordPond(event({ pond: 'a@1', runId: 'r1', event: 'pond:succeeded', inputVersion: 'i1', dataVersion: 'd1' }))
      const passed = await ledger.recordPond(event({ pond: 'a@1', runId: 'r2', event: 'pond:passed', inputVersion: 'i1', dataVersion: 'd1' }))
      await ledger.recordPond(event({ pond: 'a@2', runId: 'r9', event: 'pond:succeeded', inputVersion: 'i9', dataVersion: 'd9' }))
      await ledger.recordPond(event({ pond: 'a@1', runId: 'r3', event: 'pond:started' }))
      await ledger.recordPond(event({ pond: 'a@1', runId: 'r3', event: 'ripple:succeeded', ripple: 'x', rows: 3 }))
      await ledger.recordPond(event({ pond: 'a@1', runId: 'r3', event: 'pond:failed', error: 'boom' }))
      await ledger.recordPond(event({ pond: 'a@1', runId: 'r4', event: 'pond:blocked', error: 'upstream failed' }))
      await ledger.recordPond(event({ pond: 'b@1', runId: 'r5', event: 'pond:failed', error: 'boom' }))
      expect(await ledger.lastPondSuccess('a@1')).toEqual(passed)
      expect(await ledger.lastPondSuccess('a@1')).toMatchObject({ inputVersion: 'i1', dataVersion: 'd1' })
      expect(await ledger.lastPondSuccess('b@1')).toBeUndefined()
      expect(await ledger.lastPondSuccess('nope@1')).toBeUndefined()
    })

    it('never changes an event once recorded, and the database refuses to', async () => {
      const ledger = await open()
      await ledger.recordPond(FULL)
      await ledger.recordPond(event({ event: 'pond:started' }))
      const before = await ledger.pondEvents()
      await ledger.recordPond(event({ event: 'pond:succeeded', dataVersion: 'd2' }))
      await ledger.recordPond(event({ runId: 'run-2', event: 'pond:started' }))
      const after = await ledger.pondEvents()
      expect(after).toHaveLength(before.length + 2)
      expect(after.slice(0, before.length)).toEqual(before)

      const answers = await backend.rewriteHistory()
      expect(answers.length).toBeGreaterThan(0)
      for (const answer of answers) expect(String(answer)).toMatch(/pond_events table is append-only/)
      expect(await ledger.pondEvents()).toEqual(after)
    })
  })

  describe('leases', () => {
    it('keeps a pond to its holder while the lease lives, and takes one pond at a time', async () => {
      const a = await open()
      const b = await open()
      expect(await b.pondLeaseHeld('p@1')).toBe(false)
      const token = await a.takePondLease('p@1', 'A', 60_000)
      expect(token).toEqual(expect.any(String))
      // Another process sees the pond held (what `pond status` calls running).
      expect(await b.pondLeaseHeld('p@1')).toBe(true)
      expect(await b.takePondLease('p@1', 'B', 60_000)).toBeUndefined()
      // A token holds the pond, not a worker: the same worker asking again is refused too.
      expect(await a.takePondLease('p@1', 'A', 60_000)).toBeUndefined()
      const other = await b.takePondLease('p@2', 'B', 60_000)
      expect(other).toEqual(expect.any(String))
      expect(other).not.toBe(token)
      await a.releasePondLease('p@1', token!)
      const next = await b.takePondLease('p@1', 'B', 60_000)
      expect(next).toEqual(expect.any(String))
      expect(next).not.toBe(token)
    })

    it('hands an expired lease to the next taker and fences the old holder out', async () => {
      const a = await open()
      const b = await open()
      const stale = (await a.takePondLease('p@1', 'A', 1))!
      expect(stale).toEqual(expect.any(String))
      // Lapsed: no longer held, though its row is still there until someone takes it.
      await expect.poll(() => b.pondLeaseHeld('p@1'), { timeout: 10_000, interval: 5 }).toBe(false)
      const fresh = await takeOnceExpired(() => b.takePondLease('p@1', 'B', 60_000))
      expect(fresh).not.toBe(stale)

      expect(await a.renewPondLease('p@1', stale, 60_000)).toBe(false)
      await a.releasePondLease('p@1', stale)
      expect(await a.takePondLease('p@1', 'A', 60_000)).toBeUndefined()

      expect(await b.renewPondLease('p@1', fresh, 60_000)).toBe(true)
      await b.releasePondLease('p@1', fresh)
      expect(await a.takePondLease('p@1', 'A', 60_000)).toEqual(expect.any(String))
    })

    it('lets the holder renew a lease that expired while nobody took it, which keeps others off again', async () => {
      const a = await open()
      const token = (await a.takePondLease('p@1', 'A', 1))!
      // Once a 1 ms lease taken after it has expired by the store's clock, so has this one.
      expect(await a.takePondLease('probe@1', 'A', 1)).toEqual(expect.any(String))
      await takeOnceExpired(() => a.takePondLease('probe@1', 'A', 1))
      expect(await a.renewPondLease('p@1', token, 60_000)).toBe(true)
      expect(await a.takePondLease('p@1', 'B', 60_000)).toBeUndefined()
      expect(await a.renewPondLease('p@1', 'not-a-token', 60_000)).toBe(false)
      expect(await a.renewPondLease('unleased@1', token, 60_000)).toBe(false)
    })

    it('gives one pond to exactly one of two processes taking it at the same instant, 50 times over', async () => {
      // Created first, so the racers open a migrated ledger rather than racing to migrate it (tested elsewhere).
      const ledger = await open()
      const racers = await Promise.all([racer(backend.racerArgs('A')), racer(backend.racerArgs('B'))])
      try {
        for (let round = 0; round < 50; round++) {
          const at = Date.now() + 25
          const answers = (await Promise.all(racers.map((r) => r.send(`take ${round} ${at}`)))) as { round: number; token: string | null }[]
          const winners = answers.flatMap((answer, index) => (answer.token === null ? [] : [index]))
          expect(winners, `round ${round}: ${JSON.stringify(answers)}`).toHaveLength(1)
          // The loser saw the winner's live lease; nobody else can take it either until it is released.
          expect(await ledger.takePondLease('race@1', 'parent', 60_000)).toBeUndefined()
          expect(await racers[winners[0]].send(`release ${round}`)).toEqual({ round, released: true })
        }
        // Who wins is not asserted: a racer slowed down by a busy machine may rightly lose every round.
        // (In one run they split 35/15 on SQLite, 30/20 on Postgres; a take that reads, then writes
        // in a second statement had two winners within 7 rounds on both.)
      } finally {
        const exits = await Promise.all(racers.map((r) => r.end()))
        expect(exits).toEqual([
          { code: 0, stderr: '' },
          { code: 0, stderr: '' },
        ])
      }
    })
  })

  it('upgrades a ledger made before ponds: it keeps its files and gains the pond tables', async () => {
    await backend.createBeforePonds()
    const ledger = await open()
    expect(await backend.migrations()).toEqual(backend.migrationVersions)
    const [old] = await ledger.find(OLD_FILE.hash)
    expect(old).toMatchObject({ pipeline: 'orders', state: 'COMMITTED', rows: 2, paths: [OLD_FILE.path] })
    expect(await ledger.claim({ ...OLD_FILE, size: 3, worker: 'A', maxAttempts: 3, maxLapses: 5, ttlMs: 60_000 })).toMatchObject({ status: 'skipped', reason: 'committed' })
    const recorded = await ledger.recordPond(FULL)
    expect(await ledger.pondEvents()).toEqual([recorded])
    expect(await ledger.takePondLease('p@1', 'A', 60_000)).toEqual(expect.any(String))
  })
}

describe('SQLite pond ledger', () => pondLedger(sqliteBackend()))
describePostgres('Postgres pond ledger', () => pondLedger(postgresBackend()))
