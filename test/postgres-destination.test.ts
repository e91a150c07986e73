import { createHash, randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { env, isFiledgeError, resolveConfig, type Destination, type TableSpec, type Value, type WriteJob } from '../core/index.js'
import { openPostgresLedger } from '../core/ledger/postgres/store.js'
import { postgres, type PostgresDestinationOptions } from '../plugins/postgres/index.js'
import { deleteFileRows } from '../plugins/postgres/write-modes.js'
import { testDestination } from './conformance/index.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'

/** Reads values as Postgres prints them where a JS conversion could shift them (dates in a local time zone, JSON scalars). */
const RAW_TEXT_TYPES = new Set([1082 /* date */, 114 /* json */, 3802 /* jsonb */])
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    return RAW_TEXT_TYPES.has(oid) ? (value: string) => value : pg.types.getTypeParser(oid, format)
  },
}

describePostgres('postgres destination', () => {
  testDestination({
    name: 'postgres',
    make() {
      const schema = freshSchema('filedge_dest')
      return {
        destination: postgres({ url: PG_URL, schema }),
        async rows(table) {
          const client = new pg.Client({ connectionString: PG_URL, types })
          await client.connect()
          try {
            const quote = (name: string) => `"${name.replace(/"/g, '""')}"`
            return (await client.query(`SELECT * FROM ${quote(schema)}.${quote(table)}`)).rows
          } finally {
            await client.end()
          }
        },
        cleanup: () => dropSchema(schema),
      }
    },
  })
})

function fakeJob(table: TableSpec, hash: string, rows: Value[][], batchSize = 2): WriteJob {
  const columns = table.columns.map((column) => column.name)
  return {
    pipeline: 'p',
    table,
    writeMode: { kind: 'append' },
    file: { hash, path: 'incoming/f.csv', size: 1, version: '0:0', modifiedAt: 0 },
    loadId: randomUUID(),
    ingestedAt: '2026-01-02T03:04:05.678000Z',
    batches: (async function* () {
      for (let start = 0; start < rows.length; start += batchSize) {
        const slice = rows.slice(start, start + batchSize)
        // Line = record number + 1 (a header line), as the CSV format reports it.
        yield { columns, rows: slice, rowNumbers: slice.map((_, i) => start + i + 1), lines: slice.map((_, i) => start + i + 2) }
      }
    })(),
    signal: new AbortController().signal,
    assertLease: async () => undefined,
  }
}

const hashOf = (seed: string) => createHash('sha256').update(seed).digest('hex')
const quietContext = (dir = '/') => ({
  config: resolveConfig({ pipelines: [{ name: 'p', source: 'in', destination: sqliteStandIn, table: 't', columns: { id: 'string' } }] }, { cwd: dir }),
  logger: { debug() {}, info() {}, warn() {}, error() {} },
})
const sqliteStandIn = { name: 'stand-in', capabilities: { transactions: true, writeModes: ['append' as const] }, describe: () => 'stand-in', prepare: async () => {}, write: async () => ({ rows: 0 }) }

describePostgres('postgres destination: what only Postgres has to prove', () => {
  let schema: string
  let destinations: Destination[]
  const make = async (options: Partial<PostgresDestinationOptions> = {}) => {
    const destination = postgres({ url: PG_URL, schema, ...options })
    destinations.push(destination)
    await destination.open?.(quietContext())
    return destination
  }
  const rowsOf = (table: string) => pgQuery<Record<string, unknown>>(`SELECT * FROM "${schema}"."${table}" ORDER BY _source_row_number`)
  const events: TableSpec = {
    name: 'events',
    columns: [
      { name: 'id', type: 'string', required: true },
      { name: 'day', type: 'date', required: false },
    ],
  }

  beforeEach(() => {
    schema = freshSchema('filedge_dest')
    destinations = []
  })
  afterEach(async () => {
    for (const destination of destinations) await destination.close?.()
    await dropSchema(schema)
  })

  it('fails a value Postgres refuses with the source line and column, keeping the previous version of the file', async () => {
    const destination = await make()
    await destination.prepare(events)
    const hash = hashOf('dates')
    await destination.write(fakeJob(events, hash, [['a', '2024-05-01']]))
    // Year 0 is a valid YYYY-MM-DD to the coercion, but not a Postgres date.
    const rows: Value[][] = Array.from({ length: 30 }, (_, i) => [`r${i}`, i === 22 ? '0000-01-01' : '2024-05-02'])
    const error = await destination.write(fakeJob(events, hash, rows, 4)).catch((caught: unknown) => caught)
    expect(isFiledgeError(error) && error.code).toBe('ROW_INVALID')
    expect(error).toMatchObject({ file: 'incoming/f.csv', line: 24, column: 'day' })
    expect((error as Error).message).toMatch(/^incoming\/f\.csv:24 column day: Postgres refused the value: .*out of range/)
    expect((await rowsOf('events')).map((row) => row.id)).toEqual(['a'])
    // The connection went back to the pool usable: the next file commits.
    await destination.write(fakeJob(events, hashOf('next'), [['b', null]]))
    expect(await rowsOf('events')).toHaveLength(2)
  })

  // The COPY switched from text to binary format (copy-binary.ts): every value must land as text COPY stored it.
  it('stores every type exactly as the coercion wrote it (binary COPY), across eras, signs and scripts', async () => {
    const destination = await make()
    const all: TableSpec = {
      name: 'all_types',
      columns: [
        { name: 's', type: 'string', required: false },
        { name: 'i', type: 'integer', required: false },
        { name: 'f', type: 'float', required: false },
        { name: 'd', type: 'decimal', required: false, precision: 38, scale: 9 },
        { name: 'b', type: 'boolean', required: false },
        { name: 'day', type: 'date', required: false },
        { name: 'at', type: 'timestamp', required: false },
      ],
    }
    await destination.prepare(all)
    const rows: Value[][] = [
      ['plain', 0, 0, '0.000000000', false, '2000-01-01', '2000-01-01T00:00:00.000000Z'],
      ['naïve — 日本 😀 tab\there', -1, -1.5, '-0.000000001', true, '1969-12-31', '1969-12-31T23:59:59.999999Z'],
      ['"quoted", \\N back\\slash\nnewline', 9007199254740991, 1e-300, '12345678901234567890123456789.123456789', null, '0001-01-01', '0001-01-01T00:00:00.000000Z'],
      ['', -9223372036854775808n, 1.7976931348623157e308, '-99999999999999999999999999999.999999999', true, '9999-12-31', '9999-12-31T23:59:59.999999Z'],
      [null, 9223372036854775807n, -0.1, '10000.000100000', false, '2024-02-29', '2024-02-29T12:34:56.000001Z'],
      ['x', 42, 3.141592653589793, '0.100000000', true, '1600-03-01', '1900-02-28T23:00:00.500000Z'],
      ['y', null, null, null, null, null, null],
    ]
    await destination.write(fakeJob(all, hashOf('all types'), rows, 3))
    const stored = await pgQuery<Record<string, string | null>>(
      `SELECT s, i::text, f::text, d::text, b::text, day::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
              _source_row_number::text AS n, to_char(_ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ingested, _source_file_hash AS hash
       FROM "${schema}".all_types ORDER BY _source_row_number`,
    )
    const text = (value: Value) => (value === null ? null : typeof value === 'boolean' ? String(value) : String(value))
    expect(stored).toEqual(
      rows.map((row, index) => ({
        s: row[0],
        i: text(row[1]),
        // float8 prints the shortest exact form, as JavaScript does (1e-300 as 1e-300, 1.7976931348623157e308 as 1.7976931348623157e+308).
        f: row[2] === null ? null : String(row[2]).replace(/e(\d)/, 'e+$1'),
        d: row[3],
        b: text(row[4]),
        day: row[5],
        at: row[6],
        n: String(index + 1),
        ingested: '2026-01-02T03:04:05.678000Z',
        hash: hashOf('all types'),
      })),
    )
  })

  // The index on the hash moved from the text to hashtext(text) (write-modes.ts): tables of either kind must delete by index.
  it("finds a file's rows for its DELETE by index, on new tables and on tables with the earlier index on the hash text", async () => {
    const destination = await make()
    await destination.prepare(events)
    await pgQuery(`CREATE TABLE "${schema}".old_events (LIKE "${schema}".events); CREATE INDEX ON "${schema}".old_events (_source_file_hash)`)
    const plans: string[] = []
    const client = new pg.Client({ connectionString: PG_URL })
    await client.connect()
    try {
      // The tables are tiny: without this the planner would rightly prefer a scan.
      await client.query('SET enable_seqscan = off')
      for (const table of ['events', 'old_events']) {
        const { rows } = await client.query<Record<string, string>>(`EXPLAIN ${deleteFileRows(`"${schema}"."${table}"`).replaceAll('$1', `'${hashOf('x')}'`)}`)
        plans.push(rows.map((row) => row['QUERY PLAN']).join('\n'))
      }
    } finally {
      await client.end()
    }
    expect(plans[0]).toMatch(/Index Scan|Bitmap Index Scan/)
    expect(plans[0]).toContain('hashtext')
    expect(plans[1]).toMatch(/Index Scan|Bitmap Index Scan/)
    expect(plans[1]).not.toContain('Seq Scan')
  })

  it('fails a text value with a NUL character, which Postgres cannot store, before sending it', async () => {
    const destination = await make()
    await destination.prepare(events)
    const error = await destination.write(fakeJob(events, hashOf('nul'), [['ok', null], ['bad\0id', null]])).catch((caught: unknown) => caught)
    expect(isFiledgeError(error) && error.code).toBe('ROW_INVALID')
    expect(error).toMatchObject({ line: 3, column: 'id' })
    expect(await rowsOf('events')).toEqual([])
  })

  it('accepts a hand-made varchar column, and fails a value too long for it with its line', async () => {
    await pgQuery(`CREATE SCHEMA "${schema}"`)
    await pgQuery(`CREATE TABLE "${schema}".events (id varchar(3) NOT NULL, day date, _source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL)`)
    const destination = await make()
    await destination.prepare(events)
    const error = await destination.write(fakeJob(events, hashOf('long'), [['abc', null], ['abcd', null]])).catch((caught: unknown) => caught)
    expect(error).toMatchObject({ code: 'ROW_INVALID', line: 3 })
    expect(await rowsOf('events')).toEqual([])
  })

  it('reports narrower column types as drift, and only looks at its own schema', async () => {
    const other = freshSchema('filedge_dest')
    try {
      // The same table name, different shape, in another schema: not ours, not drift.
      await pgQuery(`CREATE SCHEMA "${other}"; CREATE TABLE "${other}".events (something_else integer)`)
      const destination = await make()
      await destination.prepare(events)
      await pgQuery(`CREATE TABLE "${schema}".narrow (n integer, at timestamp, x real, d numeric(10,2), _source_file_hash text NOT NULL, _ingested_at timestamptz NOT NULL, _source_row_number bigint NOT NULL)`)
      const narrow: TableSpec = {
        name: 'narrow',
        columns: [
          { name: 'n', type: 'integer', required: false },
          { name: 'at', type: 'timestamp', required: false },
          { name: 'x', type: 'float', required: false },
          { name: 'd', type: 'decimal', required: false, precision: 18, scale: 2 },
        ],
      }
      const error = await destination.prepare(narrow).catch((caught: unknown) => caught)
      expect(isFiledgeError(error) && error.code).toBe('SCHEMA_DRIFT')
      const message = (error as Error).message
      expect(message).toContain('column "n" is integer, expected bigint (integer)')
      expect(message).toContain('column "at" is timestamp without time zone, expected timestamp with time zone (timestamp)')
      expect(message).toContain('column "x" is real, expected double precision (float)')
      expect(message).toContain('column "d" is numeric(10,2), expected numeric (decimal)')
      expect(message).toContain(`${schema}.narrow`)
    } finally {
      await dropSchema(other)
    }
  })

  it('never shows a password, and says which variable is missing', async () => {
    const url = new URL(PG_URL)
    url.password = 'hunter2-secret'
    const destination = postgres({ url: url.toString(), schema })
    expect(destination.describe()).not.toContain('hunter2-secret')
    const unreachable = new URL(url)
    unreachable.port = '1'
    const down = postgres({ url: unreachable.toString(), schema })
    destinations.push(down)
    await down.open?.(quietContext())
    const refused = await down.prepare(events).catch((caught: unknown) => caught)
    expect((refused as Error).message).toMatch(/^postgres postgres(ql)?:\/\/[^ ]*:\*\*\*@[^ ]+ schema \S+: .*ECONNREFUSED/)
    expect((refused as Error).message).not.toContain('hunter2-secret')
    expect(postgres({ url: env('FILEDGE_TEST_NO_SUCH_VAR'), schema }).describe()).toContain('env(FILEDGE_TEST_NO_SUCH_VAR)')
    const missing = await postgres({ url: env('FILEDGE_TEST_NO_SUCH_VAR'), schema })
      .open?.(quietContext())
      .catch((caught: unknown) => caught)
    expect(missing).toMatchObject({ code: 'CONFIG_INVALID' })
    expect((missing as Error).message).toContain('FILEDGE_TEST_NO_SUCH_VAR')
  })

  it('commits every file with synchronous_commit on, even where the session default is off, unless durability is fast', async () => {
    // Sessions that default to off, as a server or role may be configured; a statement trigger records what the COPY ran with.
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2, options: '-c synchronous_commit=off' })
    try {
      const durable = await make({ url: undefined, client: pool })
      await durable.prepare(events)
      await pgQuery(`CREATE TABLE "${schema}".seen (setting text);
        CREATE FUNCTION "${schema}".record_setting() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO "${schema}".seen VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$;
        CREATE TRIGGER record BEFORE INSERT ON "${schema}".events FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".record_setting()`)
      await durable.write(fakeJob(events, hashOf('durable'), [['a', null]]))
      const fast = await make({ url: undefined, client: pool, durability: 'fast' })
      await fast.write(fakeJob(events, hashOf('fast'), [['b', null]]))
      expect(await pgQuery(`SELECT setting FROM "${schema}".seen`)).toEqual([{ setting: 'on' }, { setting: 'off' }])
    } finally {
      for (const destination of destinations.splice(0)) await destination.close?.()
      await pool.end()
    }
  })

  // Regression: each table took its own advisory lock, then created the schema if the catalog did not have it yet. Two
  // tables (or a table and a ledger) in a new schema took different locks, both found no schema, and the second CREATE
  // SCHEMA failed (pg_namespace_nspname_index, 23505) in about one round of ten with two workers.
  it('workers preparing different tables in a new schema at once, next to a ledger opening there, all succeed', async () => {
    const truncate = { kind: 'truncate' as const, allowEmpty: false }
    for (let round = 0; round < 10; round++) {
      const fresh = freshSchema('filedge_race')
      const workers = await Promise.all(Array.from({ length: 4 }, () => make({ schema: fresh })))
      try {
        const results = await Promise.allSettled([
          ...workers.map((worker, index) => worker.prepare({ ...events, name: `t${index}` }, index % 2 === 0 ? undefined : truncate)),
          openPostgresLedger(PG_URL, { schema: fresh }).then((ledger) => ledger.close()),
        ])
        expect(results.filter((result) => result.status === 'rejected'), `round ${round}`).toEqual([])
        const tables = await pgQuery<{ name: string }>('SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [fresh])
        expect(tables.map((table) => table.name)).toEqual(expect.arrayContaining(['t0', 't1', 't2', 't3', 'files', 'events']))
      } finally {
        for (const worker of workers) await worker.close?.()
        destinations = destinations.filter((destination) => !workers.includes(destination))
        await dropSchema(fresh)
      }
    }
  })

  it('uses an injected pool and leaves it open on close', async () => {
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 })
    try {
      const destination = await make({ url: undefined, client: pool })
      await destination.prepare(events)
      expect(await destination.write(fakeJob(events, hashOf('pool'), [['a', '2024-01-01']]))).toEqual({ rows: 1 })
      await destination.close?.()
      expect((await pool.query('SELECT count(*)::int AS n FROM "' + schema + '".events')).rows).toEqual([{ n: 1 }])
    } finally {
      await pool.end()
    }
  })
})
