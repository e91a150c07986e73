import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { syntheticPostgresLedger, syntheticSqliteLedger } from '../bench/ledger-data.js'
import { DuckDBInstance } from '@duckdb/node-api'
import { queryLedger, type QueryResult } from '../core/audit/duck.js'
import { planQuery } from '../core/audit/plan.js'
import { toCsv, toJson } from '../core/audit/output.js'
import type { ExportFilter, ExportPage, ExportRequest, LedgerSnapshot } from '../core/ledger/export.js'
import { csvRecords } from '../core/ledger/postgres/sql/export.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import { pageQuery } from '../core/ledger/sqlite/sql/export.js'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import type { LedgerStore } from '../core/ledger/types.js'
import { describePostgres, dropSchema, freshSchema, PG_URL } from './helpers/postgres.js'
import { target, type Target, type TargetName } from './helpers/targets.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * `filedge query` and the ledger snapshot under it, on both stores: the same
 * synthetic ledger in SQLite and in Postgres answers every question the
 * same, the questions read only what they need (what was loaded is part of
 * the result), and anything but one read is refused before it runs.
 */

/** The README's three questions; the last with a tie-break, so both ledgers list the same ten. */
const QUESTIONS = {
  failuresPerDay: "SELECT occurred_at::DATE AS day, count(*) AS failures FROM events WHERE event = 'file:failed' GROUP BY day ORDER BY day",
  rowsPerPipeline: "SELECT pipeline, count(*) AS files, sum(rows) AS rows FROM files WHERE state = 'COMMITTED' GROUP BY pipeline ORDER BY rows DESC",
  slowestFiles: "SELECT pipeline, path, rows, committed_at - created_at AS took FROM files WHERE state = 'COMMITTED' ORDER BY took DESC, path LIMIT 10",
}

/**
 * Top-N queries the store may cut to the rows they can return
 * (LedgerSnapshot.top), each with a tie-break so the answer is one; `{and}`
 * is where a condition goes that keeps every row but stops the cut, for the
 * same answer over every row.
 */
const TOP_QUERIES = {
  slowest: "SELECT pipeline, path, rows, committed_at - created_at AS took FROM files WHERE {and} state = 'COMMITTED' ORDER BY took DESC, path LIMIT 10",
  fewestRowsWithOffset: "SELECT hash, rows FROM files WHERE {and} state IN ('COMMITTED') ORDER BY rows, hash LIMIT 7 OFFSET 3",
  lastCommittedNullsLast: 'SELECT hash, committed_at FROM files WHERE {and} true ORDER BY committed_at DESC, hash LIMIT 5',
  firstCommittedByPosition: 'SELECT hash, committed_at FROM files WHERE {and} true ORDER BY 2 ASC NULLS LAST, 1 LIMIT 3',
  leaseByAlias: 'SELECT hash, lease_expires_at AS expires FROM files f WHERE {and} true ORDER BY expires DESC, hash LIMIT 4',
  attemptsTied: "SELECT hash, attempts FROM files WHERE {and} state = 'FAILED' ORDER BY attempts DESC, hash LIMIT 2",
  fewerThanAsked: "SELECT hash, committed_at FROM files WHERE {and} state = 'FAILED' ORDER BY committed_at DESC, hash LIMIT 5",
  // More ties than Postgres asks for past the first rows: it cuts by a bound on the key instead.
  manyTies: 'SELECT hash, lapses FROM files WHERE {and} true ORDER BY lapses, hash LIMIT 5',
}

const cutBy = (filter: ExportFilter) => 'min' in filter || 'max' in filter || 'ids' in filter

/** Each top query answers as it does over every row, reading fewer rows (all, when fewer have a key than it asks for). */
async function checkTops(ledger: LedgerStore): Promise<void> {
  for (const [name, template] of Object.entries(TOP_QUERIES)) {
    const cut = await queryLedger(ledger, template.replace('WHERE {and} true ', '').replace('{and} ', ''))
    const whole = await queryLedger(ledger, template.replace('{and}', 'length(hash) > 0 AND'))
    expect(cut.rows.length, name).toBeGreaterThan(0)
    expect(toJson(cut), name).toEqual(toJson(whole))
    expect(whole.loaded[0].where.some(cutBy), name).toBe(false)
    if (name === 'fewerThanAsked') {
      expect(cut.loaded[0].rows, name).toBe(whole.loaded[0].rows)
      continue
    }
    expect(cut.loaded[0].where.filter(cutBy), name).toHaveLength(1)
    if (name === 'manyTies') {
      const tied = await queryLedger(ledger, 'SELECT count(*) AS n FROM files WHERE lapses <= (SELECT lapses FROM files ORDER BY lapses LIMIT 1 OFFSET 4)')
      expect(toJson(tied), name).toEqual([{ n: cut.loaded[0].rows }])
      expect(cut.loaded[0].rows, name).toBeGreaterThan(200)
      continue
    }
    expect(cut.loaded[0].rows, name).toBeLessThan(whole.loaded[0].rows / 2)
    if (name === 'attemptsTied') {
      // Every failed file tied with the second most attempts is read: any of them could be the second.
      const tied = await queryLedger(ledger, "SELECT count(*) AS n FROM files WHERE state = 'FAILED' AND attempts >= (SELECT attempts FROM files WHERE state = 'FAILED' ORDER BY attempts DESC LIMIT 1 OFFSET 1)")
      expect(toJson(tied), name).toEqual([{ n: cut.loaded[0].rows }])
      expect(cut.loaded[0].rows, name).toBeGreaterThan(2)
    } else expect(cut.loaded[0].rows, name).toBeLessThan(whole.loaded[0].rows / 10)
  }
  // Not cut: an aggregate, a condition the store would widen, NULLs first.
  for (const [sql, where] of [
    ["SELECT count(*) AS n FROM files WHERE state = 'COMMITTED' ORDER BY 1 LIMIT 1", [{ column: 'state', in: ['COMMITTED'] }]],
    ['SELECT hash, rows FROM files WHERE rows > 10 ORDER BY rows DESC, hash LIMIT 3', [{ column: 'rows', min: 10 }]],
    ['SELECT hash FROM files ORDER BY committed_at DESC NULLS FIRST, hash LIMIT 3', []],
    ['SELECT DISTINCT rows FROM files ORDER BY rows DESC LIMIT 3', []],
    ['SELECT hash, rows FROM files ORDER BY rows DESC, row_number() OVER (ORDER BY hash DESC) LIMIT 3', []],
  ] as const) {
    const result = await queryLedger(ledger, sql)
    expect(result.loaded[0].where, sql).toEqual(where)
    expect(toJson(result), sql).toEqual(toJson(await queryLedger(ledger, sql.replace('FROM files', 'FROM files, (SELECT 1) AS one'))))
  }
}

/** On a ledger of more than 10,005 files, all with no lapses: more tied with the fifth than the store fetches past it. */
async function checkManyTies(ledger: LedgerStore): Promise<void> {
  const tied = await queryLedger(ledger, TOP_QUERIES.manyTies.replace('WHERE {and} true ', ''))
  expect(tied.loaded[0].where.filter(cutBy)).toEqual([{ column: 'lapses', max: 0 }])
  expect(toJson(tied)).toEqual(toJson(await queryLedger(ledger, TOP_QUERIES.manyTies.replace('{and}', 'length(hash) > 0 AND'))))
  expect(tied.loaded[0].rows).toBeGreaterThan(10_005)
}

const NOW = Date.parse('2026-01-31T00:00:00Z')
const FILES = 3_000

async function pages(snapshot: LedgerSnapshot, request: ExportRequest): Promise<unknown[][]> {
  const rows: unknown[][] = []
  for await (const page of snapshot.read(request) as AsyncIterable<ExportPage>) {
    const columns = page.columns.map((json) => JSON.parse(typeof json === 'string' ? json : Buffer.from(json).toString('utf8')) as unknown[])
    for (const column of columns) expect(column).toHaveLength(page.rows)
    for (let i = 0; i < page.rows; i++) rows.push(columns.map((column) => column[i]))
  }
  return rows
}

interface Store {
  readonly name: string
  open(): Promise<LedgerStore>
  cleanup(): Promise<void>
}

function snapshotSuite(make: () => Store): void {
  let store: Store
  let ledger: LedgerStore
  beforeEach(async () => {
    store = make()
    ledger = await store.open()
  })
  afterEach(async () => {
    await ledger.close()
    await store.cleanup()
  })

  it('reads every table in pages of columns that line up, filtered by the store', async () => {
    const snapshot = await ledger.snapshot()
    try {
      expect(Math.abs(snapshot.now - NOW)).toBeLessThan(1000)
      // Times as the snapshot says: ISO 8601 in UTC (SQLite), or µs since the epoch (Postgres).
      const ms = (value: unknown) => (snapshot.times === 'iso' ? Date.parse(value as string) : (value as number) / 1000)
      const files = await pages(snapshot, { table: 'files', columns: ['hash', 'state', 'rows', 'committed_at'] })
      expect(files).toHaveLength(FILES)
      for (const [hash, state, rows, committedAt] of files) {
        expect(hash).toMatch(/^[0-9a-f]{64}$/)
        if (state === 'COMMITTED') {
          expect(rows).toBeGreaterThan(0)
          if (snapshot.times === 'iso') expect(committedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
          else expect(Number.isSafeInteger(committedAt)).toBe(true)
          expect(Math.abs(ms(committedAt) - NOW)).toBeLessThan(31 * 86_400_000)
        } else expect(committedAt).toBeNull()
      }
      const failed = await pages(snapshot, { table: 'events', columns: ['event', 'error'], where: [{ column: 'event', in: ['file:failed'] }] })
      expect(failed.length).toBeGreaterThan(0)
      expect(failed.every(([event, error]) => event === 'file:failed' && typeof error === 'string')).toBe(true)
      const cutoff = NOW - 86_400_000
      const recentOrPending = await pages(snapshot, {
        table: 'files',
        columns: ['state', 'updated_at'],
        where: [{ any: [{ column: 'state', in: ['PENDING'] }, { column: 'updated_at', min: cutoff }] }],
      })
      expect(recentOrPending.length).toBeGreaterThan(0)
      expect(recentOrPending.length).toBeLessThan(FILES)
      for (const [state, updatedAt] of recentOrPending) expect(state === 'PENDING' || ms(updatedAt) >= cutoff).toBe(true)
      const bounded = await pages(snapshot, { table: 'files', columns: ['attempts'], where: [{ column: 'attempts', min: 2 }, { column: 'attempts', max: 2 }] })
      expect(bounded.length).toBeGreaterThan(0)
      expect(bounded.every(([attempts]) => attempts === 2)).toBe(true)
    } finally {
      await snapshot.close()
    }
  })

  it('is one consistent view: what is written after it is taken is not in it', async () => {
    const snapshot = await ledger.snapshot()
    try {
      await ledger.claim({ pipeline: 'orders', hash: 'f'.repeat(64), path: 'incoming/late.csv', size: 1, worker: 'w', maxAttempts: 3, maxLapses: 5, ttlMs: 60_000 })
      expect(await pages(snapshot, { table: 'files', columns: ['hash'] })).toHaveLength(FILES)
      expect((await pages(snapshot, { table: 'files', columns: ['hash'], where: [{ column: 'hash', in: ['f'.repeat(64)] }] })).length).toBe(0)
    } finally {
      await snapshot.close()
    }
    const after = await ledger.snapshot()
    try {
      expect(await pages(after, { table: 'files', columns: ['hash'] })).toHaveLength(FILES + 1)
    } finally {
      await after.close()
    }
  })
}

describe('ledger snapshot: SQLite', () =>
  snapshotSuite(() => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-snapshot-'))
    const file = path.join(dir, 'ledger.db')
    return {
      name: 'sqlite',
      async open() {
        syntheticSqliteLedger(file, { files: FILES, now: NOW })
        return openSqliteLedger(file, { now: () => NOW })
      },
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    }
  }))

describe('ledger snapshot: SQLite reads failures by their index', () => {
  it('finds the failed events through events_failed, not by scanning every event', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-snapshot-'))
    try {
      const file = path.join(dir, 'ledger.db')
      syntheticSqliteLedger(file, { files: FILES, now: NOW })
      await (await openSqliteLedger(file, { now: () => NOW })).close()
      const { sql, values } = pageQuery({ table: 'events', columns: ['at', 'error'], where: [{ column: 'event', in: ['file:failed'] }] })
      const db = new Database(file, { readonly: true })
      try {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(0, ...values) as { detail: string }[]).map((step) => step.detail)
        expect(plan.join('\n')).toMatch(/SEARCH events USING INDEX events_failed/)
      } finally {
        db.close()
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describePostgres('ledger snapshot: Postgres', () =>
  snapshotSuite(() => {
    const schema = freshSchema('filedge_snapshot')
    return {
      name: 'postgres',
      async open() {
        await syntheticPostgresLedger(PG_URL, schema, { files: FILES, now: NOW })
        return openPostgresLedger(PG_URL, { schema, now: () => NOW })
      },
      cleanup: () => dropSchema(schema),
    }
  }))

describe('filedge query over a synthetic ledger (SQLite)', () => {
  let dir: string
  let ledger: LedgerStore
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-query-'))
    syntheticSqliteLedger(path.join(dir, 'ledger.db'), { files: FILES, now: NOW })
    ledger = openSqliteLedger(path.join(dir, 'ledger.db'))
  })
  afterAll(async () => {
    await ledger.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const direct = <T>(sql: string) => {
    const db = new Database(path.join(dir, 'ledger.db'), { readonly: true })
    try {
      return db.prepare(sql).all() as T[]
    } finally {
      db.close()
    }
  }

  it('answers the three README questions as SQL on the ledger itself does, reading only what each needs', async () => {
    const perDay = await queryLedger(ledger, QUESTIONS.failuresPerDay)
    expect(toJson(perDay)).toEqual(
      direct<{ day: string; failures: number }>("SELECT substr(at, 1, 10) AS day, count(*) AS failures FROM events WHERE event = 'file:failed' GROUP BY day ORDER BY day"),
    )
    // Only the failure events were read, and of them only their time: `event` is pinned by the condition.
    expect(perDay.loaded).toEqual([{ table: 'events', rows: expect.any(Number), columns: ['occurred_at', 'event'], where: [{ column: 'event', in: ['file:failed'] }] }])
    expect(perDay.loaded[0].rows).toBe(direct<{ n: number }>("SELECT count(*) AS n FROM events WHERE event = 'file:failed'")[0].n)

    const perPipeline = await queryLedger(ledger, QUESTIONS.rowsPerPipeline)
    expect(toJson(perPipeline)).toEqual(
      direct("SELECT pipeline, count(*) AS files, sum(rows) AS rows FROM files WHERE state = 'COMMITTED' GROUP BY pipeline ORDER BY rows DESC"),
    )
    expect(perPipeline.loaded.map(({ table, columns, where }) => ({ table, columns, where }))).toEqual([
      { table: 'files', columns: ['pipeline', 'state', 'rows'], where: [{ column: 'state', in: ['COMMITTED'] }] },
    ])

    const slowest = toJson(await queryLedger(ledger, QUESTIONS.slowestFiles)) as { path: string; took: string }[]
    const expected = direct<{ path: string }>(
      "SELECT path FROM files WHERE state = 'COMMITTED' ORDER BY round((julianday(committed_at) - julianday(created_at)) * 86400000) DESC, path LIMIT 10",
    )
    expect(slowest.map((row) => row.path)).toEqual(expected.map((row) => row.path))
    expect(slowest[0].took).toMatch(/^00:00:\d\d\.\d+$/)
  })

  it('cuts a top-N to the rows it can return, ties included, and answers as over every row', async () => {
    await checkTops(ledger)
    const slowest = await queryLedger(ledger, TOP_QUERIES.slowest.replace('{and} ', ''))
    expect(slowest.loaded[0].where.filter(cutBy)).toEqual([{ ids: expect.arrayContaining([expect.stringMatching(/^\d+$/)]) }])
  })

  it('cuts by a bound on the key when more ties follow than it asks for (10,000)', async () => {
    const file = path.join(dir, 'ties.db')
    syntheticSqliteLedger(file, { files: 12_000, now: NOW })
    const many = openSqliteLedger(file)
    try {
      await checkManyTies(many)
    } finally {
      await many.close()
    }
  })

  it('pushes a lower bound on now() to the store, but not an upper one (the clock moves on before the query runs)', async () => {
    const recent = await queryLedger(ledger, 'SELECT count(*) AS n FROM files WHERE updated_at > now() - INTERVAL 3650 DAY AND created_at < now()')
    expect(recent.loaded[0].where).toEqual([{ column: 'updated_at', min: expect.any(Number) }])
    expect(toJson(recent)).toEqual([{ n: FILES }])
    const literal = await queryLedger(ledger, "SELECT count(*) AS n FROM files WHERE created_at BETWEEN TIMESTAMP '2026-01-10' AND TIMESTAMP '2026-01-11'")
    expect(literal.loaded[0].where).toEqual([
      { column: 'created_at', min: Date.parse('2026-01-10T00:00:00Z') },
      { column: 'created_at', max: Date.parse('2026-01-11T00:00:00Z') },
    ])
    expect(toJson(literal)).toEqual(direct("SELECT count(*) AS n FROM files WHERE created_at BETWEEN '2026-01-10T00:00:00.000Z' AND '2026-01-11T00:00:00.000Z'"))
  })

  it('loads more, never less, when a query reads a table twice, with a star or as a value', async () => {
    const twice = await queryLedger(ledger, "SELECT count(*) AS n FROM files WHERE state = 'FAILED' AND attempts > (SELECT avg(attempts) FROM files)")
    expect(twice.loaded[0].where).toEqual([])
    expect(toJson(twice)).toEqual(direct("SELECT count(*) AS n FROM files WHERE state = 'FAILED' AND attempts > (SELECT avg(attempts) FROM files)"))
    // Text against a number: DuckDB casts the column to the number, so '0123' would match 123; nothing is left to the store.
    const instance = await DuckDBInstance.create(':memory:')
    const connection = await instance.connect()
    const parsed = (await connection.runAndReadAll("SELECT json_serialize_sql('SELECT count(*) FROM files WHERE pipeline = 123 AND state = ''FAILED''') AS ast")).getRowsJS()[0][0]
    connection.closeSync()
    instance.closeSync()
    const [need] = planQuery((JSON.parse(String(parsed)) as { statements: { node: unknown }[] }).statements[0].node)
    expect(need.pending.map((filter) => filter.column.name)).toEqual(['state'])
    const star = await queryLedger(ledger, "SELECT * FROM files WHERE state = 'PENDING' ORDER BY hash LIMIT 1")
    expect(star.columns.map((column) => column.name)).toEqual(['pipeline', 'hash', 'path', 'size', 'state', 'attempts', 'lapses', 'load_id', 'rows', 'error', 'worker', 'lease_expires_at', 'created_at', 'updated_at', 'committed_at', 'code', 'quarantined', 'sidecar'])
    const struct = await queryLedger(ledger, 'SELECT f FROM files f LIMIT 1')
    expect(struct.loaded[0].columns).toHaveLength(18)
    const counted = await queryLedger(ledger, 'SELECT count(*) AS n FROM file_paths')
    expect(counted.loaded[0].columns).toHaveLength(1)
    expect(toJson(counted)).toEqual(direct('SELECT count(*) AS n FROM file_paths'))
    // A view reads its table with its own condition: loads are the load events.
    const loads = await queryLedger(ledger, "SELECT outcome, count(*) AS n FROM loads GROUP BY outcome ORDER BY outcome NULLS LAST")
    expect(loads.loaded[0].where).toEqual([{ column: 'event', in: ['file:claimed', 'file:retried', 'file:reclaimed', 'file:reopened', 'file:committed', 'file:healed', 'file:failed', 'file:released'] }])
    expect(toJson(loads)).toEqual([
      { outcome: 'committed', n: direct<{ n: number }>("SELECT count(*) AS n FROM files WHERE state = 'COMMITTED'")[0].n },
      { outcome: 'failed', n: direct<{ n: number }>("SELECT count(*) AS n FROM events WHERE event = 'file:failed'")[0].n },
      { outcome: null, n: direct<{ n: number }>("SELECT count(*) AS n FROM files WHERE state = 'PROCESSING'")[0].n },
    ])
  })

  it('refuses anything but one read, before loading anything', async () => {
    const refused = async (sql: string) => (await queryLedger(ledger, sql).then(() => undefined, (error: unknown) => error)) as { code?: string; message: string } | undefined
    for (const sql of ['DELETE FROM files', "COPY files TO 'out.csv'", "ATTACH 'x.db'", 'SET threads = 1', 'CREATE TABLE x AS SELECT 1', 'SELECT 1; SELECT 2']) {
      const error = await refused(sql)
      expect(error, sql).toMatchObject({ code: 'USAGE' })
    }
    expect((await refused('SELECT nope FROM files'))?.message).toContain('nope')
    // Nothing but the in-memory database: no file, no URL, no extension download.
    expect((await refused("SELECT * FROM read_text('/etc/hostname')"))?.message).toMatch(/disabled by configuration/)
  })

  it('prints JSON with numbers as numbers and big integers as strings, and RFC 4180 CSV', async () => {
    const result: QueryResult = await queryLedger(ledger, "SELECT 1 AS a, 9007199254740993::BIGINT AS big, 'x,\"y\"' AS b, NULL AS c, TIMESTAMP '2026-01-02 03:04:05.123456' AS t, [1, 2] AS l")
    expect(toJson(result)).toEqual([{ a: 1, big: '9007199254740993', b: 'x,"y"', c: null, t: '2026-01-02T03:04:05.123456Z', l: [1, 2] }])
    expect(toCsv(result)).toBe('a,big,b,c,t,l\r\n1,9007199254740993,"x,""y""",,2026-01-02 03:04:05.123456,"[1, 2]"\r\n')
  })
})

describePostgres('filedge query: both ledgers answer alike', () => {
  let dir: string
  let schema: string
  let sqliteLedger: LedgerStore
  let postgresLedger: LedgerStore
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-query-'))
    schema = freshSchema('filedge_query')
    syntheticSqliteLedger(path.join(dir, 'ledger.db'), { files: FILES, now: NOW })
    await syntheticPostgresLedger(PG_URL, schema, { files: FILES, now: NOW })
    sqliteLedger = openSqliteLedger(path.join(dir, 'ledger.db'))
    postgresLedger = await openPostgresLedger(PG_URL, { schema })
  })
  afterAll(async () => {
    await sqliteLedger?.close()
    await postgresLedger?.close()
    rmSync(dir, { recursive: true, force: true })
    await dropSchema(schema)
  })

  it('Postgres cuts a top-N to the rows it can return, ties included, and answers as over every row', async () => {
    await checkTops(postgresLedger)
    // By their place when the ties come with the rows asked for past the first.
    const slowest = await queryLedger(postgresLedger, TOP_QUERIES.slowest.replace('{and} ', ''))
    expect(slowest.loaded[0].where.filter(cutBy)).toEqual([{ ids: expect.arrayContaining([expect.stringMatching(/^\(\d+,\d+\)$/)]) }])
  })

  it('Postgres cuts by a bound on the key when more ties follow than it asks for (10,000)', async () => {
    const many = freshSchema('filedge_query_ties')
    await syntheticPostgresLedger(PG_URL, many, { files: 12_000, now: NOW })
    const ledger = await openPostgresLedger(PG_URL, { schema: many })
    try {
      await checkManyTies(ledger)
    } finally {
      await ledger.close()
      await dropSchema(many)
    }
  })

  for (const [name, sql] of Object.entries({
    ...QUESTIONS,
    ...Object.fromEntries(Object.entries(TOP_QUERIES).map(([key, template]) => [key, template.replace('WHERE {and} true ', '').replace('{and} ', '')])),
    everyFile: 'SELECT * FROM files ORDER BY pipeline, hash',
    everyEvent: 'SELECT * EXCLUDE (id) FROM events ORDER BY pipeline, hash, id',
    loads: 'SELECT * FROM loads ORDER BY pipeline, hash, started_at',
    paths: 'SELECT * FROM file_paths ORDER BY pipeline, hash, path',
  })) {
    it(`${name}: the same answer from SQLite and Postgres`, async () => {
      const [a, b] = [await queryLedger(sqliteLedger, sql), await queryLedger(postgresLedger, sql)]
      expect(a.rows.length).toBeGreaterThan(0)
      expect(toJson(b)).toEqual(toJson(a))
    })
  }
})

function cliSuite(name: TargetName) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`filedge query on a real run: ${name} ledger`, () => {
    let ws: Workspace | undefined
    let t: Target | undefined
    afterEach(async () => {
      ws?.remove()
      await t?.cleanup()
    })

    it('answers over what the run recorded, as a table, JSON or CSV; refuses writes with exit 2', async () => {
      t = target(name)
      ws = workspace({
        'filedge.config.ts': t.config({ columns: "{ id: { type: 'string', required: true }, n: 'integer' }", writeMode: "'append'" }),
        'incoming/a.csv': 'id,n\na1,1\na2,2\n',
        'incoming/b.csv': 'id,n\nb1,3\n',
        'incoming/bad.csv': 'id,n\nx,not-a-number\n',
      })
      expect((await ws.cli(['--reporter', 'silent'], { env: t.env })).code).toBe(1)

      const json = await ws.cli(['query', QUESTIONS.rowsPerPipeline, '--json'], { env: t.env })
      expect(json.code, json.stderr).toBe(0)
      expect(JSON.parse(json.stdout)).toEqual([{ pipeline: 'changes', files: 2, rows: 3 }])

      const failures = await ws.cli(['query', "SELECT path, error FROM files WHERE state = 'FAILED'", '--csv'], { env: t.env })
      expect(failures.code).toBe(0)
      expect(failures.stdout).toBe('path,error\r\nincoming/bad.csv,"incoming/bad.csv:2 column n: cannot coerce ""not-a-number"" to integer"\r\n')

      const table = await ws.cli(['query', QUESTIONS.failuresPerDay], { env: t.env })
      expect(table.code).toBe(0)
      expect(table.stdout).toMatch(/^day\s+failures\n\d{4}-\d\d-\d\d\s+1\n\(1 row\)\n$/)

      const write = await ws.cli(['query', "UPDATE files SET state = 'COMMITTED'"], { env: t.env })
      expect(write.code).toBe(2)
      expect(write.stderr).toContain('only a read')
      expect((await ws.cli(['query', 'SELECT 1', '--json', '--csv'], { env: t.env })).code).toBe(2)
    })
  })
}

cliSuite('sqlite')
cliSuite('postgres')

/**
 * Postgres hands `filedge query` its rows as CSV files (COPY) that DuckDB
 * reads: text that CSV must quote (commas, quotes, line breaks), an empty
 * string beside NULL, text longer than DuckDB's default line limit, and a
 * filter whose value needs quoting all arrive as they are, the same as from
 * SQLite; the files are gone once the query has its answer.
 */
describe('CSV parts: where the records of a COPY end, chunk by chunk', () => {
  it('counts records and finds their ends however the stream is cut, quotes and line breaks inside fields included', () => {
    let seed = 7
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    const fields = ['', 'a', '"x,y"', '"line\nbreak"', '"say ""hi"""', '"""\n"""', '"\r\n"', 'plain text']
    const field = () => fields[Math.floor(random() * fields.length)]
    const records = Array.from({ length: 500 }, () => `${field()},${field()},${field()}\n`)
    const text = Buffer.from(records.join(''))
    const ends: number[] = []
    for (let at = 0, index = 0; index < records.length; index++) ends.push((at += Buffer.byteLength(records[index])))
    for (let round = 0; round < 50; round++) {
      const scanner = csvRecords()
      let offset = 0
      while (offset < text.length) {
        const size = 1 + Math.floor(random() * 64)
        scanner.scan(text.subarray(offset, offset + size), offset)
        offset += size
        // Every record whose end was seen has ended, the last of them where the scanner says.
        expect(scanner.lastEnd).toBe(ends.filter((end) => end <= offset).at(-1) ?? 0)
      }
      expect(scanner.take()).toBe(records.length)
      expect(scanner.open()).toBe(false)
    }
  })
})

describePostgres('filedge query: text that CSV must quote arrives whole from Postgres', () => {
  const hostile = ['in,coming/a "quoted", file.csv', 'line\nbreak.csv', 'crlf\r\nbreak.csv', "o'neil\\back.csv", 'ünïcødé ✓.csv', ' lead space.csv', '"', '']
  // Two long values, one all quotes and line breaks: the COPY's output is cut into parts (of about 4 MB) at a record's end.
  const errors: (string | null)[] = ['', 'x'.repeat(3 * 1024 * 1024) + ',"\n', 'a\r\nb', null, '\\N', 'NULL', '"\n,'.repeat(1024 * 1024), '""']
  let dir: string
  let schema: string
  let ledgers: LedgerStore[]
  const previousTmp = process.env.TMPDIR
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-query-text-'))
    mkdirSync(path.join(dir, 'tmp'))
    // DuckDB's folder for the CSV files is made under it: what is left there after a query is seen below.
    process.env.TMPDIR = path.join(dir, 'tmp')
    schema = freshSchema('filedge_query_text')
    ledgers = [openSqliteLedger(path.join(dir, 'ledger.db')), await openPostgresLedger(PG_URL, { schema })]
    for (const ledger of ledgers) {
      for (const [index, name] of hostile.entries()) {
        const claimed = await ledger.claim({ pipeline: 'p', hash: index.toString(16).padStart(64, '0'), path: name, size: index, worker: 'w', maxAttempts: 1, maxLapses: 1, ttlMs: 60_000 })
        if (claimed.status !== 'claimed') throw new Error(`not claimed: ${name}`)
        const key = { pipeline: 'p', hash: index.toString(16).padStart(64, '0'), token: claimed.token, worker: 'w', attempt: claimed.attempt }
        const error = errors[index]
        if (error === null) await ledger.complete(key, index)
        else await ledger.fail(key, error, 1)
      }
    }
  })
  afterAll(async () => {
    for (const ledger of ledgers ?? []) await ledger.close()
    process.env.TMPDIR = previousTmp
    rmSync(dir, { recursive: true, force: true })
    await dropSchema(schema)
  })

  it('every value, quoted or empty or long, and a filter on one', async () => {
    const sql = 'SELECT path, error, rows, size FROM files ORDER BY size'
    const [sqlite, postgres] = [await queryLedger(ledgers[0], sql), await queryLedger(ledgers[1], sql)]
    const expected = hostile.map((name, index) => ({ path: name, error: errors[index], rows: errors[index] === null ? index : null, size: index }))
    expect(toJson(sqlite)).toEqual(expected)
    // Compared value by value: a 3 MB string in a diff would bury the one that differs.
    const rows = toJson(postgres) as typeof expected
    expect(rows).toHaveLength(expected.length)
    expect(postgres.loaded[0].rows).toBe(expected.length)
    for (const [index, row] of rows.entries()) expect(row, hostile[index]).toEqual(expected[index])

    const filtered = await queryLedger(ledgers[1], `SELECT size FROM files WHERE path IN ('${hostile[0].replace(/'/g, "''")}', '${hostile[3].replace(/'/g, "''")}', '') ORDER BY size`)
    expect(filtered.loaded[0].where).toEqual([{ column: 'path', in: [hostile[0], hostile[3], ''] }])
    expect(filtered.loaded[0].rows).toBe(3)
    expect(toJson(filtered)).toEqual([{ size: 0 }, { size: 3 }, { size: 7 }])
    const bounded = await queryLedger(ledgers[1], 'SELECT count(*) AS n FROM files WHERE size BETWEEN 2 AND 5')
    expect(bounded.loaded[0]).toMatchObject({ rows: 4, where: [{ column: 'size', min: 2 }, { column: 'size', max: 5 }] })
    expect(readdirSync(path.join(dir, 'tmp'))).toEqual([])
  })
})
