import { afterEach, describe, expect, it } from 'vitest'
import { describePostgres } from './helpers/postgres.js'
import { target, type Target, type TargetName } from './helpers/targets.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * `filedge lineage` lists the committed files a pipeline's table is made of,
 * on the SQLite ledger (sqlite target) and on the Postgres ledger.
 */

interface Lineage {
  pipelines: {
    pipeline: string
    table: string
    writeMode: string
    rows: number
    files: { hash: string; path: string; paths: string[]; rows: number; committedAt: string }[]
  }[]
}

function suite(name: TargetName) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`filedge lineage: ${name} ledger`, () => {
    let ws: Workspace | undefined
    let t: Target | undefined
    afterEach(async () => {
      ws?.remove()
      await t?.cleanup()
    })

    it('lists every committed file with its hash, rows and paths; the rows lead back to them by hash', async () => {
      t = target(name)
      ws = workspace({
        'filedge.config.ts': t.config({ columns: "{ id: { type: 'string', required: true }, n: 'integer' }", writeMode: "'append'" }),
        'incoming/a.csv': 'id,n\na1,1\na2,2\n',
        'incoming/copy-of-a.csv': 'id,n\na1,1\na2,2\n',
        'incoming/b.csv': 'id,n\nb1,3\n',
        'incoming/bad.csv': 'id,n\nx,not-a-number\n',
      })
      expect((await ws.cli(['--reporter', 'silent'], { env: t.env })).code).toBe(1)

      const result = await ws.cli(['lineage', '--json'], { env: t.env })
      expect(result.code).toBe(0)
      const lineage = JSON.parse(result.stdout) as Lineage
      expect(lineage.pipelines).toHaveLength(1)
      const [entry] = lineage.pipelines
      expect(entry).toMatchObject({ pipeline: 'changes', table: 'customers', writeMode: 'append', rows: 3 })
      // The failed file is not part of the table; the copy is the same file under a second name.
      expect(entry.files.map((file) => [file.rows, [...file.paths].sort()]).sort()).toEqual([
        [1, ['incoming/b.csv']],
        [2, ['incoming/a.csv', 'incoming/copy-of-a.csv']],
      ])
      for (const file of entry.files) {
        expect(file.hash).toMatch(/^[0-9a-f]{64}$/)
        expect(Number.isNaN(Date.parse(file.committedAt))).toBe(false)
        const rows = await t.select(ws, `SELECT count(*) AS n FROM {customers} WHERE _source_file_hash = '${file.hash}'`)
        expect(Number(rows[0].n)).toBe(file.rows)
      }

      const text = await ws.cli(['lineage'], { env: t.env })
      expect(text.code).toBe(0)
      expect(text.stdout).toContain('changes → ')
      expect(text.stdout).toContain('table customers')
      expect(text.stdout).toMatch(/incoming\/b\.csv/)
      expect(text.stdout).not.toContain('bad.csv')
      expect(text.stdout).toContain('2 files · 3 rows')
    })

    it('an unknown pipeline is a usage error', async () => {
      t = target(name)
      ws = workspace({ 'filedge.config.ts': t.config({ columns: "{ id: 'string' }", writeMode: "'append'" }), 'incoming/.gitkeep': '' })
      const result = await ws.cli(['lineage', '--pipeline', 'nope'], { env: t.env })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain('unknown pipeline "nope"; the config has "changes"')
    })
  })
}

suite('sqlite')
suite('postgres')
