import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { claimLost, fileInvalid, resolveConfig, type Destination, type RowBatch, type TableSpec, type WriteJob } from '../core/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Group commit in the SQLite destination (plugins/sqlite/group-commit.ts):
 * small append files queued behind one another share one transaction, each in
 * a savepoint of its own. These tests queue several writes at once, so they
 * land in one group, and check that each file is still atomic on its own and
 * that a write resolves only once its rows are committed.
 */

const TABLE: TableSpec = { name: 'orders', columns: [{ name: 'id', type: 'string', required: true }] }

function hashOf(seed: string): string {
  return seed.padEnd(64, '0')
}

async function* batches(ids: string[], failAfter?: number): AsyncGenerator<RowBatch> {
  for (let index = 0; index < ids.length; index++) {
    if (failAfter !== undefined && index === failAfter) throw fileInvalid(`incoming/${ids[0]}.csv`, 'a bad row')
    yield { columns: ['id'], rows: [[ids[index]]], rowNumbers: [index + 1], lines: [index + 2] }
    // Let the other writes queue up behind this one while it is in the transaction.
    await new Promise((resolve) => setImmediate(resolve))
  }
}

function job(seed: string, ids: string[], options: { failAfter?: number; leaseLost?: boolean } = {}): WriteJob {
  const hash = hashOf(seed)
  const file = { hash, path: `incoming/${seed}.csv`, size: 100, version: '0:0', modifiedAt: 0 }
  return {
    pipeline: 'orders',
    table: TABLE,
    writeMode: { kind: 'append' },
    file,
    loadId: randomUUID(),
    ingestedAt: '2026-01-02T03:04:05.678000Z',
    batches: batches(ids, options.failAfter),
    signal: new AbortController().signal,
    async assertLease() {
      if (options.leaseLost) throw claimLost(file.path, 'test: lease taken over')
    },
  }
}

describe('SQLite destination group commit', () => {
  let dir: string
  let file: string
  let destination: Destination
  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-group-'))
    file = path.join(dir, 'warehouse.db')
    destination = sqlite({ path: file })
    const config = resolveConfig({ pipelines: [{ name: 'orders', source: 'in', destination, table: 'orders', columns: { id: 'string' } }] }, { cwd: dir })
    await destination.open!({ config, logger: { debug() {}, info() {}, warn() {}, error() {} } })
    await destination.prepare(TABLE)
  })
  afterEach(async () => {
    await destination.close?.()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Rows by file, read through a second connection: only what is committed. */
  const committed = () => {
    const db = new Database(file, { readonly: true })
    try {
      const rows = db.prepare('SELECT id, _source_file_hash AS hash FROM orders ORDER BY id').all() as { id: string; hash: string }[]
      return rows.map((row) => row.id)
    } finally {
      db.close()
    }
  }

  it('fails a bad file in the middle of a group alone: its rows roll back, the files before and after it commit', async () => {
    const writes = [
      destination.write(job('a', ['a1', 'a2', 'a3'])),
      destination.write(job('b', ['b1', 'b2', 'b3'], { failAfter: 2 })),
      destination.write(job('c', ['c1', 'c2'])),
      destination.write(job('d', ['d1'], { leaseLost: true })),
      destination.write(job('e', ['e1'])),
    ]
    const outcomes = await Promise.allSettled(writes)
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'])
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'FILE_INVALID' })
    expect((outcomes[3] as PromiseRejectedResult).reason).toMatchObject({ code: 'CLAIM_LOST' })
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled').map((outcome) => (outcome as PromiseFulfilledResult<{ rows: number }>).value)).toEqual([
      { rows: 3 },
      { rows: 2 },
      { rows: 1 },
    ])
    expect(committed()).toEqual(['a1', 'a2', 'a3', 'c1', 'c2', 'e1'])
  })

  it('resolves a write only once its rows are committed and visible to another connection', async () => {
    const seen = new Map<string, string[]>()
    await Promise.all(['f', 'g', 'h'].map((seed) => destination.write(job(seed, [`${seed}1`, `${seed}2`])).then(() => seen.set(seed, committed()))))
    for (const seed of ['f', 'g', 'h']) expect(seen.get(seed)).toEqual(expect.arrayContaining([`${seed}1`, `${seed}2`]))
  })

  it('commits the open group before a truncate file runs its own transaction', async () => {
    await destination.prepare(TABLE, { kind: 'truncate', allowEmpty: false })
    const append = destination.write(job('i', ['i1', 'i2']))
    const truncate = destination.write({ ...job('j', ['j1']), writeMode: { kind: 'truncate', allowEmpty: false } })
    await Promise.all([append, truncate])
    expect(committed()).toEqual(['j1'])
  })
})

describe('group commit through the CLI', () => {
  let ws: Workspace | undefined
  afterEach(() => ws?.remove())

  it('with many files in flight, a bad file fails alone and every other file commits with all its rows', async () => {
    const files: Record<string, string> = {}
    for (let index = 0; index < 40; index++) {
      const name = `f${String(index).padStart(2, '0')}`
      files[`incoming/${name}.csv`] = `id,n\n${Array.from({ length: 30 }, (_, row) => `${name}-${row},${row}`).join('\n')}\n`
    }
    // The bad value sits on the last line, so the file's first rows are already inserted when it fails.
    files['incoming/f20.csv'] = files['incoming/f20.csv'].replace(/f20-29,29\n$/, 'f20-29,not-a-number\n')
    ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: `{ id: { type: 'string', required: true }, n: 'integer' }` }), ...files })
    const result = await ws.cli(['--concurrency', '16', '--reporter', 'simple'])
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('incoming/f20.csv:31 column n')
    const states = ws.query<{ path: string; state: string; rows: number | null }>('.filedge/ledger.db', 'SELECT path, state, rows FROM files ORDER BY path')
    expect(states.filter((file) => file.state !== 'COMMITTED').map((file) => [file.path, file.state])).toEqual([['incoming/f20.csv', 'FAILED']])
    expect(states.filter((file) => file.state === 'COMMITTED').every((file) => file.rows === 30)).toBe(true)
    const perFile = ws.query<{ prefix: string; n: number }>('warehouse.db', "SELECT substr(id, 1, 3) AS prefix, count(*) AS n FROM orders GROUP BY prefix ORDER BY prefix")
    expect(perFile).toHaveLength(39)
    expect(perFile.every((row) => row.n === 30)).toBe(true)
    expect(perFile.some((row) => row.prefix === 'f20')).toBe(false)
  })
})
