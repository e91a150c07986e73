import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * A diamond of stages through the real CLI: parsed → open, parsed → label,
 * joined from ['open', 'label']. What `filedge stages` shows (each stage's
 * parents), what an edit of one branch makes stale and why, and how kept
 * outputs replace the parse only when they cut every way from the parsed
 * rows to the last stage.
 */

const workspaces: Workspace[] = []
afterEach(() => {
  for (const ws of workspaces.splice(0)) ws.remove()
})

interface Options {
  /** Stages declared `cache: true` (the cache plugin is on when any is). */
  readonly cached?: readonly string[]
  /** What label puts before the status. */
  readonly prefix?: string
  /** What joined multiplies n by. */
  readonly factor?: number
}

function config(options: Options = {}): string {
  const cached = (name: string) => (options.cached?.includes(name) ? 'cache: true,' : '')
  const withCache = (options.cached ?? []).length > 0
  return `import { defineConfig, stage } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { cache } from 'filedge/plugins/cache'
import { appendFileSync } from 'node:fs'

// Reads every row, then fails as a warehouse dropping the connection at COMMIT would (REFUSE=1).
const refuse = { name: 'refuse', enforce: 'pre', apply({ hooks }) {
  hooks.commit.tapPromise({ name: 'refuse', stage: -1000 }, async (job) => {
    if (process.env.REFUSE !== '1') return undefined
    for await (const batch of job.batches) void batch
    throw new Error('the connection dropped at COMMIT')
  })
} }

export default defineConfig({
  plugins: [${withCache ? "cache({ dir: '.cache' }), " : ''}refuse],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    batchSize: 2,
    columns: { id: { type: 'string', required: true }, n: 'integer', status: 'string' },
    stages: [
      stage({
        name: 'open',
        ${cached('open')}
        run: (rows) => {
          appendFileSync('runs.log', 'open\\n')
          return rows.filter((row) => row.status === 'open')
        },
      }),
      stage({
        name: 'label',
        from: 'parsed',
        ${cached('label')}
        columns: { id: 'string', label: 'string' },
        run: (rows) => {
          appendFileSync('runs.log', 'label\\n')
          return rows.map(({ n, status, ...row }) => ({ ...row, label: '${options.prefix ?? '#'}' + status }))
        },
      }),
      stage({
        name: 'joined',
        from: ['open', 'label'],
        ${cached('joined')}
        columns: { id: 'string', n: 'integer', label: 'string' },
        run: ({ open, label }) => {
          appendFileSync('runs.log', 'joined\\n')
          const labels = new Map(label.map((row) => [row.id, row.label]))
          return open.map(({ status, ...row }) => ({ ...row, n: row.n * ${options.factor ?? 1}, label: labels.get(row.id) }))
        },
      }),
    ],
  }],
})
`
}

const CSV = 'id,n,status\na,1,open\nb,2,closed\nc,3,open\nd,4,open\ne,5,closed\n'

/** How many times each stage ran, from the log the stages write. */
function runs(ws: Workspace): Record<string, number> {
  const counts: Record<string, number> = {}
  if (!ws.exists('runs.log')) return counts
  for (const name of readFileSync(ws.file('runs.log'), 'utf8').trim().split('\n')) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

const table = (ws: Workspace) => ws.query('warehouse.db', 'SELECT id, n, label, _source_row_number FROM orders ORDER BY _source_row_number')

async function json<T>(ws: Workspace, args: string[]): Promise<T> {
  const result = await ws.cli([...args, '--json'])
  if (result.code !== 0) throw new Error(`filedge ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

interface StagesReport {
  pipelines: { code: string; stale: number; stages: { name: string; from: string | null | string[]; parents: string[]; hash: string; columns: string[] }[]; why?: { changes: string[] }[] }[]
}

describe('a diamond of stages through the CLI', () => {
  it('loads the joined rows, each stage run once per batch; `filedge stages` shows each stage\'s parents; an edit of one branch is named and reloaded', async () => {
    const ws = workspace({ 'filedge.config.ts': config(), 'incoming/a.csv': CSV })
    workspaces.push(ws)
    const loaded = await ws.cli(['--json'])
    expect(loaded.code, loaded.stdout + loaded.stderr).toBe(0)
    expect(table(ws)).toEqual([
      { id: 'a', n: 1, label: '#open', _source_row_number: 1 },
      { id: 'c', n: 3, label: '#open', _source_row_number: 3 },
      { id: 'd', n: 4, label: '#open', _source_row_number: 4 },
    ])
    // Five rows in batches of two: three batches.
    expect(runs(ws)).toEqual({ open: 3, label: 3, joined: 3 })

    const report = await json<StagesReport>(ws, ['stages'])
    expect(report.pipelines[0]!.stages.map(({ name, from, parents, columns }) => ({ name, from, parents, columns }))).toEqual([
      { name: 'open', from: null, parents: ['parsed'], columns: ['id', 'n', 'status'] },
      { name: 'label', from: null, parents: ['parsed'], columns: ['id', 'label'] },
      { name: 'joined', from: ['open', 'label'], parents: ['open', 'label'], columns: ['id', 'n', 'label'] },
    ])
    expect(report.pipelines[0]!.code).toBe(report.pipelines[0]!.stages[2]!.hash)
    const human = await ws.cli(['stages'])
    expect(human.stdout).toMatch(/open +[0-9a-f]{12} +from the parsed rows +→ id, n, status/)
    expect(human.stdout).toMatch(/joined +[0-9a-f]{12} +from open and label +→ id, n, label/)

    // An edit of the label branch: the file is stale; asked about the join, it names label's change; asked about open, nothing.
    ws.write('filedge.config.ts', config({ prefix: '~' }))
    const edited = await json<StagesReport>(ws, ['stages', '--why', 'joined'])
    expect(edited.pipelines[0]!.stale).toBe(1)
    const hashOf = (of: StagesReport, name: string) => of.pipelines[0]!.stages.find((entry) => entry.name === name)!.hash
    expect(hashOf(edited, 'open')).toBe(hashOf(report, 'open'))
    expect(hashOf(edited, 'label')).not.toBe(hashOf(report, 'label'))
    expect(edited.pipelines[0]!.why![0]!.changes).toEqual(['stage "label": the code of run changed'])
    expect((await ws.cli(['stages', '--why', 'open'])).stdout).toContain('nothing changed in "open" or before it (a stage it does not read from changed)')

    const reloaded = await ws.cli(['reload', '--stale', '--json'])
    expect(reloaded.code, reloaded.stdout + reloaded.stderr).toBe(0)
    expect(table(ws).map((row) => (row as { label: string }).label)).toEqual(['~open', '~open', '~open'])
    expect(runs(ws)).toEqual({ open: 6, label: 6, joined: 6 })
  })
})

describe('a diamond of stages and the cache', () => {
  it('kept outputs of both branches replace the parse: a retry runs the join alone, and a reload after an edit of the join too', async () => {
    const ws = workspace({ 'filedge.config.ts': config({ cached: ['open', 'label'] }), 'incoming/a.csv': CSV })
    workspaces.push(ws)
    expect((await ws.cli(['--json'], { env: { REFUSE: '1' } })).code).toBe(1)
    expect(runs(ws)).toEqual({ open: 3, label: 3, joined: 3 })

    const retried = await ws.cli(['--json'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(runs(ws)).toEqual({ open: 3, label: 3, joined: 6 })
    const expected = [
      { id: 'a', n: 1, label: '#open', _source_row_number: 1 },
      { id: 'c', n: 3, label: '#open', _source_row_number: 3 },
      { id: 'd', n: 4, label: '#open', _source_row_number: 4 },
    ]
    expect(table(ws)).toEqual(expected)

    ws.write('filedge.config.ts', config({ cached: ['open', 'label'], factor: 10 }))
    const reloaded = await ws.cli(['reload', '--stale', '--json'])
    expect(reloaded.code, reloaded.stdout + reloaded.stderr).toBe(0)
    expect(runs(ws)).toEqual({ open: 3, label: 3, joined: 9 })
    expect(table(ws).map((row) => (row as { n: number }).n)).toEqual([10, 30, 40])

    // An edit of one branch: its kept output is not its output any more, so the file is parsed and every stage runs
    // (open's kept output, found first, is let go of unread).
    ws.write('filedge.config.ts', config({ cached: ['open', 'label'], factor: 10, prefix: '~' }))
    const branch = await ws.cli(['reload', '--stale', '--json'])
    expect(branch.code, branch.stdout + branch.stderr).toBe(0)
    expect(branch.stderr).not.toMatch(/warning/i)
    expect(runs(ws)).toEqual({ open: 6, label: 6, joined: 12 })
    expect(table(ws).map((row) => (row as { label: string }).label)).toEqual(['~open', '~open', '~open'])
  })

  it('a kept output on one branch only leaves a way from the parsed rows: the file is parsed and every stage runs', async () => {
    const ws = workspace({ 'filedge.config.ts': config({ cached: ['open'] }), 'incoming/a.csv': CSV })
    workspaces.push(ws)
    expect((await ws.cli(['--json'], { env: { REFUSE: '1' } })).code).toBe(1)
    const retried = await ws.cli(['--json'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(runs(ws)).toEqual({ open: 6, label: 6, joined: 6 })
    expect(table(ws)).toHaveLength(3)
  })

  it('a kept join (the last stage) runs no stage at all', async () => {
    const ws = workspace({ 'filedge.config.ts': config({ cached: ['joined'] }), 'incoming/a.csv': CSV })
    workspaces.push(ws)
    expect((await ws.cli(['--json'], { env: { REFUSE: '1' } })).code).toBe(1)
    const retried = await ws.cli(['--json'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(runs(ws)).toEqual({ open: 3, label: 3, joined: 3 })
    expect(table(ws).map((row) => (row as { id: string }).id)).toEqual(['a', 'c', 'd'])
  })
})
