import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, describe, expect, it } from 'vitest'
import { resolveConfig, run, stage, type ColumnInput, type Plugin, type RunSummary, type Stage, type StageRow } from '../core/index.js'
import { pipelineCode, whyStale } from '../core/stages/code.js'
import { sqlite } from '../plugins/sqlite/index.js'

/**
 * Stages as a graph (the runner in-process, real CSV files and SQLite): a
 * stage reads one stage, the parsed rows, or several (`from: ['a', 'b']`,
 * `run({ a, b })`), each parent's rows from the same parsed batch, each
 * stage run once per batch; branches rejoin before the table; a graph that
 * cannot feed one table is refused with the stages named.
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

const COLUMNS: Record<string, ColumnInput> = { id: { type: 'string', required: true }, n: 'integer', status: 'string' }
const CSV = 'id,n,status\na,1,open\nb,2,closed\nc,3,open\nd,4,open\ne,5,closed\n'

function project(files: Record<string, string>) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-stages-dag-'))
  dirs.push(dir)
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, 'incoming', name)), { recursive: true })
    writeFileSync(path.join(dir, 'incoming', name), content)
  }
  return dir
}

function configFor(dir: string, stages: Stage[]) {
  return resolveConfig(
    { pipelines: [{ name: 'p', source: 'incoming', destination: sqlite({ path: 'w.db' }), table: 't', columns: COLUMNS, retry: { attempts: 1 }, batchSize: 2, stages }] },
    { cwd: dir },
  )
}

async function load(stages: Stage[]): Promise<{ summary: RunSummary; errors: string[]; rows: Record<string, unknown>[] }> {
  const dir = project({ 'a.csv': CSV })
  const errors: string[] = []
  const watcher: Plugin = { name: 'watcher', apply: ({ hooks }) => void hooks.fileFailed.tapPromise('watcher', async ({ error }) => void errors.push(error.message)) }
  const summary = await run({ config: configFor(dir, stages), plugins: [watcher] })
  const db = new Database(path.join(dir, 'w.db'), { readonly: true })
  try {
    const exists = db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 't'").get() !== undefined
    const rows = exists ? (db.prepare('SELECT * FROM t ORDER BY _source_row_number').all() as Record<string, unknown>[]) : []
    return { summary, errors, rows: rows.map(({ _ingested_at, _source_file_hash, ...row }) => row) }
  } finally {
    db.close()
  }
}

function configProblem(stages: Stage[]): string {
  try {
    configFor(project({}), stages)
  } catch (error) {
    return (error as Error).message
  }
  return 'accepted'
}

const keep = (name: string, from?: string | [string, ...string[]]): Stage =>
  from === undefined || typeof from === 'string' ? stage({ name, ...(from === undefined ? {} : { from }), run: (rows) => rows }) : stage({ name, from, run: (inputs) => Object.values(inputs)[0]! })

/** Rows by id: a join's usual first step. */
const byId = (rows: StageRow[]) => new Map(rows.map((row) => [row.id, row]))

describe('stages as a graph', () => {
  it('a diamond: two branches of the parsed rows rejoin per batch, each stage runs once per batch', async () => {
    const calls: Record<string, number> = { open: 0, label: 0, joined: 0 }
    const { summary, errors, rows } = await load([
      stage({
        name: 'open',
        columns: { id: 'string', n: 'integer', double: 'integer' },
        run: (rows) => {
          calls.open!++
          return rows.filter((row) => row.status === 'open').map(({ status, ...row }) => ({ ...row, double: (row.n as number) * 2 }))
        },
      }),
      stage({
        name: 'label',
        from: 'parsed',
        columns: { id: 'string', label: 'string' },
        run: (rows) => {
          calls.label!++
          return rows.map(({ id, n, status, ...row }) => ({ ...row, id, label: `${String(id)}:${String(status)}` }))
        },
      }),
      stage({
        name: 'joined',
        from: ['open', 'label'],
        columns: { id: 'string', n: 'integer', double: 'integer', label: 'string' },
        run: ({ open, label }) => {
          calls.joined!++
          // Both come from the same parsed batch: every open row finds its label.
          const labels = byId(label)
          return open.map((row) => ({ ...row, label: labels.get(row.id)!.label }))
        },
      }),
    ])
    expect(errors).toEqual([])
    expect(summary).toMatchObject({ committed: 1, failed: 0, rows: 3 })
    expect(rows).toEqual([
      { id: 'a', n: 1, double: 2, label: 'a:open', _source_row_number: 1 },
      { id: 'c', n: 3, double: 6, label: 'c:open', _source_row_number: 3 },
      { id: 'd', n: 4, double: 8, label: 'd:open', _source_row_number: 4 },
    ])
    // Five rows in batches of two: three batches, and no stage ran twice for one.
    expect(calls).toEqual({ open: 3, label: 3, joined: 3 })
  })

  it('a join may read the parsed rows themselves; a branch that changes its rows in place changes them for itself', async () => {
    const { errors, rows } = await load([
      stage({
        name: 'shout',
        run: (rows) => {
          for (const row of rows) row.status = String(row.status).toUpperCase()
          return rows
        },
      }),
      stage({
        name: 'both',
        from: ['parsed', 'shout'],
        columns: { id: 'string', n: 'integer', status: 'string', was: 'string' },
        run: ({ parsed, shout }) => {
          const before = byId(parsed)
          return shout.map((row) => ({ ...row, was: before.get(row.id)!.status }))
        },
      }),
    ])
    expect(errors).toEqual([])
    expect(rows.map((row) => [row.id, row.status, row.was, row._source_row_number])).toEqual([
      ['a', 'OPEN', 'open', 1],
      ['b', 'CLOSED', 'closed', 2],
      ['c', 'OPEN', 'open', 3],
      ['d', 'OPEN', 'open', 4],
      ['e', 'CLOSED', 'closed', 5],
    ])
  })

  it("a join whose parents return the same columns returns them; from: ['a'] hands run { a }", async () => {
    const { errors, rows } = await load([
      stage({ name: 'odd', run: (rows) => rows.filter((row) => (row.n as number) % 2 === 1) }),
      stage({ name: 'even', from: 'parsed', run: (rows) => rows.filter((row) => (row.n as number) % 2 === 0) }),
      stage({ name: 'all', from: ['even', 'odd'], run: ({ odd, even }) => [...odd, ...even] }),
      stage({ name: 'last', from: ['all'], run: ({ all }) => all.filter((row) => row.id !== 'e') }),
    ])
    expect(errors).toEqual([])
    expect(rows.map((row) => row.id)).toEqual(['a', 'b', 'c', 'd'])
    expect(rows[0]).toEqual({ id: 'a', n: 1, status: 'open', _source_row_number: 1 })
  })

  it('a join must build each row from a row it got, and return only the columns it declares', async () => {
    const fresh = await load([
      keep('a'),
      keep('b', 'parsed'),
      stage({ name: 'c', from: ['a', 'b'], run: ({ a }) => a.map((row) => ({ id: row.id, n: row.n, status: row.status })) }),
    ])
    expect(fresh.summary).toMatchObject({ committed: 0, failed: 1 })
    expect(fresh.errors).toEqual([
      'incoming/a.csv:2: stage "c" returned row 1 as a new object; it reads several stages (a, b), so no row\'s place says where it came from: build it from the row it comes from ({ ...row, … }) so it keeps its source line',
    ])
    expect(fresh.rows).toEqual([])
    const extra = await load([keep('a'), keep('b', 'parsed'), stage({ name: 'c', from: ['a', 'b'], run: ({ a }) => a.map((row) => (row.id === 'd' ? { ...row, extra: 1 } : row)) })])
    expect(extra.errors).toEqual(['incoming/a.csv:5: stage "c" returned column "extra", which it does not receive; a stage that adds, renames or drops columns declares the columns it returns'])
  })

  it('refuses a graph that cannot feed one table, naming the stages', () => {
    expect(configProblem([keep('a', ['parsed', 'c']), keep('b'), keep('c')])).toContain('pipelines[0].stages: the stages form a cycle: b → c → a → b')
    expect(configProblem([keep('a'), keep('b', ['a', 'b'])])).toContain('pipelines[0].stages: the stages form a cycle: b → b')
    expect(configProblem([keep('a'), keep('b', 'parsed')])).toContain(
      `pipelines[0].stages: the table is fed by one last stage, but "a" and "b" are each read by no other stage; join them in a stage that reads them all (\`from: ['a', 'b']\`), or set \`from\` so that one reads the other`,
    )
    expect(configProblem([keep('a'), keep('b', 'parsed'), keep('c', 'a'), keep('d', ['b', 'c']), keep('e', 'a')])).toContain('"d" and "e" are each read by no other stage')
    expect(configProblem([keep('a'), keep('b', ['a', 'nope'])])).toContain(`pipelines[0].stages[1].from: no stage is named "nope" (stages: a, b); "parsed" reads the file's parsed rows`)
    expect(configProblem([keep('a'), keep('b', ['a', 'a'])])).toContain('pipelines[0].stages[1].from: "a" is named twice')
    expect(configProblem([keep('parsed')])).toContain(`pipelines[0].stages[0].name: "parsed" names the file's parsed rows (\`from: 'parsed'\`); name the stage otherwise`)
    expect(configProblem([{ ...keep('a'), from: [] } as unknown as Stage])).toContain('pipelines[0].stages[0].from: expected at least one stage name')
  })

  it('a join reading stages with different columns declares its own', () => {
    const wider = stage({ name: 'wider', columns: { id: 'string', n: 'integer', status: 'string', x: 'float' }, run: (rows) => rows.map((row) => ({ ...row, x: 1 })) })
    expect(configProblem([wider, keep('plain', 'parsed'), keep('both', ['wider', 'plain'])])).toContain(
      'pipelines[0].stages[2].columns: stage "both" reads stages whose columns differ (wider: id, n, status, x; plain: id, n, status); declare the columns it returns',
    )
    const retyped = stage({ name: 'retyped', columns: { id: { type: 'string', required: true }, n: 'float', status: 'string' }, run: (rows) => rows })
    expect(configProblem([retyped, keep('plain', 'parsed'), keep('both', ['retyped', 'plain'])])).toContain(
      'stage "both" reads stages whose columns differ (retyped: id string required, n float, status string; plain: id string required, n integer, status string)',
    )
    const declared = stage({ name: 'both', from: ['wider', 'plain'], columns: { id: 'string', x: 'float' }, run: ({ wider }) => wider.map(({ id, x }) => ({ id, x })) })
    expect(configProblem([wider, keep('plain', 'parsed'), declared])).toBe('accepted')
  })

  it('resolves the stages in an order they can run in: each after the stages it reads', () => {
    const config = configFor(project({}), [keep('c', ['a', 'b']), keep('a', 'parsed'), keep('b', 'parsed')])
    const [pipeline] = config.pipelines
    expect(pipeline!.stages.map((resolved) => [resolved.name, resolved.from])).toEqual([
      ['a', ['parsed']],
      ['b', ['parsed']],
      ['c', ['a', 'b']],
    ])
  })

  it("an edit of one branch moves its hash and the join's, not the other branch's; whyStale names it for the join", () => {
    const dir = project({})
    const diamond = (factor: number) =>
      configFor(dir, [
        stage({ name: 'a', run: (rows) => rows }),
        stage({ name: 'b', from: 'parsed', columns: { id: 'string', n: 'integer', status: 'string' }, inputs: { factor }, run: (rows, { inputs }) => rows.map((row) => ({ ...row, n: (row.n as number) * (inputs.factor as number) })) }),
        stage({ name: 'c', from: ['a', 'b'], columns: { id: 'string', n: 'integer', status: 'string' }, run: ({ a, b }) => [...a, ...b] }),
      ]).pipelines[0]!
    const before = pipelineCode(diamond(2))!
    const after = pipelineCode(diamond(3))!
    const hash = (code: typeof before, name: string) => code.stages.find((version) => version.name === name)!.hash
    expect(hash(after, 'a')).toBe(hash(before, 'a'))
    expect(hash(after, 'b')).not.toBe(hash(before, 'b'))
    expect(hash(after, 'c')).not.toBe(hash(before, 'c'))
    expect(after.code).toBe(hash(after, 'c'))
    expect(pipelineCode(diamond(2))!.code).toBe(before.code)
    expect(before.stages.find((version) => version.name === 'c')!.components).toMatchObject({ 'parent:0': hash(before, 'a'), 'parent:1': hash(before, 'b') })
    expect(whyStale(after, before.stages, 'c')).toEqual(['stage "b": input factor changed'])
    expect(whyStale(after, before.stages, 'b')).toEqual(['input factor changed'])
    expect(whyStale(after, before.stages, 'a')).toEqual([])
  })
})
