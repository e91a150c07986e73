import { createHmac } from 'node:crypto'
import { describe, expect, it, type TestContext } from 'vitest'
import { decrypt } from '../core/index.js'
import { readLedger } from './helpers/invariants.js'
import { sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * Protected columns (issue 21): `encrypt` stores an AES-256-GCM frame,
 * `hash` an HMAC-SHA256 pseudonym; NULL stays NULL; keys come from the
 * environment and are checked before anything is written; a value opens
 * with its key and fails loudly with any other.
 */

const KEY = 'a1'.repeat(32)
const OTHER = 'b2'.repeat(32)
const COLUMNS = `{
  id: { type: 'integer', required: true },
  ssn: { type: 'string', encrypt: { key: env('PII_KEY') } },
  born: { type: 'date', encrypt: { key: env('PII_KEY') } },
  email: { type: 'string', hash: { key: env('PSEUDO_KEY') } },
}`
const CSV = 'id,ssn,born,email\n1,111-11-1111,1980-02-29,ann@example.com\n2,,,\n3,333-33-3333,1999-12-31,ann@example.com\n'

function project(context: TestContext, options: { columns?: string; extra?: string; files?: Record<string, string> } = {}): Workspace {
  const ws = workspace({
    'filedge.config.ts': sqliteConfig({ columns: options.columns ?? COLUMNS, imports: "import { env } from 'filedge'", extra: options.extra }),
    'incoming/a.csv': CSV,
    ...options.files,
  })
  context.onTestFinished(() => ws.remove())
  return ws
}

const ENV = { PII_KEY: KEY, PSEUDO_KEY: OTHER }

describe('protected columns', () => {
  it.concurrent('encrypt: stored as text frames that decrypt to the checked value; hash: HMAC-SHA256 hex that joins; NULL stays NULL', async (context) => {
    const ws = project(context)
    const result = await ws.cli(['--reporter', 'simple'], { env: ENV })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const rows = ws.query<{ id: number; ssn: string | null; born: string | null; email: string | null }>('warehouse.db', 'SELECT id, ssn, born, email FROM orders ORDER BY id')
    expect(rows.map((row) => row.id)).toEqual([1, 2, 3])
    expect(rows[1]).toEqual({ id: 2, ssn: null, born: null, email: null })
    for (const row of [rows[0], rows[2]]) {
      expect(row.ssn).toMatch(/^fe1:[0-9a-f]{8}:/)
      expect(row.born).toMatch(/^fe1:[0-9a-f]{8}:/)
    }
    expect(rows.map((row) => decrypt(row.ssn, KEY))).toEqual(['111-11-1111', null, '333-33-3333'])
    expect(rows.map((row) => decrypt(row.born, KEY))).toEqual(['1980-02-29', null, '1999-12-31'])
    // Two sealings of a value differ; pseudonyms of one value are one pseudonym.
    expect(rows[0].ssn).not.toBe(rows[2].ssn)
    expect(rows[0].email).toBe(createHmac('sha256', Buffer.from(OTHER, 'hex')).update('ann@example.com').digest('hex'))
    expect(rows[2].email).toBe(rows[0].email)
    // Stored as text whatever the type they were checked as.
    const types = ws.query<{ name: string; type: string }>('warehouse.db', "SELECT name, type FROM pragma_table_info('orders')")
    expect(Object.fromEntries(types.map((column) => [column.name, column.type]))).toMatchObject({ ssn: 'TEXT', born: 'TEXT', email: 'TEXT' })

    const cli = await ws.cli(['decrypt', rows[0].ssn!, rows[2].born!], { env: ENV })
    expect(cli.stderr).toBe('')
    expect(cli.stdout).toBe('111-11-1111\n1999-12-31\n')
  })

  it.concurrent('a wrong key fails loudly, prints no value, and names key ids only', async (context) => {
    const ws = project(context)
    await ws.cli([], { env: ENV })
    const [row] = ws.query<{ ssn: string }>('warehouse.db', 'SELECT ssn FROM orders WHERE id = 1')
    const wrong = await ws.cli(['decrypt', row.ssn, '--key-env', 'WRONG_KEY'], { env: { ...ENV, WRONG_KEY: OTHER } })
    expect(wrong.code).toBe(1)
    expect(wrong.stdout).toBe('')
    expect(wrong.stderr).toMatch(/^\[filedge\] the value was encrypted with key [0-9a-f]{8}; the key given has id [0-9a-f]{8}\n$/)
    expect(wrong.stderr).not.toContain(OTHER)
    expect(() => decrypt(row.ssn, OTHER)).toThrow(expect.objectContaining({ code: 'DECRYPT_FAILED' }))
  })

  it.concurrent('keys rotate: values keep the id of the key that sealed them, and open with it beside the new one', async (context) => {
    const ws = project(context, { files: { 'incoming/b.csv': 'id,ssn,born,email\n4,444-44-4444,,\n' } })
    await ws.cli([], { env: { ...ENV, PII_KEY: KEY } })
    ws.write('incoming/c.csv', 'id,ssn,born,email\n5,555-55-5555,,\n')
    const NEW = 'd4'.repeat(32)
    await ws.cli([], { env: { ...ENV, PII_KEY: NEW } })
    const values = ws.query<{ ssn: string }>('warehouse.db', 'SELECT ssn FROM orders WHERE id IN (4, 5) ORDER BY id').map((row) => row.ssn)
    expect(values[0].split(':')[1]).not.toBe(values[1].split(':')[1])
    const both = await ws.cli(['decrypt', ...values, '--key-env', 'OLD_KEY', 'NEW_KEY'], { env: { OLD_KEY: KEY, NEW_KEY: NEW } })
    expect(both.stdout).toBe('444-44-4444\n555-55-5555\n')
    const onlyNew = await ws.cli(['decrypt', ...values, '--key-env', 'NEW_KEY'], { env: { NEW_KEY: NEW } })
    expect(onlyNew.code).toBe(1)
    expect(onlyNew.stderr).toContain(`the value was encrypted with key ${values[0].split(':')[1]}`)
  })

  it.concurrent('a missing key stops the run before anything is written; status needs no key', async (context) => {
    const ws = project(context)
    const result = await ws.cli([], { env: { PSEUDO_KEY: OTHER } })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('keys missing or invalid; nothing was loaded:')
    expect(result.stderr).toContain('pipeline "orders" column "ssn" encrypt key: environment variable PII_KEY is not set')
    expect(result.stderr).toContain('pipeline "orders" column "born" encrypt key: environment variable PII_KEY is not set')
    expect(ws.exists('.filedge')).toBe(false)
    expect(ws.exists('warehouse.db')).toBe(false)
    const status = await ws.cli(['status'], { env: {} })
    expect(status.code).toBe(0)
  })

  it.concurrent.each([
    ['a key of the wrong length', { PII_KEY: 'abcdef1234', PSEUDO_KEY: OTHER }, 'pipelines[0].columns.ssn.encrypt.key: the value of PII_KEY is 10 characters, not a 32-byte key; expected 32 random bytes as 64 hex digits or 44 base64 characters', 'abcdef1234'],
    ['a key that is not hex or base64', { PII_KEY: 'z'.repeat(64), PSEUDO_KEY: OTHER }, 'the value of PII_KEY is 64 characters, not a 32-byte key', 'z'.repeat(64)],
  ])('%s is a config error naming the variable, never the value', async (_name, env, message, value) => {
    const ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns: COLUMNS, imports: "import { env } from 'filedge'" }), 'incoming/a.csv': CSV })
    try {
      const result = await ws.cli([], { env })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(message)
      expect(result.stderr).not.toContain(value)
      expect(ws.exists('.filedge')).toBe(false)
    } finally {
      ws.remove()
    }
  })

  it.concurrent('a key written in the config is refused, and not repeated', async (context) => {
    const ws = project(context, { columns: `{ id: 'integer', ssn: { type: 'string', encrypt: { key: '${KEY}' } } }` })
    const result = await ws.cli([], { env: ENV })
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('pipelines[0].columns.ssn.encrypt.key: expected env("NAME"): a key is read from the environment, never written in the config')
    expect(result.stderr).not.toContain(KEY)
  })

  it.concurrent.each([
    ["{ id: 'integer', ssn: { type: 'string', encrypt: { key: env('PII_KEY') }, hash: { key: env('PII_KEY') } } }", '', 'pipelines[0].columns.ssn: encrypt or hash, not both'],
    [
      "{ id: { type: 'integer', encrypt: { key: env('PII_KEY') } }, op: 'string', seq: 'integer' }",
      "writeMode: { cdc: { keys: ['id'], op: 'op', sequence: 'seq', ops: { insert: ['c'] } } },",
      'pipelines[0].columns.id.encrypt: a cdc key cannot be encrypted (every encryption of a value differs, so a change would never find its row); use hash',
    ],
    [
      "{ id: 'integer', op: 'string', seq: { type: 'integer', hash: { key: env('PII_KEY') } } }",
      "writeMode: { cdc: { keys: ['id'], op: 'op', sequence: 'seq', ops: { insert: ['c'] } } },",
      'pipelines[0].columns.seq.hash: the sequence column of a cdc pipeline cannot be protected (it orders the changes)',
    ],
    ["{ id: 'integer', ssn: { type: 'string', encrypt: { key: env('PII_KEY') } } }", 'quarantine: { maxRows: 1 },', 'pipelines[0].quarantine.key: required, because "ssn" is protected and a bad record holds its value in clear'],
  ])('refused at config time: %s', async (columns, extra, message) => {
    const ws = workspace({ 'filedge.config.ts': sqliteConfig({ columns, extra, imports: "import { env } from 'filedge'" }), 'incoming/a.csv': 'id\n1\n' })
    try {
      const result = await ws.cli([], { env: ENV })
      expect(result.code).toBe(2)
      expect(result.stderr).toContain(message)
    } finally {
      ws.remove()
    }
  })

  it.concurrent('a cdc key may be hashed: changes find their row by pseudonym', async (context) => {
    const ws = project(context, {
      columns: "{ email: { type: 'string', required: true, hash: { key: env('PSEUDO_KEY') } }, op: 'string', seq: 'integer', plan: 'string' }",
      extra: "writeMode: { cdc: { keys: ['email'], op: 'op', sequence: 'seq', ops: { insert: ['c'], update: ['u'] } } },",
      files: { 'incoming/a.csv': 'email,op,seq,plan\nann@example.com,c,1,free\nbob@example.com,c,1,free\n', 'incoming/b.csv': 'email,op,seq,plan\nann@example.com,u,2,pro\n' },
    })
    const result = await ws.cli([], { env: ENV })
    expect(result.stderr).toBe('')
    const pseudonym = (email: string) => createHmac('sha256', Buffer.from(OTHER, 'hex')).update(email).digest('hex')
    expect(ws.query('warehouse.db', 'SELECT email, plan FROM orders ORDER BY plan')).toEqual([
      { email: pseudonym('bob@example.com'), plan: 'free' },
      { email: pseudonym('ann@example.com'), plan: 'pro' },
    ])
  })

  it.concurrent("a protected column's bad value never reaches a message, the ledger or validate", async (context) => {
    const ws = project(context, { files: { 'incoming/a.csv': 'id,ssn,born,email\n1,111-11-1111,31/12/1999-SECRET,ann@example.com\n' } })
    const result = await ws.cli(['--json'], { env: ENV })
    expect(result.code).toBe(1)
    expect(result.stdout).toContain('incoming/a.csv:2 column born: not a valid date (the value is not shown: the column is protected)')
    expect(result.stdout + result.stderr).not.toContain('SECRET')
    const ledger = readLedger(ws.dir)
    expect(JSON.stringify(ledger)).not.toContain('SECRET')
    const validate = await ws.cli(['validate', 'incoming/a.csv', '--json'], { env: {} })
    expect(validate.stdout).toContain('not a valid date (the value is not shown: the column is protected)')
    expect(validate.stdout).not.toContain('SECRET')
  })
})
