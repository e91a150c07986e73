import { afterEach, describe, expect, it } from 'vitest'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

const CSV = 'id,amount\nx,1.5\n'

describe('config errors', () => {
  it('a misspelled type exits 2 naming the key path, before any database is created', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string', amount: { type: 'flaot' } }" }), 'incoming/a.csv': CSV })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].columns.amount.type: expected one of string, integer, float, decimal, boolean, date, timestamp, json; got "flaot"')
    expect(ws.exists('.filedge')).toBe(false)
    expect(ws.exists('warehouse.db')).toBe(false)
  })

  it('an unknown key exits 2 with the path and a suggestion', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }", extra: "retyr: { attempts: 2 }," }), 'incoming/a.csv': CSV })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].retyr: unknown key; did you mean "retry"?')
    expect(ws.exists('.filedge')).toBe(false)
  })

  it('lists every problem at once', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: { type: 'string', requird: true }, n: 'int' }", top: 'concurrency: 0,' }),
    })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].columns.id.requird: unknown key; did you mean "required"?')
    expect(result.stderr).toContain('pipelines[0].columns.n.type: expected one of string, integer')
    expect(result.stderr).toContain('concurrency:')
  })

  it('an unset environment variable is a config error that names the variable', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ imports: "import { env } from 'filedge'", top: "ledger: env('FILEDGE_TEST_UNSET_LEDGER'),", columns: "{ id: 'string' }" }) })
    const result = await ws.cli([], { env: { FILEDGE_TEST_UNSET_LEDGER: undefined } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('ledger: environment variable FILEDGE_TEST_UNSET_LEDGER is not set')
  })

  it('a malformed ledger URL is a config error: exit 2, no stack, the password redacted', async () => {
    const ledgerWith = (value: string) => sqliteConfig({ imports: "import { env } from 'filedge'", top: `ledger: ${value},`, columns: "{ id: 'string' }" })
    const cases = [
      // An unencoded "#" ends the authority early: URL cannot parse it (it used to escape as an internal error with a stack).
      { ledger: "'postgres://loader:pa#ss word@db.internal/warehouse'", says: 'ledger: postgres://loader:***@db.internal/warehouse is not a valid URL; percent-encode' },
      // An unencoded "/" after digits parses, as host "loader" and port 12, with the rest of the password in the path.
      { ledger: "'postgres://loader:12/ss@db.internal/warehouse'", says: 'ledger: postgres://loader:***@db.internal/warehouse has an "@" after its host' },
      { ledger: "'postgres://'", says: 'ledger: postgres:// names no host' },
      { ledger: "env('FILEDGE_TEST_BAD_LEDGER')", env: { FILEDGE_TEST_BAD_LEDGER: 'postgres://loader:pa#ss@db.internal/warehouse' }, says: 'ledger: the value of FILEDGE_TEST_BAD_LEDGER is not a valid URL' },
    ]
    for (const { ledger, env, says } of cases) {
      ws?.remove()
      ws = workspace({ 'filedge.config.ts': ledgerWith(ledger), 'incoming/a.csv': 'id\nx\n' })
      for (const args of [[], ['status']]) {
        const result = await ws.cli(args, { env })
        expect(result.code, `${ledger} ${args}`).toBe(2)
        expect(result.stderr, ledger).toContain(`[filedge] invalid config: ${says}`)
        expect(result.stderr, ledger).not.toContain('internal error')
        expect(result.stderr, ledger).not.toMatch(/^\s+at /m)
        expect(result.stdout + result.stderr, ledger).not.toContain('pa#ss')
        expect(result.stdout + result.stderr, ledger).not.toContain('12/ss')
        expect(ws.exists('.filedge'), ledger).toBe(false)
      }
    }
  })

  it('a config that does not compile exits 2 naming the file', async () => {
    ws = workspace({ 'filedge.config.ts': 'export default {{ oops' })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('filedge.config.ts')
  })

  it('no config at all exits 2 and says how to create one', async () => {
    ws = workspace()
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('no filedge config found')
  })

  it('an include pattern that reaches outside source.dir is refused before anything runs', async () => {
    // The watcher never took such paths; a run globbed them and loaded the files next to the drop folder.
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string', amount: 'float' }", include: "'**/*.csv', '../outside/*.csv', '{..,x}/*.csv', '/etc/*.csv'" }),
      'incoming/a.csv': CSV,
      'outside/secret.csv': 'id,amount\nleaked,6.66\n',
    })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    for (const index of [1, 2, 3]) expect(result.stderr).toContain(`pipelines[0].source.include[${index}]: a pattern must stay inside source.dir`)
    expect(result.stderr).not.toContain('include[0]')
    expect(result.stderr).not.toContain('    at ')
    expect(ws.exists('warehouse.db')).toBe(false)
    expect(ws.exists('.filedge')).toBe(false)
  })

  it('an unknown --pipeline is a usage error', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string', amount: 'float' }" }), 'incoming/a.csv': CSV })
    const result = await ws.cli(['--pipeline', 'ordrs'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('unknown pipeline "ordrs"; the config has "orders"')
  })

  it('an unknown CLI option is a usage error', async () => {
    ws = workspace()
    const result = await ws.cli(['--no-such-flag'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("unknown option '--no-such-flag'")
  })
})

describe('config discovery', () => {
  const pipeline = (dir = 'incoming') => ({
    name: 'orders',
    source: dir,
    table: 'orders',
    columns: { id: 'string', amount: 'float' },
  })

  it.each([
    ['filedge.config.mjs', (body: string) => `import { sqlite } from 'filedge/plugins/sqlite'\nexport default ${body}`],
    ['.filedgerc.mjs', (body: string) => `import { sqlite } from 'filedge/plugins/sqlite'\nexport default ${body}`],
    ['filedge.config.mts', (body: string) => `import { sqlite } from 'filedge/plugins/sqlite'\nexport default ${body}`],
  ])('finds %s', async (name, wrap) => {
    const body = JSON.stringify({ pipelines: [pipeline()] }).replace('"table"', 'destination: sqlite({ path: "warehouse.db" }), "table"')
    ws = workspace({ [name]: wrap(body), 'incoming/a.csv': CSV })
    const result = await ws.cli()
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, amount FROM orders')).toEqual([{ id: 'x', amount: 1.5 }])
  })

  it('takes --config PATH from anywhere', async () => {
    ws = workspace({ 'conf/custom.config.ts': sqliteConfig({ columns: "{ id: 'string', amount: 'float' }" }), 'conf/incoming/a.csv': CSV })
    const result = await ws.cli(['--config', 'conf/custom.config.ts'])
    expect(result.code).toBe(0)
    // Relative paths in the config resolve against the config file's directory.
    expect(ws.query('conf/warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 1 }])
    expect(ws.exists('conf/.filedge/ledger.db')).toBe(true)
  })

  it.each(['package.json', '.filedgerc.json', 'filedge.config.json'])('a data-only config in %s names its destination as data', async (name) => {
    const config = { pipelines: [{ ...pipeline(), destination: { type: 'sqlite', path: 'warehouse.db' } }] }
    ws = workspace({ [name]: JSON.stringify(name === 'package.json' ? { name: 'x', filedge: config } : config), 'incoming/a.csv': CSV })
    const result = await ws.cli()
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, amount FROM orders')).toEqual([{ id: 'x', amount: 1.5 }])
  })

  it('a data-only config names a source plugin as data too; a source that cannot connect fails its own pipeline, the others load', async () => {
    const config = {
      pipelines: [
        { ...pipeline(), name: 'remote', table: 'remote', source: { type: 's3', bucket: 'partner', endpoint: 'http://127.0.0.1:9', forcePathStyle: true }, destination: { type: 'sqlite', path: 'warehouse.db' } },
        { ...pipeline(), destination: { type: 'sqlite', path: 'warehouse.db' } },
      ],
    }
    ws = workspace({ 'filedge.config.json': JSON.stringify(config), 'incoming/a.csv': CSV })
    const result = await ws.cli(['--reporter', 'simple'], { env: { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'not-a-real-secret-42' } })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('pipeline "remote": cannot list s3://partner/ at 127.0.0.1:9: cannot reach 127.0.0.1:9')
    expect(result.stderr + result.stdout).not.toContain('not-a-real-secret-42')
    expect(result.stdout).toContain('sources failed 1')
    expect(ws.query('warehouse.db', 'SELECT id, amount FROM orders')).toEqual([{ id: 'x', amount: 1.5 }])
  })

  it("a plugin whose apply throws (a misspelt hook) is a config error naming the plugin, without a stack trace", async () => {
    const typo = "{ name: 'acme-typo', apply({ hooks }) { hooks.comit.tapPromise('acme-typo', async () => undefined) } }"
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string', amount: 'float' }", plugins: typo }), 'incoming/a.csv': CSV })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('plugin "acme-typo" failed in apply: ')
    expect(result.stderr).toContain("reading 'tapPromise'")
    expect(result.stderr).toContain('(the hooks are: beforeRun, list, watch,')
    expect(result.stderr).not.toMatch(/\n\s+at /)
    expect(ws.exists('warehouse.db')).toBe(false)
    // The same for a watcher: said, and exit 2, not a silent exit 1.
    const watching = await ws.cli(['--watch'])
    expect(watching.code).toBe(2)
    expect(watching.stderr).toContain('plugin "acme-typo" failed in apply: ')
  })

  it('a destination of an unknown type is a config error', async () => {
    ws = workspace({ '.filedgerc.json': JSON.stringify({ pipelines: [{ ...pipeline(), destination: { type: 'oracle' } }] }) })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].destination: expected a destination')
  })
})
