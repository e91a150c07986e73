import { execFileSync } from 'node:child_process'
import { symlinkSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { applyPresets } from '../core/config/presets.js'
import { resolveConfig } from '../core/config/resolve.js'
import type { Plugin, Preset, UserConfig } from '../core/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { REPO_ROOT, workspace, type Workspace } from './helpers/workspace.js'

const plugin = (name: string, tag = name): Plugin & { tag: string } => ({ name, tag, apply() {} })
const destination = sqlite({ path: 'w.db' })
const pipeline = { name: 'orders', source: 'incoming', table: 'orders', columns: { id: 'string' } } as const

function merged(config: Omit<UserConfig, 'pipelines'> & { pipelines?: UserConfig['pipelines'] }) {
  return applyPresets({ pipelines: [{ ...pipeline, destination }], ...config } as UserConfig)
}

describe('preset resolution', () => {
  it('goes depth-first through extends, applies each preset once, later wins, config wins over all', () => {
    const base: Preset = { name: 'base', concurrency: 1, lease: { ttl: '10s' }, plugins: [plugin('a', 'base-a')] }
    const left: Preset = { name: 'left', extends: [base], concurrency: 2, plugins: [plugin('b')] }
    const right: Preset = { name: 'right', extends: [base], plugins: [plugin('a', 'right-a'), plugin('c')] }
    const { config } = merged({ presets: [left, right], plugins: [plugin('d')] })
    expect(config.concurrency).toBe(2)
    expect(config.lease).toEqual({ ttl: '10s' })
    // base once (diamond), later "a" replaces the earlier one, config plugins last.
    expect((config.plugins as (Plugin & { tag: string })[]).map((p) => p.tag)).toEqual(['b', 'right-a', 'c', 'd'])
    expect(merged({ presets: [left, right], concurrency: 7 }).config.concurrency).toBe(7)
  })

  it('supplies pipeline defaults that the pipeline overrides key by key', () => {
    const preset: Preset = {
      name: 'conventions',
      defaults: {
        destination,
        retry: { attempts: 5 },
        format: { type: 'csv', delimiter: ';', encoding: 'latin1' },
        columns: { tenant: { type: 'string', required: true }, id: 'integer' },
        unknownColumns: 'ignore',
      },
    }
    const resolved = resolveConfig({
      presets: [preset],
      pipelines: [
        { ...pipeline, format: { type: 'csv', delimiter: '|' } },
        { ...pipeline, name: 'other', retry: { attempts: 1 }, unknownColumns: 'error' },
      ],
    })
    const [first, second] = resolved.pipelines
    expect(first.destination).toBe(destination)
    expect(first.format).toEqual({ type: 'csv', options: { delimiter: '|', encoding: 'latin1' } })
    expect(first.retry.attempts).toBe(5)
    expect(first.unknownColumns).toBe('ignore')
    expect(first.columns.map((c) => [c.name, c.type, c.required])).toEqual([
      ['tenant', 'string', true],
      ['id', 'string', false],
    ])
    expect(second.retry.attempts).toBe(1)
    expect(second.unknownColumns).toBe('error')
  })

  it('disablePlugins removes plugins added before it, and warns with the known names when a name matches nothing', () => {
    const base: Preset = { name: 'base', plugins: [plugin('a'), plugin('b')] }
    const child: Preset = { name: 'child', extends: [base], disablePlugins: ['a', 'nope'] }
    const { config, warnings } = merged({ presets: [child], disablePlugins: ['b', 'zzz'] })
    expect(config.plugins).toEqual([])
    expect(warnings).toEqual([
      'preset "child": disablePlugins "nope" matches no plugin; known plugins: a, b',
      'config: disablePlugins "zzz" matches no plugin; known plugins: b',
    ])
    // A plugin the config adds itself is not affected by its own disablePlugins.
    expect(merged({ presets: [base], disablePlugins: ['a'], plugins: [plugin('a', 'mine')] }).config.plugins).toMatchObject([{ name: 'b' }, { tag: 'mine' }])
  })

  it('reports a cycle with the whole chain', () => {
    const a: Preset = { name: 'a', extends: [] }
    const b: Preset = { name: 'b', extends: [a] }
    a.extends = [b]
    expect(() => merged({ presets: [a] })).toThrow('preset cycle: a → b → a')
  })

  it('validates presets strictly, naming the preset', () => {
    expect(() => merged({ presets: [{ name: 'acme', defaults: { retyr: { attempts: 2 } } } as unknown as Preset] })).toThrow(
      /presets\[0\] \("acme"\)\.defaults\.retyr: unknown key/,
    )
  })
})

let ws: Workspace | undefined
afterEach(() => ws?.remove())

describe('a preset shared as an npm package', () => {
  it('is installed with a file: dependency and a config that uses it runs end to end', async () => {
    ws = workspace({
      'vendor/acme-filedge-preset/package.json': JSON.stringify({ name: 'acme-filedge-preset', version: '1.0.0', type: 'module', main: 'index.js' }),
      'vendor/acme-filedge-preset/base.js': `import { definePreset } from 'filedge'
export default definePreset({ name: 'acme-base', defaults: { retry: { attempts: 1 }, columns: { tenant: { type: 'string', required: true } } } })`,
      'vendor/acme-filedge-preset/index.js': `import { definePreset } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import base from './base.js'
export default definePreset({
  name: 'acme',
  extends: [base],
  ledger: 'sqlite:state/ledger.db',
  defaults: { destination: sqlite({ path: 'state/warehouse.db' }), format: { type: 'csv', delimiter: ';' } },
  plugins: [{ name: 'acme-stamp', apply({ hooks }) { hooks.afterRun.tapPromise('acme-stamp', async (s) => { console.log('acme saw ' + s.committed + ' files') }) } }],
})`,
      'package.json': JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }),
      'filedge.config.ts': `import { defineConfig } from 'filedge'
export default defineConfig({
  presets: ['acme-filedge-preset'],
  pipelines: [{ name: 'orders', source: 'incoming', table: 'orders', columns: { id: 'integer' } }],
})`,
      'incoming/a.csv': 'tenant;id\nt1;1\nt1;2\n',
    })
    // npm prunes what package.json does not list, so link filedge back after installing the preset.
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--save', 'file:vendor/acme-filedge-preset'], { cwd: ws.dir, stdio: 'pipe' })
    symlinkSync(REPO_ROOT, ws.file('node_modules/filedge'), 'dir')
    expect(JSON.parse(execFileSync('cat', [ws.file('package.json')]).toString()).dependencies).toEqual({ 'acme-filedge-preset': 'file:vendor/acme-filedge-preset' })

    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('acme saw 1 files')
    expect(ws.query('state/warehouse.db', 'SELECT tenant, id FROM orders ORDER BY id')).toEqual([
      { tenant: 't1', id: 1 },
      { tenant: 't1', id: 2 },
    ])
    expect(ws.exists('state/ledger.db')).toBe(true)
  })
})
