import { describe, expect, it } from 'vitest'
import { CsvParser } from '../core/formats/csv-parser.js'
import { createCsvStructureCheck } from '../core/formats/csv-structure.js'

/**
 * The structure check must agree with CsvParser on every input: same record
 * count when the parser reads every record with the header's field count,
 * undefined when the parser fails or a record has another field count. It is
 * fed every split of each input into two chunks, since state crosses chunks.
 */

function parserRecords(text: string): number | undefined {
  const parser = new CsvParser({ delimiter: ',', quote: '"' })
  try {
    parser.write(new TextDecoder().decode(Buffer.from(text)))
    parser.end()
  } catch {
    return undefined
  }
  const [header, ...records] = parser.records
  if (header === undefined) return 0
  return records.every((record) => record.length === header.length) ? records.length : undefined
}

function checkRecords(bytes: Buffer, split: number, fields: number): number | undefined {
  const check = createCsvStructureCheck({ delimiter: ',', quote: '"', fields })
  check.write(bytes.subarray(0, split))
  check.write(bytes.subarray(split))
  return check.end()
}

const CASES: Record<string, string> = {
  plain: 'a,b\n1,x\n2,y\n',
  'no final newline': 'a,b\n1,x',
  crlf: 'a,b\r\n1,x\r\n2,y\r\n',
  'lone cr': 'a,b\r1,x\r2,y\r',
  mixed: 'a,b\n1,x\r\n2,y\r3,z\n',
  'blank lines': '\na,b\n\n1,x\n\n\n2,y\n',
  'quoted delimiter and newline': 'a,b\n1,"x,\ny"\n2,"say ""hi"""\n',
  'quoted crlf': 'a,b\r\n1,"x\r\ny"\r\n',
  'empty fields': 'a,b,c\n,,\n1,,\n',
  'trailing delimiter': 'a,b\n1,x,\n',
  'trailing delimiter at end': 'a,b\n1,x,',
  'too few': 'a,b\n1\n',
  'too many': 'a,b\n1,x,y\n',
  'quote in unquoted': 'a,b\n1,x"y\n',
  'text after closing quote': 'a,b\n1,"x"y\n',
  unterminated: 'a,b\n1,"xy\n',
  nul: 'a,b\n1,x\u0000\n',
  bom: '\ufeffa,b\n1,x\n',
  'quoted empty': 'a,b\n1,""\n',
  'whitespace line': 'a,b\n1,x\n  \n',
  'utf-8': 'a,b\n1,"é, ü"\n2,日本\n',
  'only header': 'a,b\n',
  empty: '',
}

describe('CSV structure check', () => {
  for (const [name, text] of Object.entries(CASES)) {
    it(`agrees with CsvParser: ${name}`, () => {
      const bytes = Buffer.from(text)
      const expected = parserRecords(text)
      const fields = text.replace(/^\ufeff/, '').replace(/^[\r\n]+/, '').split(/\r\n|\r|\n/)[0].split(',').length
      for (let split = 0; split <= bytes.length; split++) {
        expect([split, checkRecords(bytes, split, fields)]).toEqual([split, expected])
      }
    })
  }

  it('sends trailing delimiters, quotes inside unquoted fields and NUL bytes away (where DuckDB is laxer)', () => {
    for (const name of ['trailing delimiter', 'quote in unquoted', 'nul']) expect(parserRecords(CASES[name])).toBeUndefined()
  })
})
