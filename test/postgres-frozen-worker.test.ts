import { createHash } from 'node:crypto'
import path from 'node:path'
import pg from 'pg'
import { it } from 'vitest'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './helpers/postgres.js'
import { exited, REPO_ROOT, waitFor, workspace } from './helpers/workspace.js'

/**
 * A worker frozen (SIGSTOP) inside its Postgres destination transaction, in
 * the middle of its COPY, holds the locks of the file it writes. Its lease
 * expires; the worker that reclaims the file must not wait for it forever
 * (issue 14: it did, heartbeating all the while). The new holder's lock wait
 * times out (`lockTimeout`), it finds the stale session still holding the
 * file's lease lock, ends it, and commits; the frozen worker, woken, finds
 * its connection gone and records nothing.
 */

const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')
const ROWS = 20
const CSV = `id,n\n${Array.from({ length: ROWS }, (_, i) => `r${i + 1},${i + 1}`).join('\n')}\n`

function config(dest: string, writeMode: string): string {
  return `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
import { pausePoints } from ${JSON.stringify(PAUSE)}
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  lease: { ttl: '2s', heartbeat: '500ms' },
  plugins: [pausePoints()],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(dest)}, lockTimeout: '1s' }),
    table: 'orders',
    writeMode: ${writeMode},
    columns: { id: { type: 'string', required: true }, n: 'integer' },
    batchSize: 2,
  }],
})
`
}

describePostgres('a worker frozen inside its Postgres destination transaction', () => {
  for (const writeMode of ["'append'", "'truncate'"]) {
    it.concurrent(`${writeMode}: the worker that reclaims the file ends the frozen session and commits once`, async ({ expect, onTestFinished }) => {
      const ledger = freshSchema('filedge_ledger')
      const dest = freshSchema('filedge_dest')
      const env = { FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL }
      const ws = workspace({ 'filedge.config.ts': config(dest, writeMode), 'incoming/a.csv': CSV })
      const frozen = ws.spawn(['--json'], { env: { ...env, PAUSE_AT: 'batch' } })
      let frozenOut = ''
      frozen.stdout!.on('data', (chunk) => (frozenOut += chunk))
      const frozenExit = exited(frozen)
      onTestFinished(async () => {
        frozen.kill('SIGKILL')
        await frozenExit
        ws.remove()
        await dropSchema(ledger)
        await dropSchema(dest)
      })
      await waitFor(() => ws.exists('paused'), 30_000, 'the load to reach its first batch')
      // Its COPY is open: the rows so far are in the transaction, and it holds the file's locks.
      frozen.kill('SIGSTOP')
      const stoppedAt = Date.now()
      const expired = async () => (await pgQuery<{ expired: boolean }>(`SELECT lease_expires_at < now() AS expired FROM "${ledger}".files`))[0]?.expired === true
      for (;;) {
        if (await expired()) break
        await new Promise((resolve) => setTimeout(resolve, 100))
      }

      const winner = await ws.cli(['--reporter', 'simple'], { env })
      expect(winner.code).toBe(0)
      expect(winner.stdout).toMatch(/committed 1 .* reclaimed 1/)
      expect(winner.stderr).toMatch(/incoming\/a\.csv: ended 1 database session\(s\) still writing it for a worker whose lease had expired/)
      const rows = await pgQuery<{ n: number; numbers: number; first: Date }>(
        `SELECT count(*)::int AS n, count(DISTINCT _source_row_number)::int AS numbers, min(_ingested_at) AS first FROM "${dest}".orders`,
      )
      expect(rows).toEqual([{ n: ROWS, numbers: ROWS, first: expect.any(Date) }])
      expect(rows[0].first.getTime()).toBeGreaterThanOrEqual(stoppedAt - 1000)
      const files = await pgQuery(`SELECT state, attempts, lapses FROM "${ledger}".files`)
      expect(files).toEqual([{ state: 'COMMITTED', attempts: 1, lapses: 0 }])

      // Woken, the frozen worker finds its session ended: it records nothing and says it lost the file.
      ws.write('resume', '')
      frozen.kill('SIGCONT')
      const late = await frozenExit
      expect(late.code).toBe(1)
      const failed = frozenOut
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { event: string; error?: { code: string } })
        .filter((event) => event.event === 'file:failed')
      expect(failed.map((event) => event.error?.code), frozenOut).toEqual(['CLAIM_LOST'])
      expect(await pgQuery(`SELECT count(*)::int AS n FROM "${dest}".orders`)).toEqual([{ n: ROWS }])
      expect(await pgQuery(`SELECT state, attempts FROM "${ledger}".files`)).toEqual([{ state: 'COMMITTED', attempts: 1 }])
    })
  }
})

describePostgres('a truncate file waiting for a table another session keeps locked', () => {
  it('waits lockWait in all, then goes back to the ledger without counting an attempt; the next run commits it', async ({ expect, onTestFinished }) => {
    const ledger = freshSchema('filedge_ledger')
    const dest = freshSchema('filedge_dest')
    const env = { FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL }
    const ws = workspace({
      'filedge.config.ts': config(dest, "'truncate'").replace("lockTimeout: '1s'", "lockTimeout: '300ms', lockWait: '2s'"),
      'incoming/.keep': '',
    })
    const holder = new pg.Client({ connectionString: PG_URL })
    await holder.connect()
    onTestFinished(async () => {
      await holder.end().catch(() => undefined)
      ws.remove()
      await dropSchema(ledger)
      await dropSchema(dest)
    })
    // A run with nothing to load prepares the table; then the lock is held the way another worker's long apply would.
    expect((await ws.cli(['--reporter', 'silent'], { env })).code).toBe(0)
    const key = createHash('sha256').update(`filedge table "${dest}"."orders"`).digest().readBigInt64BE(0).toString()
    await holder.query('BEGIN')
    await holder.query(`SELECT pg_advisory_xact_lock(${key})`)
    ws.write('incoming/a.csv', CSV)

    const blocked = await ws.cli(['--reporter', 'simple'], { env })
    expect(blocked.code).toBe(0)
    expect(blocked.stdout).toMatch(/committed 0 · failed 0 · skipped 0 .* released 1/)
    expect(blocked.stderr).toMatch(/another session has held a lock incoming\/a\.csv needs for \d+ s \(lockWait\); the file goes back to the ledger for a later run/)
    expect(await pgQuery(`SELECT state, attempts FROM "${ledger}".files`)).toEqual([{ state: 'PENDING', attempts: 0 }])

    await holder.query('ROLLBACK')
    const after = await ws.cli(['--reporter', 'simple'], { env })
    expect(after.code).toBe(0)
    expect(after.stdout).toMatch(/committed 1 · failed 0/)
    expect(await pgQuery(`SELECT count(*)::int AS n FROM "${dest}".orders`)).toEqual([{ n: ROWS }])
  })
})

describePostgres('a worker idle inside its Postgres destination transaction', () => {
  it('is ended by the server after idleTimeout, its locks released; the file loads once on the next run', async ({ expect, onTestFinished }) => {
    const ledger = freshSchema('filedge_ledger')
    const dest = freshSchema('filedge_dest')
    const env = { FILEDGE_LEDGER_URL: ledgerUrl(ledger), FILEDGE_DEST_URL: PG_URL }
    const ws = workspace({
      'filedge.config.ts': config(dest, "'append'")
        .replace("lockTimeout: '1s'", "lockTimeout: '1s', idleTimeout: '1s'")
        .replace("import { pausePoints } from", 'import { pausePoints, pauseAfterWrite } from')
        .replace('destination: postgres(', 'destination: pauseAfterWrite(postgres(')
        .replace("lockTimeout: '1s', idleTimeout: '1s' }),", "lockTimeout: '1s', idleTimeout: '1s' })),"),
      'incoming/a.csv': CSV,
    })
    // Paused in the destination's lease check, right before COMMIT: its session sits idle inside the transaction.
    const paused = ws.spawn(['--reporter', 'silent'], { env: { ...env, PAUSE_AT: 'commit' } })
    const pausedExit = exited(paused)
    onTestFinished(async () => {
      paused.kill('SIGKILL')
      await pausedExit
      ws.remove()
      await dropSchema(ledger)
      await dropSchema(dest)
    })
    await waitFor(() => ws.exists('paused'), 30_000, 'the write to reach its COMMIT')
    const sessions = () =>
      pgQuery<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE $1`, [`%"${dest}"%`])
    for (;;) {
      if ((await sessions())[0].n === 0) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    // The server ended it: nothing of the file was committed, and nobody waits on its locks.
    expect(await pgQuery(`SELECT count(*)::int AS n FROM "${dest}".orders`)).toEqual([{ n: 0 }])

    // Resumed, its COMMIT finds the session gone (had it survived, the COMMIT would succeed and the run exit 0).
    ws.write('resume', '')
    const late = await pausedExit
    expect(late.code).toBe(1)
    const rerun = await ws.cli(['--reporter', 'simple'], { env })
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(/committed 1 · failed 0/)
    expect(await pgQuery(`SELECT count(*)::int AS n, count(DISTINCT _source_row_number)::int AS numbers FROM "${dest}".orders`)).toEqual([{ n: ROWS, numbers: ROWS }])
  })
})
