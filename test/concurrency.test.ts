import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { ORDER_COLUMNS, ordersFile, type GeneratedFile } from './helpers/generated-orders.js'
import { historyProblems, random, readLedger, rowProblems, rowsByHash } from './helpers/invariants.js'
import { exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Several real `filedge` processes started at the same moment on one
 * directory, sharing one SQLite ledger and one SQLite destination, both
 * created by whichever process gets there first. Every file must be committed
 * exactly once, by exactly one process, and every process must exit 0.
 *
 * CONCURRENCY_ROUNDS (default 3) and CONCURRENCY_WORKERS (default 4) run it
 * bigger by hand; TEST_SEED replays a round's files.
 */

const ROUNDS = Number(process.env.CONCURRENCY_ROUNDS ?? 3)
const WORKERS = Number(process.env.CONCURRENCY_WORKERS ?? 4)
const FILES = 200
/** Some files are byte-for-byte copies of others under a new name: one load per hash, whoever sees it first. */
const COPIES = 10

let ws: Workspace | undefined
afterEach(() => ws?.remove())

interface JsonEvent {
  readonly event: string
  readonly path?: string
  readonly hash?: string
  readonly reason?: string
  readonly error?: { code: string; message: string }
}

function generate(seed: number): GeneratedFile[] {
  const rng = random(seed)
  const files: GeneratedFile[] = []
  for (let i = 0; i < FILES - COPIES; i++) {
    // Mostly small files, a few of a few thousand rows: long destination transactions other workers must wait out.
    const rows = rng() < 0.05 ? 2_000 + Math.floor(rng() * 3_000) : Math.floor(rng() * 300)
    files.push(ordersFile(`incoming/batch-${String(i).padStart(3, '0')}.csv`, i * 10_000, rows, rng))
  }
  for (let i = 0; i < COPIES; i++) {
    const original = files[Math.floor(rng() * (FILES - COPIES))]
    files.push({ ...original, name: `incoming/copies/copy-${i}.csv` })
  }
  return files
}

describe(`${WORKERS} processes on one directory`, () => {
  for (let round = 1; round <= ROUNDS; round++) {
    it(`round ${round}: every file is committed exactly once, by one process, and every process exits 0`, { timeout: 120_000 }, async () => {
      const seed = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31))
      const files = generate(seed)
      const context = `(seed ${seed}; TEST_SEED=${seed} replays it)`
      ws = workspace({
        'filedge.config.ts': sqliteConfig({ columns: ORDER_COLUMNS, extra: 'batchSize: 500,' }),
        ...Object.fromEntries(files.map((file) => [file.name, file.content])),
      })
      const w = ws

      const children = Array.from({ length: WORKERS }, () => w.spawn(['--json']))
      const outputs = children.map((child) => {
        const out = { stdout: '', stderr: '' }
        child.stdout!.on('data', (chunk) => (out.stdout += chunk))
        child.stderr!.on('data', (chunk) => (out.stderr += chunk))
        return out
      })
      const exits = await Promise.all(children.map(exited))

      exits.forEach((exit, index) => {
        expect(outputs[index].stderr, `worker ${index} stderr ${context}`).toBe('')
        expect(exit, `worker ${index} exit ${context}`).toEqual({ code: 0, signal: null })
      })
      const perWorker = outputs.map((out) => out.stdout.trim().split('\n').map((line) => JSON.parse(line) as JsonEvent))
      const events = perWorker.flat()
      expect(events.filter((event) => event.event === 'file:failed' || event.event === 'log'), context).toEqual([])

      // Exactly once across processes: one file:committed per distinct hash, never two.
      const distinct = new Map(files.map((file) => [file.hash, file]))
      const committed = events.filter((event) => event.event === 'file:committed').map((event) => event.hash!)
      expect(committed.length, context).toBe(distinct.size)
      expect(new Set(committed).size, context).toBe(distinct.size)
      // A worker skips only what another holds or has committed (or a copy of a file it loads itself).
      const skips = new Set(events.filter((event) => event.event === 'file:skipped').map((event) => event.reason))
      expect([...skips].filter((reason) => !['committed', 'held', 'duplicate'].includes(reason!)), context).toEqual([])
      // The work really was shared: otherwise this round proved nothing about concurrency.
      const busy = perWorker.filter((list) => list.some((event) => event.event === 'file:committed'))
      expect(busy.length, `workers that committed something ${context}`).toBeGreaterThan(1)

      const ledger = readLedger(w.dir)
      expect(ledger.files.length, context).toBe(distinct.size)
      expect(ledger.files.filter((file) => file.state !== 'COMMITTED'), context).toEqual([])
      expect(ledger.paths.map((entry) => entry.path).sort(), context).toEqual(files.map((file) => file.name).sort())
      expect(historyProblems(ledger), context).toEqual([])
      // Nobody's lease expired: with the default 60 s lease nothing should ever be reclaimed.
      expect(ledger.events.filter((event) => event.event !== 'file:discovered' && event.event !== 'file:claimed' && event.event !== 'file:committed' && event.event !== 'file:alias'), context).toEqual([])

      const expected = new Map([...distinct].map(([hash, file]) => [hash, { rows: file.rows, sum: file.sum }]))
      const destination = rowsByHash(w.dir, 'orders', 'id')
      expect(rowProblems(ledger, destination, expected), context).toEqual([])
      const withRows = [...distinct.values()].filter((file) => file.rows > 0)
      expect(destination.size, context).toBe(withRows.length)
    })
  }
})

describe('a worker waiting for the destination', () => {
  // Regression: every retry of the destination's BEGIN IMMEDIATE left an abort listener on the file's
  // signal; past ten retries Node printed a MaxListenersExceededWarning on stderr (seen with 8 workers).
  it('waits out another writer holding the write lock for seconds, quietly, then commits', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }),
      'incoming/a.csv': 'id\nx\n',
    })
    const w = ws
    // The table must exist for the run to get as far as its write: one run creates it.
    w.write('incoming/first.csv', 'id\nfirst\n')
    expect((await w.cli(['--reporter', 'silent'])).code).toBe(0)
    w.write('incoming/b.csv', 'id\ny\n')
    const other = new Database(w.file('warehouse.db'))
    other.exec('BEGIN IMMEDIATE')
    try {
      const run = w.cli(['--reporter', 'simple'])
      // Once the worker holds the file it is at its write, retrying BEGIN IMMEDIATE: keep it there for a while.
      await waitFor(() => readLedger(w.dir).files.some((file) => file.path === 'incoming/b.csv' && file.state === 'PROCESSING'), 20_000, 'the worker to claim b.csv')
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      other.exec('COMMIT')
      const result = await run
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      expect(result.stdout).toMatch(/committed 1 · failed 0/)
    } finally {
      if (other.inTransaction) other.exec('ROLLBACK')
      other.close()
    }
  })
})
