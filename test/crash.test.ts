import { afterEach, describe, expect, it } from 'vitest'
import { PAUSE_AFTER_WRITE, PAUSE_IN_COMMIT } from './helpers/pauses.js'
import { exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * A process killed with SIGKILL in the middle of a load, and one killed
 * between the destination commit and the ledger update: the next run after
 * the lease expires commits the file exactly once.
 */

const ROWS = 10
const CSV = `id,n\n${Array.from({ length: ROWS }, (_, i) => `r${i + 1},${i + 1}`).join('\n')}\n`



// The early run in the second test must claim before the dead worker's lease lapses, and a CLI start
// alone takes over a second on a loaded 2-core machine: a 1 s lease made that test fail under load.
const LEASE = "lease: { ttl: '5s', heartbeat: '500ms' },"
const PAST_LEASE_MS = 5_500

let ws: Workspace | undefined
afterEach(() => ws?.remove())

async function killWhenPaused(w: Workspace) {
  const child = w.spawn(['--reporter', 'silent'], { env: { PAUSE: '1' } })
  await waitFor(() => w.exists('paused'), 20_000, 'the run to pause')
  child.kill('SIGKILL')
  expect((await exited(child)).signal).toBe('SIGKILL')
}

function expectLoadedOnce(w: Workspace) {
  const rows = w.query<{ id: string; n: number; _source_row_number: number }>('warehouse.db', 'SELECT id, n, _source_row_number FROM orders ORDER BY n')
  expect(rows).toHaveLength(ROWS)
  expect(rows.map((row) => row._source_row_number)).toEqual(Array.from({ length: ROWS }, (_, i) => i + 1))
  expect(w.query('warehouse.db', 'SELECT count(DISTINCT _source_file_hash) AS hashes FROM orders')).toEqual([{ hashes: 1 }])
}

describe('SIGKILL', () => {
  it('mid-load: nothing is left behind, and the next run after the lease expires reclaims and commits once', async () => {
    ws = workspace({
      'pause.mjs': PAUSE_IN_COMMIT,
      'filedge.config.ts': sqliteConfig({
        imports: "import { pauseInCommit } from './pause.mjs'",
        plugins: 'pauseInCommit()',
        top: LEASE,
        columns: "{ id: 'string', n: 'integer' }",
        extra: 'batchSize: 2,',
      }),
      'incoming/a.csv': CSV,
    })
    await killWhenPaused(ws)
    // The first batch was inside an uncommitted transaction: it died with the process.
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 0 }])
    expect(ws.query('.filedge/ledger.db', 'SELECT state FROM files')).toEqual([{ state: 'PROCESSING' }])

    await new Promise((resolve) => setTimeout(resolve, PAST_LEASE_MS))
    const rerun = await ws.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1/)
    expectLoadedOnce(ws)
    const events = ws.query<{ event: string; from_state: string; to_state: string }>('.filedge/ledger.db', 'SELECT event, from_state, to_state FROM events ORDER BY id')
    expect(events).toEqual([
      { event: 'file:discovered', from_state: null, to_state: 'PENDING' },
      { event: 'file:claimed', from_state: 'PENDING', to_state: 'PROCESSING' },
      { event: 'file:reclaimed', from_state: 'PROCESSING', to_state: 'PROCESSING' },
      { event: 'file:committed', from_state: 'PROCESSING', to_state: 'COMMITTED' },
    ])
  })

  it('between the destination commit and the ledger update: the rerun heals without duplicate rows', async () => {
    ws = workspace({
      'pause.mjs': PAUSE_AFTER_WRITE,
      'filedge.config.ts': sqliteConfig({
        imports: "import { pauseAfterWrite } from './pause.mjs'",
        // Long enough that the early run below starts, even on a loaded machine, while the dead worker's lease is live.
        top: LEASE,
        columns: "{ id: 'string', n: 'integer' }",
      }).replace("destination: sqlite({ path: 'warehouse.db' })", "destination: pauseAfterWrite(sqlite({ path: 'warehouse.db' }))"),
      'incoming/a.csv': CSV,
    })
    await killWhenPaused(ws)
    // The destination committed; the ledger never heard.
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: ROWS }])
    expect(ws.query('.filedge/ledger.db', 'SELECT state FROM files')).toEqual([{ state: 'PROCESSING' }])

    // Before the lease expires, another run leaves the file to its (dead) holder.
    const expires = ws.query<{ expires: number }>('.filedge/ledger.db', 'SELECT lease_expires_at AS expires FROM files')[0].expires
    const early = await ws.cli(['--reporter', 'simple'])
    expect(Date.now(), 'the early run finished before the lease expired').toBeLessThan(expires)
    expect(early.stdout).toMatch(/committed 0 · failed 0 · skipped 1/)

    await new Promise((resolve) => setTimeout(resolve, expires - Date.now() + 200))
    const rerun = await ws.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    // Healed from the destination's load marker: the file is not read again.
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1 · retried 0 · rows 0 · healed 1/)
    expectLoadedOnce(ws)
    expect(ws.query('.filedge/ledger.db', 'SELECT state, attempts, rows FROM files')).toEqual([{ state: 'COMMITTED', attempts: 1, rows: ROWS }])
  })
})
