import { describe, expect, it } from 'vitest'
import { coercerFor } from '../core/columns/coerce.js'
import type { ColumnType } from '../core/config/types.js'
import { parseJson } from '../core/formats/json-value.js'
import { NumberText } from '../core/rows.js'

/** The README's coercion table, as executable cases. */
const ok = (type: ColumnType, raw: unknown, expected: unknown, extra: { precision?: number; scale?: number } = {}) =>
  expect(coercerFor({ type, ...extra })(raw)).toEqual(expected)
const bad = (type: ColumnType, raw: unknown, reason: RegExp, extra: { precision?: number; scale?: number } = {}) =>
  expect(() => coercerFor({ type, ...extra })(raw)).toThrow(expect.objectContaining({ reason: expect.stringMatching(reason) }))

describe('coercion', () => {
  it('string: text as is, whitespace kept; JSON scalars as their text; objects refused', () => {
    ok('string', '  padded ', '  padded ')
    ok('string', 42, '42')
    bad('string', { a: 1 }, /declare the column as json/)
  })

  it('integer: digits with an optional sign, full 64-bit range (bigint past 2^53)', () => {
    ok('integer', '42', 42)
    ok('integer', ' -7 ', -7)
    ok('integer', '9007199254740993', 9007199254740993n)
    ok('integer', '-9223372036854775808', -9223372036854775808n)
    bad('integer', '9223372036854775808', /out of the 64-bit integer range/)
    bad('integer', '3.7', /cannot coerce "3.7" to integer/)
    bad('integer', '1e3', /cannot coerce/)
    bad('integer', '1,000', /cannot coerce/)
    bad('integer', 3.7, /not an integer/)
    bad('integer', 2 ** 60, /beyond 2\^53/)
  })

  it('float: decimal or scientific notation; NaN and Infinity refused', () => {
    ok('float', '1.5', 1.5)
    ok('float', '-.5e-3', -0.0005)
    ok('float', 2, 2)
    bad('float', 'NaN', /cannot coerce/)
    bad('float', '1e999', /out of the float range/)
    bad('float', '1,5', /cannot coerce/)
  })

  it('decimal: exact text at the declared scale; more digits than the scale are an error, never rounded', () => {
    ok('decimal', '129.9', '129.90', { precision: 12, scale: 2 })
    ok('decimal', '-0.00', '0.00', { precision: 12, scale: 2 })
    ok('decimal', '007', '7.00', { precision: 12, scale: 2 })
    bad('decimal', '1.005', /more than 2 digits/, { precision: 12, scale: 2 })
    bad('decimal', '123456', /does not fit decimal\(6,2\)/, { precision: 6, scale: 2 })
    bad('decimal', 'abc', /cannot coerce/, { precision: 6, scale: 2 })
  })

  it('boolean: true/false, t/f, yes/no, y/n, 1/0 in any case', () => {
    for (const word of ['true', 'T', 'yes', 'Y', '1']) ok('boolean', word, true)
    for (const word of ['false', 'F', 'no', 'N', '0']) ok('boolean', word, false)
    bad('boolean', 'maybe', /cannot coerce "maybe" to boolean/)
  })

  it('date: YYYY-MM-DD, a real calendar day', () => {
    ok('date', '2024-02-29', '2024-02-29')
    bad('date', '2023-02-29', /expected YYYY-MM-DD/)
    bad('date', '05/01/2024', /expected YYYY-MM-DD/)
    bad('date', 'not-a-date', /cannot coerce "not-a-date" to date/)
    ok('date', '0001-01-01', '0001-01-01')
    bad('date', '0000-01-01', /expected YYYY-MM-DD/)
  })

  it('timestamp: ISO 8601, normalized to UTC with microseconds; no offset means UTC', () => {
    ok('timestamp', '2024-05-01T13:45:00Z', '2024-05-01T13:45:00.000000Z')
    ok('timestamp', '2024-05-01 13:45', '2024-05-01T13:45:00.000000Z')
    ok('timestamp', '2024-05-01T13:45:00.123456+02:00', '2024-05-01T11:45:00.123456Z')
    ok('timestamp', '2024-01-01T00:30:00-0130', '2024-01-01T02:00:00.000000Z')
    ok('timestamp', '0099-01-01T00:00:00Z', '0099-01-01T00:00:00.000000Z')
    bad('timestamp', '2024-05-01T25:00:00Z', /expected ISO 8601/)
    bad('timestamp', '0000-06-01T00:00:00Z', /expected ISO 8601/)
    bad('timestamp', '0001-01-01T00:30:00+01:00', /outside years 1 to 9999 in UTC/)
    bad('timestamp', '9999-12-31T23:30:00-01:00', /outside years 1 to 9999 in UTC/)
    bad('timestamp', '2024-05-01', /expected ISO 8601/)
    bad('timestamp', '2024-05-01T00:00:00.1234567Z', /more precise than microseconds/)
  })

  it('json: valid JSON text, stored canonical; structured values serialized', () => {
    ok('json', ' {"a": [1, 2]} ', '{"a":[1,2]}')
    ok('json', { a: 1 }, '{"a":1}')
    bad('json', '{oops}', /not valid JSON/)
  })

  it('json: numbers keep their digits (JSON.parse would round 12345678901234567890 and print 2.50 as 2.5)', () => {
    ok('json', '{"big": 12345678901234567890, "x": [2.50, 1e3, 0.1]}', '{"big":12345678901234567890,"x":[2.50,1e3,0.1]}')
    ok('json', parseJson('{"k": 0.00000001}'), '{"k":0.00000001}')
  })

  it('numbers from JSON and Parquet as written (NumberText): integers by their spelling, decimals exact', () => {
    ok('integer', new NumberText('9007199254740993'), 9007199254740993n)
    bad('integer', new NumberText('3.0'), /3.0 is not an integer/)
    bad('integer', new NumberText('1e3'), /1e3 is not an integer/)
    ok('decimal', new NumberText('0.1234567890123456789'), '0.1234567890123456789', { precision: 38, scale: 19 })
    ok('float', new NumberText('1e3'), 1000)
    ok('string', new NumberText('3.0'), '3.0')
    bad('date', new NumberText('20240501'), /cannot coerce the number 20240501 to date/)
    bad('float', Infinity, /out of the float range/)
    ok('integer', (parseJson('{"n": 12345678901234567}') as { n: unknown }).n, 12345678901234567n)
  })
})
