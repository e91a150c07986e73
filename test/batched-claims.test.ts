import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { openSqliteLedger } from '../core/ledger/sqlite/store.js'
import type { ClaimInput, LedgerStore } from '../core/ledger/types.js'
import { ORDER_COLUMNS, ordersFile, type GeneratedFile } from './helpers/generated-orders.js'
import { historyProblems, random, readLedger, rowProblems, rowsByHash } from './helpers/invariants.js'
import { REPO_ROOT, exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Claims that reach the SQLite ledger in the same event-loop turn share one
 * transaction (core/ledger/sqlite/store.ts), and the runner starts the files
 * a finished group freed together, so a run of small files claims them in
 * batches. What must not change: each claim is still its own (one that fails
 * fails alone, and sees the claims before it in the batch), a file waits for
 * nothing between its claim and its heartbeat, and a process killed while a
 * batch is being claimed leaves a ledger the next run settles, every file
 * loaded once.
 */

const input = (index: number, overrides: Partial<ClaimInput> = {}): ClaimInput => ({
  pipeline: 'orders',
  hash: index.toString(16).padStart(64, '0'),
  path: `incoming/${index}.csv`,
  size: 10,
  worker: 'A',
  maxAttempts: 3,
  maxLapses: 5,
  ttlMs: 60_000,
  ...overrides,
})

describe('claims in one turn', () => {
  let dir: string | undefined
  let store: LedgerStore | undefined
  afterEach(async () => {
    await store?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })
  const open = () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-claims-'))
    store = openSqliteLedger(path.join(dir, 'ledger.db'))
    return store
  }

  it('are each their own: one that throws rejects alone, and the others are claimed with their events', async () => {
    const ledger = open()
    // A size that is not a number breaks the files table's NOT NULL: that claim's INSERT throws.
    const claims = Array.from({ length: 20 }, (_, index) => ledger.claim(input(index, index === 7 ? { size: null as unknown as number } : {})))
    const outcomes = await Promise.allSettled(claims)
    expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toHaveLength(1)
    expect(outcomes[7].status).toBe('rejected')
    for (const [index, outcome] of outcomes.entries()) {
      if (index !== 7) expect(outcome, `claim ${index}`).toMatchObject({ status: 'fulfilled', value: { status: 'claimed', isNew: true, attempt: 1 } })
    }
    const files = await ledger.find('incoming/7.csv')
    expect(files).toEqual([])
    for (const index of [0, 6, 8, 19]) {
      const [file] = await ledger.find(`incoming/${index}.csv`)
      expect(file.state).toBe('PROCESSING')
      expect((await ledger.events('orders', file.hash)).map((event) => event.event)).toEqual(['file:discovered', 'file:claimed'])
    }
  })

  it('see the claims before them: the same bytes asked for twice in one turn are claimed once, then held', async () => {
    const ledger = open()
    const [first, second, alias] = await Promise.all([ledger.claim(input(1)), ledger.claim(input(1, { worker: 'B' })), ledger.claim(input(1, { path: 'incoming/copy.csv', worker: 'C' }))])
    expect(first).toMatchObject({ status: 'claimed', isNew: true })
    expect(second).toMatchObject({ status: 'skipped', reason: 'held', isNew: false })
    expect(alias).toMatchObject({ status: 'skipped', reason: 'held', isNew: false })
    const [file] = await ledger.find('incoming/1.csv')
    expect(file.paths).toEqual(['incoming/1.csv', 'incoming/copy.csv'])
    expect((await ledger.events('orders', file.hash)).map((event) => event.event)).toEqual(['file:discovered', 'file:claimed', 'file:alias'])
  })
})

const CRASH_PLUGIN = path.join(REPO_ROOT, 'test/helpers/crash-points.mjs')

/** A destination whose writes take `ms` each, one at a time: files claimed together wait behind each other for it. */
const SLOW_DESTINATION = `
import { withWrite } from ${JSON.stringify(path.join(REPO_ROOT, 'test/helpers/wrap-destination.mjs'))}
export function slowly(inner, ms) {
  let queue = Promise.resolve()
  return withWrite(inner, (job) => {
    const turn = queue.then(() => new Promise((resolve) => setTimeout(resolve, ms))).then(() => inner.write(job))
    queue = turn.catch(() => undefined)
    return turn
  })
}
`

/** Rows of the workspace's ledger, or none while the run that creates it has not yet. */
function ledgerRows<T>(w: Workspace, sql: string): T[] {
  try {
    return w.query<T>('.filedge/ledger.db', sql)
  } catch {
    return []
  }
}

describe('a run of small files', () => {
  let ws: Workspace | undefined
  afterEach(() => ws?.remove())

  it('keeps the lease of every claimed file while it waits for the destination behind the others', { timeout: 120_000 }, async () => {
    const rng = random(7)
    const files = Array.from({ length: 8 }, (_, index) => ordersFile(`incoming/${index}.csv`, 1 + index * 10, 10, rng))
    ws = workspace({
      'slow.mjs': SLOW_DESTINATION,
      'filedge.config.ts': sqliteConfig({
        imports: "import { slowly } from './slow.mjs'",
        top: "lease: { ttl: '1s', heartbeat: '200ms' }, concurrency: 8,",
        columns: ORDER_COLUMNS,
      }).replace("destination: sqlite({ path: 'warehouse.db' })", "destination: slowly(sqlite({ path: 'warehouse.db' }), 600)"),
      ...Object.fromEntries(files.map((file) => [file.name, file.content])),
    })
    const w = ws
    const first = w.spawn(['--reporter', 'silent'])
    // All eight claimed, the last ones queued behind 600 ms writes: a file claimed more than a lease ago is still waiting.
    await waitFor(() => {
      const claims = ledgerRows<{ at: string; state: string }>(w, "SELECT e.at, f.state FROM events e JOIN files f USING (pipeline, hash) WHERE e.event = 'file:claimed'")
      return claims.length === 8 && claims.some((claim) => claim.state === 'PROCESSING' && Date.now() - Date.parse(claim.at) > 1_500)
    }, 60_000, 'a claimed file to wait longer than its lease')
    // Another worker now: a lease that had lapsed while its file waited would be reclaimed here.
    const second = await w.cli(['--json'])
    expect(second.code).toBe(0)
    const { code } = await exited(first)
    expect(code).toBe(0)
    const ledger = readLedger(w.dir)
    expect(ledger.events.filter((event) => event.event === 'file:reclaimed')).toEqual([])
    expect(ledger.files.map((file) => file.state)).toEqual(Array(8).fill('COMMITTED'))
    expect(rowProblems(ledger, rowsByHash(w.dir, 'orders', 'id'), new Map(files.map((file) => [file.hash, { rows: file.rows, sum: file.sum }])))).toEqual([])
  })

  it('killed while a batch of claims is written: nothing is half-claimed, and the rerun loads every file once', { timeout: 300_000 }, async () => {
    const rng = random(11)
    const files: GeneratedFile[] = Array.from({ length: 64 }, (_, index) => ordersFile(`incoming/${String(index).padStart(2, '0')}.csv`, 1 + index * 5, 5, rng))
    const expected = new Map(files.map((file) => [file.hash, { rows: file.rows, sum: file.sum }]))
    let kills = 0
    // The kill lands this long after the 17th claim (the first of the run's second batch, 16 files in flight) reached
    // the ledger's tap: before, inside and after that batch's transaction.
    for (const delay of [0, 150, 400, 900, 2_000, 5_000]) {
      ws?.remove()
      ws = workspace({
        'filedge.config.ts': sqliteConfig({
          imports: `import { crashPoints } from ${JSON.stringify(CRASH_PLUGIN)}`,
          plugins: 'crashPoints()',
          top: "lease: { ttl: '1s', heartbeat: '200ms' }, concurrency: 16,",
          columns: ORDER_COLUMNS,
        }),
        ...Object.fromEntries(files.map((file) => [file.name, file.content])),
      })
      const w = ws
      const child = w.spawn(['--reporter', 'silent'], { env: { FILEDGE_CRASH: `claim:17:${delay}` } })
      let stderr = ''
      child.stderr!.on('data', (chunk) => (stderr += chunk))
      const exit = await exited(child)
      const context = `kill ${delay} µs after the 17th claim`
      // The killer is a thread the crash plugin starts with the run; on a loaded machine it may start after a run this small is over.
      if (exit.signal === 'SIGKILL') kills++
      else expect({ ...exit, stderr }, `${context}: the run ended before the kill, and cleanly`).toEqual({ code: 0, signal: null, stderr: '' })
      const left = readLedger(w.dir)
      expect([...historyProblems(left), ...rowProblems(left, rowsByHash(w.dir, 'orders', 'id'), expected)], context).toEqual([])
      // A file row never without its claim: both are written by the claim, in its batch's transaction.
      for (const file of left.files) {
        expect(left.events.filter((event) => event.hash === file.hash).map((event) => event.event).slice(0, 2), `${context}: ${file.path}`).toEqual(['file:discovered', 'file:claimed'])
      }

      // The dead worker's files are reclaimed once their leases expire; a rerun that starts first leaves them alone ("held").
      for (let rerun = 1; rerun <= 3; rerun++) {
        const processing = readLedger(w.dir).files.filter((file) => file.state === 'PROCESSING')
        if (processing.length > 0) await waitFor(() => Date.now() > Math.max(...processing.map((file) => file.lease_expires_at ?? 0)) + 50, 10_000, 'the dead worker’s leases to expire')
        const result = await w.cli(['--json'])
        expect({ code: result.code, stderr: result.stderr }, `${context}, rerun ${rerun}`).toEqual({ code: 0, stderr: '' })
        const now = readLedger(w.dir).files
        if (now.length === files.length && now.every((file) => file.state === 'COMMITTED')) break
      }
      const settled = readLedger(w.dir)
      expect([...historyProblems(settled), ...rowProblems(settled, rowsByHash(w.dir, 'orders', 'id'), expected)], context).toEqual([])
      expect(settled.files.map((file) => file.state), context).toEqual(Array(files.length).fill('COMMITTED'))
    }
    expect(kills, 'runs killed (of 6)').toBeGreaterThanOrEqual(3)
  })
})
