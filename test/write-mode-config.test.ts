import { afterEach, describe, expect, it } from 'vitest'
import { isFiledgeError, resolveConfig, tableSpec, type Destination, type PipelineConfig, type Preset } from '../core/index.js'
import { sqlite } from '../plugins/sqlite/index.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * The writeMode key of a pipeline: its shape, its columns, the destination's
 * declared modes. Every problem is reported with its key path, all at once,
 * before any database is touched.
 */

const COLUMNS = {
  customer_id: { type: 'integer', source: 'Customer ID' },
  op: 'string',
  updated_at: 'timestamp',
  name: { type: 'string', required: true },
  score: 'float',
  flag: 'boolean',
  doc: 'json',
} satisfies PipelineConfig['columns']
const OPS = { insert: ['c'], update: ['u'], delete: ['d'] }

const appendOnly: Destination = {
  name: 'ndjson-sink',
  capabilities: { transactions: true, writeModes: ['append'] },
  describe: () => 'sink',
  prepare: async () => undefined,
  write: async () => ({ rows: 0 }),
}

function resolve(pipeline: Partial<PipelineConfig> & Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return resolveConfig({ ...extra, pipelines: [{ name: 'p', source: 'in', destination: sqlite({ path: 'x.db' }), table: 't', columns: COLUMNS, ...pipeline }] }, { cwd: '/tmp' })
}

function problems(pipeline: Partial<PipelineConfig> & Record<string, unknown>): string[] {
  try {
    resolve(pipeline)
  } catch (error) {
    expect(isFiledgeError(error) && error.code).toBe('CONFIG_INVALID')
    return (error as Error).message.replace(/^invalid config:\s*/, '').split('\n').map((line) => line.trim())
  }
  throw new Error('expected the config to be refused')
}

describe('writeMode in the config', () => {
  it('defaults to append; truncate refuses empty files unless allowEmpty', () => {
    expect(resolve({}).pipelines[0].writeMode).toEqual({ kind: 'append' })
    expect(resolve({ writeMode: 'truncate' }).pipelines[0].writeMode).toEqual({ kind: 'truncate', allowEmpty: false })
    expect(resolve({ writeMode: { truncate: { allowEmpty: true } } }).pipelines[0].writeMode).toEqual({ kind: 'truncate', allowEmpty: true })
  })

  it('cdc: keys, op and sequence become required for coercion, other columns are checked on inserts and updates; the table has no op column', () => {
    const pipeline = resolve({ writeMode: { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: OPS } } }).pipelines[0]
    expect(pipeline.writeMode).toMatchObject({ kind: 'cdc', keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } })
    expect(pipeline.columns.map((column) => [column.name, column.required])).toEqual([
      ['customer_id', true],
      ['op', true],
      ['updated_at', true],
      ['name', false],
      ['score', false],
      ['flag', false],
      ['doc', false],
    ])
    expect(tableSpec(pipeline).columns.map((column) => [column.name, column.required])).toEqual([
      ['customer_id', true],
      ['updated_at', true],
      ['name', true],
      ['score', false],
      ['flag', false],
      ['doc', false],
    ])
    // Ops lists a user leaves out are empty.
    expect(resolve({ writeMode: { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { update: ['U'] } } } }).pipelines[0].writeMode).toMatchObject({ ops: { insert: [], update: ['U'], delete: [] } })
  })

  it('names the mode a misspelt or incomplete writeMode should be', () => {
    expect(problems({ writeMode: 'truncat' as never })).toEqual(['pipelines[0].writeMode: expected one of append, truncate, cdc; got "truncat"'])
    expect(problems({ writeMode: 'cdc' as never })).toEqual([
      "pipelines[0].writeMode: cdc needs its keys, op column, sequence column and op values: { cdc: { keys: ['id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }",
    ])
    expect(problems({ writeMode: { cdx: {} } as never })).toContain('pipelines[0].writeMode.cdx: unknown key; did you mean "cdc"?')
    expect(problems({ writeMode: {} as never })).toEqual(["pipelines[0].writeMode: expected 'append', 'truncate', { truncate: { allowEmpty } } or { cdc: { keys, op, sequence, ops } }"])
    expect(problems({ writeMode: { truncate: { allowEmty: true } } as never })).toEqual(['pipelines[0].writeMode.truncate.allowEmty: unknown key; did you mean "allowEmpty"?'])
    expect(problems({ writeMode: 'truncate', allowEmpty: true })).toEqual(['pipelines[0].allowEmpty: unknown key; it is an option of the truncate mode: writeMode: { truncate: { allowEmpty: true } }'])
    expect(problems({ writeMode: { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: { upsert: ['u'] } } } as never })).toEqual([
      'pipelines[0].writeMode.cdc.ops.upsert: unknown key; did you mean "insert"?',
    ])
    expect(problems({ writeMode: { cdc: { keys: [], op: 'op', sequence: 'updated_at', ops: { insert: [] } } } })).toEqual([
      'pipelines[0].writeMode.cdc.keys: expected at least one key column',
      'pipelines[0].writeMode.cdc.ops.insert: expected at least one op value',
    ])
  })

  it('cdc: every column it names must be declared, of a fitting type, in one role; every problem at once', () => {
    expect(
      problems({ writeMode: { cdc: { keys: ['custmer_id', 'Customer ID', 'score', 'doc', 'name', 'name'], op: 'flag', sequence: 'flag', ops: { insert: ['c', 'c'], update: ['c'], delete: ['d'] } } } }),
    ).toEqual([
      'pipelines[0].writeMode.cdc.keys[0]: "custmer_id" is not a declared column; did you mean "customer_id"?',
      'pipelines[0].writeMode.cdc.keys[1]: "Customer ID" is not a declared column; it is the source field of column "customer_id", name the column',
      'pipelines[0].writeMode.cdc.keys[2]: a key cannot be a float column (doubles make no stable identity; declare it decimal or integer)',
      'pipelines[0].writeMode.cdc.keys[3]: a key cannot be a json column (documents make no stable identity)',
      'pipelines[0].writeMode.cdc.keys[5]: "name" is listed twice',
      'pipelines[0].writeMode.cdc.op: the op column must be a string column; "flag" is boolean',
      'pipelines[0].writeMode.cdc.sequence: a sequence must be one of integer, float, decimal, date, timestamp, string; "flag" is boolean',
      'pipelines[0].writeMode.cdc.sequence: "flag" is also the op column',
      'pipelines[0].writeMode.cdc.ops.insert[1]: "c" is already listed',
      'pipelines[0].writeMode.cdc.ops.update[0]: "c" is already an insert op',
    ])
    expect(problems({ writeMode: { cdc: { keys: ['customer_id', 'updated_at'], op: 'customer_id', sequence: 'version', ops: { delete: ['d'] } } } })).toEqual([
      'pipelines[0].writeMode.cdc.op: the op column must be a string column; "customer_id" is integer',
      'pipelines[0].writeMode.cdc.op: "customer_id" is also a key',
      'pipelines[0].writeMode.cdc.sequence: "version" is not a declared column; declared columns: "customer_id", "op", "updated_at", "name", "score", "flag", "doc"',
      "pipelines[0].writeMode.cdc.ops: expected insert or update values (e.g. insert: ['c'], update: ['u']); with deletes only no row could ever be written",
    ])
  })

  it('a destination that does not declare the mode is refused', () => {
    expect(problems({ destination: appendOnly, writeMode: { cdc: { keys: ['customer_id'], op: 'op', sequence: 'updated_at', ops: OPS } } })).toEqual([
      'pipelines[0].writeMode: destination "ndjson-sink" does not support the cdc write mode (it declares append); use another write mode or another destination',
    ])
    expect(problems({ destination: appendOnly, writeMode: { truncate: {} } })).toEqual([
      'pipelines[0].writeMode: destination "ndjson-sink" does not support the truncate write mode (it declares append); use another write mode or another destination',
    ])
  })

  it("a preset's defaults.writeMode applies to its pipelines and is checked like the pipeline's own", () => {
    const preset: Preset = { name: 'snapshots', defaults: { writeMode: 'truncate' } }
    const config = resolve({}, { presets: [preset] })
    expect(config.pipelines[0].writeMode).toEqual({ kind: 'truncate', allowEmpty: false })
    expect(() => resolve({ destination: appendOnly }, { presets: [preset] })).toThrow(/pipelines\[0\]\.writeMode: destination "ndjson-sink" does not support the truncate write mode/)
    expect(() => resolve({}, { presets: [{ name: 'bad', defaults: { writeMode: 'truncat' } }] })).toThrow(/presets\[0\] \("bad"\)\.defaults\.writeMode/)
  })
})

describe('writeMode from the CLI', () => {
  let ws: Workspace | undefined
  afterEach(() => ws?.remove())

  it('a cdc key that is not declared exits 2 with its key path, before any database is created', async () => {
    ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: "{ id: 'integer', op: 'string', at: 'timestamp' }",
        extra: "writeMode: { cdc: { keys: ['idd'], op: 'op', sequence: 'at', ops: { insert: ['c'] } } },",
      }),
      'incoming/a.csv': 'id,op,at\n1,c,2024-05-01T00:00:00Z\n',
    })
    const result = await ws.cli()
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].writeMode.cdc.keys[0]: "idd" is not a declared column; did you mean "id"?')
    expect(ws.exists('.filedge')).toBe(false)
    expect(ws.exists('warehouse.db')).toBe(false)
  })
})
