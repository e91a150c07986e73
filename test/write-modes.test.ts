import { afterEach, describe, expect, it } from 'vitest'
import { describePostgres } from './helpers/postgres.js'
import { target, type Target, type TargetName } from './helpers/targets.js'
import { workspace, type Workspace } from './helpers/workspace.js'

/**
 * Truncate and cdc pipelines run by the real CLI against each destination:
 * what a user sees in the tables, the ledger, the exit code and the messages.
 * (The destination-level cases, for any destination, are in the conformance
 * kit; the SIGKILL cases in write-modes-crash.test.ts.)
 */

const SNAPSHOT_COLUMNS = "{ id: { type: 'string', required: true }, n: 'integer' }"
const CDC_COLUMNS = "{ customer_id: 'integer', op: 'string', updated_at: 'timestamp', name: { type: 'string', required: true }, tier: 'integer' }"
const CDC_MODE = "{ cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c', 'i'], update: ['u'], delete: ['d'] } } }"

const snapshot = (day: number, rows: number) => `id,n\n${Array.from({ length: rows }, (_, i) => `d${day}-r${i + 1},${day * 100 + i}`).join('\n')}\n`

function suite(name: TargetName, body: (context: { make(files: Record<string, string>, config: Parameters<Target['config']>[0]): Workspace; target(): Target }) => void) {
  const wrap = name === 'postgres' ? describePostgres : describe
  wrap(`write modes from the CLI: ${name}`, () => {
    let ws: Workspace | undefined
    let current: Target | undefined
    afterEach(async () => {
      ws?.remove()
      ws = undefined
      await current?.cleanup()
      current = undefined
    })
    body({
      make(files, config) {
        current = target(name)
        ws = workspace({ 'filedge.config.ts': current.config(config), ...files })
        return ws
      },
      target: () => current!,
    })
  })
}

for (const name of ['sqlite', 'duckdb', 'postgres'] as const) {
  suite(name, ({ make, target }) => {
    it('truncate: files found together are applied one at a time in path order; an empty file fails and keeps the contents', async () => {
      // The first file by path is the largest, slowest to hash: were files taken up in parallel, later ones would get to the table first.
      const sizes = new Map([[1, 200_000], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]])
      const files = Object.fromEntries([3, 1, 6, 2, 5, 4].map((day) => [`incoming/customers-2024-05-0${day}.csv`, snapshot(day, sizes.get(day)!)]))
      const ws = make(files, { columns: SNAPSHOT_COLUMNS, writeMode: "'truncate'" })
      const { env } = target()
      const first = await ws.cli(['--reporter', 'simple'], { env })
      expect(first.stderr).toBe('')
      expect(first.code).toBe(0)
      expect(first.stdout).toMatch(/committed 6 · failed 0/)
      // The table holds exactly the last file by path, with its provenance.
      const rows = await target().select(ws, 'SELECT id, CAST(n AS INTEGER) AS n, CAST(_source_row_number AS INTEGER) AS row FROM {customers} ORDER BY id')
      expect(rows.map((row) => [row.id, Number(row.n), Number(row.row)])).toEqual(Array.from({ length: 6 }, (_, i) => [`d6-r${i + 1}`, 600 + i, i + 1]))
      // The load log shows the order: by path, whatever order the files were written in.
      const log = await target().select(ws, 'SELECT file_path, CAST(rows AS INTEGER) AS rows FROM {customers__filedge_loads} ORDER BY applied')
      expect(log.map((row) => [row.file_path, Number(row.rows)])).toEqual([1, 2, 3, 4, 5, 6].map((day) => [`incoming/customers-2024-05-0${day}.csv`, sizes.get(day)]))

      ws.write('incoming/customers-2024-05-07.csv', 'id,n\n')
      ws.write('incoming/customers-2024-05-08.csv', '')
      const empty = await ws.cli(['--reporter', 'simple'], { env })
      expect(empty.code).toBe(1)
      expect(empty.stdout + empty.stderr).toContain('incoming/customers-2024-05-07.csv: no rows: applying it would empty table customers')
      const states = await target().files(ws)
      expect(states.filter((file) => file.state === 'FAILED').map((file) => file.path)).toEqual(['incoming/customers-2024-05-07.csv', 'incoming/customers-2024-05-08.csv'])
      expect(states.find((file) => file.path.endsWith('05-08.csv'))!.error).toMatch(/no rows.*allowEmpty: true/)
      const after = await target().select(ws, 'SELECT count(*) AS n, min(id) AS first FROM {customers}')
      expect([Number(after[0].n), after[0].first]).toEqual([6, 'd6-r1'])
    })

    it('truncate with allowEmpty: an empty file empties the table', async () => {
      const ws = make({ 'incoming/a.csv': snapshot(1, 2), 'incoming/b.csv': 'id,n\n' }, { columns: SNAPSHOT_COLUMNS, writeMode: '{ truncate: { allowEmpty: true } }' })
      const result = await ws.cli(['--reporter', 'simple'], { env: target().env })
      expect(result.code).toBe(0)
      expect(result.stdout).toMatch(/committed 2 · failed 0/)
      expect(Number((await target().select(ws, 'SELECT count(*) AS n FROM {customers}'))[0].n)).toBe(0)
    })

    it('cdc on a table that already holds two rows for one key: SQLite and Postgres refuse it at start; DuckDB heals the key on its next change', async () => {
      const columns = "{ customer_id: { type: 'integer', required: true }, updated_at: { type: 'timestamp', required: true }, name: { type: 'string', required: true }, tier: 'integer' }"
      const ws = make({ 'incoming/appended.csv': 'customer_id,updated_at,name,tier\n1,2024-05-01T00:00:00Z,Ann,1\n1,2024-05-01T00:00:00Z,Ann twice,1\n2,2024-05-01T00:00:00Z,Bob,1\n' }, { columns, writeMode: "'append'" })
      const { env } = target()
      expect((await ws.cli(['--reporter', 'simple'], { env })).code).toBe(0)
      ws.write('filedge.config.ts', target().config({ columns: CDC_COLUMNS, writeMode: CDC_MODE }))
      ws.write('incoming/changes.csv', 'customer_id,op,updated_at,name,tier\n1,u,2024-05-02T00:00:00Z,Ann B.,2\n')
      const switched = await ws.cli(['--reporter', 'simple'], { env })
      const names = async () => (await target().select(ws, 'SELECT CAST(customer_id AS INTEGER) AS id, name FROM {customers} ORDER BY customer_id, name')).map((row) => [Number(row.id), row.name])
      if (name === 'duckdb') {
        expect(switched.code).toBe(0)
        expect(await names()).toEqual([
          [1, 'Ann B.'],
          [2, 'Bob'],
        ])
        return
      }
      expect(switched.code).toBe(1)
      expect(switched.stderr).toMatch(/table \S*customers\b.* has several rows for one key \(customer_id\); a cdc table holds one row per key/)
      expect(await names()).toEqual([
        [1, 'Ann'],
        [1, 'Ann twice'],
        [2, 'Bob'],
      ])
    })

    it('cdc: a check on a renamed column names the field as the file calls it', async () => {
      const columns = "{ customer_id: { type: 'integer', source: 'CustomerID' }, op: { type: 'string', source: 'Action' }, updated_at: { type: 'timestamp', source: 'ChangedAt' }, name: 'string' }"
      const file = ['CustomerID,Action,ChangedAt,name', '1,c,2024-05-02T09:00:00Z,Ann', '2,x,2024-05-02T09:00:00Z,Bob', '1,u,2024-05-02T09:00:00Z,Ann B.', ''].join('\n')
      const ws = make({ 'incoming/renamed.csv': file }, { columns, writeMode: CDC_MODE })
      const run = await ws.cli(['--reporter', 'simple'], { env: target().env })
      expect(run.code).toBe(1)
      const [failed] = await target().files(ws)
      // Line 3's unknown op comes first; the duplicate sequence of key 1 (lines 2 and 4) after it.
      expect(failed.error).toMatch(/^incoming\/renamed\.csv:3 column Action \(→ op\): unknown op "x"/)
      ws.write('incoming/renamed.csv', file.replace('2,x,', '2,c,'))
      const again = await ws.cli(['--reporter', 'simple'], { env: target().env })
      expect(again.code).toBe(1)
      const errors = (await target().files(ws)).map((entry) => entry.error).filter(Boolean)
      expect(errors).toContainEqual(expect.stringMatching(/^incoming\/renamed\.csv:4 column ChangedAt \(→ updated_at\): same updated_at .* as line 2 for key customer_id="1"/))
    })

    it('cdc: changes collapse by instant, an older file arriving later changes nothing, the same file again changes nothing, a bad file fails alone', async () => {
      const newer = [
        'customer_id,op,updated_at,name,tier',
        // 10:30+02:00 is 08:30Z: older than the 09:00Z update below it, whatever the text says.
        '1,c,2024-05-02T10:30:00+02:00,Ann,1',
        '1,u,2024-05-02T09:00:00Z,Ann B.,2',
        '2,c,2024-05-02T09:00:00Z,Bob,1',
        '2,d,2024-05-02 10:00:00,,',
        '3,u,2024-05-02T09:00:00Z,"Cy, the third",3',
        '',
      ].join('\n')
      const bad = ['customer_id,op,updated_at,name,tier', '7,c,2024-05-02T09:00:00Z,Gil,1', '8,c,2024-05-02T09:00:00Z,Hal,1', '7,u,2024-05-02T09:00:00.000000+00:00,Gil B.,2', ''].join('\n')
      const ws = make({ 'incoming/changes-2024-05-02.csv': newer, 'incoming/changes-bad.csv': bad }, { columns: CDC_COLUMNS, writeMode: CDC_MODE })
      const { env } = target()
      const first = await ws.cli(['--reporter', 'simple'], { env })
      expect(first.code).toBe(1)
      expect(first.stdout).toMatch(/committed 1 · failed 1/)
      const failed = (await target().files(ws)).find((file) => file.path === 'incoming/changes-bad.csv')!
      expect(failed.state).toBe('FAILED')
      expect(failed.error).toMatch(/^incoming\/changes-bad\.csv:4 column updated_at: same updated_at .* as line 2 for key customer_id="7"/)

      const table = () => target().select(ws, 'SELECT CAST(customer_id AS INTEGER) AS id, name, CAST(tier AS INTEGER) AS tier, _source_file_hash AS hash, CAST(_source_row_number AS INTEGER) AS row, CAST(_ingested_at AS TEXT) AS at FROM {customers} ORDER BY customer_id')
      const view = async () => (await table()).map((row) => [Number(row.id), row.name, Number(row.tier), Number(row.row)])
      expect(await view()).toEqual([
        [1, 'Ann B.', 2, 2],
        [3, 'Cy, the third', 3, 5],
      ])
      const tombstones = await target().select(ws, 'SELECT CAST(customer_id AS INTEGER) AS id, CAST(_source_row_number AS INTEGER) AS row FROM {customers__filedge_deleted}')
      expect(tombstones.map((row) => [Number(row.id), Number(row.row)])).toEqual([[2, 4]])

      // An older file arrives: its changes to keys 1, 2 and 3 are older than the table's; key 4 is new.
      ws.write(
        'incoming/changes-2024-05-01.csv',
        ['customer_id,op,updated_at,name,tier', '1,u,2024-05-01T12:00:00Z,Old Ann,9', '2,i,2024-05-01T12:00:00Z,Zombie Bob,9', '3,d,2024-05-01T12:00:00Z,,', '4,c,2024-05-01T12:00:00Z,Dee,4', ''].join('\n'),
      )
      const second = await ws.cli(['--reporter', 'simple'], { env })
      expect(second.code).toBe(1) // the bad file is retried and fails again
      expect(second.stdout).toMatch(/committed 1 · failed 1/)
      expect(await view()).toEqual([
        [1, 'Ann B.', 2, 2],
        [3, 'Cy, the third', 3, 5],
        [4, 'Dee', 4, 4],
      ])
      const before = await table()

      // The same file again (requeued on purpose): nothing changes, not even _ingested_at.
      const requeue = await ws.cli(['requeue', 'incoming/changes-2024-05-02.csv'], { env })
      expect(requeue.code).toBe(0)
      const third = await ws.cli(['--reporter', 'simple', '--pipeline', 'changes'], { env })
      expect(third.stdout).toMatch(/committed 1 ·/)
      expect(await table()).toEqual(before)
      expect((await target().files(ws)).find((file) => file.path === 'incoming/changes-2024-05-02.csv')!.state).toBe('COMMITTED')
    })
  })
}
