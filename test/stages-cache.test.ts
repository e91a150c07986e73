import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * Stage outputs in the cache plugin, through the real CLI: a stage declared
 * `cache: true` keeps its output per file under its hash. A retry after the
 * destination failed runs no stage at all; a reload after an edit of the
 * last stage runs only that stage, reading its parent's output back; and
 * what comes back from the cache is what the computation returned.
 */

const workspaces: Workspace[] = []
afterEach(() => {
  for (const ws of workspaces.splice(0)) ws.remove()
})

function config(factor: number): string {
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
  plugins: [cache({ dir: '.cache' }), refuse],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    columns: { id: { type: 'string', required: true }, n: 'integer', note: 'json' },
    stages: [
      stage({
        name: 'enrich',
        cache: true,
        columns: { id: 'string', n: 'integer', note: 'json', big: 'boolean', tags: 'json' },
        run: (rows) => {
          appendFileSync('runs.log', 'enrich\\n')
          return rows.map((row) => ({ ...row, big: row.n > 2, tags: { parity: row.n % 2 === 0 ? 'even' : 'odd', at: [row.n, null] } }))
        },
      }),
      stage({
        name: 'score',
        cache: true,
        columns: { id: 'string', score: 'integer', big: 'boolean', tags: 'json' },
        run: (rows) => {
          appendFileSync('runs.log', 'score\\n')
          return rows.map(({ n, note, ...row }) => ({ ...row, score: n * ${factor} }))
        },
      }),
    ],
  }],
})
`
}

const runs = (ws: Workspace) => (ws.exists('runs.log') ? readFileSync(ws.file('runs.log'), 'utf8').trim().split('\n') : [])
const table = (ws: Workspace) => ws.query('warehouse.db', 'SELECT id, score, big, tags, _source_row_number FROM orders ORDER BY _source_row_number')

describe('stage outputs in the cache', () => {
  it('a retry runs no stage; a reload after an edit of the last stage runs only it; hits equal the computation', async () => {
    const ws = workspace({ 'filedge.config.ts': config(10), 'incoming/a.csv': 'id,n,note\na,1,"{""x"":1}"\nb,2,\nc,3,"[1,2]"\n' })
    workspaces.push(ws)
    const failed = await ws.cli(['--json'], { env: { REFUSE: '1' } })
    expect(failed.code).toBe(1)
    expect(runs(ws)).toEqual(['enrich', 'score'])

    const retried = await ws.cli(['--json'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    // Nothing ran: the last stage's output was read back.
    expect(runs(ws)).toEqual(['enrich', 'score'])
    const cached = table(ws)
    expect(cached).toEqual([
      { id: 'a', score: 10, big: 0, tags: '{"parity":"odd","at":[1,null]}', _source_row_number: 1 },
      { id: 'b', score: 20, big: 0, tags: '{"parity":"even","at":[2,null]}', _source_row_number: 2 },
      { id: 'c', score: 30, big: 1, tags: '{"parity":"odd","at":[3,null]}', _source_row_number: 3 },
    ])

    // The same file computed without the cache gives the same table.
    const fresh = workspace({ 'filedge.config.ts': config(10).replace("cache({ dir: '.cache' }), ", ''), 'incoming/a.csv': readFileSync(ws.file('incoming/a.csv'), 'utf8') })
    workspaces.push(fresh)
    expect((await fresh.cli(['--json'])).code).toBe(0)
    expect(table(fresh)).toEqual(cached)

    // An edit of the last stage: the reload runs it alone, on the first stage's kept output.
    ws.write('filedge.config.ts', config(100))
    const reloaded = await ws.cli(['reload', '--stale', '--json'])
    expect(reloaded.code, reloaded.stdout + reloaded.stderr).toBe(0)
    expect(runs(ws)).toEqual(['enrich', 'score', 'score'])
    expect(table(ws).map((row) => (row as { score: number }).score)).toEqual([100, 200, 300])
  })

  // The replay reads its frames into one buffer it reuses: an output of many batches and more than that buffer's 1 MiB
  // (frames across its reads, one larger than it) must load exactly the table the computation loads.
  it('a retry replaying an output of many batches loads the same rows as the computation: values, types, record numbers, provenance', async () => {
    const wide = (i: number) => (i === 4321 ? `${'é☃'.repeat(400_000)}` : `note ${i} ${'ü'.repeat(i % 300)}`)
    const lines = Array.from({ length: 9000 }, (_, i) => `r${i},${i % 7 === 0 ? '' : i * 3},${(i * 0.37).toFixed(2)},${i % 5 === 0 ? '' : `"${wide(i)}${i % 11 === 0 ? '\n second line' : ''}"`}`)
    const many = `import { defineConfig, stage } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { cache } from 'filedge/plugins/cache'
import { appendFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs'

const refuse = { name: 'refuse', enforce: 'pre', apply({ hooks }) {
  hooks.commit.tapPromise({ name: 'refuse', stage: -1000 }, async (job) => {
    if (process.env.REFUSE !== '1') return undefined
    for await (const batch of job.batches) void batch
    throw new Error('the connection dropped at COMMIT')
  })
} }

// What this process still has open in the cache once its files are done (a watch would keep it for days).
const descriptors = { name: 'descriptors', apply({ hooks }) {
  hooks.afterRun.tapPromise('descriptors', async () => {
    const open = readdirSync('/proc/self/fd').map((fd) => { try { return readlinkSync('/proc/self/fd/' + fd) } catch { return '' } })
    writeFileSync('open.log', open.filter((target) => target.includes('/.cache/')).join('\\n'))
  })
} }

export default defineConfig({
  plugins: [cache({ dir: '.cache' }), refuse, descriptors],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    batchSize: 700,
    columns: { id: { type: 'string', required: true }, n: 'integer', amount: 'float', note: 'string' },
    stages: [
      stage({ name: 'keep', run: (rows) => rows.filter((row) => !row.id.endsWith('3')) }),
      stage({ name: 'label', cache: true, columns: { id: 'string', n: 'integer', amount: 'float', note: 'string', odd: 'boolean' }, run: (rows) => {
        appendFileSync('runs.log', 'label\\n')
        return rows.map((row) => ({ ...row, odd: row.n === null ? null : row.n % 2 === 1 }))
      } }),
    ],
  }],
})
`
    const ws = workspace({ 'filedge.config.ts': many, 'incoming/a.csv': `id,n,amount,note\n${lines.join('\n')}\n` })
    workspaces.push(ws)
    const failed = await ws.cli(['--json'], { env: { REFUSE: '1' } })
    expect(failed.code, failed.stdout + failed.stderr).toBe(1)
    const entries = async () => JSON.parse((await ws.cli(['cache', 'stats', '--json'])).stdout).entries as number
    // The file's parsed rows (over 1 MiB) and the stage's output.
    expect(await entries()).toBe(2)
    const retried = await ws.cli(['--json'])
    expect(retried.code, retried.stdout + retried.stderr).toBe(0)
    expect(runs(ws)).toEqual(Array.from({ length: Math.ceil(9000 / 700) }, () => 'label'))
    // The stage's output was found when the file was loaded: its parsed rows were neither read nor opened, and once it
    // committed they were dropped (the stage's output stays, for reloads).
    const said = retried.stdout.split('\n').filter((line) => line.includes('from the cache')).map((line) => (JSON.parse(line) as { message: string }).message)
    expect(said).toEqual(['incoming/a.csv: the output of stage "label" read from the cache'])
    expect(readFileSync(ws.file('open.log'), 'utf8')).toBe('')
    expect(await entries()).toBe(1)

    const fresh = workspace({ 'filedge.config.ts': many.replace("cache({ dir: '.cache' }), ", ''), 'incoming/a.csv': readFileSync(ws.file('incoming/a.csv'), 'utf8') })
    workspaces.push(fresh)
    expect((await fresh.cli(['--json'])).code).toBe(0)
    const rows = (at: Workspace) =>
      at.query(
        'warehouse.db',
        'SELECT id, n, typeof(n) AS nType, amount, typeof(amount) AS amountType, note, odd, typeof(odd) AS oddType, _source_row_number, _source_file_hash FROM orders ORDER BY _source_row_number',
      )
    const cached = rows(ws)
    expect(cached).toHaveLength(8100)
    expect(cached).toEqual(rows(fresh))
    expect(cached[0]).toMatchObject({ id: 'r0', n: null, nType: 'null', note: null, odd: null, _source_row_number: 1 })
    expect(cached.find((row) => (row as { id: string }).id === 'r4321')).toMatchObject({ note: 'é☃'.repeat(400_000), _source_row_number: 4322 })
    expect(cached.find((row) => (row as { id: string }).id === 'r11')).toMatchObject({ n: 33, nType: 'integer', amountType: 'real', note: `${wide(11)}\n second line`, odd: 1 })
  })
})
