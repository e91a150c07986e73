import { readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { describePostgres, dropSchema, freshSchema, ledgerUrl, pgQuery } from './helpers/postgres.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The stat cache: a rerun does not re-read a file whose path, size, mtime,
 * inode and device are the ones it was hashed under, if that file is settled
 * (committed, or failed with no attempts left). Anything else is hashed as
 * before. What is hashed is observed through a `beforeHash` tap, which runs
 * for exactly the files filedge is about to hash, logging paths to a file.
 */

const COLUMNS = `{ id: { type: 'string', required: true }, n: 'integer' }`
const HASH_LOG = `{
  name: 'hash-log',
  apply({ hooks }) {
    hooks.beforeHash.tapPromise('hash-log', async (candidate) => {
      appendFileSync('hashed.log', candidate.path + '\\n')
    })
  },
}`

/** Well in the past: older than the window in which a stat cannot vouch for a file's bytes (RACY_MS). */
const PAST = Date.now() / 1000 - 3600

function config(top = '', extra = ''): string {
  return sqliteConfig({ columns: COLUMNS, imports: "import { appendFileSync } from 'node:fs'\nimport { env } from 'filedge'", plugins: HASH_LOG, top, extra })
}

/** Paths hashed since the last call. */
function hashedSince(ws: Workspace): () => string[] {
  let seen = 0
  return () => {
    const lines = ws.exists('hashed.log') ? readFileSync(ws.file('hashed.log'), 'utf8').split('\n').filter(Boolean) : []
    const fresh = lines.slice(seen)
    seen = lines.length
    return fresh.sort()
  }
}

function backdate(ws: Workspace, relative: string, seconds = PAST): void {
  utimesSync(ws.file(relative), seconds, seconds)
}

interface Ledger {
  readonly top: string
  readonly env: () => NodeJS.ProcessEnv
  readonly events: (ws: Workspace) => Promise<number>
}

function statCacheSuite(ledger: () => Ledger): void {
  let ws: Workspace
  afterEach(() => ws?.remove())

  const run = async (args: string[] = []) => {
    const result = await ws.cli(['--reporter', 'json', ...args], { env: ledger().env() })
    if (result.stdout.trim() === '') throw new Error(`no output: ${result.stderr}`)
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    return { ...result, lines, summary: lines.at(-1)! }
  }
  const rows = () => ws.query<{ id: string }>('warehouse.db', 'SELECT id FROM orders ORDER BY id').map((row) => row.id)

  it('does not re-read unchanged committed files, and writes no ledger event for them', async () => {
    ws = workspace({ 'filedge.config.ts': config(ledger().top), 'incoming/a.csv': 'id,n\na1,1\n', 'incoming/b.csv': 'id,n\nb1,2\n' })
    backdate(ws, 'incoming/a.csv')
    backdate(ws, 'incoming/b.csv')
    const hashed = hashedSince(ws)
    const first = await run()
    expect(first.summary).toMatchObject({ committed: 2 })
    expect(hashed()).toEqual(['incoming/a.csv', 'incoming/b.csv'])
    const before = await ledger().events(ws)

    const again = await run()
    expect(again.code).toBe(0)
    expect(again.summary).toMatchObject({ committed: 0, skipped: 2, new: 0 })
    expect(hashed()).toEqual([])
    expect(again.lines.filter((line) => line.event === 'file:skipped').map((line) => [line.path, line.reason])).toEqual([
      ['incoming/a.csv', 'committed'],
      ['incoming/b.csv', 'committed'],
    ])
    // The skip names the hash the cache vouched for: the one the first run committed.
    const hashOf = (lines: Record<string, unknown>[], event: string) => lines.find((line) => line.event === event && line.path === 'incoming/a.csv')!.hash
    expect(hashOf(again.lines, 'file:skipped')).toBe(hashOf(first.lines, 'file:committed'))
    expect(await ledger().events(ws)).toBe(before)
    expect(rows()).toEqual(['a1', 'b1'])
  })

  it('re-hashes a touched file but loads it only if its bytes changed', async () => {
    ws = workspace({ 'filedge.config.ts': config(ledger().top), 'incoming/same.csv': 'id,n\ns1,1\n', 'incoming/edited.csv': 'id,n\ne1,1\n', 'incoming/quiet.csv': 'id,n\nq1,1\n' })
    for (const name of ['same', 'edited', 'quiet']) backdate(ws, `incoming/${name}.csv`)
    const hashed = hashedSince(ws)
    await run()
    hashed()

    // Touched, same bytes: hashed again, found committed, not loaded twice.
    backdate(ws, 'incoming/same.csv', PAST + 60)
    // Same size, other bytes, other mtime: a new version of the file.
    writeFileSync(ws.file('incoming/edited.csv'), 'id,n\ne2,2\n')
    backdate(ws, 'incoming/edited.csv', PAST + 60)
    const second = await run()
    expect(hashed()).toEqual(['incoming/edited.csv', 'incoming/same.csv'])
    expect(second.summary).toMatchObject({ committed: 1, skipped: 2 })
    expect(rows()).toEqual(['e1', 'e2', 'q1', 's1'])

    // Both are in the cache under their new stat now.
    const third = await run()
    expect(hashed()).toEqual([])
    expect(third.summary).toMatchObject({ committed: 0, skipped: 3 })
  })

  it('re-hashes a file replaced by another with the same size and mtime (a new inode), and loads the new bytes', async () => {
    ws = workspace({ 'filedge.config.ts': config(ledger().top), 'incoming/a.csv': 'id,n\nold,1\n' })
    backdate(ws, 'incoming/a.csv')
    const hashed = hashedSince(ws)
    await run()
    hashed()

    // Written elsewhere, given the old file's mtime, renamed over it: only the inode tells them apart.
    ws.write('staging/a.csv', 'id,n\nnew,2\n')
    backdate(ws, 'staging/a.csv')
    renameSync(ws.file('staging/a.csv'), ws.file('incoming/a.csv'))
    const second = await run()
    expect(hashed()).toEqual(['incoming/a.csv'])
    expect(second.summary).toMatchObject({ committed: 1 })
    expect(rows()).toEqual(['new', 'old'])
  })

  it('hashes a file written moments ago on every run until its stat is old enough to vouch for its bytes', async () => {
    ws = workspace({ 'filedge.config.ts': config(ledger().top), 'incoming/fresh.csv': 'id,n\nf1,1\n' })
    // "Moments ago" however slowly the CLI starts: an mtime a minute ahead is within the window on every run.
    backdate(ws, 'incoming/fresh.csv', Date.now() / 1000 + 60)
    const hashed = hashedSince(ws)
    await run()
    expect(hashed()).toEqual(['incoming/fresh.csv'])
    // Still within the racy window: a same-size rewrite in the same mtime tick would look identical.
    expect((await run()).summary).toMatchObject({ skipped: 1 })
    expect(hashed()).toEqual(['incoming/fresh.csv'])
    backdate(ws, 'incoming/fresh.csv')
    await run()
    expect(hashed()).toEqual(['incoming/fresh.csv'])
    await run()
    expect(hashed()).toEqual([])
  })

  it('skips a terminally failed file without reading it, and reads it again once requeued', async () => {
    ws = workspace({ 'filedge.config.ts': config(ledger().top, 'retry: { attempts: 1 },'), 'incoming/bad.csv': 'id,n\nb1,notanumber\n' })
    backdate(ws, 'incoming/bad.csv')
    const hashed = hashedSince(ws)
    expect((await run()).code).toBe(1)
    expect(hashed()).toEqual(['incoming/bad.csv'])

    const second = await run()
    expect(second.code).toBe(0)
    expect(hashed()).toEqual([])
    expect(second.lines.find((line) => line.event === 'file:skipped')).toMatchObject({ reason: 'terminal' })
    expect(String(second.lines.find((line) => line.event === 'file:skipped')!.message)).toContain('filedge requeue')

    expect((await ws.cli(['requeue', 'incoming/bad.csv'], { env: ledger().env() })).code).toBe(0)
    expect((await run()).code).toBe(1)
    expect(hashed()).toEqual(['incoming/bad.csv'])
  })
}

describe('stat cache with the SQLite ledger', () => {
  statCacheSuite(() => ({
    top: '',
    env: () => ({}),
    events: async (ws) => ws.query<{ n: number }>('.filedge/ledger.db', 'SELECT count(*) AS n FROM events')[0].n,
  }))
})

describePostgres('stat cache with the Postgres ledger', () => {
  let schema: string
  beforeEach(() => {
    schema = freshSchema('filedge_statcache')
  })
  afterEach(async () => {
    await dropSchema(schema)
  })
  statCacheSuite(() => ({
    top: "ledger: env('FILEDGE_LEDGER_URL'),",
    env: () => ({ FILEDGE_LEDGER_URL: ledgerUrl(schema) }),
    events: async () => Number((await pgQuery<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".events`))[0].n),
  }))
})
