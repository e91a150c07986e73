import { once } from 'node:events'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../core/index.js'
import { openPonds } from '../plugins/pond/index.js'
import { readDuckdb } from './helpers/duckdb.js'
import { describePostgres, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * Ponds through the real CLI: a pipeline loads orders into DuckDB, and ponds
 * downstream build tables from them. A diamond — base reads orders; left and
 * right read base; top reads left and right — plus an unrelated pond that
 * reads orders too. What a user sees: which ponds ran (`pond history`), what
 * the tables hold, what `pond status` says, exit codes and messages.
 */

const workspaces: Workspace[] = []
afterEach(() => {
  for (const ws of workspaces.splice(0)) ws.remove()
})

interface Options {
  /** Extra ponds or overrides, as source text inside plugins: [...]. */
  readonly extra?: string
  /** The SQL of base's ripple. */
  readonly base?: string
  /** right's run ripple body (it gets db, ctx). */
  readonly right?: string
  readonly lease?: string
  /** The ledger setting, as code. */
  readonly ledger?: string
  /** Options of base's ripple besides its SQL, as code (parquet: …). */
  readonly baseOptions?: string
  /** base's attempts. */
  readonly attempts?: number
  /** base's version. */
  readonly baseVersion?: string
}

const BASE = "sql`SELECT day, sum(amount) AS total, count(*) AS orders FROM orders GROUP BY day`"

function config(options: Options = {}): string {
  return `import { defineConfig, env } from 'filedge'
import { duckdb } from 'filedge/plugins/duckdb'
import { pond, sql } from 'filedge/plugins/pond'
import { existsSync, writeFileSync } from 'node:fs'

export default defineConfig({
  ${options.lease === undefined ? '' : `lease: { ttl: '${options.lease}' },`}
  ${options.ledger === undefined ? '' : `ledger: ${options.ledger},`}
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: duckdb({ path: 'warehouse.duckdb', releaseAfter: '100ms' }),
    table: 'orders',
    columns: { day: 'date', amount: 'float' },
  }],
  plugins: [
    pond({ name: 'base', version: '${options.baseVersion ?? '1.0.0'}', ${options.attempts === undefined ? '' : `attempts: ${options.attempts},`} sources: { orders: '^1' }, ripples: { daily: ${options.baseOptions === undefined ? options.base ?? BASE : `{ sql: ${options.base ?? BASE}, ${options.baseOptions} }`} } }),
    pond({ name: 'left', version: '1.0.0', sources: { base: '^1' }, ripples: { busy: sql\`SELECT day, total FROM base.daily WHERE orders > 1\` } }),
    pond({ name: 'right', version: '1.0.0', sources: { base: '^1' }, ripples: { big: { run: async (db, ctx) => { ${options.right ?? ''} return 'SELECT day, total FROM base.daily WHERE total >= 10' } } } }),
    pond({ name: 'top', version: '1.0.0', sources: { left: '^1', right: '^1' }, ripples: {
      // left and right are SQL keywords: quoted, they are aliases like any other.
      joined: sql\`SELECT l.day, l.total FROM "left".busy l JOIN "right".big r USING (day)\`,
      summary: { parents: ['joined'], sql: sql\`SELECT count(*) AS days, sum(total) AS total FROM joined\` },
    } }),
    pond({ name: 'other', version: '1.0.0', sources: { orders: '^1' }, ripples: { all: sql\`SELECT count(*) AS n FROM orders\` } }),
    ${options.extra ?? ''}
  ],
})
`
}

function project(options: Options = {}, files: Record<string, string> = {}): Workspace {
  const ws = workspace({
    'filedge.config.ts': config(options),
    'incoming/a.csv': 'day,amount\n2024-01-01,10\n2024-01-01,5\n2024-01-02,7\n2024-01-03,20\n',
    ...files,
  })
  workspaces.push(ws)
  return ws
}

interface Event {
  readonly pond: string
  readonly event: string
  readonly ripple: string | null
  readonly error: string | null
  readonly freshness: string
  readonly inputVersion: string | null
  readonly rows: number | null
}

async function history(ws: Workspace, pond: string): Promise<Event[]> {
  const result = await ws.cli(['pond', 'history', pond, '--json', '--limit', '1000'])
  expect(result.stderr).toBe('')
  expect(result.code).toBe(0)
  return JSON.parse(result.stdout) as Event[]
}

const outcomes = (events: readonly Event[]) => events.filter((event) => event.event.startsWith('pond:') && event.event !== 'pond:started').map((event) => event.event.slice(5))

async function load(ws: Workspace): Promise<void> {
  const result = await ws.cli(['--reporter', 'json'])
  expect(result.stderr).toBe('')
  expect(result.code).toBe(0)
}

async function pulse(ws: Workspace, outlet: string, env?: NodeJS.ProcessEnv): Promise<{ code: number | null; ponds: { pond: string; outcome: string; error?: string; ripples?: { name: string; rows: number }[] }[]; stderr: string }> {
  const result = await ws.cli(['pond', 'pulse', outlet, '--json'], env === undefined ? {} : { env })
  return { code: result.code, stderr: result.stderr, ...(result.stdout.trim() === '' ? { ponds: [] } : (JSON.parse(result.stdout) as { ponds: never[] })) }
}

/** The workspace's ponds in this process, as `filedge pond` opens them (for a clock of the test's own). */
async function pondsOf(ws: Workspace) {
  const { config } = await loadConfig({ cwd: ws.dir })
  return openPonds(config, { worker: 'test' })
}

const table = (ws: Workspace, sql: string) => readDuckdb(ws.file('warehouse.duckdb'), sql)

describe('ponds', () => {
  it('a pulse on a diamond runs each ancestor once, in order, and leaves an unrelated pond alone', async () => {
    const ws = project()
    await load(ws)
    const demand = await pulse(ws, 'top')
    expect(demand.stderr).toBe('')
    expect(demand.code, JSON.stringify(demand)).toBe(0)
    expect(demand.ponds.map((pond) => [pond.pond, pond.outcome])).toEqual([
      ['base@1', 'succeeded'],
      ['left@1', 'succeeded'],
      ['right@1', 'succeeded'],
      ['top@1', 'succeeded'],
    ])
    expect(demand.ponds[3]!.ripples).toEqual([
      { name: 'joined', rows: 1 },
      { name: 'summary', rows: 1 },
    ])
    for (const pond of ['base', 'left', 'right', 'top']) expect(outcomes(await history(ws, pond))).toEqual(['succeeded'])
    expect(await history(ws, 'other')).toEqual([])
    // 2024-01-01 is the only day with more than one order and a total of at least 10.
    expect(await table(ws, 'SELECT day::VARCHAR AS day, total FROM "top@1".joined')).toEqual([{ day: '2024-01-01', total: 15 }])
    expect(await table(ws, 'SELECT days, total FROM "top@1".summary')).toEqual([{ days: 1n, total: 15 }])
  })

  it('passes without running when nothing it reads changed, byte-identical files re-landing included', async () => {
    const ws = project()
    await load(ws)
    expect((await pulse(ws, 'top')).code, 'pulse').toBe(0)
    const again = await pulse(ws, 'top')
    expect(again.ponds.map((pond) => pond.outcome)).toEqual(['passed', 'passed', 'passed', 'passed'])
    // The same bytes under another name: the ledger knows them, the table does not change, and no pond runs.
    ws.write('incoming/copy-of-a.csv', 'day,amount\n2024-01-01,10\n2024-01-01,5\n2024-01-02,7\n2024-01-03,20\n')
    await load(ws)
    expect((await pulse(ws, 'top')).ponds.map((pond) => pond.outcome)).toEqual(['passed', 'passed', 'passed', 'passed'])
    // A new file changes base and what reads it.
    ws.write('incoming/b.csv', 'day,amount\n2024-01-02,9\n')
    await load(ws)
    const changed = await pulse(ws, 'top')
    expect(changed.ponds.map((pond) => pond.outcome)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded'])
    expect(await table(ws, 'SELECT day::VARCHAR AS day, total FROM "top@1".joined ORDER BY day')).toEqual([
      { day: '2024-01-01', total: 15 },
      { day: '2024-01-02', total: 16 },
    ])
    expect(outcomes(await history(ws, 'base'))).toEqual(['succeeded', 'passed', 'passed', 'succeeded'])
  })

  it('a failing pond blocks what needs it, leaves the rest built, and recovers on the next pulse', async () => {
    const ws = project({ right: "if (process.env.FAIL_RIGHT === '1') throw new Error('the fx service is down');" })
    await load(ws)
    expect((await pulse(ws, 'top')).code, 'pulse').toBe(0)
    ws.write('incoming/b.csv', 'day,amount\n2024-01-02,9\n')
    await load(ws)
    const failing = await pulse(ws, 'top', { FAIL_RIGHT: '1' })
    expect(failing.code).toBe(1)
    expect(failing.ponds.map((pond) => [pond.pond, pond.outcome])).toEqual([
      ['base@1', 'succeeded'],
      ['left@1', 'succeeded'],
      ['right@1', 'failed'],
      ['top@1', 'blocked'],
    ])
    expect(failing.ponds[2]!.error).toBe('ripple big: the fx service is down')
    expect(failing.ponds[3]!.error).toContain('right@1 (failed)')
    // top still holds what it built before; left holds the new data.
    expect(await table(ws, 'SELECT day::VARCHAR AS day FROM "top@1".joined ORDER BY day')).toEqual([{ day: '2024-01-01' }])
    expect(await table(ws, 'SELECT day::VARCHAR AS day FROM "left@1".busy ORDER BY day')).toEqual([{ day: '2024-01-01' }, { day: '2024-01-02' }])

    const status = await ws.cli(['pond', 'status', '--json'])
    expect(status.code).toBe(1)
    const rows = JSON.parse(status.stdout) as { pond: string; status: string; error: string | null }[]
    expect(rows.map((row) => [row.pond, row.status])).toEqual([
      ['base@1', 'idle'],
      ['left@1', 'idle'],
      ['right@1', 'failed'],
      ['top@1', 'blocked'],
      ['other@1', 'idle'],
    ])
    expect(rows[2]!.error).toBe('ripple big: the fx service is down')

    const recovered = await pulse(ws, 'top')
    expect(recovered.code).toBe(0)
    expect(recovered.ponds.map((pond) => pond.outcome)).toEqual(['passed', 'passed', 'succeeded', 'succeeded'])
    expect(await table(ws, 'SELECT day::VARCHAR AS day FROM "top@1".joined ORDER BY day')).toEqual([{ day: '2024-01-01' }, { day: '2024-01-02' }])
    expect((JSON.parse((await ws.cli(['pond', 'status', '--json'])).stdout) as { status: string }[]).map((row) => row.status)).toEqual(['idle', 'idle', 'idle', 'idle', 'idle'])
  })

  it('a retyped column fails the run and keeps the previous output; an added one is fine', async () => {
    const ws = project()
    await load(ws)
    expect((await pulse(ws, 'base')).code).toBe(0)
    ws.write('filedge.config.ts', config({ base: "sql`SELECT day, CAST(sum(amount) AS VARCHAR) AS total, count(*) AS orders FROM orders GROUP BY day`" }))
    const retyped = await pulse(ws, 'base')
    expect(retyped.code).toBe(1)
    expect(retyped.ponds[0]!.error).toBe('ripple daily: column "total" was DOUBLE and is now VARCHAR; a dropped or retyped column needs a new major version of base (its tables live beside these), the previous output is kept')
    expect(await table(ws, 'SELECT typeof(total) AS type, total FROM "base@1".daily ORDER BY day')).toEqual([
      { type: 'DOUBLE', total: 15 },
      { type: 'DOUBLE', total: 7 },
      { type: 'DOUBLE', total: 20 },
    ])
    expect(await table(ws, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '%building%'")).toEqual([{ n: 0n }])
    ws.write('filedge.config.ts', config({ base: "sql`SELECT day, sum(amount) AS total, count(*) AS orders, max(amount) AS largest FROM orders GROUP BY day`" }))
    expect((await pulse(ws, 'base')).code).toBe(0)
    expect(await table(ws, 'SELECT total, largest FROM "base@1".daily ORDER BY day')).toEqual([
      { total: 15, largest: 10 },
      { total: 7, largest: 7 },
      { total: 20, largest: 20 },
    ])
  })

  it('an optional source that is absent does not block: the pond runs without it', async () => {
    const ws = project({
      extra: `pond({ name: 'enriched', version: '1.0.0', sources: { orders: '^1', fx: '^2?' }, ripples: { rates: { run: (db, ctx) => ctx.present.has('fx') ? 'SELECT * FROM fx.rates' : "SELECT 1.0 AS rate, '" + [...ctx.present].join(',') + "' AS present" } } }),`,
    })
    await load(ws)
    const demand = await pulse(ws, 'enriched')
    expect(demand.code, JSON.stringify(demand)).toBe(0)
    expect(demand.ponds.map((pond) => [pond.pond, pond.outcome])).toEqual([['enriched@1', 'succeeded']])
    expect(await table(ws, 'SELECT rate, present FROM "enriched@1".rates')).toEqual([{ rate: 1, present: 'orders' }])
  })

  it('refuses, when the config loads, sources it cannot meet, naming both ends', async () => {
    const cases: [string, string][] = [
      [`pond({ name: 'late', version: '1.0.0', sources: { base: '^1.2' }, ripples: { x: 'SELECT 1 AS x' } }),`, 'pond late@1 needs base ≥ 1.2.0 (^1.2), but base@1 is 1.0.0'],
      [`pond({ name: 'late', version: '1.0.0', sources: { base: '^2' }, ripples: { x: 'SELECT 1 AS x' } }),`, 'pond late@1 reads base ^2, but base is deployed as base@1 only'],
      [`pond({ name: 'late', version: '1.0.0', sources: { nowhere: '^1' }, ripples: { x: 'SELECT 1 AS x' } }),`, 'pond late@1 reads "nowhere", which is no pond or pipeline of this config'],
      [
        `pond({ name: 'p', version: '1.0.0', sources: { q: '^1' }, ripples: { x: 'SELECT 1 AS x' } }), pond({ name: 'q', version: '1.0.0', sources: { p: '^1' }, ripples: { x: 'SELECT 1 AS x' } }),`,
        'ponds read each other in a cycle: p@1 → q@1 → p@1',
      ],
      [`pond({ name: 'r', version: '1.0.0', ripples: { a: { parents: ['b'], sql: 'SELECT 1' }, b: { parents: ['a'], sql: 'SELECT 1' } } }),`, 'pond r@1: its ripples form a cycle: a → b → a'],
    ]
    for (const [extra, message] of cases) {
      const ws = project({ extra })
      const result = await ws.cli(['pond', 'status'])
      expect(result.code, extra).toBe(2)
      expect(result.stderr).toContain(message)
      // A run refuses the same config before loading a single file.
      const run = await ws.cli([])
      expect(run.code).toBe(2)
      expect(run.stderr).toContain(message)
      expect(existsSync(ws.file('warehouse.duckdb'))).toBe(false)
    }
  })

  it('a redeployed version runs again and keeps the history of the one before', async () => {
    const ws = project()
    await load(ws)
    expect((await pulse(ws, 'base')).code).toBe(0)
    ws.write('filedge.config.ts', config({ baseVersion: '1.1.0' }))
    const redeployed = await pulse(ws, 'base')
    expect(redeployed.ponds.map((pond) => [pond.pond, pond.outcome])).toEqual([['base@1', 'succeeded']])
    const events = (await history(ws, 'base')) as unknown as { version: string; event: string }[]
    expect(events.filter((event) => event.event === 'pond:succeeded').map((event) => event.version)).toEqual(['1.0.0', '1.1.0'])
    const status = JSON.parse((await ws.cli(['pond', 'status', '--json'])).stdout) as { pond: string; version: string }[]
    expect(status.find((row) => row.pond === 'base@1')!.version).toBe('1.1.0')
  })

  it('two majors live side by side, and a source reads the one its range pins', async () => {
    const ws = project({
      extra: `pond({ name: 'base', version: '2.1.0', sources: { orders: '^1' }, ripples: { daily: sql\`SELECT day, sum(amount) * 100 AS cents FROM orders GROUP BY day\` } }),
      pond({ name: 'reader', version: '1.0.0', sources: { base: '^2.1' }, ripples: { cents: sql\`SELECT sum(cents) AS cents FROM base.daily\` } }),`,
    })
    await load(ws)
    const demand = await pulse(ws, 'reader')
    expect(demand.code, JSON.stringify(demand)).toBe(0)
    expect(demand.ponds.map((pond) => pond.pond)).toEqual(['base@2', 'reader@1'])
    expect(await table(ws, 'SELECT cents FROM "reader@1".cents')).toEqual([{ cents: 4200 }])
    expect((await pulse(ws, 'base@1')).code).toBe(0)
    expect(await table(ws, 'SELECT sum(total) AS total FROM "base@1".daily')).toEqual([{ total: 42 }])
  })

  it('two processes pulsing the same outlet at once never run a pond twice for the same inputs', async () => {
    const ws = project({ right: 'await new Promise((resolve) => setTimeout(resolve, 300));' })
    await load(ws)
    const both = await Promise.all([pulse(ws, 'top'), pulse(ws, 'top')])
    for (const demand of both) expect(demand.code, demand.stderr).toBe(0)
    for (const pond of ['base', 'left', 'right', 'top']) {
      const seen = outcomes(await history(ws, pond))
      expect(seen.filter((outcome) => outcome === 'succeeded'), pond).toEqual(['succeeded'])
      expect(seen.filter((outcome) => outcome === 'passed'), pond).toEqual(['passed'])
    }
  })

  it('a SIGKILL mid-ripple leaves the previous output whole, and the next pulse builds it once the lease lapses', async () => {
    const ws = project({ lease: '2s', right: "if (process.env.HANG === '1') { writeFileSync('hanging', ''); await new Promise(() => {}) }" })
    await load(ws)
    expect((await pulse(ws, 'top')).code, 'pulse').toBe(0)
    ws.write('incoming/b.csv', 'day,amount\n2024-01-02,9\n')
    await load(ws)
    const child = ws.spawn(['pond', 'pulse', 'top'], { env: { HANG: '1' } })
    const exited = once(child, 'exit')
    await expect.poll(() => ws.exists('hanging'), { timeout: 30_000, interval: 50 }).toBe(true)
    child.kill('SIGKILL')
    await exited
    // While the killed run's lease lives, right@1 is running; once it lapses, the run was interrupted.
    const statusOf = async () => (JSON.parse((await ws.cli(['pond', 'status', '--json'])).stdout) as { pond: string; status: string; error: string | null }[]).find((row) => row.pond === 'right@1')!
    await expect.poll(async () => (await statusOf()).status, { timeout: 30_000, interval: 200 }).toBe('failed')
    expect((await statusOf()).error).toBe('interrupted: its last run stopped before it finished (its process ended); the next pulse runs it again')
    expect(await table(ws, 'SELECT day::VARCHAR AS day FROM "right@1".big ORDER BY day')).toEqual([{ day: '2024-01-01' }, { day: '2024-01-03' }])
    expect(await table(ws, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '%building%'")).toEqual([{ n: 0n }])
    const next = await pulse(ws, 'top')
    expect(next.code, next.stderr).toBe(0)
    expect(next.ponds.map((pond) => pond.outcome)).toEqual(['passed', 'passed', 'succeeded', 'succeeded'])
    expect(await table(ws, 'SELECT day::VARCHAR AS day FROM "right@1".big ORDER BY day')).toEqual([{ day: '2024-01-01' }, { day: '2024-01-02' }, { day: '2024-01-03' }])
  })
})

/** Lines of a standing command's stdout, parsed as JSON, as they arrive. */
function jsonLines(child: import('node:child_process').ChildProcess): { readonly lines: Record<string, unknown>[] } {
  const seen = { lines: [] as Record<string, unknown>[] }
  let pending = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8')
    const parts = pending.split('\n')
    pending = parts.pop()!
    for (const part of parts) if (part.trim() !== '') seen.lines.push(JSON.parse(part) as Record<string, unknown>)
  })
  return seen
}

type Demand = { outlet: string; ponds: { pond: string; outcome: string; ripples?: { name: string; rows: number }[] }[] }
const demands = (seen: { lines: Record<string, unknown>[] }) => seen.lines.filter((line) => 'outlet' in line && 'ponds' in line) as unknown as Demand[]

describe('pond triggers', () => {
  it('wave --watch: a file that lands loads, and flows through to the outlet', async () => {
    const ws = project()
    const child = ws.spawn(['pond', 'wave', 'top', '--watch', '--json'])
    const exited = once(child, 'exit')
    const seen = jsonLines(child)
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    try {
      // What the outlet's joined table holds after each demand that rebuilt it.
      const joined = () => demands(seen).flatMap((demand) => demand.ponds.filter((pond) => pond.pond === 'top@1' && pond.outcome === 'succeeded').map((pond) => pond.ripples![0]!.rows))
      // The outlet catches up with a.csv, loaded by the watcher's first sweep: one busy day of ten or more.
      await expect.poll(() => joined().at(-1), { timeout: 60_000, interval: 50 }).toBe(1)
      ws.write('incoming/b.csv', 'day,amount\n2024-01-02,9\n')
      await expect.poll(() => joined().at(-1), { timeout: 60_000, interval: 50 }).toBe(2)
    } finally {
      child.kill('SIGINT')
    }
    const [code] = await exited
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const committed = seen.lines.filter((line) => line.event === 'file:committed').map((line) => line.path)
    expect(committed).toEqual(['incoming/a.csv', 'incoming/b.csv'])
    expect(await table(ws, 'SELECT day::VARCHAR AS day, total FROM "top@1".joined ORDER BY day')).toEqual([
      { day: '2024-01-01', total: 15 },
      { day: '2024-01-02', total: 16 },
    ])
    expect(demands(seen).every((demand) => demand.outlet === 'top@1')).toBe(true)
  })

  it('tide --every: pulses on schedule; the first builds, the next pass; Ctrl-C stops it', async () => {
    const ws = project()
    await load(ws)
    const child = ws.spawn(['pond', 'tide', 'base', '--every', '200ms', '--json'])
    const exited = once(child, 'exit')
    const seen = jsonLines(child)
    try {
      await expect.poll(() => demands(seen).length, { timeout: 60_000, interval: 50 }).toBeGreaterThanOrEqual(3)
    } finally {
      child.kill('SIGINT')
    }
    const [code] = await exited
    expect(code).toBe(0)
    const outcomesSeen = demands(seen).map((demand) => demand.ponds[0]!.outcome)
    expect(outcomesSeen[0]).toBe('succeeded')
    expect(new Set(outcomesSeen.slice(1))).toEqual(new Set(['passed']))
    const events = await history(ws, 'base')
    expect(new Set(events.filter((event) => event.event !== 'pond:started').map((event) => (event as unknown as { trigger: string }).trigger))).toEqual(new Set(['tide']))
  })

  it('tide refuses a bad schedule with a usage error', async () => {
    const ws = project()
    const neither = await ws.cli(['pond', 'tide', 'base'])
    expect(neither.code).toBe(2)
    expect(neither.stderr).toContain('give --every <duration> or --cron <expression>')
    const bad = await ws.cli(['pond', 'tide', 'base', '--cron', 'every tuesday'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--cron "every tuesday"')
  })
})

describe('pond outputs and budgets', () => {
  it('a ripple with parquet is also written there, aside then renamed, and only when it changed', async () => {
    const ws = project({ baseOptions: "parquet: 'out/daily.parquet'" })
    await load(ws)
    expect((await pulse(ws, 'base')).code).toBe(0)
    const read = () => readDuckdb(':memory:', `SELECT day::VARCHAR AS day, total, orders FROM read_parquet('${ws.file('out/daily.parquet')}') ORDER BY day`)
    expect(await read()).toEqual([
      { day: '2024-01-01', total: 15, orders: 2n },
      { day: '2024-01-02', total: 7, orders: 1n },
      { day: '2024-01-03', total: 20, orders: 1n },
    ])
    const { mtimeMs } = statSync(ws.file('out/daily.parquet'))
    expect((await pulse(ws, 'base')).ponds[0]!.outcome).toBe('passed')
    expect(statSync(ws.file('out/daily.parquet')).mtimeMs).toBe(mtimeMs)
    ws.write('incoming/b.csv', 'day,amount\n2024-01-04,1\n')
    await load(ws)
    expect((await pulse(ws, 'base')).ponds[0]!.outcome).toBe('succeeded')
    expect((await read()).map((row) => row.day)).toEqual(['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-04'])
    expect(readdirSync(ws.file('out'))).toEqual(['daily.parquet'])
  })

  it("a pond's attempts: a flaky ripple that fails once succeeds on the second attempt of the same run", async () => {
    const flaky = "{ run: () => { if (!existsSync('tried')) { writeFileSync('tried', ''); throw new Error('flaky warehouse') } return 'SELECT count(*) AS n FROM orders' } }"
    const once = project({ base: flaky, attempts: 2 })
    await load(once)
    const demand = await pulse(once, 'base')
    expect(demand.code, JSON.stringify(demand)).toBe(0)
    expect((await history(once, 'base')).map((event) => event.event)).toEqual(['pond:started', 'ripple:succeeded', 'pond:succeeded'])
    const strict = project({ base: flaky })
    await load(strict)
    const failed = await pulse(strict, 'base')
    expect(failed.code).toBe(1)
    expect(failed.ponds[0]!.error).toBe('ripple daily: flaky warehouse')
  })

  it('reads a pipeline as of the demand: files committed after F are not seen', async () => {
    const ws = project()
    await load(ws)
    const ponds = await pondsOf(ws)
    try {
      // F before the first commit: the table exists, and base sees none of its rows.
      const early = await ponds.pulse('base', { now: () => Date.parse('2001-01-01T00:00:00Z') })
      expect(early.ponds.map((pond) => pond.outcome)).toEqual(['succeeded'])
      expect(early.ponds[0]!.ripples).toEqual([{ name: 'daily', rows: 0 }])
      const now = await ponds.pulse('base')
      expect(now.ponds[0]!.ripples).toEqual([{ name: 'daily', rows: 3 }])
    } finally {
      await ponds.close()
    }
  })
})

describePostgres('ponds with a Postgres ledger', () => {
  it('two processes pulsing at once run each pond once; status and history read it back', async () => {
    const schema = freshSchema('filedge_pond')
    const ws = project({ ledger: "env('FILEDGE_LEDGER_URL')", right: 'await new Promise((resolve) => setTimeout(resolve, 300));' })
    const env = { FILEDGE_LEDGER_URL: `${PG_URL}?schema=${schema}` }
    try {
      expect((await ws.cli(['--reporter', 'json'], { env })).code).toBe(0)
      const both = await Promise.all([ws.cli(['pond', 'pulse', 'top', '--json'], { env }), ws.cli(['pond', 'pulse', 'top', '--json'], { env })])
      for (const result of both) expect(result.code, result.stderr).toBe(0)
      const seen = both.flatMap((result) => (JSON.parse(result.stdout) as { ponds: { pond: string; outcome: string }[] }).ponds)
      for (const pond of ['base@1', 'left@1', 'right@1', 'top@1']) {
        expect(seen.filter((result) => result.pond === pond).map((result) => result.outcome).sort(), pond).toEqual(['passed', 'succeeded'])
      }
      const history = await ws.cli(['pond', 'history', 'top', '--json'], { env })
      expect((JSON.parse(history.stdout) as { event: string }[]).map((event) => event.event)).toEqual(['pond:started', 'ripple:succeeded', 'ripple:succeeded', 'pond:succeeded', 'pond:passed'])
      const status = await ws.cli(['pond', 'status', '--json'], { env })
      expect(status.code).toBe(0)
      expect((JSON.parse(status.stdout) as { status: string }[]).map((row) => row.status)).toEqual(['idle', 'idle', 'idle', 'idle', 'idle'])
    } finally {
      await pgQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    }
  })
})

describe('tide on a simulated clock', () => {
  it('pulses at each tick with F the tick, and skips ticks a slow pulse overran rather than queueing them', async () => {
    const ws = project()
    await load(ws)
    const ponds = await pondsOf(ws)
    // The simulated clock: a sleep moves it on at once. Files committed now are far in its past.
    let clock = Date.parse('2030-01-01T00:07:00Z')
    const seen: { freshness: string; outcome: string }[] = []
    try {
      for (const [schedule, ticks] of [
        [{ every: '15m' as const }, 4],
        [{ cron: '0 * * * *' }, 3],
      ] as const) {
        seen.length = 0
        const local = new AbortController()
        await ponds.tide('base', {
          ...schedule,
          signal: local.signal,
          now: () => clock,
          sleep: async (ms) => {
            clock += ms
          },
          onDemand: (demand) => {
            seen.push({ freshness: demand.freshness, outcome: demand.ponds[0]!.outcome })
            // The second pulse takes 40 simulated minutes.
            if (seen.length === 2) clock += 40 * 60_000
            if (seen.length === ticks) local.abort()
          },
        })
        if ('every' in schedule) {
          expect(seen).toEqual([
            { freshness: '2030-01-01T00:07:00.000Z', outcome: 'succeeded' },
            { freshness: '2030-01-01T00:22:00.000Z', outcome: 'passed' },
            // 00:37 and 00:52 were overrun by the 40-minute pulse: the next tick ahead is 01:07.
            { freshness: '2030-01-01T01:07:00.000Z', outcome: 'passed' },
            { freshness: '2030-01-01T01:22:00.000Z', outcome: 'passed' },
          ])
        } else {
          expect(seen.map((tick) => tick.freshness)).toEqual(['2030-01-01T02:00:00.000Z', '2030-01-01T03:00:00.000Z', '2030-01-01T04:00:00.000Z'])
        }
      }
    } finally {
      await ponds.close()
    }
  })
})
