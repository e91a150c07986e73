import { afterEach, describe, expect, it } from 'vitest'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * `filedge config`: what a preset author needs to see, the config as a run
 * will use it, with presets applied, defaults filled in, secrets redacted,
 * and where each set value came from.
 */

let ws: Workspace | undefined
afterEach(() => ws?.remove())

const PRESET = `import { definePreset } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
export default definePreset({
  name: 'acme',
  lease: { ttl: '2m' },
  plugins: [{ name: 'acme-stamp', apply() {} }],
  defaults: { destination: sqlite({ path: 'state/warehouse.db' }), retry: { attempts: 5 }, columns: { tenant: { type: 'string', required: true } } },
})
`

const CONFIG = `import { defineConfig, env } from 'filedge'
import acme from './acme-preset.ts'
export default defineConfig({
  presets: [acme],
  ledger: env('LEDGER_URL'),
  disablePlugins: ['filedge:stat-cache'],
  pipelines: [{ name: 'orders', source: { dir: 'incoming', include: ['*.csv'] }, table: 'orders', columns: { id: 'integer' }, batchSize: 500 }],
})
`

describe('filedge config', () => {
  it('prints the resolved config with where each value came from, the ledger password redacted', async () => {
    ws = workspace({ 'acme-preset.ts': PRESET, 'filedge.config.ts': CONFIG })
    const env = { LEDGER_URL: 'postgres://loader:s3cret-ledger-pw@db.internal:5432/filedge' }
    const human = await ws.cli(['config'], { env })
    expect(human.stderr).toBe('')
    expect(human.code).toBe(0)
    expect(human.stdout).not.toContain('s3cret-ledger-pw')
    expect(human.stdout).toMatch(/ledger\s+postgres:\/\/loader:\*+@db\.internal:5432\/filedge.*\(schema filedge\)\s+← config/)
    expect(human.stdout).toMatch(/lease\s+ttl 120000 ms, heartbeat 40000 ms\s+← preset "acme"/)
    expect(human.stdout).toMatch(/plugins\s+acme-stamp \(preset "acme"\)/)
    expect(human.stdout).toMatch(/disabled\s+filedge:stat-cache/)
    expect(human.stdout).toMatch(/destination\s+sqlite .*state\/warehouse\.db\s+← preset "acme"/)
    expect(human.stdout).toMatch(/ {4}tenant\s+string required\s+← preset "acme"/)
    expect(human.stdout).toMatch(/ {4}id\s+integer\s+← config/)
    expect(human.stdout).toMatch(/retry\s+5 attempts, 5 lapses\s+← preset "acme"/)
    expect(human.stdout).toMatch(/batchSize\s+500\s+← config/)

    const json = await ws.cli(['config', '--json'], { env })
    expect(json.code).toBe(0)
    expect(json.stdout).not.toContain('s3cret-ledger-pw')
    const view = JSON.parse(json.stdout) as {
      pipelines: { source: { name: string; where: string; from: string }; destination: { from: string }; columns: { name: string; from: string }[]; concurrency: number }[]
      concurrency: { value: number; from: string }
    }
    expect(view.pipelines[0].source).toEqual({ name: 'local', where: 'incoming', from: 'config' })
    expect(view.pipelines[0].destination.from).toBe('preset "acme"')
    expect(view.pipelines[0].columns.map((column) => [column.name, column.from])).toEqual([
      ['tenant', 'preset "acme"'],
      ['id', 'config'],
    ])
    expect(view.concurrency).toEqual({ value: 4, from: 'default' })
  })

  it('is a config error (exit 2) for a config that does not resolve', async () => {
    ws = workspace({ 'filedge.config.ts': "export default { pipelines: [{ name: 'x', source: 'in', table: 't', columns: { id: 'strng' } }] }\n" })
    const result = await ws.cli(['config'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].columns.id.type: expected one of')
  })
})
