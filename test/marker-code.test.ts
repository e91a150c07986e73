import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { resolveConfig, run, stage, type Destination } from '../core/index.js'
import { pipelineCode } from '../core/stages/code.js'
import { duckdb } from '../plugins/duckdb/index.js'
import { postgres } from '../plugins/postgres/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { readDuckdb } from './helpers/duckdb.js'
import { describePostgres, dropSchema, freshSchema, PG_URL, pgQuery } from './helpers/postgres.js'

/**
 * Each load records the stages' hash its rows were produced under in the
 * destination's load marker (beside the rows, in their transaction) as well
 * as in the ledger; a marker table made by an earlier filedge, without the
 * column, gets it added, on every built-in destination.
 */

const dirs: string[] = []
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

async function loadWithStage(destination: (dir: string) => Destination, before: (dir: string) => Promise<void>): Promise<{ dir: string; code: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-marker-code-'))
  dirs.push(dir)
  mkdirSync(path.join(dir, 'incoming'))
  writeFileSync(path.join(dir, 'incoming', 'a.csv'), 'id,n\na,1\nb,2\n')
  await before(dir)
  const config = resolveConfig(
    {
      pipelines: [
        {
          name: 'p',
          source: 'incoming',
          destination: destination(dir),
          table: 't',
          columns: { id: 'string', n: 'integer' },
          stages: [stage({ name: 'double', run: (rows) => rows.map((row) => ({ ...row, n: (row.n as number) * 2 })) })],
        },
      ],
    },
    { cwd: dir },
  )
  const summary = await run({ config })
  expect(summary).toMatchObject({ committed: 1, failed: 0 })
  const code = pipelineCode(config.pipelines[0]!)!.code
  const ledger = new Database(path.join(dir, '.filedge', 'ledger.db'), { readonly: true })
  try {
    expect(ledger.prepare('SELECT code FROM files').all()).toEqual([{ code }])
  } finally {
    ledger.close()
  }
  return { dir, code }
}

const OLD_COLUMNS = 'pipeline TEXT NOT NULL, file_hash TEXT NOT NULL, load_id TEXT NOT NULL, table_name TEXT NOT NULL, rows INTEGER NOT NULL, loaded_at TEXT NOT NULL'

describe('the load marker records the stages hash', () => {
  it('SQLite, into a marker table made before the column existed', async () => {
    const { dir, code } = await loadWithStage(
      (dir) => sqlite({ path: path.join(dir, 'w.db') }),
      async (dir) => {
        const db = new Database(path.join(dir, 'w.db'))
        db.exec(`CREATE TABLE filedge_loads (${OLD_COLUMNS}, PRIMARY KEY (pipeline, file_hash)) STRICT`)
        db.close()
      },
    )
    const db = new Database(path.join(dir, 'w.db'), { readonly: true })
    try {
      expect(db.prepare('SELECT code FROM filedge_loads').all()).toEqual([{ code }])
    } finally {
      db.close()
    }
  })

  it('DuckDB, into a marker table made before the column existed', async () => {
    const { dir, code } = await loadWithStage(
      (dir) => duckdb({ path: path.join(dir, 'w.duckdb') }),
      async (dir) => {
        await readDuckdb(path.join(dir, 'w.duckdb'), 'CREATE TABLE filedge_loads (pipeline VARCHAR NOT NULL, file_hash VARCHAR NOT NULL, load_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, rows BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL)')
      },
    )
    expect(await readDuckdb(path.join(dir, 'w.duckdb'), 'SELECT code FROM filedge_loads')).toEqual([{ code }])
  })
})

describePostgres('the load marker records the stages hash: Postgres', () => {
  const schema = freshSchema('filedge_marker_code')
  afterAll(() => dropSchema(schema))

  it('into a marker table made before the column existed', async () => {
    const { code } = await loadWithStage(
      () => postgres({ url: PG_URL, schema }),
      async () => {
        await pgQuery(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".filedge_loads (pipeline text NOT NULL, file_hash text NOT NULL, load_id text NOT NULL, table_name text NOT NULL, rows bigint NOT NULL, loaded_at timestamptz NOT NULL, PRIMARY KEY (pipeline, file_hash))`)
      },
    )
    expect(await pgQuery(`SELECT code FROM "${schema}".filedge_loads`)).toEqual([{ code }])
  })
})
