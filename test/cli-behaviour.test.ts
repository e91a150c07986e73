import { execFileSync } from 'node:child_process'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { BIN, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

describe('schema drift', () => {
  it('stops the run before any file is touched and prints every difference', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ order_id: { type: 'string', required: true }, amount: 'float' }" }),
      'incoming/a.csv': 'order_id,amount\nA1,1.5\n',
    })
    const db = new Database(ws.file('warehouse.db'))
    db.exec('CREATE TABLE orders (order_id TEXT NOT NULL, amount TEXT, note TEXT, _source_file_hash TEXT NOT NULL, _ingested_at TEXT NOT NULL, _source_row_number INTEGER NOT NULL)')
    db.close()
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('table orders in')
    expect(result.stderr).toContain('column "amount" is TEXT, expected REAL (float)')
    expect(result.stderr).toContain('extra column "note" (TEXT) is not declared in the pipeline')
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 0 }])
    expect(ws.query('.filedge/ledger.db', 'SELECT count(*) AS n FROM files')).toEqual([{ n: 0 }])
  })
})

describe('the hash index of a SQLite table', () => {
  const lookup = (hash: string) => `SELECT count(*) AS n FROM orders WHERE substr(_source_file_hash, 1, 16) = substr('${hash}', 1, 16) AND _source_file_hash = '${hash}'`

  it('is on the hash prefix in a new table; a lookup by hash, as the README writes it, uses it', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ order_id: 'string' }" }), 'incoming/a.csv': 'order_id\nA1\nA2\n' })
    expect((await ws.cli()).code).toBe(0)
    const [index] = ws.query<{ sql: string }>('warehouse.db', "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'")
    expect(index.sql).toContain('substr("_source_file_hash", 1, 16)')
    const [{ hash }] = ws.query<{ hash: string }>('.filedge/ledger.db', 'SELECT hash FROM files')
    expect(ws.query('warehouse.db', lookup(hash))).toEqual([{ n: 2 }])
    const plan = ws.query<{ detail: string }>('warehouse.db', `EXPLAIN QUERY PLAN ${lookup(hash)}`).map((row) => row.detail)
    expect(plan.join('\n')).toContain('USING INDEX orders__source_file_hash')
  })

  it('a table made with an index on the whole hash (earlier versions) keeps it, and a reload still replaces its rows', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ order_id: 'string' }" }), 'incoming/a.csv': 'order_id\nA1\nA2\n' })
    const db = new Database(ws.file('warehouse.db'))
    db.exec('CREATE TABLE orders (order_id TEXT, _source_file_hash TEXT NOT NULL, _ingested_at TEXT NOT NULL, _source_row_number INTEGER NOT NULL) STRICT')
    db.exec('CREATE INDEX orders__source_file_hash ON orders (_source_file_hash)')
    db.close()
    expect((await ws.cli()).code).toBe(0)
    expect((await ws.cli(['requeue', 'incoming/a.csv'])).code).toBe(0)
    expect((await ws.cli()).code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT order_id, _source_row_number AS row FROM orders ORDER BY 2')).toEqual([
      { order_id: 'A1', row: 1 },
      { order_id: 'A2', row: 2 },
    ])
    const [index] = ws.query<{ sql: string }>('warehouse.db', "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'")
    expect(index.sql).toBe('CREATE INDEX orders__source_file_hash ON orders (_source_file_hash)')
  })
})

describe('plugins', () => {
  it('an error thrown in a tap names the plugin, the hook and the file', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: "{ id: 'string' }",
        plugins: `{ name: 'acme-s3', enforce: 'pre', apply({ hooks }) { hooks.commit.tapPromise('acme-s3', async () => { throw new Error('bucket is gone') }) } }`,
      }),
      'incoming/a.csv': 'id\nx\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('plugin "acme-s3" failed in commit for incoming/a.csv: bucket is gone')
    const [file] = ws.query<{ state: string; error: string }>('.filedge/ledger.db', 'SELECT state, error FROM files')
    expect(file.state).toBe('FAILED')
    expect(file.error).toContain('plugin "acme-s3" failed in commit')
  })

  it('a transform plugin sees typed batches and its errors while streaming are attributed to it', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: "{ id: 'string', n: 'integer' }",
        plugins: `{ name: 'doubler', apply({ hooks }) { hooks.transform.tapPromise('doubler', async (batches) => (async function* () {
          for await (const batch of batches) {
            if (batch.rows.some((row) => row[1] === 13)) throw new Error('unlucky row')
            yield { ...batch, rows: batch.rows.map(([id, n]) => [id, n * 2]) }
          }
        })()) } }`,
      }),
      'incoming/a.csv': 'id,n\nx,1\ny,20\n',
      'incoming/b.csv': 'id,n\nz,13\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('plugin "doubler" failed in transform for incoming/b.csv: unlucky row')
    expect(ws.query('warehouse.db', 'SELECT id, n FROM orders ORDER BY id')).toEqual([
      { id: 'x', n: 2 },
      { id: 'y', n: 40 },
    ])
  })

  it('a pre plugin can skip files in beforeHash', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: "{ id: 'string' }",
        plugins: `{ name: 'ignore-drafts', enforce: 'pre', apply({ hooks }) { hooks.beforeHash.tapPromise('ignore-drafts', async (file) => file.path.includes('draft') ? { skip: 'a draft' } : undefined) } }`,
      }),
      'incoming/a.csv': 'id\nx\n',
      'incoming/draft-b.csv': 'id\ny\n',
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('incoming/draft-b.csv skipped: a draft')
    expect(ws.query('warehouse.db', 'SELECT id FROM orders')).toEqual([{ id: 'x' }])
  })
})

describe('identifiers and values', () => {
  it('loads a column named a"b; drop table x into a table whose name has spaces, verbatim', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        table: 'order lines; drop table orders',
        columns: `{ 'a"b; drop table x': { type: 'string', required: true }, 'naïve 列': 'integer', total: { type: 'float', source: 'Total (EUR)' } }`,
      }),
      'incoming/a.csv': `"a""b; drop table x",naïve 列,Total (EUR)\n"'); DROP TABLE orders; --",1,2.5\n`,
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const rows = ws.query('warehouse.db', 'SELECT "a""b; drop table x" AS a, "naïve 列" AS n, total FROM "order lines; drop table orders"')
    expect(rows).toEqual([{ a: "'); DROP TABLE orders; --", n: 1, total: 2.5 }])
  })
})

describe('secrets', () => {
  it('never prints env() values or URL passwords, in errors or in the ledger', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        imports: "import { env, readEnv } from 'filedge'",
        columns: "{ id: 'string' }",
        plugins: `{ name: 'leaky', apply({ hooks }) { hooks.commit.tapPromise({ name: 'leaky', stage: -1 }, async () => {
          const token = readEnv(env('ACME_TOKEN'))
          throw new Error('auth failed with token ' + token + ' at postgres://loader:hunter2@db.internal/warehouse')
        }) } }`,
      }),
      'incoming/a.csv': 'id\nx\n',
    })
    const result = await ws.cli(['--reporter', 'simple'], { env: { ACME_TOKEN: 'tok_live_8f7e6d5c' } })
    expect(result.code).toBe(1)
    const everything = result.stdout + result.stderr + JSON.stringify(ws.query('.filedge/ledger.db', 'SELECT * FROM files')) + JSON.stringify(ws.query('.filedge/ledger.db', 'SELECT * FROM events'))
    expect(everything).toContain('auth failed with token *** at postgres://loader:***@db.internal/warehouse')
    expect(everything).not.toContain('tok_live_8f7e6d5c')
    expect(everything).not.toContain('hunter2')
    const json = await ws.cli(['--json'], { env: { ACME_TOKEN: 'tok_live_8f7e6d5c' } })
    expect(json.stdout + json.stderr).not.toContain('hunter2')
  })
})

describe('progress output', () => {
  it('on a terminal, shows the live view and finishes with the summary', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/a.csv': 'id\nx\n', 'incoming/b.csv': 'id\ny\n' })
    const { execFile } = await import('node:child_process')
    const { BIN } = await import('./helpers/workspace.js')
    // `script` gives the CLI a real pseudo-terminal, so the listr2 renderer runs.
    const output = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      execFile('script', ['-qec', `stty cols 120 rows 40; ${process.execPath} ${BIN}`, '/dev/null'], { cwd: ws!.dir, timeout: 30_000 }, (error, stdout) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout }),
      )
    })
    expect(output.code).toBe(0)
    expect(output.stdout).toContain('orders: 2 committed · 0 failed · 0 skipped · 2 rows')
    expect(output.stdout).toMatch(/committed 2 · failed 0/)
  })

  it('--json emits one JSON object per event, the summary last', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/a.csv': 'id\nx\n', 'incoming/bad.csv': 'id,extra\nx,1\n' })
    const result = await ws.cli(['--json'])
    expect(result.code).toBe(1)
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line))
    expect(events.map((event) => event.event).sort()).toEqual(['file:claimed', 'file:claimed', 'file:committed', 'file:failed', 'run:summary'])
    expect(events.at(-1)).toMatchObject({ event: 'run:summary', committed: 1, failed: 1, rows: 1 })
    const failed = events.find((event) => event.event === 'file:failed')
    expect(failed.error).toMatchObject({ code: 'FILE_INVALID', file: 'incoming/bad.csv', line: 1 })
    expect(failed.error.message).toContain('unknown field "extra"')
  })
})

/** util-linux `script` runs a command on a real pseudo-terminal; without it these cases cannot run. */
const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
if (!hasScript) console.warn('[filedge tests] skipping the terminal-width cases: util-linux `script` is not installed')

describe.skipIf(!hasScript)('on a terminal', () => {
  const onTerminal = (w: Workspace, columns: number) =>
    execFileSync('script', ['-qec', `stty cols ${columns} rows 40; ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`, '/dev/null'], { cwd: w.dir, encoding: 'utf8' })

  it('shows the live view, and plain lines when the terminal reports no width', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/a.csv': 'id\nx\n' })
    const live = onTerminal(ws, 120)
    expect(live).toContain('orders: 1 committed')
    expect(live).toMatch(/committed 1 · failed 0/)

    // A pseudo-terminal of zero columns used to get the live view wrapped at width 0: one character per line.
    ws.write('incoming/b.csv', 'id\ny\n')
    const narrow = onTerminal(ws, 0)
    expect(narrow).toContain('✓ orders incoming/b.csv')
    expect(narrow).toMatch(/committed 1 · failed 0/)
    expect(narrow.split(/\r?\n/).filter((line) => line.trim().length === 1)).toEqual([])
  })
})

describe('file names that try to forge output', () => {
  // A name may hold anything but "/" and NUL: a newline and a fake reporter line, a terminal escape that retitles the window.
  const FORGED = 'x\n✓ orders FORGED.csv 999 rows 1 ms\n'
  const TITLE = '\x1b]0;PWNED\x07'
  const good = `incoming/${FORGED}good${TITLE}.csv`
  const bad = `incoming/${FORGED}bad\x9b2J\u202e.csv`
  const shown = (name: string) => name.replace(/\n/g, '\\n').replace(/\x1b/g, '\\x1b').replace(/\x07/g, '\\x07').replace(/\x9b/g, '\\x9b').replace(/\u202e/g, '\\u202e')
  const raw = /[\x1b\x07\x9b\u202e]/
  const forgedLine = /^\s*✓ orders FORGED/m

  it('are shown escaped by every human output, and kept as they are in the ledger and the JSON output', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'integer' }" }), [good]: 'id\n1\n', [bad]: 'id\nnot-a-number\n' })
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.code).toBe(1)
    const output = run.stdout + run.stderr
    expect(output).not.toMatch(forgedLine)
    expect(output).not.toMatch(raw)
    expect(run.stdout).toContain(`✓ orders ${shown(good)} 1 row `)
    expect(run.stderr).toContain(`✗ orders ${shown(bad)}:2 column id:`)

    // The ledger keeps the real names; display escapes them.
    expect(ws.query<{ path: string }>('.filedge/ledger.db', 'SELECT path FROM files ORDER BY path').map((row) => row.path)).toEqual([bad, good].sort())
    for (const args of [['status'], ['history', bad], ['history', good], ['lineage']]) {
      const result = await ws.cli(args)
      expect(result.code, args.join(' ')).toBe(0)
      expect(result.stdout + result.stderr, args.join(' ')).not.toMatch(forgedLine)
      expect(result.stdout + result.stderr, args.join(' ')).not.toMatch(raw)
      expect(result.stdout, args.join(' ')).toContain(shown(args[0] === 'lineage' || args[1] === good ? good : bad))
    }
    const validate = await ws.cli(['validate', bad])
    expect(validate.stdout).not.toMatch(forgedLine)
    expect(validate.stdout).not.toMatch(raw)
    expect(validate.stdout).toContain(`✗ ${shown(bad)} (orders, csv)`)

    // JSON stays JSON: JSON.stringify escapes the names, and parsing gives them back as they are.
    const history = await ws.cli(['history', bad, '--json'])
    expect(JSON.parse(history.stdout)[0].file.path).toBe(bad)
    ws.write('incoming/again.csv', 'id\n2\n')
    const json = await ws.cli(['--json'])
    const events = json.stdout.trim().split('\n').map((line) => JSON.parse(line))
    expect(events.find((event) => event.event === 'file:committed').path).toBe('incoming/again.csv')
  })

  it.skipIf(!hasScript)('are shown escaped by the live view', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'integer' }" }), [good]: 'id\n1\n', [bad]: 'id\nnot-a-number\n' })
    // The run fails (one bad file), so read the output off the error execFileSync throws.
    const live = (() => {
      try {
        return execFileSync('script', ['-qec', `stty cols 200 rows 40; ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`, '/dev/null'], { cwd: ws!.dir, encoding: 'utf8' })
      } catch (error) {
        return String((error as { stdout?: string }).stdout)
      }
    })()
    expect(live).toContain('orders: 1 committed · 1 failed')
    expect(live).not.toContain(TITLE)
    expect(live).not.toContain('\x9b2J')
    expect(live).not.toContain('\u202e')
    expect(live).not.toMatch(forgedLine)
    expect(live).toContain(`✗ ${shown(bad)}:2 column id:`)
  })
})
