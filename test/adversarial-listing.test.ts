import { mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * What incremental loaders get wrong about a listing (Auto Loader, Snowpipe
 * and Airbyte keep what they have seen for days or N files, or trust
 * modification times): files sharing a timestamp, a late file older than
 * what was loaded, new bytes under a known name, and a file that comes back
 * long after. The ledger keys files by their bytes and never forgets, so
 * none is missed and none loaded twice. The S3 and SFTP sources run the same
 * cases in their pipeline suites.
 */

const COLUMNS = `{ id: { type: 'string', required: true }, n: 'integer' }`
/** Whole seconds, well in the past: versions the stat cache trusts at once. */
const T = Math.floor(Date.now() / 1000) - 7200

let ws: Workspace
afterEach(() => ws?.remove())

function put(relative: string, content: string, mtime: number): void {
  // As producers do: write aside, rename into place (a new inode every time).
  mkdirSync(path.dirname(ws.file(relative)), { recursive: true })
  writeFileSync(ws.file(`${relative}.partial`), content)
  utimesSync(ws.file(`${relative}.partial`), mtime, mtime)
  renameSync(ws.file(`${relative}.partial`), ws.file(relative))
}

async function run() {
  const result = await ws.cli(['--reporter', 'json'])
  expect(result.stderr).toBe('')
  const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  return { code: result.code, summary: lines.at(-1)!, skipped: lines.filter((line) => line.event === 'file:skipped') }
}

const rows = () => ws.query<{ id: string; n: number }>('warehouse.db', 'SELECT id, n FROM orders ORDER BY id, n')

describe('adversarial listings, local source', () => {
  it('loads files that share one modification second, and a late file older than everything loaded', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS }) })
    put('incoming/b.csv', 'id,n\nb,1\n', T)
    put('incoming/c.csv', 'id,n\nc,1\n', T)
    expect((await run()).summary).toMatchObject({ committed: 2, failed: 0 })

    // Arrives now, stamped a day earlier than anything loaded (a partner's clock, a restored backup), and sorts first.
    put('incoming/a-late.csv', 'id,n\nlate,1\n', T - 86_400)
    expect((await run()).summary).toMatchObject({ committed: 1, skipped: 2 })
    expect(rows()).toEqual([
      { id: 'b', n: 1 },
      { id: 'c', n: 1 },
      { id: 'late', n: 1 },
    ])
  })

  it('loads new bytes under a known name, with the same size and modification time, as a new file; the old stays committed once', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS }) })
    put('incoming/a.csv', 'id,n\na,1\n', T)
    await run()
    put('incoming/a.csv', 'id,n\na,2\n', T)
    expect((await run()).summary).toMatchObject({ committed: 1, failed: 0 })
    expect(rows()).toEqual([
      { id: 'a', n: 1 },
      { id: 'a', n: 2 },
    ])
    expect(ws.query('.filedge/ledger.db', "SELECT count(*) AS n FROM files WHERE state = 'COMMITTED'")).toEqual([{ n: 2 }])
    expect((await run()).summary).toMatchObject({ committed: 0, skipped: 1 })
  })

  it('never forgets: bytes loaded once and gone from the folder are not loaded again when they come back, under any name, however late', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS }) })
    put('incoming/a.csv', 'id,n\na,1\n', T)
    await run()
    rmSync(ws.file('incoming/a.csv'))
    expect((await run()).summary).toMatchObject({ committed: 0, skipped: 0 })
    // Back a year later, renamed, with a new timestamp: read (its path and version are new), recognised by its bytes.
    put('incoming/2027/a-again.csv', 'id,n\na,1\n', T + 365 * 86_400)
    const back = await run()
    expect(back.summary).toMatchObject({ committed: 0, skipped: 1 })
    expect(back.skipped).toEqual([expect.objectContaining({ path: 'incoming/2027/a-again.csv', reason: 'committed' })])
    expect(rows()).toEqual([{ id: 'a', n: 1 }])
  })
})

describe('a snapshot that comes back under a new name (truncate)', () => {
  // Without the stat cache every run reads every file, so the old name is seen again in the same run as the new one: the
  // timing a fast machine gets when runs follow each other within 2 s. The old name being seen again is not an arrival;
  // the new name is, and wins.
  it('wins over the snapshot loaded since, even when its old name is read again in the same run', async () => {
    ws = workspace({
      'incoming/.gitkeep': '',
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "disablePlugins: ['filedge:stat-cache'],", extra: "writeMode: 'truncate'," }),
    })
    const a = 'id,n\nann,1\n'
    const b = 'id,n\nann,2\n'
    put('incoming/customers-01.csv', a, T)
    expect((await run()).summary).toMatchObject({ committed: 1 })
    put('incoming/customers-02.csv', b, T + 60)
    expect((await run()).summary).toMatchObject({ committed: 1 })
    expect(rows()).toEqual([{ id: 'ann', n: 2 }])
    put('incoming/customers-03.csv', a, T + 120)
    expect((await run()).summary).toMatchObject({ committed: 1, failed: 0 })
    expect(rows()).toEqual([{ id: 'ann', n: 1 }])
    // Nothing arrived since: a rerun changes nothing.
    expect((await run()).summary).toMatchObject({ committed: 0 })
    expect(rows()).toEqual([{ id: 'ann', n: 1 }])
  })
})
