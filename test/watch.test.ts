import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import type { ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/** `filedge --watch` as a real process on a temp directory: files land, the config changes, signals arrive. */

let ws: Workspace | undefined
let child: ChildProcess | undefined
afterEach(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL')
    await exited(child)
  }
  child = undefined
  ws?.remove()
})

const COLUMNS = "{ id: 'string', n: 'integer' }"

interface Watching {
  readonly child: ChildProcess
  output(): string
}

async function startWatching(w: Workspace, args: string[] = []): Promise<Watching> {
  const process = w.spawn(['--watch', '--reporter', 'simple', ...args])
  let output = ''
  process.stdout!.on('data', (chunk) => (output += chunk))
  process.stderr!.on('data', (chunk) => (output += chunk))
  child = process
  await waitFor(() => output.includes('Ctrl-C to stop'), 20_000, 'the watcher to start')
  return { child: process, output: () => output }
}

function committedRows(w: Workspace): { id: string; n: number }[] {
  if (!w.exists('warehouse.db')) return []
  return w.query<{ id: string; n: number }>('warehouse.db', 'SELECT id, n FROM orders ORDER BY n')
}

function ledger(w: Workspace) {
  return w.query<{ path: string; state: string }>('.filedge/ledger.db', 'SELECT path, state FROM files ORDER BY path')
}

describe('filedge --watch', () => {
  it('commits files as they land, once each: slow writes in chunks, tmp-then-rename, and a file replaced with new bytes', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '400ms' }," }),
      'incoming/before.csv': 'id,n\nbefore,1\n',
    })
    const w = ws
    const watching = await startWatching(w)
    await waitFor(() => committedRows(w).length === 1, 20_000, 'the file already there to load')

    // A large file written slowly: every pause is shorter than the settle window.
    const big = w.file('incoming/big.csv')
    writeFileSync(big, 'id,n\n')
    for (let chunk = 0; chunk < 10; chunk++) {
      appendFileSync(big, Array.from({ length: 1_000 }, (_, i) => `big${chunk * 1_000 + i},${100 + chunk * 1_000 + i}`).join('\n') + '\n')
      await new Promise((resolve) => setTimeout(resolve, 150))
    }
    // Written under a temporary name (ignored), then renamed into place.
    writeFileSync(w.file('incoming/renamed.csv.tmp'), 'id,n\nrenamed,20000\n')
    renameSync(w.file('incoming/renamed.csv.tmp'), w.file('incoming/renamed.csv'))
    await waitFor(() => committedRows(w).length === 1 + 10_000 + 1, 30_000, 'the big and renamed files to load')

    // Same path, new bytes: a new file (append keeps both versions' rows, each under its own hash).
    writeFileSync(w.file('incoming/before.csv'), 'id,n\nbefore-v2,30000\n')
    await waitFor(() => committedRows(w).some((row) => row.id === 'before-v2'), 20_000, 'the replaced file to load')
    await new Promise((resolve) => setTimeout(resolve, 1_000))

    const rows = committedRows(w)
    expect(rows).toHaveLength(1 + 10_000 + 1 + 1)
    expect(new Set(rows.map((row) => row.id)).size).toBe(rows.length)
    expect(w.query('warehouse.db', 'SELECT count(DISTINCT _source_file_hash) AS files FROM orders')).toEqual([{ files: 4 }])
    const files = ledger(w)
    expect(files.filter((file) => file.state === 'COMMITTED')).toHaveLength(4)
    expect(files.every((file) => file.state === 'COMMITTED')).toBe(true)
    expect(watching.output()).not.toMatch(/✗/)

    watching.child.kill('SIGTERM')
    expect(await exited(watching.child)).toEqual({ code: 0, signal: null })
    expect(watching.output()).toMatch(/committed 4 · failed 0/)
  })

  it('a file already there but written within the settle window at start waits out the rest of its window', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '5s' }," }) })
    const w = ws
    writeFileSync(w.file('incoming/fresh.csv'), 'id,n\nfresh,1\n')
    const written = statSync(w.file('incoming/fresh.csv')).mtimeMs
    await startWatching(w)
    await waitFor(() => committedRows(w).length === 1, 30_000, 'the fresh file to load')
    const [{ at }] = w.query<{ at: string }>('.filedge/ledger.db', "SELECT at FROM events WHERE event = 'file:claimed'")
    // Not claimed before its size had held for the whole window (the start-up sweep used to take it at once).
    expect(Date.parse(at) - written).toBeGreaterThanOrEqual(5_000 - 50)
  })

  it('waits for a ready marker when the pipeline asks for one', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '200ms' },", extra: '' }).replace("source: { dir: 'incoming' }", "source: { dir: 'incoming', readyMarker: '.ok' }") })
    const w = ws
    await startWatching(w)
    writeFileSync(w.file('incoming/a.csv'), 'id,n\na,1\n')
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    expect(w.exists('warehouse.db') ? committedRows(w) : []).toEqual([])
    writeFileSync(w.file('incoming/a.csv.ok'), '')
    await waitFor(() => committedRows(w).length === 1, 20_000, 'the file to load once its marker exists')
    expect(ledger(w)).toEqual([{ path: 'incoming/a.csv', state: 'COMMITTED' }])
  })

  it('applies a config edit to later files, and keeps the last good config when an edit is broken', async () => {
    ws = workspace({ 'incoming/.gitkeep': '', 'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '200ms' }," }) })
    const w = ws
    const watching = await startWatching(w)
    writeFileSync(w.file('incoming/a.csv'), 'id,n,note\na,1,x\n')
    await waitFor(() => /✗ orders incoming\/a.csv:1: unknown field "note"/.test(watching.output()), 20_000, 'the extra field to fail the file')

    // Edit: ignore unknown fields. Later files load, and so does the failed one (it had attempts left).
    writeFileSync(w.file('filedge.config.ts'), sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '200ms' },", extra: "unknownColumns: 'ignore'," }))
    await waitFor(() => watching.output().includes('config reloaded'), 20_000, 'the config to reload')
    writeFileSync(w.file('incoming/b.csv'), 'id,n,note\nb,2,y\n')
    await waitFor(() => committedRows(w).length === 2, 20_000, 'a later file to load under the new config')

    // A broken edit: reported, and the watcher goes on with the last good config.
    writeFileSync(w.file('filedge.config.ts'), sqliteConfig({ columns: "{ id: 'string', n: 'intger' }", top: "watch: { settle: '200ms' }," }))
    await waitFor(() => watching.output().includes('config not reloaded, keeping the previous one'), 20_000, 'the broken config to be reported')
    expect(watching.output()).toContain('pipelines[0].columns.n.type: expected one of')
    writeFileSync(w.file('incoming/c.csv'), 'id,n,note\nc,3,z\n')
    await waitFor(() => committedRows(w).length === 3, 20_000, 'the watcher to keep loading')
    expect(committedRows(w)).toEqual([
      { id: 'a', n: 1 },
      { id: 'b', n: 2 },
      { id: 'c', n: 3 },
    ])
    expect(w.query('.filedge/ledger.db', "SELECT event FROM events JOIN files USING (pipeline, hash) WHERE files.path = 'incoming/a.csv' ORDER BY id")).toEqual([
      { event: 'file:discovered' },
      { event: 'file:claimed' },
      { event: 'file:failed' },
      { event: 'file:retried' },
      { event: 'file:committed' },
    ])
  })

  it('a config reload lists every file again, but a skip is said and counted once', async () => {
    const skipper = "{ name: 'not-ours', apply({ hooks }) { hooks.beforeHash.tapPromise('not-ours', async (file) => (file.path.endsWith('theirs.csv') ? { skip: 'not ours' } : undefined)) } }"
    // A plugin that flushes per run hears the end of each config's session: afterRun (marked reloading), then close.
    const flusher = "{ name: 'flusher', apply({ hooks }) { hooks.afterRun.tapPromise('flusher', async (summary) => appendFileSync('flushed.log', (summary.reloading ? 'reload' : 'end') + '\\n')); hooks.close.tapPromise('flusher', async () => appendFileSync('flushed.log', 'close\\n')) } }"
    const config = (batchSize: number) =>
      sqliteConfig({ columns: COLUMNS, imports: "import { appendFileSync } from 'node:fs'", plugins: `${skipper}, ${flusher}`, top: "watch: { settle: '200ms' },", extra: `batchSize: ${batchSize},` })
    ws = workspace({ 'incoming/a.csv': 'id,n\na,1\n', 'incoming/theirs.csv': 'id,n\nz,9\n', 'filedge.config.ts': config(100) })
    const w = ws
    const watching = await startWatching(w)
    await waitFor(() => committedRows(w).length === 1 && watching.output().includes('theirs.csv skipped: not ours'), 20_000, 'the first sweep')
    const flushed = () => (w.exists('flushed.log') ? readFileSync(w.file('flushed.log'), 'utf8').trim().split('\n') : [])
    for (const [index, batchSize] of [200, 300].entries()) {
      writeFileSync(w.file('filedge.config.ts'), config(batchSize))
      // Each reload ends the previous session (afterRun, close) and says so once the new one runs.
      await waitFor(() => flushed().filter((line) => line === 'close').length === index + 1 && watching.output().split('config reloaded').length === index + 2, 20_000, `reload ${index + 1}`)
    }
    // The rescan after the last reload is done once a file landing after it has loaded.
    writeFileSync(w.file('incoming/b.csv'), 'id,n\nb,2\n')
    await waitFor(() => committedRows(w).length === 2, 20_000, 'a file after the reloads')
    watching.child.kill('SIGTERM')
    expect(await exited(watching.child)).toEqual({ code: 0, signal: null })
    const output = watching.output()
    expect(output.split('theirs.csv skipped: not ours').length - 1, output).toBe(1)
    // Each file counted once whatever the rescans: a.csv and b.csv committed (a rescan listing them again is no skip of its own), theirs.csv skipped.
    expect(output, output).toMatch(/committed 2 · failed 0 · skipped 1 · /)
    expect(flushed(), output).toEqual(['reload', 'close', 'reload', 'close', 'end', 'close'])
  })

  it('on SIGTERM during a load, rolls back, releases the file and exits 0; the next run commits it once', async () => {
    ws = workspace({
      'incoming/.gitkeep': '',
      'pause.mjs': `export const slow = () => ({ name: 'slow', apply({ hooks }) {
        hooks.transform.tapPromise('slow', async (batches) => (async function* () {
          for await (const batch of batches) { await new Promise((resolve) => setTimeout(resolve, 300)); yield batch }
        })())
      } })`,
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, imports: "import { slow } from './pause.mjs'", plugins: 'process.env.SLOW ? slow() : false', top: "watch: { settle: '200ms' }, lease: { ttl: '30s' },", extra: 'batchSize: 10,' }),
    })
    const w = ws
    const watching = w.spawn(['--watch', '--reporter', 'json'], { env: { SLOW: '1' } })
    child = watching
    let output = ''
    watching.stdout!.on('data', (chunk) => (output += chunk))
    await waitFor(() => output.includes('Ctrl-C to stop'), 20_000, 'the watcher to start')
    writeFileSync(w.file('incoming/a.csv'), `id,n\n${Array.from({ length: 200 }, (_, i) => `r${i},${i}`).join('\n')}\n`)
    await waitFor(() => output.includes('"event":"file:claimed"'), 20_000, 'the load to start')
    watching.kill('SIGTERM')
    expect(await exited(watching)).toEqual({ code: 0, signal: null })
    expect(output).toContain('"reason":"stopped"')
    expect(committedRows(w)).toEqual([])
    // Claimable again right away: not held by a lease that must first expire.
    expect(w.query('.filedge/ledger.db', 'SELECT state, attempts FROM files')).toEqual([{ state: 'PENDING', attempts: 0 }])

    const rerun = await w.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 0/)
    expect(committedRows(w)).toHaveLength(200)
  })

  it('after SIGKILL during a load, the next run reclaims the file once its lease expires and commits it once', async () => {
    ws = workspace({
      'incoming/.gitkeep': '',
      'pause.mjs': `import { writeFileSync } from 'node:fs'
export const hold = () => ({ name: 'hold', apply({ hooks }) {
        hooks.transform.tapPromise('hold', async (batches) => (async function* () {
          for await (const batch of batches) { yield batch; if (process.env.HOLD) { writeFileSync('held', ''); await new Promise(() => {}) } }
        })())
      } })`,
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, imports: "import { hold } from './pause.mjs'", plugins: 'hold()', top: "watch: { settle: '200ms' }, lease: { ttl: '2s', heartbeat: '300ms' },", extra: 'batchSize: 10,' }),
    })
    const w = ws
    const watching = await startWatching(w, [])
    watching.child.kill('SIGKILL')
    await exited(watching.child)
    const held = w.spawn(['--watch', '--reporter', 'silent'], { env: { HOLD: '1' } })
    child = held
    writeFileSync(w.file('incoming/a.csv'), `id,n\n${Array.from({ length: 50 }, (_, i) => `r${i},${i}`).join('\n')}\n`)
    await waitFor(() => w.exists('held'), 20_000, 'the load to be held mid-transaction')
    held.kill('SIGKILL')
    await exited(held)
    expect(w.query('.filedge/ledger.db', 'SELECT state FROM files')).toEqual([{ state: 'PROCESSING' }])

    const expires = w.query<{ expires: number }>('.filedge/ledger.db', 'SELECT lease_expires_at AS expires FROM files')[0].expires
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expires - Date.now()) + 200))
    const rerun = await w.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    expect(rerun.stdout).toMatch(/committed 1 .* reclaimed 1/)
    expect(committedRows(w)).toHaveLength(50)
    expect(w.query('warehouse.db', 'SELECT count(DISTINCT _source_file_hash) AS files, count(*) AS rows FROM orders')).toEqual([{ files: 1, rows: 50 }])
  })

  it('watch: true in the config watches without the flag, and editing a file the config imports reloads it', async () => {
    ws = workspace({
      'incoming/.gitkeep': '',
      'columns.ts': "export const columns = { id: 'string', n: 'integer' } as const\n",
      'filedge.config.ts': sqliteConfig({ columns: 'columns', imports: "import { columns } from './columns.js'", top: "watch: { enabled: true, settle: '200ms' }," }),
    })
    const w = ws
    const process = w.spawn(['--reporter', 'simple'])
    child = process
    let output = ''
    process.stdout!.on('data', (chunk) => (output += chunk))
    process.stderr!.on('data', (chunk) => (output += chunk))
    await waitFor(() => output.includes('Ctrl-C to stop'), 20_000, 'the watcher to start from the config alone')
    // A renamed source field: same table, so the new config starts.
    writeFileSync(w.file('columns.ts'), "export const columns = { id: 'string', n: { type: 'integer', source: 'N' } } as const\n")
    await waitFor(() => output.includes('config reloaded'), 20_000, 'an edit of an imported file to reload the config')
    writeFileSync(w.file('incoming/a.csv'), 'id,N\na,7\n')
    await waitFor(() => committedRows(w).length === 1, 20_000, 'a file in the new shape to load')
    expect(committedRows(w)).toEqual([{ id: 'a', n: 7 }])
    process.kill('SIGINT')
    expect(await exited(process)).toEqual({ code: 0, signal: null })
  })

  it('does not follow a link that lands in the folder and leads outside it; one that stays inside loads', async () => {
    ws = workspace({
      'incoming/.gitkeep': '',
      'incoming/data/b.csv': 'id,n\ninside,2\n',
      'outside/passwd': 'root:x:0:0:root:/root:/bin/bash\n',
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '200ms' }," }),
    })
    const w = ws
    const watching = await startWatching(w)
    await waitFor(() => committedRows(w).length === 1, 20_000, 'the file already there to load')
    mkdirSync(w.file('partner'))
    writeFileSync(w.file('partner/leak.csv'), 'id,n\nleaked,666\n')
    symlinkSync(w.file('outside/passwd'), w.file('incoming/passwd.csv'))
    symlinkSync('../partner', w.file('incoming/partner'))
    symlinkSync('data/b.csv', w.file('incoming/latest.csv'))
    const warned = (path: string) => watching.output().includes(`warn: ${path}: a symbolic link that leads outside the source directory; not followed`)
    await waitFor(() => warned('incoming/passwd.csv') && warned('incoming/partner/leak.csv'), 20_000, 'a warning for each link out of the folder')
    await waitFor(() => w.query('.filedge/ledger.db', 'SELECT path FROM file_paths').some((row) => (row as { path: string }).path === 'incoming/latest.csv'), 20_000, 'the link inside the folder to load')

    expect(committedRows(w)).toEqual([{ id: 'inside', n: 2 }])
    expect(w.query('.filedge/ledger.db', 'SELECT path FROM file_paths ORDER BY path')).toEqual([{ path: 'incoming/data/b.csv' }, { path: 'incoming/latest.csv' }])
    const history = JSON.stringify(w.query('.filedge/ledger.db', 'SELECT * FROM events'))
    expect(history).not.toContain('root:x')
    expect(history).not.toContain('passwd')
    expect(watching.output()).not.toContain('root:x')
    watching.child.kill('SIGTERM')
    expect(await exited(watching.child)).toEqual({ code: 0, signal: null })
  })
})
