import { createHash } from 'node:crypto'
import { afterEach, expect, it } from 'vitest'
import { describePostgres, dropSchema, freshSchema, pgQuery, postgresConfig, postgresEnv } from './helpers/postgres.js'
import { PAUSE_AFTER_WRITE, PAUSE_IN_COMMIT } from './helpers/pauses.js'
import { exited, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Several real `filedge` processes sharing one Postgres ledger and one
 * Postgres destination: how filedge scales out. And the SIGKILL scenarios of
 * crash.test.ts, with the Postgres ledger judging the lease by its clock.
 */

const COLUMNS = `{ id: { type: 'string', required: true }, n: 'integer', amount: { type: 'decimal', precision: 12, scale: 2 } }`

let ws: Workspace | undefined
let schemas: string[] = []
afterEach(async () => {
  ws?.remove()
  ws = undefined
  for (const schema of schemas) await dropSchema(schema)
  schemas = []
})

function schemasForTest() {
  const ledger = freshSchema('filedge_ledger')
  const dest = freshSchema('filedge_dest')
  schemas.push(ledger, dest)
  return { ledger, dest }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

describePostgres('many workers on one Postgres ledger', () => {
  it('4 processes over 200 files: every file committed exactly once, no worker fails, nothing left in flight', async () => {
    const { ledger, dest } = schemasForTest()
    const files: Record<string, string> = {}
    const expectedRows = new Map<string, number>()
    for (let f = 0; f < 200; f++) {
      const rows = 100 + ((f * 37) % 200)
      const csv = `id,n,amount\n${Array.from({ length: rows }, (_, r) => `f${f}-r${r},${r},${(f * 1000 + r) / 100}`).join('\n')}\n`
      files[`incoming/batch-${String(f).padStart(3, '0')}.csv`] = csv
      expectedRows.set(sha256(csv), rows)
    }
    ws = workspace({ 'filedge.config.ts': postgresConfig({ destSchema: dest, columns: COLUMNS }), ...files })
    const w = ws
    const runs = await Promise.all(Array.from({ length: 4 }, () => w.cli(['--reporter', 'simple'], { env: postgresEnv(ledger) })))

    for (const run of runs) {
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(run.stdout).toMatch(/failed 0 ·/)
    }
    const committedPerRun = runs.map((run) => Number(/committed (\d+)/.exec(run.stdout)?.[1]))
    expect(committedPerRun.reduce((a, b) => a + b, 0)).toBe(200)

    const perHash = await pgQuery<{ hash: string; rows: number; distinct_rows: number }>(
      `SELECT _source_file_hash AS hash, count(*)::int AS rows, count(DISTINCT _source_row_number)::int AS distinct_rows FROM "${dest}".orders GROUP BY 1`,
    )
    expect(perHash).toHaveLength(200)
    for (const { hash, rows, distinct_rows } of perHash) {
      expect(rows).toBe(expectedRows.get(hash))
      expect(distinct_rows).toBe(rows)
    }
    expect(await pgQuery(`SELECT state, count(*)::int AS n FROM "${ledger}".files GROUP BY state`)).toEqual([{ state: 'COMMITTED', n: 200 }])
    const committed = await pgQuery<{ hash: string; n: number }>(`SELECT hash, count(*)::int AS n FROM "${ledger}".events WHERE event = 'file:committed' GROUP BY hash`)
    expect(committed).toHaveLength(200)
    expect(committed.every((row) => row.n === 1)).toBe(true)
    // Any machine with the config reads the shared ledger.
    const status = await w.cli(['status', '--json'], { env: postgresEnv(ledger) })
    expect(status.code).toBe(0)
    const report = JSON.parse(status.stdout) as { ledger: string; pipelines: { COMMITTED: number; PROCESSING: number; rows: number }[] }
    expect(report.ledger).toContain(`schema ${ledger}`)
    expect(report.pipelines).toMatchObject([{ COMMITTED: 200, PROCESSING: 0, rows: [...expectedRows.values()].reduce((a, b) => a + b, 0) }])
    // The work was shared, not done by whichever process started first.
    const workers = await pgQuery<{ workers: number }>(`SELECT count(DISTINCT worker)::int AS workers FROM "${ledger}".events WHERE event = 'file:committed'`)
    expect(workers[0].workers).toBeGreaterThan(1)
  })
})



const ROWS = 10
const CSV = `id,n\n${Array.from({ length: ROWS }, (_, i) => `r${i + 1},${i + 1}`).join('\n')}\n`
// The lease must lapse by the server's clock before a rerun may reclaim; wait well past it.
const PAST_LEASE_MS = 1_800

async function killWhenPaused(w: Workspace, env: NodeJS.ProcessEnv) {
  const child = w.spawn(['--reporter', 'silent'], { env: { ...env, PAUSE: '1' } })
  await waitFor(() => w.exists('paused'), 30_000, 'the run to pause')
  child.kill('SIGKILL')
  expect((await exited(child)).signal).toBe('SIGKILL')
}

async function expectLoadedOnce(dest: string) {
  const rows = await pgQuery<{ n: string; _source_row_number: string }>(`SELECT n, _source_row_number FROM "${dest}".orders ORDER BY n`)
  expect(rows.map((row) => Number(row._source_row_number))).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1))
  expect(await pgQuery(`SELECT count(DISTINCT _source_file_hash)::int AS hashes FROM "${dest}".orders`)).toEqual([{ hashes: 1 }])
}

describePostgres('SIGKILL with a Postgres ledger and destination', () => {
  it('mid-load: nothing is left behind, and the next run after the lease expires reclaims and commits once', async () => {
    const { ledger, dest } = schemasForTest()
    const env = postgresEnv(ledger)
    ws = workspace({
      'pause.mjs': PAUSE_IN_COMMIT,
      'filedge.config.ts': postgresConfig({
        destSchema: dest,
        imports: "import { pauseInCommit } from './pause.mjs'",
        plugins: 'pauseInCommit()',
        top: "lease: { ttl: '1s', heartbeat: '200ms' },",
        columns: "{ id: 'string', n: 'integer' }",
        extra: 'batchSize: 2,',
      }),
      'incoming/a.csv': CSV,
    })
    await killWhenPaused(ws, env)
    // The first batch was inside an uncommitted transaction: the server rolled it back when the connection died.
    expect(await pgQuery(`SELECT count(*)::int AS n FROM "${dest}".orders`)).toEqual([{ n: 0 }])
    expect(await pgQuery(`SELECT state FROM "${ledger}".files`)).toEqual([{ state: 'PROCESSING' }])

    await new Promise((resolve) => setTimeout(resolve, PAST_LEASE_MS))
    const rerun = await ws.cli(['--reporter', 'simple'], { env })
    expect(rerun.stderr).toBe('')
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1/)
    await expectLoadedOnce(dest)
    const events = await pgQuery(`SELECT event, from_state, to_state FROM "${ledger}".events ORDER BY id`)
    expect(events).toEqual([
      { event: 'file:discovered', from_state: null, to_state: 'PENDING' },
      { event: 'file:claimed', from_state: 'PENDING', to_state: 'PROCESSING' },
      { event: 'file:reclaimed', from_state: 'PROCESSING', to_state: 'PROCESSING' },
      { event: 'file:committed', from_state: 'PROCESSING', to_state: 'COMMITTED' },
    ])
  })

  it('between the destination commit and the ledger update: the rerun heals without duplicate rows', async () => {
    const { ledger, dest } = schemasForTest()
    const env = postgresEnv(ledger)
    ws = workspace({
      'pause.mjs': PAUSE_AFTER_WRITE,
      'filedge.config.ts': postgresConfig({
        destSchema: dest,
        imports: "import { pauseAfterWrite } from './pause.mjs'",
        wrapDestination: 'pauseAfterWrite',
        top: "lease: { ttl: '1s', heartbeat: '200ms' },",
        columns: "{ id: 'string', n: 'integer' }",
      }),
      'incoming/a.csv': CSV,
    })
    await killWhenPaused(ws, env)
    expect(await pgQuery(`SELECT count(*)::int AS n FROM "${dest}".orders`)).toEqual([{ n: ROWS }])
    expect(await pgQuery(`SELECT state FROM "${ledger}".files`)).toEqual([{ state: 'PROCESSING' }])

    await new Promise((resolve) => setTimeout(resolve, PAST_LEASE_MS))
    const rerun = await ws.cli(['--reporter', 'simple'], { env })
    expect(rerun.code).toBe(0)
    // Healed from the destination's load marker: the file is not loaded again, and the lapse was no attempt.
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1 · retried 0 · rows 0 · healed 1/)
    await expectLoadedOnce(dest)
    expect(await pgQuery(`SELECT state, attempts, lapses, rows::int FROM "${ledger}".files`)).toEqual([{ state: 'COMMITTED', attempts: 1, lapses: 0, rows: ROWS }])
  })
})
