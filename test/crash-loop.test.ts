import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ORDER_COLUMNS, ordersFile, type GeneratedFile } from './helpers/generated-orders.js'
import { historyProblems, random, readLedger, rowProblems, rowsByHash, type LedgerSnapshot } from './helpers/invariants.js'
import { REPO_ROOT, exited, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The crash loop: every round drops new files into one long-lived project,
 * starts a real `filedge` run and SIGKILLs it at a random moment, checks what
 * the kill left behind, then reruns (once the dead worker's lease has expired)
 * and checks that everything settled:
 *
 * - after the kill: no file has part of its rows or twice its rows in the
 *   destination; a COMMITTED file has all of them; the events table explains
 *   every file's state;
 * - after the rerun: every good file is COMMITTED with exactly its rows, every
 *   bad file is FAILED with its line named and none of its rows, nothing is
 *   left PENDING or PROCESSING.
 *
 * Where the kill lands is drawn per round (see test/helpers/crash-points.mjs):
 * while hashing, around a claim's ledger transaction, among the INSERTs of a
 * batch inside the destination transaction, between the destination commit
 * and the ledger update, at a random instant after the run starts, or from
 * outside at a random instant after the process starts (config loading
 * included). Sometimes a round kills twice before the clean rerun.
 *
 * Attempts and lapses: the loop runs with the default retry settings (3
 * attempts, 5 lapses). A kill is a lapse, not an attempt, and a good file is
 * in flight only in its own round and killed at most twice in a row, so it
 * must always end COMMITTED — healed from the destination's load marker when
 * the kill landed between the destination commit and the ledger update. A
 * bad file is retried by every run until its attempts run out, and must end
 * FAILED with its own row error: lapses never exhaust its budget here.
 *
 * CRASH_ROUNDS (default 30) runs more by hand, split over CRASH_LANES (default 2)
 * independent projects run side by side; TEST_SEED replays a loop.
 */

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 30)
const LANES = Number(process.env.CRASH_LANES ?? 2)
const SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 2 ** 31))
const BATCH_SIZE = 200
const POINTS = ['hash', 'claim', 'batch', 'commit', 'timer', 'external'] as const
type Point = (typeof POINTS)[number]

const CRASH_PLUGIN = path.join(REPO_ROOT, 'test/helpers/crash-points.mjs')

interface Source extends GeneratedFile {
  readonly badLine?: number
}

interface Tally {
  rounds: number
  killed: Record<Point, number>
  missed: Record<Point, number>
  files: number
}

const tally: Tally = {
  rounds: 0,
  killed: Object.fromEntries(POINTS.map((point) => [point, 0])) as Record<Point, number>,
  missed: Object.fromEntries(POINTS.map((point) => [point, 0])) as Record<Point, number>,
  files: 0,
}

const spaces: Workspace[] = []
let passed = false
afterAll(() => {
  // A failed loop keeps its projects: the databases and files are the evidence.
  for (const w of spaces) {
    if (passed) w.remove()
    else console.log(`crash loop: kept ${w.dir} for inspection`)
  }
  const killed = POINTS.map((point) => `${point} ${tally.killed[point]}`).join(', ')
  const missed = POINTS.map((point) => `${point} ${tally.missed[point]}`).join(', ')
  console.log(`crash loop: ${tally.rounds} rounds, ${tally.files} files (seed ${SEED}); killed at ${killed}; run finished before the kill: ${missed}`)
})

function sleep(ms: number) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Waits until every PROCESSING file's lease has expired (or will, `early` ms from now). */
async function leasesExpired(dir: string, early: number): Promise<void> {
  const latest = Math.max(0, ...readLedger(dir).files.filter((file) => file.state === 'PROCESSING').map((file) => file.lease_expires_at ?? 0))
  const wait = latest - early - Date.now()
  if (wait > 0) await sleep(wait + 20)
}

function expectations(sources: ReadonlyMap<string, Source>) {
  return new Map([...sources].map(([hash, source]) => [hash, { rows: source.badLine === undefined ? source.rows : 0, sum: source.badLine === undefined ? source.sum : undefined }]))
}

function crashProblems(ledger: LedgerSnapshot, w: Workspace, sources: ReadonlyMap<string, Source>): string[] {
  return [...historyProblems(ledger), ...rowProblems(ledger, rowsByHash(w.dir, 'orders', 'id'), expectations(sources))]
}

function settledProblems(ledger: LedgerSnapshot, sources: ReadonlyMap<string, Source>): string[] {
  const problems: string[] = []
  const byHash = new Map(ledger.files.map((file) => [file.hash, file]))
  for (const [hash, source] of sources) {
    const file = byHash.get(hash)
    if (file === undefined) {
      problems.push(`${source.name}: not in the ledger`)
      continue
    }
    if (source.badLine === undefined) {
      if (file.state !== 'COMMITTED') problems.push(`${source.name}: ${file.state} (${file.error}), expected COMMITTED`)
      continue
    }
    const rowError = `${file.path}:${source.badLine} column amount: `
    if (file.state !== 'FAILED' || !file.error?.startsWith(rowError)) {
      problems.push(`${source.name}: ${file.state} with error ${JSON.stringify(file.error)}, expected FAILED with "${rowError}…"`)
    }
  }
  return problems
}

/** One lane: a project of its own, `rounds` rounds of kill, check, rerun, check. */
async function crashLoop(lane: number, rounds: number, w: Workspace): Promise<void> {
  const rng = random(SEED + lane)
  const context = (round: number, detail = '') => `(lane ${lane} round ${round}${detail}; TEST_SEED=${SEED} CRASH_ROUNDS=${ROUNDS} replays it)`
  const sources = new Map<string, Source>()
  let nextId = 1

  for (let round = 1; round <= rounds; round++) {
    // New files: mostly good, sometimes a bad one, sometimes the same bytes as an older file under a new name.
    const prefix = `incoming/r${String(round).padStart(4, '0')}-`
    const fresh: Source[] = []
    const count = 3 + Math.floor(rng() * 5)
    for (let i = 0; i < count; i++) {
      const rows = rng() < 0.15 ? 0 : 1 + Math.floor(rng() * 1_500)
      const bad = rows > 0 && rng() < 0.12 ? 1 + Math.floor(rng() * rows) : undefined
      const file = ordersFile(`${prefix}${i}.csv`, nextId, rows, rng, bad)
      nextId += rows
      fresh.push(file)
    }
    if (sources.size > 0 && rng() < 0.2) {
      const older = [...sources.values()][Math.floor(rng() * sources.size)]
      fresh.push({ ...older, name: `${prefix}copy.csv` })
    }
    for (const file of fresh) {
      w.write(file.name, file.content)
      if (!sources.has(file.hash)) sources.set(file.hash, file)
    }
    tally.files += fresh.length
    tally.rounds++

    const kills = rng() < 0.2 ? 2 : 1
    for (let kill = 1; kill <= kills; kill++) {
      const point = POINTS[Math.floor(rng() * POINTS.length)]
      const newBatches = fresh.reduce((sum, file) => sum + Math.ceil(file.rows / BATCH_SIZE), 0)
      const nth = 1 + Math.floor(rng() * (point === 'batch' ? Math.max(1, newBatches) : fresh.length))
      const delay = Math.floor(rng() * (point === 'timer' ? 600_000 : point === 'batch' ? 2_000 : 400))
      const env = point === 'external' ? {} : { FILEDGE_CRASH: `${point}:${nth}:${delay}:${prefix}` }
      const detail = `, kill ${kill}: ${point} #${nth} +${delay}µs`
      const child = w.spawn(['--reporter', 'silent'], { env })
      let stderr = ''
      child.stderr!.on('data', (chunk) => (stderr += chunk))
      const timer = point === 'external' ? setTimeout(() => child.kill('SIGKILL'), 100 + rng() * 2_000) : undefined
      const exit = await exited(child)
      clearTimeout(timer)
      if (exit.signal === 'SIGKILL') {
        tally.killed[point]++
      } else {
        // The point was never reached (the run had less work than drawn) or the timer outlived the run: a clean run.
        tally.missed[point]++
        expect(stderr, context(round, detail)).toBe('')
        expect(exit.code, context(round, detail)).toBeLessThanOrEqual(1)
      }
      expect(crashProblems(readLedger(w.dir), w, sources), context(round, detail)).toEqual([])
      if (kill < kills) await leasesExpired(w.dir, 0)
    }

    // Rerun until nothing is in flight. A CLI takes most of a second to start, so the first rerun starts a
    // little before the dead worker's lease expires; if it was too early it left the file alone ("held").
    for (let rerun = 1; ; rerun++) {
      await leasesExpired(w.dir, rerun === 1 ? 500 : 0)
      const result = await w.cli(['--json'])
      const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; hash?: string; error?: { code: string }; aborted?: unknown })
      const failed = events.filter((event) => event.event === 'file:failed')
      expect(result.stderr, context(round, `, rerun ${rerun}`)).toBe('')
      expect(failed.filter((event) => sources.get(event.hash!)?.badLine === undefined || event.error?.code !== 'ROW_INVALID'), context(round, `, rerun ${rerun}`)).toEqual([])
      const summary = events.find((event) => event.event === 'run:summary')
      expect({ code: result.code, aborted: summary?.aborted }, context(round, `, rerun ${rerun}`)).toEqual({ code: failed.length > 0 ? 1 : 0, aborted: undefined })
      const ledger = readLedger(w.dir)
      expect(crashProblems(ledger, w, sources), context(round, `, rerun ${rerun}`)).toEqual([])
      if (rerun < 3 && ledger.files.some((file) => file.state === 'PROCESSING')) continue
      expect(settledProblems(ledger, sources), context(round, `, rerun ${rerun}`)).toEqual([])
      break
    }
  }
}

describe('SIGKILL at random moments', () => {
  it(`${ROUNDS} rounds: after every kill nothing is half-loaded or doubled, and a rerun settles every file`, { timeout: 60_000 + ROUNDS * 10_000 }, async () => {
    const config = sqliteConfig({
      imports: `import { crashPoints, crashAfterWrite } from ${JSON.stringify(CRASH_PLUGIN)}`,
      plugins: 'crashPoints()',
      top: "lease: { ttl: '1s', heartbeat: '200ms' },",
      columns: ORDER_COLUMNS,
      extra: `batchSize: ${BATCH_SIZE},`,
    }).replace("destination: sqlite({ path: 'warehouse.db' })", "destination: crashAfterWrite(sqlite({ path: 'warehouse.db' }))")
    // Independent projects side by side: the loop spends most of its time waiting for CLIs to start and leases to expire.
    const lanes = Array.from({ length: LANES }, (_, lane) => ({ lane, rounds: Math.floor(ROUNDS / LANES) + (lane < ROUNDS % LANES ? 1 : 0) }))
    await Promise.all(
      lanes.map(({ lane, rounds }) => {
        const w = workspace({ 'filedge.config.ts': config })
        spaces.push(w)
        return crashLoop(lane, rounds, w)
      }),
    )

    // The loop must have killed something, at most of its points, or it proved nothing.
    const killed = POINTS.reduce((sum, point) => sum + tally.killed[point], 0)
    expect(killed).toBeGreaterThanOrEqual(Math.ceil(ROUNDS / 2))
    passed = true
  })
})
