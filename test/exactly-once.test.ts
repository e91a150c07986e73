import path from 'node:path'
import { describe, it, type ExpectStatic, type TestContext } from 'vitest'
import { describePostgres } from './helpers/postgres.js'
import { target, type Target, type TargetName } from './helpers/targets.js'
import { rmSync } from 'node:fs'
import { exited, REPO_ROOT, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Exactly once across two systems (issue 14). The ledger and the destination
 * commit separately; the destination's load marker, written in the
 * transaction of the rows, is the truth the ledger heals from. Each case
 * runs the real CLI on each destination (SQLite and DuckDB with a SQLite
 * ledger, Postgres with a Postgres ledger), kills it with SIGKILL where the
 * case says, and reruns it once the dead worker's lease has expired.
 */

const CRASH = path.join(REPO_ROOT, 'test/helpers/crash-points.mjs')
const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')
const COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer' }"
const csv = (label: string, rows: number) => `id,n\n${Array.from({ length: rows }, (_, i) => `${label}-${i + 1},${i + 1}`).join('\n')}\n`

interface Summary {
  committed: number
  failed: number
  healed: number
  reclaimed: number
  rows: number
}

async function run(ws: Workspace, t: Target, env: NodeJS.ProcessEnv = {}) {
  const result = await ws.cli(['--json'], { env: { ...t.env, ...env } })
  const events = result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  return { ...result, events, summary: events.find((event) => event.event === 'run:summary') as unknown as Summary }
}

/** Runs the CLI until it reaches `pauseAt` (test/helpers/pause-points.mjs), and kills it there with SIGKILL. */
async function killed(expect: ExpectStatic, ws: Workspace, t: Target, pauseAt: 'batch' | 'written'): Promise<void> {
  const child = ws.spawn(['--reporter', 'silent'], { env: { ...t.env, PAUSE_AT: pauseAt } })
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  const exit = exited(child)
  await Promise.race([waitFor(() => ws.exists('paused'), 30_000, `the run to pause at ${pauseAt}`), exit])
  expect(ws.exists('paused'), `the run to pause at ${pauseAt} (${stderr})`).toBe(true)
  child.kill('SIGKILL')
  expect((await exit).signal).toBe('SIGKILL')
  rmSync(ws.file('paused'))
}

/** Waits until the ledger says a lease has expired (its own clock decides, as a reclaiming worker's would). */
async function leaseExpired(ws: Workspace, t: Target): Promise<void> {
  for (;;) {
    const status = await ws.cli(['status', '--json'], { env: t.env })
    const pipelines = (JSON.parse(status.stdout) as { pipelines: { expired: number }[] }).pipelines
    if (pipelines.some((pipeline) => pipeline.expired > 0)) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** Rows per file hash in the destination table, and their row numbers. */
async function rowsByFile(ws: Workspace, t: Target): Promise<Record<string, number[]>> {
  const rows = await t.select(ws, 'SELECT _source_file_hash AS hash, CAST(_source_row_number AS INTEGER) AS row FROM {customers} ORDER BY 1, 2')
  const out: Record<string, number[]> = {}
  for (const row of rows) (out[String(row.hash)] ??= []).push(Number(row.row))
  return out
}

function suite(name: TargetName) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`exactly once: ${name}`, () => {
    const make = (context: TestContext, options: { writeMode?: string; top?: string; extra?: string; wrap?: string; files?: Record<string, string> } = {}) => {
      const t = target(name)
      const ws = workspace({
        'filedge.config.ts': t.config({
          columns: COLUMNS,
          writeMode: options.writeMode ?? "'append'",
          top: `lease: { ttl: '2s', heartbeat: '500ms' }, ${options.top ?? ''}`,
          imports: `import { failAfterWrite } from ${JSON.stringify(CRASH)}\nimport { pausePoints, pauseAfterWrite } from ${JSON.stringify(PAUSE)}`,
          plugins: 'pausePoints()',
          wrap: options.wrap ?? 'pauseAfterWrite',
          extra: options.extra ?? '',
        }),
        ...options.files,
      })
      context.onTestFinished(async () => {
        ws.remove()
        await t.cleanup()
      })
      return { ws, t }
    }
    const hashOf = async (ws: Workspace, t: Target, file: string) => {
      const history = await ws.cli(['history', file, '--json'], { env: t.env })
      return (JSON.parse(history.stdout) as { file: { hash: string } }[])[0].file.hash
    }
    const eventsOf = async (ws: Workspace, t: Target, file: string) => {
      const history = await ws.cli(['history', file, '--json'], { env: t.env })
      return (JSON.parse(history.stdout) as { events: { event: string; error: string | null }[] }[])[0].events
    }

    // Issue 14, case 1: this left the file FAILED (terminal) with all its rows in the table, forever.
    it.concurrent('killed between the destination commit and the ledger update on its last attempt: the rerun heals it, rows once', async (context) => {
      const { expect } = context
      const { ws, t } = make(context, { top: 'concurrency: 1,', extra: 'retry: { attempts: 1 },', files: { 'incoming/a.csv': csv('a', 3), 'incoming/b.csv': csv('b', 2) } })
      await killed(expect, ws, t, 'written')
      // The destination committed a.csv; the ledger never heard.
      expect((await t.files(ws)).map((file) => [file.path, file.state])).toEqual([['incoming/a.csv', 'PROCESSING']])
      await leaseExpired(ws, t)

      const rerun = await run(ws, t)
      expect(rerun.stderr).toBe('')
      expect(rerun.code).toBe(0)
      expect(rerun.summary).toMatchObject({ committed: 2, failed: 0, healed: 1, reclaimed: 1, rows: 2 })
      expect((await t.files(ws)).map((file) => [file.path, file.state])).toEqual([
        ['incoming/a.csv', 'COMMITTED'],
        ['incoming/b.csv', 'COMMITTED'],
      ])
      const a = await hashOf(ws, t, 'incoming/a.csv')
      const b = await hashOf(ws, t, 'incoming/b.csv')
      expect(await rowsByFile(ws, t)).toEqual({ [a]: [1, 2, 3], [b]: [1, 2] })
      const healed = (await eventsOf(ws, t, 'incoming/a.csv')).at(-1)!
      expect(healed.event).toBe('file:healed')
      expect(healed.error).toMatch(/^already committed in the destination by an earlier attempt \(load [0-9a-f]{8}, 3 rows\)/)
      const committed = rerun.events.find((event) => event.event === 'file:committed' && event.path === 'incoming/a.csv')
      expect(committed).toMatchObject({ rows: 3, healed: expect.stringMatching(/^already committed/) })
    })

    // A COMMIT whose outcome the worker could not know (the connection dropped while it was in flight) counted
    // as a failed attempt although the rows were committed: on the last attempt the file ended FAILED with its
    // rows in the table, and on an earlier one the next attempt loaded them again.
    it.concurrent('a write that reports an error after its COMMIT happened: the same attempt asks the destination and heals', async (context) => {
      const { expect } = context
      const { ws, t } = make(context, { extra: 'retry: { attempts: 1 },', wrap: 'failAfterWrite', files: { 'incoming/a.csv': csv('a', 4) } })
      const first = await run(ws, t, { FILEDGE_FAIL_AFTER_WRITE: '1' })
      expect(first.code).toBe(0)
      expect(first.summary).toMatchObject({ committed: 1, failed: 0, healed: 1 })
      expect((await t.files(ws))[0]).toMatchObject({ state: 'COMMITTED' })
      expect(Object.values(await rowsByFile(ws, t))).toEqual([[1, 2, 3, 4]])
      const events = await eventsOf(ws, t, 'incoming/a.csv')
      expect(events.map((event) => event.event)).toEqual(['file:discovered', 'file:claimed', 'file:healed'])
      expect(events.at(-1)!.error).toMatch(/^committed in the destination \(load [0-9a-f]{8}, 4 rows\) although the write reported an error: .*Connection terminated unexpectedly \(while COMMIT was in flight\)/)
      // Nothing left to do.
      expect((await run(ws, t)).summary).toMatchObject({ committed: 0, failed: 0 })
    })

    // Issue 14, case 2: the third snapshot (the same bytes as the first) was skipped, and the table kept the second.
    it.concurrent('truncate: snapshots A, B, then A again under a new name, then B rewritten in place: the newest arrival wins each time', async (context) => {
      const { expect } = context
      const tier1 = 'id,n\nann,1\nbob,1\n'
      const tier2 = 'id,n\nann,2\nbob,2\n'
      const { ws, t } = make(context, { writeMode: "'truncate'", files: { 'incoming/customers-01.csv': tier1 } })
      const table = async () => (await t.select(ws, 'SELECT id, CAST(n AS INTEGER) AS n FROM {customers} ORDER BY id')).map((row) => `${row.id}:${row.n}`)
      expect((await run(ws, t)).summary).toMatchObject({ committed: 1 })
      ws.write('incoming/customers-02.csv', tier2)
      expect((await run(ws, t)).summary).toMatchObject({ committed: 1 })
      expect(await table()).toEqual(['ann:2', 'bob:2'])

      ws.write('incoming/customers-03.csv', tier1)
      const third = await run(ws, t)
      expect(third.code).toBe(0)
      expect(third.summary).toMatchObject({ committed: 1, failed: 0 })
      expect(await table()).toEqual(['ann:1', 'bob:1'])
      // A rerun changes nothing: the arrivals were seen.
      expect((await run(ws, t)).summary).toMatchObject({ committed: 0 })
      expect(await table()).toEqual(['ann:1', 'bob:1'])

      // The same bytes rewritten at a path that held them before (a fixed-name export): a new arrival too.
      ws.write('incoming/customers-02.csv', tier2)
      await touchedLater(ws, 'incoming/customers-02.csv')
      expect((await run(ws, t)).summary).toMatchObject({ committed: 1 })
      expect(await table()).toEqual(['ann:2', 'bob:2'])
      const reopened = (await eventsOf(ws, t, 'incoming/customers-02.csv')).filter((event) => event.event === 'file:reopened')
      expect(reopened.map((event) => event.error)).toEqual(['committed before; its bytes arrived again at incoming/customers-02.csv, and the newest arrival wins'])
    })
  })
}

/** Gives a rewritten file an mtime later than any it had (a coarse clock could give it the same one). */
async function touchedLater(ws: Workspace, file: string): Promise<void> {
  const { statSync, utimesSync } = await import('node:fs')
  const before = statSync(ws.file(file)).mtimeMs
  const later = new Date(Math.max(Date.now(), before + 1000))
  utimesSync(ws.file(file), later, later)
}

for (const name of ['sqlite', 'duckdb', 'postgres'] as const) suite(name)

describe('lapses: a worker that died says nothing about its file', () => {
  const lapseTarget = () => target('sqlite')
  const setup = (context: TestContext, retry: string) => {
    const t = lapseTarget()
    const ws = workspace({
      'filedge.config.ts': t.config({
        columns: COLUMNS,
        writeMode: "'append'",
        top: "lease: { ttl: '2s', heartbeat: '500ms' },",
        imports: `import { pausePoints } from ${JSON.stringify(PAUSE)}`,
        plugins: 'pausePoints()',
        extra: `${retry} batchSize: 2,`,
      }),
      'incoming/a.csv': csv('a', 5),
    })
    context.onTestFinished(() => ws.remove())
    return { ws, t }
  }

  // Issue 14: an expired lease counted as an attempt: with the default 3 attempts, three unrelated crashes
  // while a good file was in flight left it terminally FAILED.
  it('with the default settings, a good file killed three times in a row still commits on the next run', async (context) => {
    const { expect } = context
    const { ws, t } = setup(context, '')
    for (let kill = 1; kill <= 3; kill++) {
      await killed(expect, ws, t, 'batch')
      await leaseExpired(ws, t)
    }
    const rerun = await run(ws, t)
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 1, failed: 0, reclaimed: 1, rows: 5 })
    expect(await t.files(ws)).toEqual([{ path: 'incoming/a.csv', state: 'COMMITTED', error: null }])
    const events = ws.query<{ event: string; attempt: number }>('.filedge/ledger.db', 'SELECT event, attempt FROM events ORDER BY id')
    expect(events.map((event) => `${event.event} ${event.attempt ?? ''}`.trim())).toEqual([
      'file:discovered',
      'file:claimed 1',
      'file:reclaimed 1',
      'file:reclaimed 1',
      'file:reclaimed 1',
      'file:committed 1',
    ])
  })

  // Issue 14: the run that turned a lapse into a terminal failure said `failed 0` and exited 0.
  it('too many lapses in a row fail the file terminally, and the run that decides it reports it', async (context) => {
    const { expect } = context
    const { ws, t } = setup(context, 'retry: { lapses: 2 },')
    for (let kill = 1; kill <= 2; kill++) {
      await killed(expect, ws, t, 'batch')
      await leaseExpired(ws, t)
    }
    const decisive = await run(ws, t)
    expect(decisive.code).toBe(1)
    expect(decisive.summary).toMatchObject({ committed: 0, failed: 1 })
    const failed = decisive.events.find((event) => event.event === 'file:failed') as { terminal: boolean; error: { code: string; message: string } }
    expect(failed.terminal).toBe(true)
    expect(failed.error.code).toBe('LEASE_LAPSED')
    expect(failed.error.message).toMatch(/^incoming\/a\.csv: lease expired 2 times in a row \(retry\.lapses is 2\): worker .* stopped during attempt 1/)
    const [file] = ws.query<{ state: string; attempts: number; lapses: number }>('.filedge/ledger.db', 'SELECT state, attempts, lapses FROM files')
    expect(file).toEqual({ state: 'FAILED', attempts: 3, lapses: 2 })
    // Terminal: the next run skips it and succeeds, as for any terminal failure.
    const after = await run(ws, t)
    expect(after.code).toBe(0)
    expect(after.summary).toMatchObject({ committed: 0, failed: 0 })
    expect(await t.select(ws, 'SELECT count(*) AS n FROM {customers}')).toEqual([{ n: 0 }])
  })
})
