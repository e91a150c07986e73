import { execFile, spawn } from 'node:child_process'
import { cpSync, readFileSync, symlinkSync } from 'node:fs'
import path from 'node:path'
import { DuckDBInstance } from '@duckdb/node-api'
import { afterEach, describe, expect, it } from 'vitest'
import { readDuckdb } from './helpers/duckdb.js'
import { exited, REPO_ROOT, waitFor, workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

/** The README's zero-install query line, run exactly as written. */
function readmeQuery(): string {
  const line = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')
    .split('\n')
    .find((text) => text.startsWith('node --input-type=module -e'))
  if (line === undefined) throw new Error('README.md has no `node --input-type=module -e` query line')
  return line
}

function shell(command: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { cwd }, (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })
}

const DUCKDB_CONFIG = (columns: string, options = '') => `import { defineConfig } from 'filedge'
import { duckdb } from 'filedge/plugins/duckdb'
export default defineConfig({
  pipelines: [{ name: 'orders', source: 'incoming', destination: duckdb({ path: 'warehouse.duckdb'${options} }), table: 'orders', columns: ${columns} }],
})
`

describe('the repository example', () => {
  it('loads examples/incoming into DuckDB on the first run and nothing on the second; the README query shows the rows', async () => {
    ws = workspace()
    cpSync(path.join(REPO_ROOT, 'filedge.config.ts'), ws.file('filedge.config.ts'))
    cpSync(path.join(REPO_ROOT, 'examples'), ws.file('examples'), { recursive: true })
    symlinkSync(path.join(REPO_ROOT, 'node_modules/@duckdb'), ws.file('node_modules/@duckdb'), 'dir')
    const first = await ws.cli()
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/committed 2 · failed 0 · skipped 0 · new 2 .* rows 6/)
    const second = await ws.cli()
    expect(second.code).toBe(0)
    expect(second.stdout).toMatch(/committed 0 · failed 0 · skipped 2 · new 0 .* rows 0/)
    const query = await shell(readmeQuery(), ws.dir)
    expect(query.stderr).toBe('')
    expect(query.code).toBe(0)
    for (const id of ['A-1001', 'A-1002', 'A-1003', 'A-1004', 'A-1005', 'A-1006']) expect(query.stdout).toContain(id)
    expect(query.stdout).toContain('paid, gift wrap')
    const rows = await readDuckdb(ws.file('.filedge/warehouse.duckdb'), "SELECT CAST(amount AS VARCHAR) AS amount, shipped_at FROM orders WHERE order_id = 'A-1004'")
    expect(rows).toEqual([{ amount: '89.99', shipped_at: new Date('2024-05-03T12:02:11Z') }])
  })
})

describe('DuckDB destination, from the CLI', () => {
  /** A process that opens the warehouse and holds it (a DuckDB shell, a notebook) until killed. */
  const holdWarehouse = async (file: string) => {
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `import { DuckDBInstance } from '@duckdb/node-api'; const db = await DuckDBInstance.create(${JSON.stringify(file)}); await db.connect(); console.log('ready'); setInterval(() => {}, 1000)`],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let output = ''
    holder.stdout!.on('data', (chunk) => (output += chunk))
    await waitFor(() => output.includes('ready'), 30_000, 'the holder process to open the database')
    return holder
  }

  it('waits for a DuckDB file another process holds, says so once, and gives up after lockWait naming the holder', async () => {
    ws = workspace({ 'filedge.config.ts': DUCKDB_CONFIG("{ id: 'string' }", ", lockWait: '2s'"), 'incoming/a.csv': 'id\nx\n' })
    const holder = await holdWarehouse(ws.file('warehouse.duckdb'))
    try {
      const started = Date.now()
      const result = await ws.cli(['--reporter', 'simple'])
      const took = Date.now() - started
      expect(took).toBeGreaterThanOrEqual(2_000)
      expect(took).toBeLessThan(20_000)
      expect(result.code).toBe(1)
      expect(result.stderr.match(/waiting up to 2 s for it/g)).toHaveLength(1)
      expect(result.stderr).toContain(`duckdb ${ws.file('warehouse.duckdb')} is locked: held by`)
      expect(result.stderr).toContain(`(PID ${holder.pid})`)
      expect(result.stderr).toContain('DuckDB allows one process per database file')
      expect(ws.query('.filedge/ledger.db', 'SELECT count(*) AS n FROM files')).toEqual([{ n: 0 }])
    } finally {
      holder.kill('SIGKILL')
      await exited(holder)
    }
    // Once the other process is gone, the same run loads the file.
    const again = await ws.cli(['--reporter', 'simple'])
    expect(again.code).toBe(0)
    expect(await readDuckdb(ws.file('warehouse.duckdb'), 'SELECT id FROM orders')).toEqual([{ id: 'x' }])
  })

  it('a run started while another process holds the file waits for it to let go, then loads', async () => {
    ws = workspace({ 'filedge.config.ts': DUCKDB_CONFIG("{ id: 'string' }"), 'incoming/a.csv': 'id\nx\n' })
    const holder = await holdWarehouse(ws.file('warehouse.duckdb'))
    const run = ws.spawn(['--reporter', 'simple'])
    let stderr = ''
    run.stderr!.on('data', (chunk) => (stderr += chunk))
    try {
      await waitFor(() => stderr.includes('waiting up to 120 s for it'), 30_000, 'the run to report that it waits')
    } finally {
      holder.kill('SIGKILL')
      await exited(holder)
    }
    expect(await exited(run)).toEqual({ code: 0, signal: null })
    expect(await readDuckdb(ws.file('warehouse.duckdb'), 'SELECT id FROM orders')).toEqual([{ id: 'x' }])
  })

  it('while --watch runs, the warehouse can be read between arrivals, and another run does not fail on the lock', async () => {
    ws = workspace({
      'filedge.config.ts': DUCKDB_CONFIG("{ id: 'string' }", ", releaseAfter: '200ms'").replace('pipelines:', "watch: { settle: '100ms' },\n  pipelines:"),
      'incoming/a.csv': 'id\nx\n',
    })
    const w = ws
    const watcher = w.spawn(['--watch', '--reporter', 'simple'])
    try {
      // A reader that keeps trying: it gets in once the watcher lets go of the idle file.
      const read = async (expected: number) => {
        const deadline = Date.now() + 30_000
        for (;;) {
          const rows = await readDuckdb(w.file('warehouse.duckdb'), 'SELECT id FROM orders ORDER BY id').catch(() => undefined)
          if (rows !== undefined && rows.length === expected) return rows
          if (Date.now() > deadline) throw new Error(`the warehouse did not become readable with ${expected} rows`)
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
      expect(await read(1)).toEqual([{ id: 'x' }])
      w.write('incoming/b.csv', 'id\ny\n')
      expect(await read(2)).toEqual([{ id: 'x' }, { id: 'y' }])
      const other = await w.cli(['--reporter', 'simple'])
      expect(other.code).toBe(0)
      expect(other.stdout).toMatch(/committed 0 · failed 0/)
    } finally {
      watcher.kill('SIGTERM')
      expect(await exited(watcher)).toEqual({ code: 0, signal: null })
    }
  })

  it('stops on a decimal column whose scale differs (DuckDB would round every value into it)', async () => {
    ws = workspace({ 'filedge.config.ts': DUCKDB_CONFIG("{ id: 'string', amount: { type: 'decimal', precision: 18, scale: 4 } }"), 'incoming/a.csv': 'id,amount\nx,1.2345\n' })
    const instance = await DuckDBInstance.create(ws.file('warehouse.duckdb'))
    const connection = await instance.connect()
    await connection.run('CREATE TABLE orders (id VARCHAR, amount DECIMAL(18,2), _source_file_hash VARCHAR NOT NULL, _ingested_at TIMESTAMPTZ NOT NULL, _source_row_number BIGINT NOT NULL)')
    connection.closeSync()
    instance.closeSync()
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(`table orders in ${ws.file('warehouse.duckdb')} does not match the pipeline's columns:`)
    expect(result.stderr).toContain('column "amount" is DECIMAL(18,2), expected DECIMAL(18,4) (decimal)')
  })

  it('is named as data in a JSON config, and loads NDJSON through the Appender with exact big integers and microseconds', async () => {
    ws = workspace({
      'filedge.config.json': JSON.stringify({
        pipelines: [{ name: 'events', source: 'incoming', destination: { type: 'duckdb', path: 'events.duckdb' }, table: 'events', columns: { id: 'integer', doc: 'json', at: 'timestamp' } }],
      }),
      'incoming/a.ndjson': '{"id": 1, "doc": {"k": [1, 2]}, "at": "2024-05-01T13:45:00.123456Z"}\n{"id": 9007199254740993}\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(await readDuckdb(ws.file('events.duckdb'), "SELECT id, CAST(doc AS VARCHAR) AS doc, strftime(\"at\", '%Y-%m-%dT%H:%M:%S.%f') AS at, _source_row_number FROM events ORDER BY id")).toEqual([
      { id: 1n, doc: '{"k":[1,2]}', at: '2024-05-01T13:45:00.123456', _source_row_number: 1n },
      { id: 9007199254740993n, doc: null, at: null, _source_row_number: 2n },
    ])
  })
})
