import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { redact } from '../core/index.js'
import { sqliteConfig, workspace } from './helpers/workspace.js'

/**
 * `redact` parses URLs and libpq keyword/value strings and rebuilds them with
 * the secret replaced. The regex it replaced stopped a password at the first
 * `#`, `@`, `/` or space, and knew nothing of `password=` strings: each case
 * below leaked part or all of its password.
 */
describe('redact', () => {
  const passwords = ['pa#ss', 'p@ss@word', 'pa/ss', 'a:b:c', '12/34', 'p%23a%40s%2Fs%20w%3A', 's3cr3t#@/:%']

  it.each(passwords)('blanks the password %j of a URL, written raw or percent-encoded, and nothing else', (password) => {
    for (const pw of [password, encodeURIComponent(password)]) {
      const text = `could not connect to postgres://loader:${pw}@db.internal:5432/warehouse?sslmode=require (timeout)`
      expect(redact(text)).toBe('could not connect to postgres://loader:***@db.internal:5432/warehouse?sslmode=require (timeout)')
    }
  })

  it('blanks a password with spaces in a URL, up to its @', () => {
    expect(redact('could not connect to postgres://loader:my secret pw@db/warehouse: timeout')).toBe('could not connect to postgres://loader:***@db/warehouse: timeout')
    expect(redact('postgres://loader:a b@db/w\nnext: user@example.com')).toBe('postgres://loader:***@db/w\nnext: user@example.com')
  })

  it('blanks password and sslpassword in libpq keyword/value strings, quoted or not', () => {
    expect(redact("host=db port=5432 user=bob password='a b\\' c#@/' sslpassword=k3y@/# dbname=w")).toBe("host=db port=5432 user=bob password='***' sslpassword=*** dbname=w")
    expect(redact('password = p@ss/w#rd host=db')).toBe('password = *** host=db')
    expect(redact("connection failed: password='unterminated secret\nnext line")).toBe("connection failed: password='***'\nnext line")
  })

  it('blanks secret query parameters of a URL, sslpassword included, and keeps the others', () => {
    expect(redact('postgres://u:pw@h/db?sslmode=verify-full&sslpassword=k#y&application_name=x')).toBe('postgres://u:***@h/db?sslmode=verify-full&sslpassword=***&application_name=x')
    expect(redact('GET /export?token=abc123&page=2 failed')).toBe('GET /export?token=***&page=2 failed')
  })

  it('leaves text without a password alone: hosts, ports, paths, IPv6, e-mail addresses, user-only URLs', () => {
    for (const text of [
      'connecting to postgres://db:5432 as admin@corp',
      'connecting to postgres://db:5432/warehouse as admin@corp',
      'postgres://user@host:5432/db',
      'see https://example.com/a:b@c',
      'https://example.com/path?x=a@b&page=2',
      'http://[::1]:8080/x as me@host',
      'incoming/orders.csv:3 column amount: cannot coerce "12,5" to float',
      'no url here, just text with : and @ and ://',
    ]) {
      expect(redact(text)).toBe(text)
    }
  })

  it('blanks every URL on a line, and URLs next to one another', () => {
    expect(redact('a postgres://u:p#1@h1/db b mysql://v:p@2@h2/db')).toBe('a postgres://u:***@h1/db b mysql://v:***@h2/db')
    expect(redact('postgres://u:pw@h1:5432,h2:5433/db')).toBe('postgres://u:***@h1:5432,h2:5433/db')
  })
})

/**
 * Keys of protected columns and quarantines (issue 21) are read from the
 * environment and never leave it: not in any output (every reporter, config,
 * status, history, quarantine show, a failing row's message), not in the
 * ledger, the destination or a sidecar, even when a plugin logs one.
 */
describe('protection keys', () => {
  const KEY = '5e'.repeat(32)
  const forms = [KEY, KEY.toUpperCase(), Buffer.from(KEY, 'hex').toString('base64'), Buffer.from(KEY, 'hex').toString('base64url')]
  const noKey = (where: string, text: string) => {
    for (const form of forms) expect(text.includes(form), `${where} holds the key (${form.slice(0, 6)}…)`).toBe(false)
  }
  /** Every file under `dir`, as bytes read as latin1: a key is ASCII whichever file holds it. */
  const everyFile = (dir: string): [string, string][] =>
    readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .map((name) => path.join(dir, name))
      .filter((file) => statSync(file).isFile() && !file.includes('node_modules'))
      .map((file) => [file, readFileSync(file, 'latin1')])

  it('appear in no output, ledger, table or sidecar, even when a plugin logs one', async () => {
    const careless = `{ name: 'careless', apply({ hooks }) { hooks.beforeRun.tapPromise('careless', async () => hooks.log.call({ level: 'warn', message: 'using key ' + process.env.PII_KEY })) } }`
    const ws = workspace({
      'filedge.config.ts': sqliteConfig({
        columns: "{ id: { type: 'integer', required: true }, ssn: { type: 'string', encrypt: { key: env('PII_KEY') } }, email: { type: 'string', hash: { key: env('PII_KEY') } } }",
        imports: "import { env } from 'filedge'",
        extra: "quarantine: { maxRows: 1, key: env('PII_KEY') },",
        plugins: careless,
      }),
      'incoming/a.csv': 'id,ssn,email\n1,111-11-1111,a@x.com\nx,222-22-2222,b@x.com\n',
      'incoming/b.csv': 'id,ssn,email\nx,1,a\ny,2,b\n',
    })
    try {
      const env = { PII_KEY: KEY }
      const outputs = [
        await ws.cli(['--json'], { env }),
        await ws.cli(['--reporter', 'simple'], { env }),
        await ws.cli(['config'], { env }),
        await ws.cli(['config', '--json'], { env }),
        await ws.cli(['status', '--json'], { env }),
        await ws.cli(['history', 'incoming/b.csv', '--json'], { env }),
        await ws.cli(['quarantine', 'list', '--json'], { env }),
      ]
      const sidecar = readdirSync(ws.file('.filedge/quarantine/orders'))[0]
      outputs.push(await ws.cli(['quarantine', 'show', `.filedge/quarantine/orders/${sidecar}`, '--records', '--json'], { env }))
      expect(outputs[0].stdout).toContain('using key ***')
      outputs.forEach((output, index) => noKey(`output ${index}`, output.stdout + output.stderr))
      for (const [file, bytes] of everyFile(ws.dir)) noKey(path.relative(ws.dir, file), bytes)
    } finally {
      ws.remove()
    }
  })
})
