import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, PG_URL, pgQuery } from './helpers/postgres.js'
import { workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

const CSV = 'order_id,amount,order_date\nA1,10.50,2024-05-01\nA2,3.25,2024-05-02\n'

describe('filedge init', () => {
  it('scaffolds a config on the local preset, a source folder and a .gitignore entry; the config loads files', async () => {
    ws = workspace({ '.gitignore': 'node_modules/' })
    const init = await ws.cli(['init'])
    expect(init.code).toBe(0)
    expect(init.stdout).toContain('created filedge.config.ts')
    expect(ws.exists('incoming/.gitkeep')).toBe(true)
    expect(readFileSync(ws.file('.gitignore'), 'utf8')).toBe('node_modules/\n.filedge/\n')
    const config = readFileSync(ws.file('filedge.config.ts'), 'utf8')
    expect(config).toContain("import { local } from 'filedge/presets/local'")
    // The placeholder column matches this file, so the scaffold loads as written.
    ws.write('incoming/a.csv', 'id\nx\ny\n')
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/committed 1 .* rows 2/)
    expect(ws.exists('.filedge/warehouse.duckdb')).toBe(true)
    expect(ws.exists('.filedge/ledger.db')).toBe(true)
  })

  it('infers the columns from a file already in the source folder', async () => {
    ws = workspace({ 'drops/orders/2024-05-01.csv': CSV })
    const init = await ws.cli(['init', '--source', 'drops/orders', '--table', 'orders'])
    expect(init.code).toBe(0)
    const config = readFileSync(ws.file('filedge.config.ts'), 'utf8')
    expect(config).toContain('Inferred from drops/orders/2024-05-01.csv')
    expect(config).toContain("amount: { type: 'decimal', precision: 18, scale: 2 },")
    expect(config).toContain("order_date: 'date',")
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/committed 1 .* rows 2/)
  })

  it('refuses to overwrite an existing config, of any kind', async () => {
    for (const [name, content] of [
      ['filedge.config.ts', 'export default {}'],
      ['.filedgerc.json', '{}'],
      ['package.json', JSON.stringify({ name: 'x', filedge: {} })],
    ]) {
      ws = workspace({ [name]: content })
      const result = await ws.cli(['init'])
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(`${name} already exists; filedge init never overwrites a config`)
      expect(readFileSync(ws.file(name), 'utf8')).toBe(content)
      ws.remove()
    }
    ws = undefined
  })

  it('rejects an unknown preset', async () => {
    ws = workspace()
    const result = await ws.cli(['init', '--preset', 'oracle'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--preset: expected one of local, postgres; got "oracle"')
    expect(ws.exists('filedge.config.ts')).toBe(false)
  })
})

describePostgres('the postgres preset', () => {
  let schema: string
  afterEach(async () => {
    await dropSchema(schema)
  })

  it('puts the ledger and the destination in Postgres from one URL', async () => {
    schema = freshSchema('filedge_preset')
    ws = workspace({
      'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { postgresPreset } from 'filedge/presets/postgres'
export default defineConfig({
  presets: [postgresPreset({ url: env('WAREHOUSE_URL'), ledger: env('LEDGER_URL'), schema: ${JSON.stringify(schema)} })],
  pipelines: [{ name: 'orders', source: 'incoming', table: 'orders', columns: { order_id: 'string', amount: { type: 'decimal', precision: 12, scale: 2 }, order_date: 'date' } }],
})`,
      'incoming/a.csv': CSV,
    })
    const env = { WAREHOUSE_URL: PG_URL, LEDGER_URL: ledgerUrl(schema) }
    const run = await ws.cli(['--reporter', 'simple'], { env })
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const rows = await pgQuery(`SELECT order_id, amount::text AS amount, order_date::text AS order_date FROM "${schema}".orders ORDER BY order_id`)
    expect(rows).toEqual([
      { order_id: 'A1', amount: '10.50', order_date: '2024-05-01' },
      { order_id: 'A2', amount: '3.25', order_date: '2024-05-02' },
    ])
    const status = JSON.parse((await ws.cli(['status', '--json'], { env })).stdout)
    expect(status.pipelines[0]).toMatchObject({ pipeline: 'orders', COMMITTED: 1 })
    expect(ws.exists('.filedge')).toBe(false)
  })
})
