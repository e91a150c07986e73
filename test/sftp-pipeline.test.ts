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
afterEach(() => {
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
  return Buffer.concat(readdirSync(dir).map((name) => readFileSync(path.join(dir, name))))
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
    expect(ws.query('warehouse.db', 'SELECT count(DISTINCT _source_file_hash) AS files FROM orders')).toEqual([{ files: 3 }])

    const writes = readFileSync(ws.file('writes.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; localPath: string | null })
    const spooled = writes.find((write) => write.path === dir.entryPath('big.csv'))?.localPath
    expect(spooled, 'the big file was loaded from a spool file').toMatch(new RegExp(`^${spoolTmp}/filedge-spool/`))
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
})
