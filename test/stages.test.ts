import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig, run, stage, type ColumnInput, type Plugin, type RunSummary, type Stage, type StageDefinition } from '../core/index.js'
import { duckdb } from '../plugins/duckdb/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { readDuckdb } from './helpers/duckdb.js'

/**
 * Stages in real runs (the runner in-process, real SQLite and DuckDB files):
 * what a stage returns is what the table gets, each row keeps the source line
 * and record number it came from, and every way a stage can return something
 * the table cannot take is an error naming the stage, the file and the line.
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const COLUMNS: Record<string, ColumnInput> = { id: { type: 'string', required: true }, n: 'integer', status: 'string' }
const CSV = 'id,n,status\na,1,open\nb,2,closed\nc,3,open\n'

function project(files: Record<string, string>) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-stages-'))
  dirs.push(dir)
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, 'incoming', name)), { recursive: true })
    writeFileSync(path.join(dir, 'incoming', name), content)
  }
  return dir
}

function configFor(dir: string, stages: Stage[], extra: Record<string, unknown> = {}) {
  return resolveConfig(
    { pipelines: [{ name: 'p', source: 'incoming', destination: sqlite({ path: 'w.db' }), table: 't', columns: COLUMNS, retry: { attempts: 1 }, stages, ...extra }] },
    { cwd: dir },
  )
}

async function load(files: Record<string, string>, stages: Stage[]): Promise<{ summary: RunSummary; errors: string[]; rows: Record<string, unknown>[]; schema: string }> {
  const dir = project(files)
  const errors: string[] = []
  const watcher: Plugin = { name: 'watcher', apply: ({ hooks }) => void hooks.fileFailed.tapPromise('watcher', async ({ error }) => void errors.push(error.message)) }
  const summary = await run({ config: configFor(dir, stages), plugins: [watcher] })
  const db = new Database(path.join(dir, 'w.db'), { readonly: true })
  try {
    const rows = db.prepare('SELECT * FROM t ORDER BY _source_row_number').all() as Record<string, unknown>[]
    const schema = (db.prepare("SELECT sql FROM sqlite_schema WHERE name = 't'").get() as { sql: string }).sql
    return { summary, errors, rows: rows.map(({ _ingested_at, _source_file_hash, ...row }) => row), schema }
  } finally {
    db.close()
  }
}

function configProblem(stages: Stage[], extra: Record<string, unknown> = {}): string {
  try {
    configFor(project({}), stages, extra)
  } catch (error) {
    return (error as Error).message
  }
  return 'accepted'
}

const keep = (name: string, more: Partial<StageDefinition> = {}) => stage({ name, run: (rows) => rows, ...more })

describe('stages', () => {
  it('filter, add and drop columns: the table is the last stage, and each row keeps its record number', async () => {
    const { summary, rows, schema } = await load({ 'a.csv': CSV }, [
      stage({ name: 'open', run: (rows) => rows.filter((row) => row.status === 'open') }),
      stage({ name: 'twice', columns: { id: 'string', n: 'integer', twice: 'integer' }, run: (rows) => rows.map(({ status, ...row }) => ({ ...row, twice: (row.n as number) * 2 })) }),
    ])
    expect(summary).toMatchObject({ committed: 1, failed: 0, rows: 2 })
    expect(rows).toEqual([
      { id: 'a', n: 1, twice: 2, _source_row_number: 1 },
      { id: 'c', n: 3, twice: 6, _source_row_number: 3 },
    ])
    expect(schema).toContain('"twice" INTEGER')
    expect(schema).not.toContain('"status"')
  })

  it('a stage that returns new objects one for one keeps the lines; one that explodes rows builds them from their source row', async () => {
    const { rows } = await load({ 'a.csv': CSV }, [
      stage({ name: 'fresh', run: (rows) => rows.map((row) => ({ id: String(row.id).toUpperCase(), n: row.n, status: row.status })) }),
      stage({ name: 'explode', run: (rows) => rows.flatMap((row) => [row, { ...row, id: `${String(row.id)}2` }]) }),
    ])
    expect(rows.map((row) => [row.id, row._source_row_number])).toEqual([
      ['A', 1], ['A2', 1], ['B', 2], ['B2', 2], ['C', 3], ['C2', 3],
    ])
    const lost = await load({ 'a.csv': CSV }, [stage({ name: 'explode', run: (rows) => rows.flatMap((row) => [row, { id: 'x', n: 0, status: null }]) })])
    expect(lost.errors).toEqual(['incoming/a.csv:2: stage "explode" returned row 2 as a new object among 6 rows for 3; build it from the row it comes from ({ ...row, … }) so it keeps its source line'])
  })

  it('an undeclared column is an error naming the stage, the file and the line, and nothing commits', async () => {
    const added = await load({ 'a.csv': CSV }, [stage({ name: 'enrich', run: (rows) => rows.map((row, i) => (i === 1 ? { ...row, extra: 1 } : row)) })])
    expect(added.summary).toMatchObject({ committed: 0, failed: 1 })
    expect(added.errors).toEqual(['incoming/a.csv:3: stage "enrich" returned column "extra", which it does not receive; a stage that adds, renames or drops columns declares the columns it returns'])
    expect(added.rows).toEqual([])
    const declared = await load({ 'a.csv': CSV }, [stage({ name: 'narrow', columns: { id: 'string' }, run: (rows) => rows })])
    expect(declared.errors).toEqual(['incoming/a.csv:2: stage "narrow" returned column "n", which it does not declare (declare it in the stage\'s columns, or leave it out)'])
  })

  it('the last stage\'s values are coerced to the table\'s types; a value that does not fit names the line, column and stage', async () => {
    const good = await load({ 'a.csv': CSV }, [
      stage({
        name: 'typed',
        columns: { id: 'string', n: 'integer', big: 'integer', meta: 'json', day: 'date', ok: 'boolean', amount: { type: 'decimal', precision: 10, scale: 2 } },
        run: (rows) => rows.map(({ status, ...row }) => ({ ...row, big: 2n ** 60n, meta: { status }, day: '2024-02-29', ok: status === 'open', amount: '12.5' })),
      }),
    ])
    expect(good.errors).toEqual([])
    expect(good.rows[0]).toEqual({ id: 'a', n: 1, big: 2 ** 60, meta: '{"status":"open"}', day: '2024-02-29', ok: 1, amount: '12.50', _source_row_number: 1 })
    const bad = await load({ 'a.csv': CSV }, [stage({ name: 'typed', run: (rows) => rows.map((row) => (row.id === 'b' ? { ...row, n: 'two' } : row)) })])
    expect(bad.errors).toEqual(['incoming/a.csv:3 column n (from stage "typed"): cannot coerce "two" to integer'])
    const missing = await load({ 'a.csv': CSV }, [stage({ name: 'blank', run: (rows) => rows.map((row) => ({ ...row, id: null })) })])
    expect(missing.errors).toEqual(['incoming/a.csv:2 column id (from stage "blank"): required value is missing'])
  })

  it('a stage that throws, or returns something that is not rows, fails its file with the stage named', async () => {
    const thrown = await load({ 'a.csv': CSV }, [stage({ name: 'boom', run: () => { throw new Error('lookup table unavailable') } })])
    expect(thrown.errors).toEqual(['incoming/a.csv: stage "boom" failed on the batch from line 2: lookup table unavailable'])
    const wrong = await load({ 'a.csv': CSV }, [stage({ name: 'wrong', run: () => ({ rows: [] }) as never })])
    expect(wrong.errors).toEqual(['incoming/a.csv:2: stage "wrong" returned object; run must return an array of rows'])
    const asynchronous = await load({ 'a.csv': CSV }, [stage({ name: 'later', run: async (rows) => rows.slice(1) })])
    expect(asynchronous.rows.map((row) => row.id)).toEqual(['b', 'c'])
  })

  it('refuses a chain that cannot feed one table, naming the stages', () => {
    expect(configProblem([keep('a'), keep('a')])).toContain('pipelines[0].stages[1].name: "a" is used by another stage of this pipeline')
    expect(configProblem([keep('a', { from: 'nope' })])).toContain('pipelines[0].stages[0].from: no stage is named "nope" (stages: a)')
    expect(configProblem([keep('a', { from: 'b' }), keep('b')])).toContain('pipelines[0].stages: the stages form a cycle: b → a → b')
    expect(configProblem([keep('a', { from: 'c' }), keep('b'), keep('c', { from: 'b' })])).toContain('pipelines[0].stages: the stages form a cycle: b → c → a → b')
    expect(configProblem([keep('a'), keep('b', { from: 'a' }), keep('c', { from: 'a' })])).toContain('"b" and "c" are each read by no other stage')
    expect(configProblem([keep('a'), keep('b', { columns: { id: { type: 'string', source: 'x' } } })])).toContain('pipelines[0].stages[1].columns.id.source: a stage names the columns it returns')
    expect(configProblem([keep('a')], { writeMode: { cdc: { keys: ['id'], op: 'status', sequence: 'n', ops: { insert: ['i'], delete: ['d'] } } } })).toContain('a cdc pipeline cannot have stages yet')
    expect(configProblem([{ name: 'x', run: (rows: unknown) => rows } as unknown as Stage])).toContain('expected a stage: stage({ name, run }) from filedge')
    expect(configProblem([stage({ name: 'bad name!', run: (rows) => rows })])).toContain('pipelines[0].stages[0].name: expected letters, digits, "_" or "-"')
  })

  it('a pipeline without stages beside one with them still loads natively into DuckDB', async () => {
    const rows = 20_000
    const csv = `id,n,status\n${Array.from({ length: rows }, (_, i) => `r${i},${i},open`).join('\n')}\n`
    const dir = project({ 'plain/a.csv': csv, 'staged/a.csv': csv })
    const config = resolveConfig(
      {
        pipelines: [
          { name: 'plain', source: 'incoming/plain', destination: duckdb({ path: 'w.duckdb' }), table: 'plain', columns: COLUMNS },
          { name: 'staged', source: 'incoming/staged', destination: duckdb({ path: 'w.duckdb' }), table: 'staged', columns: COLUMNS, stages: [stage({ name: 'odd', run: (rows) => rows.filter((row) => (row.n as number) % 2 === 1) })] },
        ],
      },
      { cwd: dir },
    )
    // The JS path pulls batches, which fires fileProgress; DuckDB's own read_csv never does.
    const viaJs = new Set<string>()
    const watcher: Plugin = { name: 'watcher', apply: ({ hooks }) => void hooks.fileProgress.tap('watcher', ({ pipeline }) => void viaJs.add(pipeline.name)) }
    const summary = await run({ config, plugins: [watcher] })
    expect(summary).toMatchObject({ committed: 2, failed: 0, rows: rows + rows / 2 })
    expect([...viaJs]).toEqual(['staged'])
    expect(await readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT (SELECT count(*) FROM plain) AS plain, (SELECT count(*) FROM staged) AS staged')).toEqual([{ plain: BigInt(rows), staged: BigInt(rows / 2) }])
  })
})
