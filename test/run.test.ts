import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

const ORDERS_COLUMNS = `{
  order_id: { type: 'string', required: true },
  amount: { type: 'float', required: true },
  order_date: 'date',
}`

const GOOD_A = 'order_id,amount,order_date\nA1,10.5,2024-05-01\nA2,3,2024-05-01\n'
const GOOD_B = 'order_id,amount,order_date\nB1,7.25,2024-05-02\n'
const BAD = 'order_id,amount,order_date\nC1,1,2024-05-03\nC2,2,not-a-date\nC3,3,2024-05-03\n'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

function orders(w: Workspace) {
  return w.query<{ order_id: string; amount: number; order_date: string | null; _source_file_hash: string; _source_row_number: number; _ingested_at: string }>(
    'warehouse.db',
    'SELECT * FROM orders ORDER BY order_id',
  )
}

describe('filedge run', () => {
  it('commits every row with provenance, one transaction per file', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: ORDERS_COLUMNS }), 'incoming/a.csv': GOOD_A, 'incoming/b.csv': GOOD_B })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(0)
    const rows = orders(ws)
    expect(rows.map((row) => [row.order_id, row.amount, row.order_date, row._source_row_number])).toEqual([
      ['A1', 10.5, '2024-05-01', 1],
      ['A2', 3, '2024-05-01', 2],
      ['B1', 7.25, '2024-05-02', 1],
    ])
    const files = ws.query<{ hash: string; path: string; state: string; rows: number }>('.filedge/ledger.db', 'SELECT hash, path, state, rows FROM files ORDER BY path')
    expect(files.map((file) => [file.path, file.state, file.rows])).toEqual([
      ['incoming/a.csv', 'COMMITTED', 2],
      ['incoming/b.csv', 'COMMITTED', 1],
    ])
    expect(rows[0]._source_file_hash).toBe(files[0].hash)
    expect(rows[2]._source_file_hash).toBe(files[1].hash)
    expect(new Date(rows[0]._ingested_at).getTime()).toBeGreaterThan(Date.now() - 60_000)
  })

  it('loads the same bytes under two names once, and remembers both names', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: ORDERS_COLUMNS }), 'incoming/a.csv': GOOD_A, 'incoming/copy-of-a.csv': GOOD_A })
    const result = await ws.cli()
    expect(result.code).toBe(0)
    expect(orders(ws)).toHaveLength(2)
    expect(ws.query('.filedge/ledger.db', 'SELECT count(*) AS n FROM files')).toEqual([{ n: 1 }])
    // A later run that finds the copy under yet another name still loads nothing.
    ws.write('incoming/third-name.csv', GOOD_A)
    const again = await ws.cli()
    expect(again.code).toBe(0)
    expect(orders(ws)).toHaveLength(2)
    const history = await ws.cli(['history', 'incoming/third-name.csv'])
    expect(history.code).toBe(0)
    // Which of the first run's two names is the record's own depends on which was hashed first; the third came later.
    const [, first, others] = /path (\S+) \(also seen as (.*)\)/.exec(history.stdout) ?? []
    expect([first, ...others.split(', ')]).toEqual(
      expect.arrayContaining(['incoming/a.csv', 'incoming/copy-of-a.csv', 'incoming/third-name.csv']),
    )
    expect(others.split(', ')).toHaveLength(2)
    expect(others.split(', ').at(-1)).toBe('incoming/third-name.csv')
  })

  it('fails a file with a bad value by file:line column, keeps its rows out, commits the others, and exits 1', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: ORDERS_COLUMNS }), 'incoming/a.csv': GOOD_A, 'incoming/orders_bad.csv': BAD })
    const first = await ws.cli(['--reporter', 'simple'])
    expect(first.code).toBe(1)
    expect(first.stderr).toContain('incoming/orders_bad.csv:3 column order_date: cannot coerce "not-a-date" to date')
    expect(orders(ws).map((row) => row.order_id)).toEqual(['A1', 'A2'])
    const [bad] = ws.query<{ state: string; attempts: number; error: string }>('.filedge/ledger.db', "SELECT state, attempts, error FROM files WHERE path = 'incoming/orders_bad.csv'")
    expect(bad).toMatchObject({ state: 'FAILED', attempts: 1 })
    expect(bad.error).toContain('incoming/orders_bad.csv:3 column order_date')

    // Attempts 2 and 3 fail the same way; after that the file is terminal and skipped.
    expect((await ws.cli()).code).toBe(1)
    const third = await ws.cli(['--reporter', 'simple'])
    expect(third.code).toBe(1)
    expect(third.stderr).toContain('no attempts left')
    const fourth = await ws.cli(['--reporter', 'simple'])
    expect(fourth.code).toBe(0)
    expect(fourth.stdout).toMatch(/incoming\/orders_bad\.csv skipped: failed 3 times/)
    expect(fourth.stdout).toMatch(/committed 0 · failed 0 · skipped 2/)

    const status = await ws.cli(['status', '--json'])
    const report = JSON.parse(status.stdout)
    expect(report.pipelines[0]).toMatchObject({ pipeline: 'orders', COMMITTED: 1, FAILED: 1, terminal: 1 })
    expect(report.recentFailures[0].error).toContain('cannot coerce "not-a-date" to date')

    // requeue brings it back: the next run tries it again (attempt 1 of a fresh count).
    const requeue = await ws.cli(['requeue', 'incoming/orders_bad.csv'])
    expect(requeue.code).toBe(0)
    expect(requeue.stdout).toContain('requeued orders incoming/orders_bad.csv')
    ws.write('incoming/orders_bad.csv', BAD) // unchanged bytes: same file, same hash
    const fifth = await ws.cli(['--reporter', 'simple'])
    expect(fifth.code).toBe(1)
    expect(fifth.stdout).toMatch(/failed 1/)
    const events = ws.query<{ event: string }>('.filedge/ledger.db', "SELECT e.event FROM events e JOIN files f USING (pipeline, hash) WHERE f.path = 'incoming/orders_bad.csv' ORDER BY e.id")
    expect(events.map((event) => event.event)).toEqual([
      'file:discovered',
      'file:claimed',
      'file:failed',
      'file:retried',
      'file:failed',
      'file:retried',
      'file:failed',
      'file:requeued',
      'file:claimed',
      'file:failed',
    ])
  })

  it('deletes the spool files of a process that was killed, and only those', async () => {
    // A remote file over 1 MiB is spooled while it is hashed; SIGKILL leaves the spool file. A pid that has exited:
    const dead = spawnSync(process.execPath, ['-e', '']).pid!
    const spool = path.join(os.tmpdir(), `filedge-spool-${process.getuid!()}`)
    mkdirSync(spool, { recursive: true, mode: 0o700 })
    const orphan = path.join(spool, `${dead}-left-by-a-killed-run`)
    const live = path.join(spool, `${process.pid}-this-test-process`)
    writeFileSync(orphan, 'x')
    writeFileSync(live, 'x')
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: ORDERS_COLUMNS }), 'incoming/a.csv': GOOD_A })
    expect((await ws.cli()).code).toBe(0)
    expect(existsSync(orphan)).toBe(false)
    expect(existsSync(live)).toBe(true)
    rmSync(live)
  })

  it('requeue --failed brings back every failed file', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: ORDERS_COLUMNS, extra: 'retry: { attempts: 1 },' }), 'incoming/bad1.csv': BAD, 'incoming/bad2.csv': BAD.replace('C1', 'D1') })
    expect((await ws.cli()).code).toBe(1)
    expect((await ws.cli()).code).toBe(0)
    const requeue = await ws.cli(['requeue', '--failed'])
    expect(requeue.stdout.match(/^requeued /gm)).toHaveLength(2)
    const again = await ws.cli(['--reporter', 'simple'])
    expect(again.stdout).toMatch(/failed 2/)
  })
})
