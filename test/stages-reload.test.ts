import { afterEach, describe, expect, it } from 'vitest'
import { exited, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Provenance of code, through the real CLI: every load records the hash of
 * the stages it ran under; an edit that changes what a stage computes makes
 * exactly the files loaded before it stale (`filedge status`, `filedge
 * stages --why` says what changed), and `filedge reload --stale` replaces
 * exactly their rows, each file atomically, even when killed midway.
 */

const workspaces: Workspace[] = []
afterEach(() => {
  for (const ws of workspaces.splice(0)) ws.remove()
})

/** The stage code, with what an edit changes as parameters. `PAUSE=1` makes it hang on a file's third batch (for the kill test). */
function config(options: { factor: number; comment?: string; threshold?: number; layout?: boolean; top?: string }): string {
  const body = options.layout
    ? `rows.map((row) => ({
        // the same computation, laid out differently
        ...row,
        twice: (row.n) * ${options.factor},
      }))`
    : `rows.map((row) => ({ ...row, twice: row.n * ${options.factor} }))`
  return `import { defineConfig, stage } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { writeFileSync } from 'node:fs'
${options.comment ?? ''}
const batches = new Map()
export default defineConfig({
  ${options.top ?? ''}
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    batchSize: 1000,
    columns: { id: { type: 'string', required: true }, n: 'integer' },
    stages: [
      stage({
        name: 'big',
        inputs: { threshold: ${options.threshold ?? 0} },
        run: async (rows, { inputs, file }) => {
          const seen = (batches.get(file.hash) ?? 0) + 1
          batches.set(file.hash, seen)
          if (process.env.PAUSE === '1' && seen === 3) {
            writeFileSync('paused', file.path)
            await new Promise(() => {})
          }
          return rows.filter((row) => row.n > inputs.threshold)
        },
      }),
      stage({
        name: 'twice',
        columns: { id: 'string', n: 'integer', twice: 'integer' },
        run: (rows) => ${body},
      }),
    ],
  }],
})
`
}

const csv = (label: string, rows: number) => `id,n\n${Array.from({ length: rows }, (_, i) => `${label}-${i + 1},${i + 1}`).join('\n')}\n`

interface Status {
  pipelines: { pipeline: string; COMMITTED: number; stale?: number }[]
}

async function json<T>(ws: Workspace, args: string[]): Promise<T> {
  const result = await ws.cli([...args, '--json'])
  if (result.code !== 0) throw new Error(`filedge ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

/** Per file: rows, and how many rows have twice = n × factor for each factor seen. */
function tableByFile(ws: Workspace): Record<string, { rows: number; factors: Record<string, number> }> {
  const found = ws.query<{ file: string; factor: number; rows: number }>(
    'warehouse.db',
    `SELECT substr(_source_file_hash, 1, 12) AS file, twice / n AS factor, count(*) AS rows FROM orders GROUP BY 1, 2 ORDER BY 1, 2`,
  )
  const out: Record<string, { rows: number; factors: Record<string, number> }> = {}
  for (const { file, factor, rows } of found) {
    out[file] ??= { rows: 0, factors: {} }
    out[file].rows += rows
    out[file].factors[String(factor)] = rows
  }
  return out
}

const ingestedAt = (ws: Workspace) =>
  Object.fromEntries(ws.query<{ file: string; at: string }>('warehouse.db', 'SELECT substr(_source_file_hash, 1, 12) AS file, max(_ingested_at) AS at FROM orders GROUP BY 1').map(({ file, at }) => [file, at]))

describe('stages: stale files and reload --stale', () => {
  it('an edit that changes the output makes the loaded files stale; comment and layout edits do not; reload rewrites exactly them', async () => {
    const ws = workspace({ 'filedge.config.ts': config({ factor: 2 }), 'incoming/a.csv': csv('a', 50), 'incoming/b.csv': csv('b', 30) })
    workspaces.push(ws)
    expect((await ws.cli(['--json'])).code).toBe(0)
    expect((await json<Status>(ws, ['status'])).pipelines).toMatchObject([{ pipeline: 'orders', COMMITTED: 2, stale: 0 }])

    // Comments, and the same computation laid out another way: nothing is stale.
    ws.write('filedge.config.ts', config({ factor: 2, comment: '// a note about the pipeline\n/* and a block */', layout: true }))
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(0)

    // Multiply by 3: both files are stale, and `stages --why` says it is the code of run in stage "twice".
    ws.write('filedge.config.ts', config({ factor: 3 }))
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(2)
    const human = await ws.cli(['status'])
    expect(human.stdout).toContain('2 committed files hold rows an older version of the stages produced; `filedge stages` says why, `filedge reload --stale` reloads them')
    const why = await json<{ pipelines: { stale: number; stages: { name: string }[]; why: { files: number; changes: string[] }[] }[] }>(ws, ['stages', '--why', 'twice'])
    expect(why.pipelines[0]!.stale).toBe(2)
    expect(why.pipelines[0]!.stages.map((stage) => stage.name)).toEqual(['big', 'twice'])
    expect(why.pipelines[0]!.why).toHaveLength(1)
    expect(why.pipelines[0]!.why[0]!.files).toBe(2)
    expect(why.pipelines[0]!.why[0]!.changes.join('\n')).toMatch(/code/)
    // Asked about the stage before it: nothing changed there.
    const before = await ws.cli(['stages', '--why', 'big'])
    expect(before.stdout).toContain('nothing changed in "big" or before it')

    // A file that lands after the edit is loaded under the new code, and is not stale.
    ws.write('incoming/c.csv', csv('c', 20))
    expect((await ws.cli(['--json'])).code).toBe(0)
    const cBefore = ingestedAt(ws)
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(2)

    const reloaded = await ws.cli(['reload', '--stale', '--json'])
    expect(reloaded.code, reloaded.stdout + reloaded.stderr).toBe(0)
    const summary = JSON.parse(reloaded.stdout.trim().split('\n').at(-1)!) as { committed: number; rows: number }
    expect(summary).toMatchObject({ committed: 2, rows: 80 })
    const tables = tableByFile(ws)
    expect(Object.values(tables).map((file) => file.rows).sort((a, b) => a - b)).toEqual([20, 30, 50])
    // Every row now computed by the new code; c.csv was not touched (same ingestion time).
    for (const file of Object.values(tables)) expect(file.factors).toEqual({ '3': file.rows })
    const after = ingestedAt(ws)
    const untouched = Object.keys(after).filter((file) => after[file] === cBefore[file])
    expect(untouched).toHaveLength(1)
    expect(tables[untouched[0]!]!.rows).toBe(20)
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(0)
    expect((await ws.cli(['reload', '--stale'])).stdout).toContain('no stale files')
  })

  it('a declared input changes the hash, and the reload applies it (a stage that now filters rows out)', async () => {
    const ws = workspace({ 'filedge.config.ts': config({ factor: 2 }), 'incoming/a.csv': csv('a', 50) })
    workspaces.push(ws)
    expect((await ws.cli(['--json'])).code).toBe(0)
    ws.write('filedge.config.ts', config({ factor: 2, threshold: 40 }))
    const why = await ws.cli(['stages', '--why', 'twice'])
    expect(why.stdout).toMatch(/stage "big": .*input threshold/)
    expect((await ws.cli(['reload', '--stale', '--json'])).code).toBe(0)
    expect(tableByFile(ws)).toEqual({ [Object.keys(tableByFile(ws))[0]!]: { rows: 10, factors: { '2': 10 } } })
  })

  it('a truncate pipeline: only the file the table holds is stale, and the reload replaces the table with it again', async () => {
    const truncate = (factor: number) => config({ factor }).replace("batchSize: 1000,", "batchSize: 1000,\n    writeMode: 'truncate',")
    const ws = workspace({ 'filedge.config.ts': truncate(2), 'incoming/a.csv': csv('a', 50) })
    workspaces.push(ws)
    expect((await ws.cli(['--json'])).code).toBe(0)
    ws.write('incoming/b.csv', csv('b', 30))
    expect((await ws.cli(['--json'])).code).toBe(0)
    ws.write('filedge.config.ts', truncate(3))
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(1)
    const reloaded = await ws.cli(['reload', '--stale', '--json'])
    expect(reloaded.code, reloaded.stdout + reloaded.stderr).toBe(0)
    expect(ws.query('warehouse.db', "SELECT count(*) AS rows, sum(twice = n * 3) AS recomputed, sum(id LIKE 'b-%') AS from_b FROM orders")).toEqual([{ rows: 30, recomputed: 30, from_b: 30 }])
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(0)
  })

  it('killed in the middle of a reload: every file holds either its old rows or its new ones, never a mix; the next reload finishes', async () => {
    // A short lease, so the killed worker's claim expires quickly.
    const top = "lease: { ttl: '2s', heartbeat: '500ms' },"
    const ws = workspace({ 'filedge.config.ts': config({ factor: 2, top }), 'incoming/a.csv': csv('a', 5000), 'incoming/b.csv': csv('b', 5000) })
    workspaces.push(ws)
    expect((await ws.cli(['--json'])).code).toBe(0)
    ws.write('filedge.config.ts', config({ factor: 3, top }))
    const child = ws.spawn(['reload', '--stale', '--json'], { env: { PAUSE: '1' } })
    await waitFor(() => ws.exists('paused'), 30_000, 'the reload to reach a third batch')
    child.kill('SIGKILL')
    await exited(child)
    const mid = tableByFile(ws)
    for (const file of Object.values(mid)) {
      expect(file.rows).toBe(5000)
      expect(Object.keys(file.factors)).toHaveLength(1)
    }
    // The file the killed worker held is PROCESSING until its lease expires; then the next reload takes it over.
    for (const deadline = Date.now() + 30_000; ; ) {
      const { pipelines } = await json<{ pipelines: { PROCESSING: number; expired: number }[] }>(ws, ['status'])
      if (pipelines[0]!.PROCESSING === pipelines[0]!.expired) break
      if (Date.now() > deadline) throw new Error('the killed reload\'s lease did not expire within 30 s')
    }
    const finished = await ws.cli(['reload', '--stale', '--json'])
    expect(finished.code, finished.stdout + finished.stderr).toBe(0)
    for (const file of Object.values(tableByFile(ws))) expect(file).toEqual({ rows: 5000, factors: { '3': 5000 } })
    expect((await json<Status>(ws, ['status'])).pipelines[0]!.stale).toBe(0)
  })
})

describe('filedge validate with stages', () => {
  it("runs the file's good rows through the stages and reports the first stage error, writing nothing", async () => {
    const config = (run: string) => `import { defineConfig, stage } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default defineConfig({
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    columns: { id: { type: 'string', required: true }, n: 'integer' },
    stages: [stage({ name: 'enrich', run: ${run} })],
  }],
})
`
    const ws = workspace({ 'filedge.config.ts': config('(rows) => rows'), 'incoming/a.csv': csv('a', 5) })
    workspaces.push(ws)
    const good = await ws.cli(['validate', 'incoming/a.csv'])
    expect(good.code, good.stdout + good.stderr).toBe(0)
    ws.write('filedge.config.ts', config("(rows) => rows.map((row) => (row.n === 4 ? { ...row, extra: true } : row))"))
    const bad = await ws.cli(['validate', 'incoming/a.csv'])
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain('incoming/a.csv:5: stage "enrich" returned column "extra", which it does not receive')
    expect(ws.exists('warehouse.db')).toBe(false)
  })
})
