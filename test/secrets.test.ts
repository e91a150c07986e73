import { describe, expect, it } from 'vitest'
import { redact } from '../core/index.js'

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
