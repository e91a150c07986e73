import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import ssh2 from 'ssh2'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { sftp } from '../plugins/sftp/index.js'
import { testSource } from './conformance/source.js'
import { fingerprintOf, startSftp, type SftpServer } from './helpers/sftp-server.js'
import { exited, REPO_ROOT, waitFor, workspace, type CliResult, type Workspace } from './helpers/workspace.js'

/**
 * The SFTP source through the whole pipeline: the conformance kit against
 * the loopback server, then the real CLI (a child process, a TypeScript
 * config importing 'filedge/plugins/sftp') loading a remote directory into
 * SQLite. One server for the file; each test gets its own remote directory
 * and its own workspace. The password reaches the CLI only through its
 * environment (`env('SFTP_PASSWORD')`), and every run's output is checked
 * for it.
 */

const PASSWORD = `sftp-e2e-${randomBytes(12).toString('base64url')}`
const PAUSE = path.join(REPO_ROOT, 'test/helpers/pause-points.mjs')
const WRAP = path.join(REPO_ROOT, 'test/helpers/wrap-destination.mjs')

let tmp: string
let root: string
let server: SftpServer

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'filedge-sftp-pipeline-'))
  root = path.join(tmp, 'root')
  mkdirSync(root)
  server = await startSftp({ root, users: { alice: { password: PASSWORD } } })
})

afterAll(async () => {
  await server?.stop()
  rmSync(tmp, { recursive: true, force: true })
})

let dirs = 0

/** A fresh directory on the server, written through the server's local disk. */
function remoteDir(prefix = 'drop') {
  const name = `${prefix}${++dirs}`
  const local = (relative: string) => path.join(root, name, relative)
  mkdirSync(local('.'))
  return {
    /** The remote path the source is given. */
    path: `/${name}`,
    local,
    /**
     * Writes a file under a temporary name (excluded by default) and renames
     * it into place, as producers do. Its mtime is `ageSeconds` in the past:
     * a version that is an mtime vouches for the bytes only 2 s (RACY_MS)
     * after the last write, and these tests do not wait for that.
     */
    write(relative: string, content: string | Buffer, ageSeconds = 60) {
      mkdirSync(path.dirname(local(relative)), { recursive: true })
      writeFileSync(`${local(relative)}.part`, content)
      const mtime = Date.now() / 1000 - ageSeconds
      utimesSync(`${local(relative)}.part`, mtime, mtime)
      renameSync(`${local(relative)}.part`, local(relative))
    },
    /** The entry path (ledger, events) of a file of this directory. */
    entryPath: (relative: string) => `sftp://127.0.0.1:${server.port}/${name}/${relative}`,
    /** What the source calls itself in messages. */
    where: () => `sftp://alice@127.0.0.1:${server.port}/${name}`,
    /** The files of this directory the server opened so far (reads). */
    opened: () => server.opened.filter((opened) => opened.startsWith(`/${name}/`)),
  }
}
type RemoteDir = ReturnType<typeof remoteDir>

// 1. The contract every source keeps, over SFTP. `archive(…, { kind: 'move', to: 'archived/' })`:
// a relative `to` is resolved against the source's directory, and the file keeps its path under it.
testSource({
  name: 'sftp',
  async make() {
    const dir = remoteDir('kit')
    return {
      source: sftp({ host: server.host, port: server.port, username: 'alice', password: PASSWORD, path: dir.path, hostKey: server.fingerprint }),
      async put(key, bytes) {
        dir.write(key, bytes, 0)
      },
      async remove(key) {
        unlinkSync(dir.local(key))
      },
      pathOf: dir.entryPath,
      exists: async (key) => existsSync(dir.local(key)),
      archived: async (key) => existsSync(dir.local(path.posix.join('archived', key))),
      async cleanup() {
        rmSync(dir.local('.'), { recursive: true, force: true })
      },
    }
  },
})

// 2. End to end through the real CLI.

const workspaces: Workspace[] = []
/** CLI processes a test started (a watcher, a run held at a pause point): killed if still running, before their workspace goes. */
const children: ChildProcess[] = []
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue
    child.kill('SIGKILL')
    await exited(child)
  }
  for (const ws of workspaces.splice(0)) ws.remove()
})

const COLUMNS = "{ id: { type: 'integer', required: true }, name: 'string' }"
const csv = (...rows: [number, string][]) => `id,name\n${rows.map(([id, name]) => `${id},${name}`).join('\n')}\n`

/** The SFTP source of a remote directory, as a config writes it. */
function sftpSource(dir: RemoteDir, options: { hostKey?: string } = {}): string {
  return `sftp({ host: '127.0.0.1', port: ${server.port}, username: 'alice', password: env('SFTP_PASSWORD'), path: ${JSON.stringify(dir.path)}, hostKey: ${JSON.stringify(options.hostKey ?? server.fingerprint)} })`
}

/** A project whose pipeline `orders` loads the remote directory into warehouse.db. */
function project(
  dir: RemoteDir,
  options: { hostKey?: string; top?: string; extra?: string; imports?: string; plugins?: string; destination?: string; pipelines?: string; files?: Record<string, string> } = {},
): Workspace {
  const ws = workspace({
    'filedge.config.ts': `import { defineConfig, env } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
import { sftp } from 'filedge/plugins/sftp'
${options.imports ?? ''}
const warehouse = ${options.destination ?? "sqlite({ path: 'warehouse.db' })"}
export default defineConfig({
  ${options.top ?? ''}
  plugins: [${options.plugins ?? ''}],
  pipelines: [{
    name: 'orders',
    source: ${sftpSource(dir, options)},
    destination: warehouse,
    table: 'orders',
    columns: ${COLUMNS},
    ${options.extra ?? ''}
  }, ${options.pipelines ?? ''}],
})
`,
    ...options.files,
  })
  workspaces.push(ws)
  return ws
}

type Event = Record<string, unknown> & { event: string }
interface Summary {
  committed: number
  failed: number
  skipped: number
  healed: number
  reclaimed: number
  rows: number
  sourceErrors: number
}

/** Fails the test if a secret is anywhere in what the CLI printed. */
function expectNoSecret(result: Pick<CliResult, 'stdout' | 'stderr'>, ...secrets: string[]) {
  for (const secret of [PASSWORD, ...secrets]) {
    expect(result.stdout.includes(secret), 'a password in stdout').toBe(false)
    expect(result.stderr.includes(secret), 'a password in stderr').toBe(false)
  }
}

function parseEvents(stdout: string): Event[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Event)
}

/** `filedge --json` with the password in its environment (or `password`); never prints it. */
async function run(ws: Workspace, options: { env?: NodeJS.ProcessEnv; password?: string } = {}) {
  const result = await ws.cli(['--json'], { env: { SFTP_PASSWORD: options.password ?? PASSWORD, ...options.env } })
  expectNoSecret(result, ...(options.password === undefined ? [] : [options.password]))
  const events = parseEvents(result.stdout)
  const summary = events.at(-1)
  expect(summary?.event, `the summary last (${result.stderr})`).toBe('run:summary')
  const of = (event: string) => events.filter((candidate) => candidate.event === event)
  return { ...result, events, of, summary: summary as unknown as Summary }
}

const rowsOf = (ws: Workspace, table = 'orders') => ws.query<{ id: number; name: string }>('warehouse.db', `SELECT id, name FROM ${table} ORDER BY id, name`)
const ledgerFiles = (ws: Workspace) => ws.query<{ path: string; state: string }>('.filedge/ledger.db', 'SELECT path, state FROM files ORDER BY path')

/** Every file under `.filedge/` (the ledger database, its WAL), as bytes. */
function ledgerBytes(ws: Workspace): Buffer {
  const dir = ws.file('.filedge')
  return Buffer.concat(
    readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => readFileSync(path.join(entry.parentPath, entry.name))),
  )
}

describe('sftp pipeline: the real CLI', () => {
  it('loads small and spooled files with the right rows; a rerun lists, skips every file as unchanged, and reads nothing', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha'], [2, 'bravo']))
    dir.write('sub/b.csv', csv([3, 'charlie']))
    // Over 1 MiB: hashed into a spool file on local disk, and loaded from there.
    const bigRows = 30_000
    const big = `id,name\n${Array.from({ length: bigRows }, (_, i) => `${1000 + i},${'x'.repeat(40)}-${i}`).join('\n')}\n`
    expect(big.length).toBeGreaterThan(1024 * 1024)
    dir.write('big.csv', big)
    dir.write('notes.txt', 'not a csv')

    // The destination notes the local path each write was handed (the spool file for the big one).
    const ws = project(dir, {
      imports: `import { appendFileSync } from 'node:fs'\nimport { withWrite } from ${JSON.stringify(WRAP)}`,
      destination: `(() => {
  const inner = sqlite({ path: 'warehouse.db' })
  return withWrite(inner, async (job) => {
    appendFileSync('writes.ndjson', JSON.stringify({ path: job.file.path, localPath: job.localPath ?? null }) + '\\n')
    return inner.write(job)
  })
})()`,
    })
    const spoolTmp = ws.file('tmp')
    mkdirSync(spoolTmp)

    const first = await run(ws, { env: { TMPDIR: spoolTmp } })
    expect(first.stderr).toBe('')
    expect(first.code).toBe(0)
    expect(first.summary).toMatchObject({ committed: 3, failed: 0, skipped: 0, sourceErrors: 0, rows: 3 + bigRows })
    expect(first.of('file:committed').map((event) => [event.path, event.rows]).sort()).toEqual(
      [
        [dir.entryPath('a.csv'), 2],
        [dir.entryPath('big.csv'), bigRows],
        [dir.entryPath('sub/b.csv'), 1],
      ].sort(),
    )
    const rows = rowsOf(ws)
    expect(rows.slice(0, 3)).toEqual([
      { id: 1, name: 'alpha' },
      { id: 2, name: 'bravo' },
      { id: 3, name: 'charlie' },
    ])
    expect(rows).toHaveLength(3 + bigRows)
    expect(rows.at(-1)).toEqual({ id: 1000 + bigRows - 1, name: `${'x'.repeat(40)}-${bigRows - 1}` })
    // Every row of the spooled file, once: ids 1000…1000+n-1.
    expect(ws.query('warehouse.db', 'SELECT count(DISTINCT id) AS ids, sum(id) AS total FROM orders WHERE id >= 1000')).toEqual([
      { ids: bigRows, total: bigRows * 1000 + (bigRows * (bigRows - 1)) / 2 },
    ])
    expect(ws.query('warehouse.db', 'SELECT count(DISTINCT _source_file_hash) AS files FROM orders')).toEqual([{ files: 3 }])

    const writes = readFileSync(ws.file('writes.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; localPath: string | null })
    const spooled = writes.find((write) => write.path === dir.entryPath('big.csv'))?.localPath
    expect(spooled, 'the big file was loaded from a spool file').toEqual(expect.any(String))
    expect(path.dirname(spooled!)).toBe(path.join(spoolTmp, `filedge-spool-${process.getuid!()}`))
    expect(existsSync(spooled!), 'the spool file is removed once the file is done').toBe(false)
    expect(writes.filter((write) => write.path !== dir.entryPath('big.csv')).map((write) => write.localPath)).toEqual([null, null])
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([
      [dir.entryPath('a.csv'), 'COMMITTED'],
      [dir.entryPath('big.csv'), 'COMMITTED'],
      [dir.entryPath('sub/b.csv'), 'COMMITTED'],
    ])
    expect(dir.opened()).toHaveLength(3)

    const rerun = await run(ws, { env: { TMPDIR: spoolTmp } })
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 0, failed: 0, skipped: 3, rows: 0 })
    expect(rerun.of('file:skipped').map((event) => [event.path, event.reason, event.message]).sort()).toEqual(
      ['a.csv', 'big.csv', 'sub/b.csv'].map((file) => [dir.entryPath(file), 'committed', 'already committed (unchanged since it was read)']),
    )
    expect(rerun.of('file:claimed')).toEqual([])
    expect(dir.opened(), 'the rerun opened no file on the server').toHaveLength(3)
    expect(rowsOf(ws)).toHaveLength(3 + bigRows)
    expect(ledgerBytes(ws).includes(PASSWORD), 'the password in the ledger database').toBe(false)
  })

  it('killed after the destination committed and before the ledger heard: the rerun heals it from the destination, rows exactly once, COMMITTED', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha'], [2, 'bravo'], [3, 'charlie']))
    dir.write('b.csv', csv([4, 'delta']))
    const ws = project(dir, {
      top: "concurrency: 1, lease: { ttl: '2s', heartbeat: '500ms' },",
      imports: `import { pausePoints, pauseAfterWrite } from ${JSON.stringify(PAUSE)}`,
      plugins: 'pausePoints()',
      destination: "pauseAfterWrite(sqlite({ path: 'warehouse.db' }))",
    })
    const child = ws.spawn(['--json'], { env: { SFTP_PASSWORD: PASSWORD, PAUSE_AT: 'written' } })
    children.push(child)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stderr!.on('data', (chunk) => (stderr += chunk))
    const exit = exited(child)
    await Promise.race([waitFor(() => ws.exists('paused'), 30_000, 'the run to pause after the destination commit'), exit])
    expectNoSecret({ stdout, stderr })
    expect(ws.exists('paused'), `the run to pause after the destination commit (${stderr})`).toBe(true)
    child.kill('SIGKILL')
    expect((await exit).signal).toBe('SIGKILL')
    rmSync(ws.file('paused'))

    // The destination holds a.csv's rows; the ledger still has it in flight under the dead worker's lease.
    expect(rowsOf(ws)).toEqual([
      { id: 1, name: 'alpha' },
      { id: 2, name: 'bravo' },
      { id: 3, name: 'charlie' },
    ])
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([[dir.entryPath('a.csv'), 'PROCESSING']])
    await waitFor(
      () => ws.query<{ expires: number }>('.filedge/ledger.db', "SELECT max(lease_expires_at) AS expires FROM files WHERE state = 'PROCESSING'")[0].expires < Date.now(),
      20_000,
      "the dead worker's lease to expire",
    )

    const rerun = await run(ws)
    expect(rerun.stderr).toBe('')
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 2, failed: 0, healed: 1, reclaimed: 1 })
    expect(rerun.of('file:committed').find((event) => event.path === dir.entryPath('a.csv'))).toMatchObject({
      rows: 3,
      healed: expect.stringMatching(/^already committed in the destination by an earlier attempt/),
    })
    expect(rowsOf(ws)).toEqual([
      { id: 1, name: 'alpha' },
      { id: 2, name: 'bravo' },
      { id: 3, name: 'charlie' },
      { id: 4, name: 'delta' },
    ])
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([
      [dir.entryPath('a.csv'), 'COMMITTED'],
      [dir.entryPath('b.csv'), 'COMMITTED'],
    ])
  })

  it('the server down: the SFTP pipeline fails naming sftp://…, a local pipeline still commits; once the server is back a rerun loads', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']))
    const ws = project(dir, {
      pipelines: `{ name: 'local', source: 'incoming', destination: warehouse, table: 'local_orders', columns: ${COLUMNS} }`,
      files: { 'incoming/l.csv': csv([7, 'local']) },
    })
    await server.stop()
    let down: Awaited<ReturnType<typeof run>>
    try {
      down = await run(ws)
    } finally {
      await server.restart()
    }
    expect(down.code).toBe(1)
    expect(down.summary).toMatchObject({ committed: 1, failed: 0, sourceErrors: 1 })
    expect(down.summary).not.toHaveProperty('aborted')
    expect(down.of('log').filter((event) => event.level === 'error').map((event) => event.message)).toEqual([
      `pipeline "orders": cannot list ${dir.where()}: connection refused; its files were not loaded`,
    ])
    expect(rowsOf(ws, 'local_orders')).toEqual([{ id: 7, name: 'local' }])
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([['incoming/l.csv', 'COMMITTED']])

    const back = await run(ws)
    expect(back.stderr).toBe('')
    expect(back.code).toBe(0)
    expect(back.summary).toMatchObject({ committed: 1, failed: 0, skipped: 1, sourceErrors: 0 })
    expect(rowsOf(ws)).toEqual([{ id: 1, name: 'alpha' }])
  })

  it('a wrong password: a clear error naming the source; neither password is printed or stored in the ledger', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']))
    const ws = project(dir)
    const wrong = `wrong-${randomBytes(12).toString('base64url')}`
    const refused = await run(ws, { password: wrong })
    expect(refused.code).toBe(1)
    expect(refused.summary).toMatchObject({ committed: 0, sourceErrors: 1 })
    expect(refused.of('log').filter((event) => event.level === 'error').map((event) => event.message)).toEqual([
      `pipeline "orders": cannot list ${dir.where()}: authentication failed for user "alice" (tried password); its files were not loaded`,
    ])
    expect(dir.opened()).toEqual([])

    const accepted = await run(ws)
    expect(accepted.code).toBe(0)
    expect(accepted.summary).toMatchObject({ committed: 1 })
    const stored = ledgerBytes(ws)
    expect(stored.length).toBeGreaterThan(0)
    expect(stored.includes(wrong), 'the wrong password in the ledger database').toBe(false)
    expect(stored.includes(PASSWORD), 'the password in the ledger database').toBe(false)
  })

  it('a host key that is not the pinned one: refused, naming both fingerprints; nothing read', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']))
    const pinned = fingerprintOf(ssh2.utils.generateKeyPairSync('ed25519').public)
    const ws = project(dir, { hostKey: pinned })
    const result = await run(ws)
    expect(result.code).toBe(1)
    expect(result.summary).toMatchObject({ committed: 0, sourceErrors: 1 })
    const [error] = result.of('log').filter((event) => event.level === 'error')
    expect(error.message).toContain(`${dir.where()}: host key mismatch: expected ${pinned} got ${server.fingerprint}`)
    expect(dir.opened()).toEqual([])
  })

  it("onCommitted { moveTo: '/archive' }: a committed file moves there and the ledger records file:archived; a file that fails stays", async () => {
    const dir = remoteDir()
    dir.write('good.csv', csv([1, 'alpha']))
    dir.write('sub/fine.csv', csv([2, 'bravo']))
    dir.write('bad.csv', 'id,name\nnot-a-number,x\n')
    const ws = project(dir, { extra: "onCommitted: { moveTo: '/archive' }," })
    const result = await run(ws)
    expect(result.code).toBe(1)
    expect(result.summary).toMatchObject({ committed: 2, failed: 1 })
    expect(result.of('file:failed').map((event) => event.path)).toEqual([dir.entryPath('bad.csv')])

    const archive = path.join(root, 'archive')
    expect(readFileSync(path.join(archive, 'good.csv'), 'utf8')).toBe(csv([1, 'alpha']))
    expect(readFileSync(path.join(archive, 'sub/fine.csv'), 'utf8')).toBe(csv([2, 'bravo']))
    expect(existsSync(dir.local('good.csv'))).toBe(false)
    expect(existsSync(dir.local('sub/fine.csv'))).toBe(false)
    expect(existsSync(dir.local('bad.csv'))).toBe(true)
    expect(existsSync(path.join(archive, 'bad.csv'))).toBe(false)
    const archived = ws.query<{ event: string; path: string; error: string }>('.filedge/ledger.db', "SELECT event, path, error FROM events WHERE event = 'file:archived' ORDER BY path")
    expect(archived).toEqual([
      { event: 'file:archived', path: dir.entryPath('good.csv'), error: `moved to sftp://127.0.0.1:${server.port}/archive/good.csv` },
      { event: 'file:archived', path: dir.entryPath('sub/fine.csv'), error: `moved to sftp://127.0.0.1:${server.port}/archive/sub/fine.csv` },
    ])
    expect(rowsOf(ws)).toEqual([
      { id: 1, name: 'alpha' },
      { id: 2, name: 'bravo' },
    ])
  })
})

describe('sftp pipeline: adversarial files', () => {
  it('a file that lands late with an mtime older than files already loaded is loaded by the next run', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']), 60)
    dir.write('b.csv', csv([2, 'bravo']), 60)
    const ws = project(dir)
    expect((await run(ws)).summary).toMatchObject({ committed: 2 })

    // Copied in with its original timestamp (rsync -t, an archive unpacked): an hour older than anything loaded.
    dir.write('late.csv', csv([3, 'late']), 3600)
    const rerun = await run(ws)
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 1, skipped: 2, failed: 0 })
    expect(rerun.of('file:committed').map((event) => event.path)).toEqual([dir.entryPath('late.csv')])
    expect(rowsOf(ws).map((row) => row.name)).toEqual(['alpha', 'bravo', 'late'])
  })

  it('a file overwritten with new bytes of the same size (a new mtime) is loaded again, as the new bytes', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']), 120)
    const ws = project(dir)
    const first = await run(ws)
    expect(first.summary).toMatchObject({ committed: 1 })

    dir.write('a.csv', csv([2, 'bravo']), 60)
    expect(csv([2, 'bravo']).length).toBe(csv([1, 'alpha']).length)
    const rerun = await run(ws)
    expect(rerun.code).toBe(0)
    expect(rerun.summary).toMatchObject({ committed: 1, skipped: 0, failed: 0 })
    const [committed] = rerun.of('file:committed')
    expect(committed).toMatchObject({ path: dir.entryPath('a.csv'), rows: 1 })
    expect(committed.hash).not.toBe(first.of('file:committed')[0].hash)
    // Append keeps both versions' rows, each under its own hash.
    expect(rowsOf(ws)).toEqual([
      { id: 1, name: 'alpha' },
      { id: 2, name: 'bravo' },
    ])
  })

  it('a file deleted between listing and reading is skipped as gone, not failed, and never reaches the ledger', async () => {
    const dir = remoteDir()
    dir.write('control.csv', csv([1, 'control']))
    dir.write('vanishing.csv', csv([2, 'vanishing']))
    // Removes vanishing.csv on the server after the listing gave it, just before it is read.
    const ws = project(dir, {
      imports: "import { rmSync } from 'node:fs'",
      plugins: `{
    name: 'remove-before-hash',
    enforce: 'pre',
    apply({ hooks }) {
      hooks.beforeHash.tapPromise('remove-before-hash', async (candidate) => {
        if (candidate.path.endsWith('/vanishing.csv')) rmSync(${JSON.stringify(dir.local('vanishing.csv'))})
      })
    },
  }`,
    })
    const result = await run(ws)
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(result.summary).toMatchObject({ committed: 1, skipped: 1, failed: 0 })
    expect(result.of('file:skipped')).toEqual([
      expect.objectContaining({ path: dir.entryPath('vanishing.csv'), reason: 'gone', message: expect.stringMatching(/^removed before it could be hashed/) }),
    ])
    expect(existsSync(dir.local('vanishing.csv'))).toBe(false)
    expect(ledgerFiles(ws).map((file) => [file.path, file.state])).toEqual([[dir.entryPath('control.csv'), 'COMMITTED']])
    expect(rowsOf(ws)).toEqual([{ id: 1, name: 'control' }])
  })
})

/** Waits for `check`, failing at once if the watcher exits first. */
async function whileWatching(watcher: { exit: Promise<unknown>; output(): { stderr: string } }, check: () => boolean, what: string): Promise<void> {
  const early = watcher.exit.then(() => {
    throw new Error(`the watcher exited while waiting for ${what}: ${watcher.output().stderr}`)
  })
  await Promise.race([waitFor(check, 30_000, what), early])
}

/** `filedge --watch --json` running in the workspace. */
function startWatching(ws: Workspace) {
  const child = ws.spawn(['--watch', '--json'], { env: { SFTP_PASSWORD: PASSWORD } })
  children.push(child)
  const exit = exited(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk) => (stdout += chunk))
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return {
    child,
    exit,
    output: () => ({ stdout, stderr }),
    events: () => parseEvents(stdout),
    committed: () => parseEvents(stdout).filter((event) => event.event === 'file:committed').map((event) => event.path),
  }
}

describe('sftp pipeline: --watch', () => {
  const WATCH = "watch: { poll: '300ms', settle: '100ms' },"

  it('polls the server: a file written after the watcher started is committed; SIGTERM exits 0', async () => {
    const dir = remoteDir()
    dir.write('before.csv', csv([1, 'before']))
    const ws = project(dir, { top: WATCH })
    const watcher = startWatching(ws)
    await whileWatching(watcher, () => watcher.output().stdout.includes(`"watching ${dir.where()}`), 'the watcher to start')
    await whileWatching(watcher, () => watcher.committed().includes(dir.entryPath('before.csv')), 'the file already there to load')

    dir.write('after.csv', csv([2, 'after']), 0)
    await whileWatching(watcher, () => watcher.committed().includes(dir.entryPath('after.csv')), 'a poll to find and load the new file')
    watcher.child.kill('SIGTERM')
    expect(await watcher.exit).toEqual({ code: 0, signal: null })

    expectNoSecret(watcher.output())
    expect(watcher.output().stderr).toBe('')
    expect(watcher.events().at(-1)).toMatchObject({ event: 'run:summary', committed: 2, failed: 0, sourceErrors: 0 })
    expect(rowsOf(ws)).toEqual([
      { id: 1, name: 'before' },
      { id: 2, name: 'after' },
    ])
  })

  it('a server down when the watcher starts: reported, and a later poll connects and loads once it is back', async () => {
    const dir = remoteDir()
    dir.write('a.csv', csv([1, 'alpha']))
    const ws = project(dir, { top: WATCH })
    await server.stop()
    let watcher: ReturnType<typeof startWatching>
    try {
      watcher = startWatching(ws)
      await whileWatching(watcher, () => watcher.output().stdout.includes(`${dir.where()}: connection refused`), 'the watcher to report the server down')
    } finally {
      await server.restart()
    }
    await whileWatching(watcher!, () => watcher.committed().includes(dir.entryPath('a.csv')), 'a poll to connect again and load the file')
    watcher.child.kill('SIGTERM')
    expect(await watcher.exit).toEqual({ code: 0, signal: null })
    expectNoSecret(watcher.output())
    expect(watcher.events().at(-1)).toMatchObject({ event: 'run:summary', committed: 1, failed: 0 })
    const errors = watcher.events().filter((event) => event.event === 'log' && event.level === 'error')
    expect(errors[0]?.message).toBe(`pipeline "orders": cannot list ${dir.where()}: connection refused; its files were not loaded`)
    expect(rowsOf(ws)).toEqual([{ id: 1, name: 'alpha' }])
  })
})
