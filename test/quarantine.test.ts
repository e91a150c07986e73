import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { describe, expect, it, type TestContext } from 'vitest'
import { readSidecar, type SidecarEntry } from '../core/quarantine/sidecar.js'
import { historyProblems, readLedger } from './helpers/invariants.js'
import { describePostgres } from './helpers/postgres.js'
import { target, type TargetName } from './helpers/targets.js'
import { exited, REPO_ROOT, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Quarantine (issue 21): rows that fail coercion go to a per-file sidecar
 * instead of failing their file, up to a limit; strictly over it the file
 * fails whole. Real CLI, real databases; each test reads what a user would:
 * the run's --json events, status, history, the sidecar, the table.
 */

const COLUMNS = "{ id: { type: 'integer', required: true }, amount: 'float', day: 'date' }"
const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')

interface JsonEvent {
  readonly event: string
  readonly path?: string
  readonly hash?: string
  readonly rows?: number
  readonly quarantined?: number
  readonly sidecar?: string
  readonly error?: { readonly code: string; readonly message: string }
  readonly [key: string]: unknown
}

async function run(ws: Workspace, env: NodeJS.ProcessEnv = {}) {
  const result = await ws.cli(['--json'], { env })
  const events = result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as JsonEvent)
  const summary = events.find((event) => event.event === 'run:summary') as Record<string, number> | undefined
  const of = (kind: string, file: string) => events.find((event) => event.event === kind && event.path === file)
  return { ...result, events, summary, committed: (file: string) => of('file:committed', file), failed: (file: string) => of('file:failed', file) }
}

const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex')

function project(context: TestContext, options: { quarantine: string; files: Record<string, string | Buffer>; columns?: string; extra?: string; plugins?: string; imports?: string; top?: string }): Workspace {
  const ws = workspace({
    'filedge.config.ts': sqliteConfig({
      columns: options.columns ?? COLUMNS,
      extra: `quarantine: ${options.quarantine},\n${options.extra ?? ''}`,
      plugins: options.plugins,
      imports: options.imports,
      top: options.top,
    }),
    ...options.files,
  })
  context.onTestFinished(() => ws.remove())
  return ws
}

/** `count` good rows numbered 1.., with a bad amount at each record number in `bad`. */
function orders(count: number, bad: readonly number[] = []): string {
  const lines = Array.from({ length: count }, (_, i) => `${i + 1},${bad.includes(i + 1) ? `x${i + 1}` : `${i + 1}.5`},2024-05-01`)
  return `id,amount,day\n${lines.join('\n')}\n`
}

const sidecarFiles = (ws: Workspace) => {
  const dir = ws.file('.filedge/quarantine/orders')
  try {
    return readdirSync(dir).sort()
  } catch {
    return []
  }
}

describe('quarantine: limits', () => {
  it.concurrent('maxRows: a file with exactly that many bad records loads; one more fails it whole, leaving no rows and no sidecar', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 2 }', files: { 'incoming/at.csv': orders(10, [3, 7]), 'incoming/over.csv': orders(10, [2, 5, 9]) } })
    const result = await run(ws)
    expect(result.code).toBe(1)
    expect(result.committed('incoming/at.csv')).toMatchObject({ rows: 8, quarantined: 2 })
    const failure = result.failed('incoming/over.csv')!
    expect(failure.error).toMatchObject({ code: 'QUARANTINE_LIMIT' })
    expect(failure.error!.message).toContain('incoming/over.csv: more than 2 bad records (quarantine.maxRows); nothing was loaded. First: incoming/over.csv:3 column amount: cannot coerce "x2" to float')
    expect(result.summary).toMatchObject({ committed: 1, failed: 1, rows: 8, quarantined: 2 })

    const ledger = readLedger(ws.dir)
    expect(historyProblems(ledger)).toEqual([])
    const over = ledger.files.find((file) => file.path === 'incoming/over.csv')!
    expect(over.state).toBe('FAILED')
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders WHERE _source_file_hash = ?', over.hash)).toEqual([{ n: 0 }])
    // Only the loaded file's sidecar; nothing of the failed one, not even its temporary file.
    const at = ledger.files.find((file) => file.path === 'incoming/at.csv')!
    expect(sidecarFiles(ws)).toEqual([`${at.hash}.ndjson`])
  })

  it.concurrent('maxFraction: 1 bad record in 100 loads under 0.01; 2 in 100 fail the file', async (context) => {
    const ws = project(context, { quarantine: '{ maxFraction: 0.01 }', files: { 'incoming/at.csv': orders(100, [50]), 'incoming/over.csv': orders(100, [10, 20]) } })
    const result = await run(ws)
    expect(result.code).toBe(1)
    expect(result.committed('incoming/at.csv')).toMatchObject({ rows: 99, quarantined: 1 })
    expect(result.failed('incoming/over.csv')!.error).toMatchObject({ code: 'QUARANTINE_LIMIT' })
    expect(result.failed('incoming/over.csv')!.error!.message).toContain('2 of 100 records are bad (2%), more than quarantine.maxFraction (1%); nothing was loaded')
    expect(sidecarFiles(ws)).toHaveLength(1)
  })

  it.concurrent('both limits: the stricter one decides', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 5, maxFraction: 0.1 }', files: { 'incoming/small.csv': orders(10, [1, 2]), 'incoming/big.csv': orders(100, [1, 2, 3, 4, 5, 6]) } })
    const result = await run(ws)
    expect(result.failed('incoming/small.csv')!.error!.message).toContain('2 of 10 records are bad (20%), more than quarantine.maxFraction (10%)')
    expect(result.failed('incoming/big.csv')!.error!.message).toContain('more than 5 bad records (quarantine.maxRows)')
  })
})

describe('quarantine: the sidecar', () => {
  it.concurrent('holds each bad record as the file wrote it (quoted line breaks, CRLF, a short record), with its line, row and every problem', async (context) => {
    const csv = ['id,amount,day', '1,1.5,2024-05-01', '2,"1,5",2024-13-01', '3,2.5,"2024-05-01', 'oops"', '4,3.5', '5,4.5,2024-05-02', ''].join('\r\n')
    const ws = project(context, { quarantine: '{ maxRows: 10 }', files: { 'incoming/a.csv': csv } })
    const result = await run(ws)
    expect(result.code).toBe(0)
    expect(result.committed('incoming/a.csv')).toMatchObject({ rows: 2, quarantined: 3 })
    const hash = sha256(csv)
    const sidecarPath = `.filedge/quarantine/orders/${hash}.ndjson`
    expect(result.committed('incoming/a.csv')!.sidecar).toBe(sidecarPath)
    const { header, entries } = readSidecar(ws.file(sidecarPath))
    expect(header).toMatchObject({ filedge: 'quarantine', version: 1, pipeline: 'orders', file: 'incoming/a.csv', hash, format: { type: 'csv' }, header: 'id,amount,day' })
    expect(header.sealed).toBeUndefined()
    expect(entries).toEqual<SidecarEntry[]>([
      {
        file: 'incoming/a.csv',
        line: 3,
        row: 2,
        errors: [
          { column: 'amount', reason: 'cannot coerce "1,5" to float' },
          { column: 'day', reason: 'cannot coerce "2024-13-01" to date (expected YYYY-MM-DD)' },
        ],
        record: '2,"1,5",2024-13-01',
      },
      { file: 'incoming/a.csv', line: 4, row: 3, errors: [{ column: 'day', reason: 'cannot coerce "2024-05-01\\r\\noops" to date (expected YYYY-MM-DD)' }], record: '3,2.5,"2024-05-01\r\noops"' },
      { file: 'incoming/a.csv', line: 6, row: 4, errors: [{ column: 'day', reason: 'expected 3 fields, found 2 (no value for "day")' }], record: '4,3.5' },
    ])
    // The rows keep their record numbers: 1 and 5.
    expect(ws.query('warehouse.db', 'SELECT id, _source_row_number AS row FROM orders ORDER BY id')).toEqual([
      { id: 1, row: 1 },
      { id: 5, row: 5 },
    ])
  })

  it.concurrent('a retry after the destination failed writes the same sidecar bytes again, and the committed record names it', async (context) => {
    // The destination reads every row (the sidecar is complete and in place), then refuses the COMMIT, once.
    const plugin = `{ name: 'refuse-once', enforce: 'pre', apply({ hooks }) {
      hooks.commit.tapPromise('refuse-once', async (job) => {
        if (process.env.REFUSE !== '1') return undefined
        for await (const batch of job.batches) void batch
        throw new Error('warehouse refused the COMMIT')
      })
    } }`
    const ws = project(context, { quarantine: '{ maxRows: 5 }', plugins: plugin, files: { 'incoming/a.csv': orders(20, [4, 11]) } })
    const first = await run(ws, { REFUSE: '1' })
    expect(first.failed('incoming/a.csv')!.error!.message).toContain('warehouse refused the COMMIT')
    const [name] = sidecarFiles(ws)
    const before = readFileSync(ws.file(`.filedge/quarantine/orders/${name}`))
    expect(readSidecar(ws.file(`.filedge/quarantine/orders/${name}`)).entries.map((entry) => entry.row)).toEqual([4, 11])

    const second = await run(ws)
    expect(second.committed('incoming/a.csv')).toMatchObject({ rows: 18, quarantined: 2, sidecar: `.filedge/quarantine/orders/${name}` })
    expect(sidecarFiles(ws)).toEqual([name])
    expect(readFileSync(ws.file(`.filedge/quarantine/orders/${name}`)).equals(before)).toBe(true)
    const history = JSON.parse((await ws.cli(['history', 'incoming/a.csv', '--json'])).stdout) as { file: { quarantined: number; sidecar: string } }[]
    expect(history[0].file).toMatchObject({ quarantined: 2, sidecar: `.filedge/quarantine/orders/${name}` })
  })

  it.concurrent('killed after the destination committed, before the ledger heard: the rerun heals the file and takes the count from the sidecar', async (context) => {
    const ws = project(context, {
      quarantine: '{ maxRows: 5 }',
      files: { 'incoming/a.csv': orders(12, [2, 3, 8]) },
      top: "lease: { ttl: '2s', heartbeat: '500ms' },",
      imports: `import { pausePoints, pauseAfterWrite } from ${JSON.stringify(PAUSE)}`,
      plugins: 'pausePoints()',
    })
    // The pause wrapper around the destination, as the exactly-once suite does.
    writeFileSync(ws.file('filedge.config.ts'), readFileSync(ws.file('filedge.config.ts'), 'utf8').replace("destination: sqlite({ path: 'warehouse.db' })", "destination: pauseAfterWrite(sqlite({ path: 'warehouse.db' }))"))
    const child = ws.spawn(['--reporter', 'silent'], { env: { PAUSE_AT: 'written' } })
    const exit = exited(child)
    await Promise.race([waitFor(() => ws.exists('paused'), 30_000, 'the run to pause after the destination commit'), exit])
    expect(ws.exists('paused')).toBe(true)
    child.kill('SIGKILL')
    await exit
    rmSync(ws.file('paused'))
    expect(readLedger(ws.dir).files.map((file) => file.state)).toEqual(['PROCESSING'])
    // The lease expires by the ledger's clock.
    for (;;) {
      const status = JSON.parse((await ws.cli(['status', '--json'])).stdout) as { pipelines: { expired: number }[] }
      if (status.pipelines[0].expired > 0) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const rerun = await run(ws)
    expect(rerun.summary).toMatchObject({ committed: 1, healed: 1 })
    expect(rerun.committed('incoming/a.csv')).toMatchObject({ quarantined: 3 })
    const status = JSON.parse((await ws.cli(['status', '--json'])).stdout) as { pipelines: { rows: number; quarantined: number }[] }
    expect(status.pipelines[0]).toMatchObject({ rows: 9, quarantined: 3 })
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 9 }])
  })
})

describe('quarantine: counts', () => {
  it.concurrent('in the run summary, --json, status, history and filedge query', async (context) => {
    const ws = project(context, { quarantine: '{ maxFraction: 0.5 }', files: { 'incoming/a.csv': orders(6, [2]), 'incoming/b.csv': orders(4, [1, 4]), 'incoming/c.csv': orders(3) } })
    const result = await run(ws)
    expect(result.code).toBe(0)
    expect(result.summary).toMatchObject({ committed: 3, rows: 10, quarantined: 3 })
    expect(result.committed('incoming/c.csv')!.quarantined).toBeUndefined()

    const status = JSON.parse((await ws.cli(['status', '--json'])).stdout) as { pipelines: Record<string, unknown>[] }
    expect(status.pipelines).toEqual([expect.objectContaining({ pipeline: 'orders', COMMITTED: 3, rows: 10, quarantined: 3 })])
    const human = (await ws.cli(['status'])).stdout
    expect(human).toMatch(/pipeline\s+pending\s+processing\s+committed\s+failed\s+terminal\s+rows\s+quarantined/)
    expect(human).toMatch(/orders\s+0\s+0\s+3\s+0\s+0\s+10\s+3/)

    const history = JSON.parse((await ws.cli(['history', 'incoming/b.csv', '--json'])).stdout) as { file: { quarantined: number; sidecar: string; hash: string }; events: { event: string; quarantined: number | null }[] }[]
    expect(history[0].file).toMatchObject({ quarantined: 2, sidecar: `.filedge/quarantine/orders/${history[0].file.hash}.ndjson` })
    expect(history[0].events.find((event) => event.event === 'file:committed')).toMatchObject({ quarantined: 2 })
    expect((await ws.cli(['history', 'incoming/b.csv'])).stdout).toContain(`rows 2 · quarantined 2 → .filedge/quarantine/orders/${history[0].file.hash}.ndjson`)

    const lineage = JSON.parse((await ws.cli(['lineage', '--json'])).stdout) as { pipelines: { files: { path: string; rows: number; quarantined?: number }[] }[] }
    expect(Object.fromEntries(lineage.pipelines[0].files.map((file) => [file.path, [file.rows, file.quarantined]]))).toEqual({ 'incoming/a.csv': [5, 1], 'incoming/b.csv': [2, 2], 'incoming/c.csv': [3, undefined] })
    expect((await ws.cli(['lineage'])).stdout).toMatch(/2 \(\+2 quarantined\)\s+incoming\/b\.csv/)

    const query = await ws.cli(['query', 'SELECT sum(quarantined) AS q FROM files', '--json'])
    expect(query.stderr).toBe('')
    expect(query.stdout).toContain('"q": 3')
  })

  it.concurrent('in the lines of the simple reporter', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 1 }', files: { 'incoming/a.csv': orders(3, [2]) } })
    const result = await ws.cli(['--reporter', 'simple'])
    const hash = sha256(orders(3, [2]))
    expect(result.stdout).toMatch(new RegExp(`✓ orders incoming/a\\.csv 2 rows [0-9.]+ m?s · 1 quarantined → \\.filedge/quarantine/orders/${hash}\\.ndjson\n`))
    expect(result.stdout).toMatch(/rows 2 · quarantined 1 · /)
  })
})

describe('quarantine × write modes', () => {
  it.concurrent('truncate: the file replaces the table without its bad records, and their count is recorded', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 3 }', extra: "writeMode: 'truncate',", files: { 'incoming/1.csv': orders(5), 'incoming/2.csv': orders(4, [2, 3]) } })
    const result = await run(ws)
    expect(result.code).toBe(0)
    expect(result.committed('incoming/2.csv')).toMatchObject({ rows: 2, quarantined: 2 })
    expect(ws.query('warehouse.db', 'SELECT id FROM orders ORDER BY id')).toEqual([{ id: 1 }, { id: 4 }])
    // A sidecar of a truncate file is not replayed: the fixed records alone would replace the table.
    const [name] = sidecarFiles(ws)
    const replay = await ws.cli(['quarantine', 'replay', `.filedge/quarantine/orders/${name}`])
    expect(replay.code).toBe(2)
    expect(replay.stderr).toContain('pipeline "orders" is a truncate pipeline: each file replaces the whole table, so a file of the 2 fixed records alone would replace it')
  })

  it.concurrent('truncate: a file whose every record is bad is an empty file, refused unless allowEmpty', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 3 }', extra: "writeMode: 'truncate',", files: { 'incoming/1.csv': orders(2), 'incoming/2.csv': orders(2, [1, 2]) } })
    const result = await run(ws)
    expect(result.failed('incoming/2.csv')!.error).toMatchObject({ code: 'FILE_INVALID' })
    expect(ws.query('warehouse.db', 'SELECT id FROM orders ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }])
  })

  it.concurrent('cdc: a bad change is set aside (an unknown op, a missing value an update needs, a value that does not coerce), the others apply; the fixed changes replay and apply by sequence', async (context) => {
    const columns = "{ id: { type: 'integer', required: true }, op: 'string', seq: 'integer', name: { type: 'string', required: true }, amount: 'float' }"
    const mode = "writeMode: { cdc: { keys: ['id'], op: 'op', sequence: 'seq', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } },"
    const changes = ['id,op,seq,name,amount', '1,c,1,ann,1.0', '2,c,1,bob,2.0', '1,u,2,ann,x', '3,z,1,cy,3.0', '2,u,2,,2.5', '4,c,1,dee,4.0', ''].join('\n')
    const ws = project(context, { quarantine: '{ maxRows: 3 }', columns, extra: mode, files: { 'incoming/1.csv': changes } })
    const result = await run(ws)
    expect(result.code).toBe(0)
    expect(result.committed('incoming/1.csv')).toMatchObject({ quarantined: 3 })
    expect(ws.query('warehouse.db', 'SELECT id, seq, name, amount FROM orders ORDER BY id')).toEqual([
      { id: 1, seq: 1, name: 'ann', amount: 1 },
      { id: 2, seq: 1, name: 'bob', amount: 2 },
      { id: 4, seq: 1, name: 'dee', amount: 4 },
    ])
    const [name] = sidecarFiles(ws)
    const sidecar = ws.file(`.filedge/quarantine/orders/${name}`)
    const { entries } = readSidecar(sidecar)
    expect(entries.map((entry) => [entry.line, entry.errors.map((error) => `${error.column}: ${error.reason}`)])).toEqual([
      [4, ['amount: cannot coerce "x" to float']],
      [5, ['op: unknown op "z"; expected one of "c" (insert), "u" (update), "d" (delete)']],
      [6, ['name: required value is missing (an update carries the whole row; only a delete may leave it empty)']],
    ])
    editSidecar(sidecar, { 4: '1,u,2,ann,1.5', 5: '3,c,1,cy,3.0', 6: '2,u,2,bob,2.5' })
    const replay = await ws.cli(['quarantine', 'replay', `.filedge/quarantine/orders/${name}`])
    expect(replay.stderr).toBe('')
    expect(replay.code).toBe(0)
    const again = await run(ws)
    expect(again.summary).toMatchObject({ committed: 1, failed: 0 })
    expect(ws.query('warehouse.db', 'SELECT id, seq, name, amount FROM orders ORDER BY id')).toEqual([
      { id: 1, seq: 2, name: 'ann', amount: 1.5 },
      { id: 2, seq: 2, name: 'bob', amount: 2.5 },
      { id: 3, seq: 1, name: 'cy', amount: 3 },
      { id: 4, seq: 1, name: 'dee', amount: 4 },
    ])
  })
})

/** Rewrites a sidecar's records by the line of the file they came from, as a user would in an editor. */
function editSidecar(file: string, records: Record<number, string | null>): void {
  const [header, ...lines] = readFileSync(file, 'utf8').trim().split('\n')
  const kept = lines.flatMap((line) => {
    const entry = JSON.parse(line) as SidecarEntry
    if (!(entry.line in records)) return [line]
    const record = records[entry.line]
    return record === null ? [] : [JSON.stringify({ ...entry, record })]
  })
  writeFileSync(file, `${[header, ...kept].join('\n')}\n`)
}

describe('quarantine replay', () => {
  it.concurrent('a fixed record is written next to the original, loads as a new file, and leads back to it; twice is refused', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 5 }', files: { 'incoming/day/orders-01.csv': orders(5, [2, 4]) } })
    await run(ws)
    const [name] = sidecarFiles(ws)
    const original = name.replace('.ndjson', '')
    const sidecar = `.filedge/quarantine/orders/${name}`

    // Still bad: refused, naming the record, nothing written.
    const unfixed = await ws.cli(['quarantine', 'replay', sidecar])
    expect(unfixed.code).toBe(1)
    expect(unfixed.stderr).toContain('sidecar line 2 (line 3 of incoming/day/orders-01.csv): column amount: cannot coerce "x2" to float')
    expect(readdirSync(ws.file('incoming/day'))).toEqual(['orders-01.csv'])

    // Fixed in the sidecar (one record corrected, one dropped), then replayed.
    editSidecar(ws.file(sidecar), { 3: '2,2.25,2024-05-01', 5: null })
    const dry = await ws.cli(['quarantine', 'replay', sidecar, '--dry-run', '--json'])
    expect(JSON.parse(dry.stdout)).toMatchObject({ records: 1, written: false })
    const replay = await ws.cli(['quarantine', 'replay', sidecar, '--json'])
    expect(replay.stderr).toBe('')
    const written = JSON.parse(replay.stdout) as { path: string; hash: string; records: number; from: { hash: string } }
    expect(written).toMatchObject({ records: 1, from: { hash: original } })
    expect(written.path).toBe(`incoming/day/orders-01.replay-${written.hash.slice(0, 12)}.csv`)
    expect(readFileSync(ws.file(written.path), 'utf8')).toBe('id,amount,day\n2,2.25,2024-05-01\n')
    expect(sha256(readFileSync(ws.file(written.path)))).toBe(written.hash)

    const loaded = await run(ws)
    expect(loaded.committed(written.path)).toMatchObject({ rows: 1 })
    expect(ws.query('warehouse.db', 'SELECT id, amount FROM orders ORDER BY id')).toEqual([
      { id: 1, amount: 1.5 },
      { id: 2, amount: 2.25 },
      { id: 3, amount: 3.5 },
      { id: 5, amount: 5.5 },
    ])
    // Lineage both ways: the replay's history names the original; the original's, the replay.
    const replayed = JSON.parse((await ws.cli(['history', written.path, '--json'])).stdout) as { replayOf: { hash: string }[] }[]
    expect(replayed[0].replayOf).toEqual([expect.objectContaining({ pipeline: 'orders', hash: original })])
    expect((await ws.cli(['history', written.path])).stdout).toContain(`replays quarantined records of orders ${original}`)
    const originalEvents = JSON.parse((await ws.cli(['history', original, '--json'])).stdout) as { events: { event: string; path: string }[] }[]
    expect(originalEvents[0].events.filter((event) => event.event === 'file:replayed').map((event) => event.path)).toEqual([written.path])
    expect(historyProblems(readLedger(ws.dir))).toEqual([])

    const twice = await ws.cli(['quarantine', 'replay', sidecar])
    expect(twice.code).toBe(2)
    expect(twice.stderr).toContain(`already replayed as ${written.path}`)
  })

  it.concurrent('reads a gzipped sidecar, and writes a gzipped file for a gzipped original', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 5 }', files: { 'incoming/a.csv.gz': gzipSync(orders(3, [3])) } })
    await run(ws)
    const [name] = sidecarFiles(ws)
    const sidecar = ws.file(`.filedge/quarantine/orders/${name}`)
    editSidecar(sidecar, { 4: '3,3.75,2024-05-01' })
    writeFileSync(ws.file('fixed.ndjson.gz'), gzipSync(readFileSync(sidecar)))
    const replay = await ws.cli(['quarantine', 'replay', 'fixed.ndjson.gz', '--json'])
    expect(replay.stderr).toBe('')
    const written = JSON.parse(replay.stdout) as { path: string }
    expect(written.path).toMatch(/^incoming\/a\.replay-[0-9a-f]{12}\.csv\.gz$/)
    expect(gunzipSync(readFileSync(ws.file(written.path))).toString()).toBe('id,amount,day\n3,3.75,2024-05-01\n')
    const loaded = await run(ws)
    expect(loaded.committed(written.path)).toMatchObject({ rows: 1 })
  })

  it.concurrent('NDJSON and latin1 CSV come back as they were written', async (context) => {
    const ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default defineConfig({
  pipelines: [
    { name: 'events', source: { dir: 'events' }, format: 'ndjson', destination: sqlite({ path: 'warehouse.db' }), table: 'events', columns: { id: 'integer', tag: 'string' }, quarantine: { maxRows: 5 } },
    { name: 'names', source: { dir: 'names' }, format: { type: 'csv', encoding: 'latin1', delimiter: ';' }, destination: sqlite({ path: 'warehouse.db' }), table: 'names', columns: { id: 'integer', name: 'string' }, quarantine: { maxRows: 5 } },
  ],
})
`,
      'events/e.ndjson': '{"id": 1, "tag": "a"}\n  {"id": "two", "tag": "b"}  \n{"id": 3, "tag": "c"}\n',
      'names/n.csv': Buffer.from('id;name\n1;Zoë\nx;Renée\n', 'latin1'),
    })
    context.onTestFinished(() => ws.remove())
    const first = await run(ws)
    expect(first.summary).toMatchObject({ committed: 2, quarantined: 2 })
    const sidecarOf = (pipeline: string) => ws.file(`.filedge/quarantine/${pipeline}/${readdirSync(ws.file(`.filedge/quarantine/${pipeline}`))[0]}`)
    expect(readSidecar(sidecarOf('events')).entries[0].record).toBe('{"id": "two", "tag": "b"}')
    expect(readSidecar(sidecarOf('names')).entries[0].record).toBe('x;Renée')
    editSidecar(sidecarOf('events'), { 2: '{"id": 2, "tag": "b"}' })
    editSidecar(sidecarOf('names'), { 3: '2;Renée' })
    for (const pipeline of ['events', 'names']) expect((await ws.cli(['quarantine', 'replay', sidecarOf(pipeline)])).stderr).toBe('')
    const [replayName] = readdirSync(ws.file('names')).filter((file) => file.includes('.replay-'))
    expect(readFileSync(ws.file(`names/${replayName}`)).equals(Buffer.from('id;name\n2;Renée\n', 'latin1'))).toBe(true)
    await run(ws)
    expect(ws.query('warehouse.db', 'SELECT id, tag FROM events ORDER BY id')).toEqual([
      { id: 1, tag: 'a' },
      { id: 2, tag: 'b' },
      { id: 3, tag: 'c' },
    ])
    expect(ws.query('warehouse.db', 'SELECT id, name FROM names ORDER BY id')).toEqual([
      { id: 1, name: 'Zoë' },
      { id: 2, name: 'Renée' },
    ])
  })
})

describe('quarantine: config', () => {
  it.concurrent.each([
    ['{}', 'pipelines[0].quarantine: say how many bad rows a file may set aside before it fails whole: maxRows (e.g. 100), maxFraction (e.g. 0.01), or both'],
    ['{ maxFraction: 1.5 }', 'pipelines[0].quarantine.maxFraction'],
    ["{ maxRows: 1, dri: 'q' }", 'pipelines[0].quarantine.dri: unknown key; did you mean "dir"?'],
  ])('quarantine: %s is refused before anything is opened', async (quarantine, message) => {
    const ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: COLUMNS, extra: `quarantine: ${quarantine},` }), 'incoming/a.csv': orders(2) })
    try {
      const result = await ws.cli([])
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(message)
      expect(ws.exists('.filedge')).toBe(false)
    } finally {
      ws.remove()
    }
  })

  it.concurrent('a Parquet pipeline cannot quarantine: its records have no text to keep', async (context) => {
    const ws = project(context, { quarantine: '{ maxRows: 1 }', extra: "format: 'parquet',", files: {} })
    const result = await ws.cli([])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].quarantine: parquet records have no text of their own, so a bad one cannot be kept as it was and replayed')
  })
})

function destinationSuite(name: TargetName) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`quarantine and protected columns on ${name}`, () => {
    it.concurrent(`${name === 'duckdb' ? 'DuckDB reads the file through the rows, not read_csv: ' : ''}bad rows set aside, the rest loaded with their encrypted column, which decrypts`, async (context) => {
      const t = target(name)
      const key = 'c3'.repeat(32)
      const ws = workspace({
        'filedge.config.ts': t.config({
          columns: "{ id: { type: 'integer', required: true }, amount: 'float', ssn: { type: 'string', encrypt: { key: env('PII_KEY') } } }",
          writeMode: "'append'",
          extra: "quarantine: { maxRows: 2, key: env('PII_KEY') },",
        }),
        'incoming/a.csv': 'id,amount,ssn\n1,1.5,111-11-1111\n2,bad,222-22-2222\n3,3.5,\n4,4.5,444-44-4444\n',
      })
      context.onTestFinished(async () => {
        ws.remove()
        await t.cleanup()
      })
      const env = { ...t.env, PII_KEY: key }
      const result = await run(ws, env)
      expect(result.stderr).toBe('')
      expect(result.committed('incoming/a.csv')).toMatchObject({ rows: 3, quarantined: 1 })
      const rows = await t.select(ws, 'SELECT CAST(id AS INTEGER) AS id, ssn FROM {customers} ORDER BY id')
      expect(rows.map((row) => row.id)).toEqual([1, 3, 4])
      expect(rows[1].ssn).toBeNull()
      for (const row of [rows[0], rows[2]]) expect(String(row.ssn)).toMatch(/^fe1:[0-9a-f]{8}:[A-Za-z0-9+/]+=*$/)
      const decrypted = await ws.cli(['decrypt', String(rows[0].ssn), String(rows[2].ssn)], { env })
      expect(decrypted.stderr).toBe('')
      expect(decrypted.stdout).toBe('111-11-1111\n444-44-4444\n')
      // The sidecar keeps the bad record sealed: its SSN is not in it in clear.
      const status = JSON.parse((await ws.cli(['status', '--json'], { env })).stdout) as { pipelines: { quarantined: number }[] }
      expect(status.pipelines[0].quarantined).toBe(1)
      const sidecars = readdirSync(ws.file('.filedge/quarantine/changes'))
      const text = readFileSync(ws.file(`.filedge/quarantine/changes/${sidecars[0]}`), 'utf8')
      expect(text).not.toContain('222-22-2222')
      const shown = await ws.cli(['quarantine', 'show', `.filedge/quarantine/changes/${sidecars[0]}`, '--records'], { env })
      expect(shown.stdout).toContain('2,bad,222-22-2222')
    })
  })
}
destinationSuite('sqlite')
destinationSuite('duckdb')
destinationSuite('postgres')
