import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { historyProblems, readLedger, rowsByHash } from './helpers/invariants.js'
import { REPO_ROOT, exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Leases with real processes and a one-second lease: a long load keeps its
 * lease by heartbeat and nobody takes the file meanwhile; a worker frozen
 * (SIGSTOP) past its lease loses the file to another worker, and when it
 * wakes up (SIGCONT) it aborts: whatever it does late cannot change the rows
 * or the ledger the winner left.
 */

const ROWS = 40
const CSV = `id,n\n${Array.from({ length: ROWS }, (_, i) => `r${i + 1},${i + 1}`).join('\n')}\n`
const PLUGIN = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')

let ws: Workspace | undefined
afterEach(() => ws?.remove())

function project(): Workspace {
  return workspace({
    'filedge.config.ts': sqliteConfig({
      imports: `import { pausePoints, pauseAfterWrite } from ${JSON.stringify(PLUGIN)}`,
      plugins: 'pausePoints()',
      top: "lease: { ttl: '1s', heartbeat: '250ms' },",
      columns: "{ id: 'string', n: 'integer' }",
      extra: 'batchSize: 4,',
    }).replace("destination: sqlite({ path: 'warehouse.db' })", "destination: pauseAfterWrite(sqlite({ path: 'warehouse.db' }))"),
    'incoming/a.csv': CSV,
  })
}

interface Worker {
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; events: { event: string; reason?: string; error?: { code: string } }[]; stderr: string }>
  readonly pid: number
  running(): boolean
}

function start(w: Workspace, env: NodeJS.ProcessEnv = {}): Worker {
  const child = w.spawn(['--json'], { env })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  let running = true
  const done = exited(child).then((exit) => {
    running = false
    return { ...exit, stderr, events: stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line)) }
  })
  return { done, pid: child.pid!, running: () => running }
}

function leaseExpiry(w: Workspace): number {
  return w.query<{ expires: number }>('.filedge/ledger.db', 'SELECT lease_expires_at AS expires FROM files')[0].expires
}

/**
 * One write made the rows. Frozen before its commit, the frozen worker's write never lands and the rows are
 * the winner's. Frozen after it, the winner finds that commit in the destination's load marker and heals the
 * file without writing again: the rows are the frozen worker's, from before it froze.
 */
function expectLoadedOnceBy(w: Workspace, winner: string, frozenAt: number, healed: boolean) {
  const rows = rowsByHash(w.dir, 'orders')
  expect([...rows.values()]).toEqual([{ rows: ROWS, distinctRowNumbers: ROWS, minRowNumber: 1, maxRowNumber: ROWS, sum: null }])
  const ingested = w.query<{ at: string }>('warehouse.db', 'SELECT DISTINCT _ingested_at AS at FROM orders')
  expect(ingested).toHaveLength(1)
  if (healed) expect(Date.parse(ingested[0].at)).toBeLessThan(frozenAt)
  else expect(Date.parse(ingested[0].at)).toBeGreaterThanOrEqual(frozenAt)
  const ledger = readLedger(w.dir)
  expect(historyProblems(ledger)).toEqual([])
  // The reclaim continues the frozen worker's attempt: a lapse is not an attempt.
  expect(ledger.files.map(({ state, attempts, rows, worker }) => ({ state, attempts, rows, worker }))).toEqual([{ state: 'COMMITTED', attempts: 1, rows: ROWS, worker: winner }])
  expect(ledger.events.map((event) => event.event)).toEqual(['file:discovered', 'file:claimed', 'file:reclaimed', healed ? 'file:healed' : 'file:committed'])
}

describe('a load longer than the lease', () => {
  it('keeps its lease alive by heartbeat, and another worker leaves the file alone meanwhile', async () => {
    ws = project()
    const w = ws
    // The load holds the file, mid-transaction, until the test lets it finish: several times the lease.
    const slow = start(w, { PAUSE_AT: 'batch', SLOW_BATCH_MS: '50' })
    await waitFor(() => w.exists('paused'), 20_000, 'the load to start')
    const first = leaseExpiry(w)
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    // Past the lease the claim was given: it must have been renewed, not left to lapse.
    const later = leaseExpiry(w)
    expect(later).toBeGreaterThan(first)
    expect(later).toBeGreaterThan(Date.now())

    const other = await start(w).done
    expect(other.stderr).toBe('')
    expect(other.code).toBe(0)
    expect(other.events.filter((event) => event.event === 'file:skipped').map((event) => event.reason)).toEqual(['held'])
    // The other worker did not wait for the load: it skipped the file while the load was still running.
    expect(slow.running()).toBe(true)
    expect(leaseExpiry(w)).toBeGreaterThan(Date.now())
    w.write('resume', '')
    const result = await slow.done
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)

    const ledger = readLedger(w.dir)
    expect(historyProblems(ledger)).toEqual([])
    expect(ledger.events.map((event) => event.event)).toEqual(['file:discovered', 'file:claimed', 'file:committed'])
    expect(ledger.files.map(({ state, attempts, rows }) => ({ state, attempts, rows }))).toEqual([{ state: 'COMMITTED', attempts: 1, rows: ROWS }])
    expect([...rowsByHash(w.dir, 'orders').values()].map((counts) => counts.rows)).toEqual([ROWS])
  })
})

describe('a load that never waits on I/O', () => {
  it('still renews its lease: the rows read at once, each batch worked on without a pause, for several times the lease', async () => {
    ws = project()
    const w = ws
    // 10 batches of 4 rows, 400 ms of work each: 4 s, where the lease is 1 s and renewed every 250 ms.
    const slow = start(w, { SPIN_BATCH_MS: '400' })
    await waitFor(() => w.exists('loading'), 20_000, 'the load to start')
    const first = leaseExpiry(w)
    await waitFor(() => Date.now() > first + 250, 5_000, 'the lease the load started with to lapse')
    // Past it, the lease must have been renewed while the load still runs.
    const renewed = leaseExpiry(w)
    const running = slow.running()
    expect({ running, renewed: renewed > Date.now() }).toEqual({ running: true, renewed: true })
    const result = await slow.done
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(readLedger(w.dir).events.map((event) => event.event)).toEqual(['file:discovered', 'file:claimed', 'file:committed'])
  })
})

describe('a worker frozen past its lease', () => {
  const cases = [
    { at: 'load', where: 'after its claim, before the destination transaction' },
    { at: 'batch', where: 'inside the destination transaction, holding its write lock' },
    { at: 'written', where: 'after the destination commit, before the ledger update' },
  ] as const

  for (const { at, where } of cases) {
    it(`${where}: loses the file to another worker, and on waking changes nothing`, async () => {
      ws = project()
      const w = ws
      const frozen = start(w, { PAUSE_AT: at })
      await waitFor(() => w.exists('paused'), 20_000, 'the worker to reach the pause point')
      process.kill(frozen.pid, 'SIGSTOP')
      try {
        const stoppedAt = Date.now()
        await waitFor(() => leaseExpiry(w) < Date.now(), 5_000, 'the frozen worker\'s lease to expire')
        const winner = start(w)
        await waitFor(() => readLedger(w.dir).events.some((event) => event.event === 'file:reclaimed'), 20_000, 'another worker to reclaim the file')
        const winnerId = readLedger(w.dir).files[0].worker!
        // Frozen inside its transaction it still holds the destination's write lock: the winner can only
        // commit once it wakes. Anywhere else, the winner finishes first.
        if (at !== 'batch') {
          const result = await winner.done
          expect(result.stderr).toBe('')
          expect(result.code).toBe(0)
        }
        const before = at === 'batch' ? undefined : readLedger(w.dir)

        w.write('resume', '')
        process.kill(frozen.pid, 'SIGCONT')
        const late = await frozen.done
        // The frozen worker reports that it lost the file, and records nothing.
        expect(late.stderr).toBe('')
        expect(late.code).toBe(1)
        expect(late.events.filter((event) => event.event === 'file:failed').map((event) => event.error?.code)).toEqual(['CLAIM_LOST'])
        if (before !== undefined) expect(readLedger(w.dir)).toEqual(before)

        const result = await winner.done
        expect(result.stderr).toBe('')
        expect(result.code).toBe(0)
        expectLoadedOnceBy(w, winnerId, stoppedAt, at === 'written')
      } finally {
        try {
          process.kill(frozen.pid, 'SIGKILL')
        } catch {
          // Already gone: the normal case.
        }
      }
    })
  }
})
