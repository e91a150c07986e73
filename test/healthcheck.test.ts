import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isFiledgeError, resolveConfig, type SourceContext } from '../core/index.js'
import { defaultIncludes } from '../core/formats/registry.js'
import { s3 } from '../plugins/s3/index.js'
import { sftp } from '../plugins/sftp/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, postgresConfig, postgresEnv } from './helpers/postgres.js'
import { setEnv, startS3, S3RVER_CREDENTIALS, type S3Server } from './helpers/s3-server.js'
import { startSftp, type SftpServer } from './helpers/sftp-server.js'
import { exited, REPO_ROOT, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * `filedge healthcheck` and the healthcheck() of the built-in destinations
 * and sources, against the real thing: files, a DuckDB file another process
 * holds, the Postgres server, s3rver and an SFTP server on loopback.
 */

interface Report {
  ok: boolean
  checks: { kind: string; pipelines: string[]; target: string; status: string; latencyMs: number | null; detail?: string }[]
}

const status = (report: Report) => report.checks.map((check) => [check.kind, check.status])

describe('filedge healthcheck', () => {
  let ws: Workspace | undefined
  afterEach(() => {
    ws?.remove()
    ws = undefined
  })

  it('is healthy before the first run (what the run creates can be created) and after it; writes nothing', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'incoming/a.csv': 'id\na\n' })
    const before = await ws.cli(['healthcheck', '--json'])
    expect(before.code, before.stderr).toBe(0)
    const report = JSON.parse(before.stdout) as Report
    expect(report.ok).toBe(true)
    expect(status(report)).toEqual([
      ['ledger', 'ok'],
      ['destination', 'ok'],
      ['source', 'ok'],
    ])
    expect(report.checks[0].detail).toContain('not created yet')
    for (const check of report.checks) expect(check.latencyMs).toBeGreaterThanOrEqual(0)
    expect(ws.exists('.filedge/ledger.db')).toBe(false)
    expect(ws.exists('warehouse.db')).toBe(false)

    expect((await ws.cli(['--reporter', 'silent'])).code).toBe(0)
    const after = await ws.cli(['healthcheck'])
    expect(after.code).toBe(0)
    expect(after.stdout).toMatch(/^ledger\s+\*\s+sqlite:\S+ledger\.db\s+ok\s+\d+ ms\s+migration \d+$/m)
    expect(after.stdout).toMatch(/^destination\s+orders\s+sqlite warehouse\.db\s+ok\s+\d+ ms$/m)
    expect(after.stdout).toMatch(/^source\s+orders\s+incoming\s+ok\s+\d+ ms$/m)
  })

  it('exits 1 and says why when the source directory is gone or the database file is not a database', async () => {
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }), 'warehouse.db': 'not a database at all, just text that is long enough to be read' })
    const result = await ws.cli(['healthcheck', '--json'])
    expect(result.code).toBe(1)
    const report = JSON.parse(result.stdout) as Report
    expect(report.ok).toBe(false)
    expect(status(report)).toEqual([
      ['ledger', 'ok'],
      ['destination', 'down'],
      ['source', 'down'],
    ])
    expect(report.checks[1].detail).toMatch(/sqlite \S+warehouse\.db: file is not a database/)
    expect(report.checks[2].detail).toBe('source directory incoming does not exist')
  })

  it('reports a DuckDB file another process holds as busy, not down (a run would wait for it): exit 0', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" })
        .replace("import { sqlite } from 'filedge/plugins/sqlite'", "import { duckdb } from 'filedge/plugins/duckdb'")
        .replace("sqlite({ path: 'warehouse.db' })", "duckdb({ path: 'warehouse.duckdb' })"),
      'incoming/a.csv': 'id\na\n',
    })
    expect((await ws.cli(['--reporter', 'silent'])).code).toBe(0)
    expect(JSON.parse((await ws.cli(['healthcheck', '--json'])).stdout).checks[1].status).toBe('ok')
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `const { DuckDBInstance } = await import('@duckdb/node-api'); await (await DuckDBInstance.create(${JSON.stringify(ws.file('warehouse.duckdb'))})).connect(); console.log('holding'); setInterval(() => {}, 1000)`],
      { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    )
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
      const result = await ws.cli(['healthcheck', '--json'])
      expect(result.code).toBe(0)
      const destination = (JSON.parse(result.stdout) as Report).checks[1]
      expect(destination).toMatchObject({ kind: 'destination', status: 'busy' })
      expect(destination.detail).toContain(`(PID ${holder.pid})`)
    } finally {
      holder.kill('SIGKILL')
      await exited(holder)
    }
  })
})

describePostgres('filedge healthcheck: Postgres', () => {
  let ws: Workspace | undefined
  const schemas: string[] = []
  afterEach(async () => {
    ws?.remove()
    for (const schema of schemas.splice(0)) await dropSchema(schema)
  })

  it('probes the ledger and the destination on the server; an unreachable one is down, its password never shown', async () => {
    const ledgerSchema = freshSchema('filedge_health')
    schemas.push(ledgerSchema)
    ws = workspace({ 'filedge.config.ts': postgresConfig({ destSchema: freshSchema('filedge_health_dest'), columns: "{ id: 'string' }" }), 'incoming/.gitkeep': '' })
    const ok = await ws.cli(['healthcheck', '--json'], { env: postgresEnv(ledgerSchema) })
    expect(ok.code, ok.stderr).toBe(0)
    const report = JSON.parse(ok.stdout) as Report
    expect(status(report)).toEqual([
      ['ledger', 'ok'],
      ['destination', 'ok'],
      ['source', 'ok'],
    ])
    expect(report.checks[0].detail).toContain('yet')

    const password = 'hunter2-not-shown'
    const nowhere = `postgres://filedge:${password}@127.0.0.1:1/nowhere`
    const down = await ws.cli(['healthcheck'], { env: { FILEDGE_LEDGER_URL: nowhere, FILEDGE_DEST_URL: nowhere } })
    expect(down.code).toBe(1)
    expect(down.stdout).toMatch(/^ledger .* down .*ECONNREFUSED/m)
    expect(down.stdout).toMatch(/^destination .* down .*ECONNREFUSED/m)
    expect(down.stdout + down.stderr).not.toContain(password)
  })
})

describe('healthcheck() of the remote sources', () => {
  let saved: Record<string, string | undefined> = {}
  let server: S3Server
  let sftpServer: SftpServer
  let tmp: string
  const context: SourceContext = {
    config: resolveConfig({ pipelines: [{ name: 'p', source: 'in', destination: sqlite({ path: 'x.db' }), table: 't', columns: { a: 'string' } }] }),
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    defaultInclude: defaultIncludes(['csv']),
  }
  beforeAll(async () => {
    saved = setEnv(S3RVER_CREDENTIALS)
    server = await startS3()
    await server.createBucket('health')
    tmp = mkdtempSync(path.join(os.tmpdir(), 'filedge-health-'))
    mkdirSync(path.join(tmp, 'drop'))
    sftpServer = await startSftp({ root: tmp, users: { alice: { password: 'sftp-password-1' } } })
  })
  afterAll(async () => {
    await server?.close()
    await sftpServer?.stop()
    setEnv(saved)
    rmSync(tmp, { recursive: true, force: true })
  })

  it('S3: a one-key listing answers; a missing bucket is named', async () => {
    const healthy = s3({ bucket: 'health', endpoint: server.endpoint, forcePathStyle: true })
    await expect(healthy.healthcheck!(context)).resolves.toBeUndefined()
    await healthy.close?.()
    const missing = s3({ bucket: 'no-such-bucket', endpoint: server.endpoint, forcePathStyle: true })
    const error = await missing.healthcheck!(context).catch((caught: unknown) => caught)
    await missing.close?.()
    expect(isFiledgeError(error) && error.message).toMatch(/no-such-bucket/)
  })

  it('SFTP: the handshake and a stat of the directory answer; a wrong password fails without showing it', async () => {
    const options = { host: '127.0.0.1', port: sftpServer.port, username: 'alice', path: '/drop', timeout: '5s' as const }
    const healthy = sftp({ ...options, password: 'sftp-password-1' })
    await expect(healthy.healthcheck!(context)).resolves.toBeUndefined()
    await healthy.close?.()
    const refused = sftp({ ...options, password: 'wrong-password-xyz' })
    const error = await refused.healthcheck!(context).catch((caught: unknown) => caught)
    await refused.close?.()
    expect(isFiledgeError(error)).toBe(true)
    expect((error as Error).message).not.toContain('wrong-password-xyz')
    const missing = sftp({ ...options, password: 'sftp-password-1', path: '/not-here' })
    const gone = await missing.healthcheck!(context).catch((caught: unknown) => caught)
    await missing.close?.()
    expect((gone as Error).message).toMatch(/not-here/)
  })
})
