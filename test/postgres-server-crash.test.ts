import path from 'node:path'
import pg from 'pg'
import { describe, it } from 'vitest'
import { privatePostgres, privatePostgresUnavailable, type PrivatePostgres } from './helpers/private-postgres.js'
import { exited, REPO_ROOT, waitFor, workspace } from './helpers/workspace.js'

/**
 * The Postgres server crashes (`pg_ctl stop -m immediate`, a power cut as far
 * as the database knows) right after a run that reported every file
 * committed. Nothing may be undone that the run reported: the ledger commits
 * completions synchronously (`afterCommit` taps such as archiving act on
 * them), and the destination its rows. The server here is a private one
 * (helpers/private-postgres.ts) with a 10 s `wal_writer_delay`, so whatever
 * was committed without waiting for its WAL flush is reliably lost by the
 * crash (issue 14: the last file's asynchronous COMMITTED was lost, and with
 * `retry.attempts: 1` the next run failed it terminally with its rows in the table).
 *
 * Then a worker is killed between its destination commit and the ledger
 * update, and the server crashes too: the next run heals the file from the
 * destination's load marker.
 */

const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')

const FILES = 4
const ROWS = 25
const csv = (file: number) => `id,n\n${Array.from({ length: ROWS }, (_, i) => `f${file}-${i + 1},${i + 1}`).join('\n')}\n`

const CONFIG = `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
import { pauseAfterWrite } from ${JSON.stringify(PAUSE)}
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  lease: { ttl: '2s', heartbeat: '500ms' },
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: pauseAfterWrite(postgres({ url: env('FILEDGE_DEST_URL'), schema: 'warehouse' })),
    table: 'orders',
    columns: { id: { type: 'string', required: true }, n: 'integer' },
    retry: { attempts: 1 },
  }],
})
`

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(sql)).rows
  } finally {
    await client.end()
  }
}

const unavailable = privatePostgresUnavailable()
const suite = unavailable === undefined ? describe : process.env.FILEDGE_TEST_PG_REQUIRED === '1' ? describe : describe.skip
if (unavailable !== undefined) console.warn(`\n!! ${process.env.FILEDGE_TEST_PG_REQUIRED === '1' ? 'FAILING' : 'SKIPPING'} the Postgres server-crash suite: ${unavailable}\n`)

suite('the Postgres server crashes right after a run', () => {
  it('keeps every completion the run reported; after a worker died too, the next run heals, loads nothing twice and fails nothing', { timeout: 180_000 }, async ({ expect, onTestFinished }) => {
    if (unavailable !== undefined) throw new Error(`a private PostgreSQL server cannot be made here: ${unavailable}`)
    let server: PrivatePostgres | undefined
    const files = Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`incoming/f${i + 1}.csv`, csv(i + 1)]))
    const ws = workspace({ 'filedge.config.ts': CONFIG, ...files })
    onTestFinished(async () => {
      ws.remove()
      await server?.remove()
    })
    server = await privatePostgres({ wal_writer_delay: '10s' })
    const env = { FILEDGE_LEDGER_URL: `${server.url}?schema=ledger`, FILEDGE_DEST_URL: server.url }

    const first = await ws.cli(['--reporter', 'simple'], { env })
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(new RegExp(`committed ${FILES} · failed 0`))
    await server.crash()
    await server.start()

    const ledger = () => query<{ path: string; state: string; rows: string | null }>(server!.url, 'SELECT path, state, rows FROM ledger.files ORDER BY path')
    const committed = Array.from({ length: FILES }, (_, i) => ({ path: `incoming/f${i + 1}.csv`, state: 'COMMITTED', rows: String(ROWS) }))
    // What the run reported survived the crash.
    expect(await ledger()).toEqual(committed)

    const rerun = await ws.cli(['--reporter', 'simple'], { env })
    expect(rerun.stderr).toBe('')
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(new RegExp(`committed 0 · failed 0 · skipped ${FILES}`))
    expect(await ledger()).toEqual(committed)

    // A worker dies between its destination commit and the ledger update, and the server crashes after it.
    ws.write('incoming/f5.csv', csv(5))
    const dying = ws.spawn(['--reporter', 'silent'], { env: { ...env, PAUSE_AT: 'written' } })
    await waitFor(() => ws.exists('paused'), 30_000, 'the worker to commit f5.csv in the destination')
    dying.kill('SIGKILL')
    await exited(dying)
    await server.crash()
    await server.start()
    const expired = async () =>
      (await query<{ expired: boolean }>(server!.url, "SELECT lease_expires_at < now() AS expired FROM ledger.files WHERE path = 'incoming/f5.csv'"))[0]?.expired === true
    for (;;) {
      if (await expired()) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const healing = await ws.cli(['--reporter', 'simple'], { env })
    expect(healing.stderr).toMatch(/incoming\/f5\.csv: healed: already committed in the destination by an earlier attempt/)
    expect(healing.code).toBe(0)
    expect(healing.stdout).toMatch(/committed 1 · failed 0 · skipped 4 · new 0 · reclaimed 1 · retried 0 · rows 0 · healed 1/)
    expect(await ledger()).toEqual([...committed, { path: 'incoming/f5.csv', state: 'COMMITTED', rows: String(ROWS) }])
    expect(await query(server.url, 'SELECT count(*)::int AS rows, count(DISTINCT _source_file_hash)::int AS files FROM warehouse.orders')).toEqual([{ rows: (FILES + 1) * ROWS, files: FILES + 1 }])
    expect(await query(server.url, "SELECT count(*)::int AS n FROM ledger.events WHERE event = 'file:failed'")).toEqual([{ n: 0 }])
  })
})
