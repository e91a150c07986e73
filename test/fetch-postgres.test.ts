import { afterEach, expect, it } from 'vitest'
import { makeRecords, startApi, type Api } from './helpers/paginated-api.js'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, pgQuery } from './helpers/postgres.js'
import { exited, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The fetch source with a Postgres ledger, as many workers on many machines
 * share one: two `filedge fetch` processes at once, one fetching under the
 * source's lease and the other skipping it, the cursor in the ledger's
 * schema, and a run loading every record once.
 */

let api: Api | undefined
let ws: Workspace | undefined
let schema = ''
afterEach(async () => {
  await api?.close()
  ws?.remove()
  if (schema !== '') await dropSchema(schema)
  api = undefined
  ws = undefined
  schema = ''
})

describePostgres('fetch source with a Postgres ledger', () => {
  it('two processes fetching one source: one holds the lease and fetches, the other skips; a run then loads every record once', async () => {
    api = await startApi(makeRecords(6))
    schema = freshSchema('filedge_fetch')
    ws = workspace({
      'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { fetch } from 'filedge/plugins/fetch'
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  pipelines: [{
    name: 'orders',
    source: fetch({ url: '${api.origin}/cursor', query: { api_key: env('PARTNER_KEY') }, bearer: env('PARTNER_TOKEN'), pagination: { type: 'cursor', param: 'cursor', field: 'meta.next_cursor' }, records: 'data', pageSize: 2, pagesPerFile: 1 }),
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    columns: { id: { type: 'string', required: true }, n: 'integer' },
  }],
})
`,
    })
    const env = { FILEDGE_LEDGER_URL: ledgerUrl(schema), PARTNER_KEY: api.key, PARTNER_TOKEN: api.token }
    let stalled = false
    api.fault = () => {
      if (stalled) return undefined
      stalled = true
      return { stall: true }
    }
    const first = ws.spawn(['fetch', '--json'], { env })
    let output = ''
    first.stdout!.on('data', (chunk) => (output += chunk))
    await api.waitForRequest(() => true)

    const second = await ws.cli(['fetch', '--json'], { env })
    expect(second.code, second.stderr).toBe(0)
    expect(JSON.parse(second.stdout).sources[0]).toMatchObject({ status: 'busy', files: [] })

    api.release()
    expect((await exited(first)).code).toBe(0)
    expect(JSON.parse(output).sources[0]).toMatchObject({ status: 'fetched', pages: 3, records: 6, cursor: { from: 'start', to: '"c4" +2' } })
    const events = await pgQuery<{ to_cursor: string; records: string; worker: string }>(`SELECT to_cursor, records FROM "${schema}".cursor_events ORDER BY id`)
    expect(events.map((event) => [event.to_cursor, Number(event.records)])).toEqual([
      ['{"at":"c2","skip":0}', 2],
      ['{"at":"c4","skip":0}', 2],
      ['{"at":"c4","skip":2}', 2],
    ])
    // Released: nothing held once both have finished.
    expect(await pgQuery(`SELECT name FROM "${schema}".leases`)).toEqual([])

    const run = await ws.cli(['--reporter', 'simple'], { env })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/committed 3 · failed 0/)
    expect(ws.query<{ id: string }>('warehouse.db', 'SELECT id FROM orders ORDER BY n').map((row) => row.id)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6'])
    const again = await ws.cli(['fetch'], { env })
    expect(again.stdout).toBe('orders: nothing new (1 page, 0 new records; cursor "c4" +2)\n')
  })
})
