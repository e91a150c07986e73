import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Source } from '../core/index.js'
import { testSource } from './conformance/source.js'
import { REPO_ROOT, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The custom source of docs/plugins.md, taken from the page itself: a third
 * party writing a source from the docs alone gets one that passes the
 * source kit and loads files end to end.
 */

const DOCS = readFileSync(path.join(REPO_ROOT, 'docs/plugins.md'), 'utf8')
const EXAMPLE = /```ts\n(\/\/ http-share\.ts\n[\s\S]*?)```/.exec(DOCS)?.[1]

interface Share {
  readonly url: string
  put(name: string, bytes: string | Buffer): Promise<void>
  remove(name: string): Promise<void>
  has(name: string): Promise<boolean>
  close(): Promise<void>
}

/** The partner's share: files in memory, listed two per page in name order after a cursor, each served with an ETag of its bytes. */
async function startShare(): Promise<Share> {
  const files = new Map<string, { bytes: Buffer; modified: string }>()
  const etag = (bytes: Buffer) => `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://share')
    if (url.pathname === '/share/index.json') {
      const after = url.searchParams.get('after') ?? ''
      const names = [...files.keys()].sort().filter((name) => name > after)
      const slice = names.slice(0, 2)
      const body = { files: slice.map((name) => ({ name, size: files.get(name)!.bytes.length, etag: etag(files.get(name)!.bytes), modified: files.get(name)!.modified })), next: names.length > 2 ? slice[1] : null }
      response.setHeader('content-type', 'application/json')
      response.end(JSON.stringify(body))
      return
    }
    const file = url.pathname.startsWith('/share/files/') ? files.get(decodeURIComponent(url.pathname.slice('/share/files/'.length))) : undefined
    if (file === undefined) {
      response.statusCode = 404
      response.end()
      return
    }
    response.setHeader('etag', etag(file.bytes))
    response.end(file.bytes)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/share`,
    async put(name, bytes) {
      files.set(name, { bytes: Buffer.from(bytes), modified: new Date().toISOString() })
    },
    async remove(name) {
      files.delete(name)
    },
    has: async (name) => files.has(name),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

let ws: Workspace
let httpShare: (options: { url: string; include?: string[] }) => Source

beforeAll(async () => {
  expect(EXAMPLE, 'docs/plugins.md has the http-share.ts example').toBeDefined()
  expect(EXAMPLE!.split('\n').length).toBeLessThan(80)
  ws = workspace({ 'http-share.ts': EXAMPLE! })
  ;({ httpShare } = (await import(pathToFileURL(ws.file('http-share.ts')).href)) as { httpShare: typeof httpShare })
})

afterAll(() => ws?.remove())

testSource({
  name: 'http-share (docs/plugins.md)',
  async make() {
    const share = await startShare()
    return {
      source: httpShare({ url: share.url }),
      put: share.put,
      remove: share.remove,
      pathOf: (key) => `${share.url}/files/${key}`,
      exists: share.has,
      archived: async () => false,
      cleanup: share.close,
    }
  },
})

describe('the docs example source in a pipeline', () => {
  it('loads every listed file through the real CLI, and a rerun downloads nothing', async () => {
    const share = await startShare()
    try {
      for (let index = 1; index <= 5; index++) await share.put(`orders-${index}.csv`, `id,amount\n${index},${index}.5\n`)
      await share.put('readme.txt', 'not data')
      ws.write(
        'filedge.config.ts',
        `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { httpShare } from './http-share.ts'
export default defineConfig({
  pipelines: [{ name: 'partner', source: httpShare({ url: ${JSON.stringify(share.url)} }), destination: sqlite({ path: 'warehouse.db' }), table: 'orders', columns: { id: 'integer', amount: 'float' } }],
})
`,
      )
      const first = await ws.cli(['--json'])
      expect(first.stderr).toBe('')
      expect(first.code).toBe(0)
      expect(ws.query('warehouse.db', 'SELECT id, amount FROM orders ORDER BY id')).toEqual([1, 2, 3, 4, 5].map((id) => ({ id, amount: id + 0.5 })))
      expect(ws.query('.filedge/ledger.db', 'SELECT path FROM file_paths ORDER BY path').map((row) => (row as { path: string }).path)).toEqual(
        [1, 2, 3, 4, 5].map((index) => `${share.url}/files/orders-${index}.csv`),
      )

      const rerun = await ws.cli(['--json'])
      expect(rerun.code).toBe(0)
      const events = rerun.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; message?: string; committed?: number; skipped?: number })
      expect(events.at(-1)).toMatchObject({ event: 'run:summary', committed: 0, skipped: 5 })
      expect(events.filter((event) => event.event === 'file:skipped').map((event) => event.message)).toEqual(Array(5).fill('already committed (unchanged since it was read)'))
    } finally {
      await share.close()
    }
  })
})
