import { rmSync } from 'node:fs'
import path from 'node:path'
import { describe, it, type ExpectStatic, type TestContext } from 'vitest'
import { describePostgres } from './helpers/postgres.js'
import { target, type TargetName } from './helpers/targets.js'
import { exited, REPO_ROOT, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Truncate and cdc files whose worker is killed with SIGKILL inside the
 * destination transaction, or between the destination commit and the ledger
 * update, on each destination. The pause points (test/helpers/pause-points.mjs)
 * hold a real CLI at the chosen point; the test kills it there and reruns once
 * the dead worker's lease has expired.
 */

const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')
// A CLI start alone can take over a second on a loaded 2-core machine; see crash.test.ts.
const LEASE_MS = 5_000

const CDC_COLUMNS = "{ customer_id: 'integer', op: 'string', updated_at: 'timestamp', name: { type: 'string', required: true } }"
const CDC_MODE = "{ cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }"
const SNAPSHOT_COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer' }"

const snapshot = (label: string, rows: number) => `id,n\n${Array.from({ length: rows }, (_, i) => `${label}-${i + 1},${i + 1}`).join('\n')}\n`

async function killWhenPaused(expect: ExpectStatic, ws: Workspace, env: NodeJS.ProcessEnv, pauseAt: string): Promise<void> {
  const child = ws.spawn(['--reporter', 'silent'], { env: { ...env, PAUSE_AT: pauseAt } })
  await waitFor(() => ws.exists('paused'), 30_000, `the run to pause at ${pauseAt}`)
  child.kill('SIGKILL')
  expect((await exited(child)).signal).toBe('SIGKILL')
  rmSync(ws.file('paused'))
}

function suite(name: TargetName) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`write modes under SIGKILL: ${name}`, () => {
    // The test's own onTestFinished: the global one cannot tell concurrent tests apart and may remove another case's workspace mid-run.
    const make = (context: TestContext, files: Record<string, string>, columns: string, writeMode: string, options: { plugins?: boolean; leaseMs?: number } = {}) => {
      const current = target(name)
      const ws = workspace({
        'filedge.config.ts': current.config({
          columns,
          writeMode,
          top: `lease: { ttl: ${options.leaseMs ?? LEASE_MS}, heartbeat: 500 },`,
          imports: `import { pausePoints, pauseAfterWrite } from ${JSON.stringify(PAUSE)}`,
          wrap: 'pauseAfterWrite',
          plugins: options.plugins ? 'pausePoints()' : '',
          extra: 'batchSize: 2,',
        }),
        ...files,
      })
      context.onTestFinished(async () => {
        ws.remove()
        await current.cleanup()
      })
      return { ws, t: current }
    }

    // Each case spends most of its time waiting for a lease to expire: the cases of a destination run side by side.
    it.concurrent('cdc: killed after applying its changes, before COMMIT: nothing of the file is there; the rerun applies it once', async (context) => {
      const { expect } = context
      const base = ['customer_id,op,updated_at,name', '1,c,2024-05-01T09:00:00Z,Ann', '2,c,2024-05-01T09:00:00Z,Bob', ''].join('\n')
      const { ws, t } = make(context, { 'incoming/changes-1.csv': base }, CDC_COLUMNS, CDC_MODE)
      expect((await ws.cli(['--reporter', 'silent'], { env: t.env })).code).toBe(0)
      const table = async () =>
        (await t.select(ws, 'SELECT CAST(customer_id AS INTEGER) AS id, name, CAST(_source_row_number AS INTEGER) AS row FROM {customers} ORDER BY customer_id')).map((row) => [Number(row.id), row.name, Number(row.row)])
      const tombstones = async () => (await t.select(ws, 'SELECT CAST(customer_id AS INTEGER) AS id FROM {customers__filedge_deleted}')).map((row) => Number(row.id))
      expect(await table()).toEqual([
        [1, 'Ann', 1],
        [2, 'Bob', 2],
      ])

      ws.write('incoming/changes-2.csv', ['customer_id,op,updated_at,name', '1,u,2024-05-01T10:00:00Z,Ann B.', '2,d,2024-05-01T10:00:00Z,', '3,c,2024-05-01T10:00:00Z,Cy', '1,u,2024-05-01T11:00:00Z,Ann C.', ''].join('\n'))
      await killWhenPaused(expect, ws, t.env, 'commit')
      expect(await table()).toEqual([
        [1, 'Ann', 1],
        [2, 'Bob', 2],
      ])
      expect(await tombstones()).toEqual([])
      expect((await t.files(ws)).map((file) => file.state)).toEqual(['COMMITTED', 'PROCESSING'])

      await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 500))
      const rerun = await ws.cli(['--reporter', 'simple'], { env: t.env })
      expect(rerun.stderr).toBe('')
      expect(rerun.code).toBe(0)
      expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1/)
      expect(await table()).toEqual([
        [1, 'Ann C.', 4],
        [3, 'Cy', 3],
      ])
      expect(await tombstones()).toEqual([2])
      expect((await t.files(ws)).map((file) => file.state)).toEqual(['COMMITTED', 'COMMITTED'])
    })

    it.concurrent('truncate: killed in the middle of its rows: the table keeps the previous file; the rerun replaces it', async (context) => {
      const { expect } = context
      const { ws, t } = make(context, { 'incoming/snapshot-1.csv': snapshot('one', 3) }, SNAPSHOT_COLUMNS, "'truncate'", { plugins: true })
      expect((await ws.cli(['--reporter', 'silent'], { env: t.env })).code).toBe(0)
      const ids = async () => (await t.select(ws, 'SELECT id FROM {customers} ORDER BY id')).map((row) => row.id)
      expect(await ids()).toEqual(['one-1', 'one-2', 'one-3'])

      ws.write('incoming/snapshot-2.csv', snapshot('two', 9))
      await killWhenPaused(expect, ws, t.env, 'batch')
      expect(await ids()).toEqual(['one-1', 'one-2', 'one-3'])

      await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 500))
      const rerun = await ws.cli(['--reporter', 'simple'], { env: t.env })
      expect(rerun.code).toBe(0)
      expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1/)
      expect(await ids()).toEqual(Array.from({ length: 9 }, (_, i) => `two-${i + 1}`))
    })

    it.concurrent('truncate: killed after its commit, reclaimed after a newer file replaced it: the newer contents stay', async (context) => {
      const { expect } = context
      // A longer lease: the run below must find the dead worker's file still held, even on a loaded machine.
      const leaseMs = 12_000
      const { ws, t } = make(context, { 'incoming/snapshot-1.csv': snapshot('one', 3) }, SNAPSHOT_COLUMNS, "'truncate'", { leaseMs })
      await killWhenPaused(expect, ws, t.env, 'written')
      const killed = Date.now()
      const ids = async () => (await t.select(ws, 'SELECT id FROM {customers} ORDER BY id')).map((row) => row.id)
      // Committed in the destination; the ledger never heard.
      expect(await ids()).toEqual(['one-1', 'one-2', 'one-3'])
      expect((await t.files(ws)).map((file) => file.state)).toEqual(['PROCESSING'])

      // While the dead worker's lease lasts, a newer snapshot lands and is applied.
      ws.write('incoming/snapshot-2.csv', snapshot('two', 2))
      const newer = await ws.cli(['--reporter', 'simple'], { env: t.env })
      // Skipped 1: the dead worker's file, still held.
      expect(newer.stdout).toMatch(/committed 1 · failed 0 · skipped 1/)
      expect(await ids()).toEqual(['two-1', 'two-2'])

      await new Promise((resolve) => setTimeout(resolve, Math.max(0, killed + leaseMs + 500 - Date.now())))
      const reclaim = await ws.cli(['--reporter', 'simple'], { env: t.env })
      expect(reclaim.code).toBe(0)
      // Healed from the destination's load marker, without loading the file again: it would bring old contents back.
      expect(reclaim.stdout).toMatch(/committed 1 .* reclaimed 1 .* healed 1/)
      expect(reclaim.stdout).toContain('✓ changes incoming/snapshot-1.csv 3 rows (healed: already in the destination)')
      expect(reclaim.stderr).toMatch(
        /incoming\/snapshot-1\.csv: healed: already committed in the destination by an earlier attempt \(load [0-9a-f]{8}, 3 rows\); the ledger had not recorded it, so it was not loaded again; incoming\/snapshot-1\.csv was applied to customers \(load 1, 3 rows\) and incoming\/snapshot-2\.csv \(load 2\) has replaced it since/,
      )
      expect(await ids()).toEqual(['two-1', 'two-2'])
      expect((await t.files(ws)).map((file) => file.state)).toEqual(['COMMITTED', 'COMMITTED'])
    })
  })
}

for (const name of ['sqlite', 'duckdb', 'postgres'] as const) suite(name)
