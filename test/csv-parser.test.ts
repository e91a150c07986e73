import { describe, expect, it } from 'vitest'
import { CsvParser, CsvSyntaxError, type CsvParserOptions } from '../core/formats/csv-parser.js'

function parse(text: string, options: Partial<CsvParserOptions> = {}, chunks: number[] = []): { records: (string | null)[][]; lines: number[] } {
  const parser = new CsvParser({ delimiter: ',', quote: '"', ...options })
  let at = 0
  for (const size of chunks) {
    parser.write(text.slice(at, at + size))
    at += size
  }
  parser.write(text.slice(at))
  parser.end()
  return { records: parser.records, lines: parser.lines }
}

function syntaxError(text: string, options: Partial<CsvParserOptions> = {}): CsvSyntaxError {
  try {
    parse(text, options)
  } catch (error) {
    if (error instanceof CsvSyntaxError) return error
    throw error
  }
  throw new Error('expected a syntax error')
}

describe('CSV parser', () => {
  it('splits fields and records, with the line each record starts on', () => {
    expect(parse('a,b\n1,2\n3,4\n')).toEqual({ records: [['a', 'b'], ['1', '2'], ['3', '4']], lines: [1, 2, 3] })
  })

  it('accepts CRLF, LF and lone CR endings, mixed, and a missing final newline', () => {
    expect(parse('a,b\r\n1,2\r3,4\n5,6').records).toEqual([['a', 'b'], ['1', '2'], ['3', '4'], ['5', '6']])
    expect(parse('a,b\r\n1,2\r3,4\n5,6').lines).toEqual([1, 2, 3, 4])
  })

  it('keeps delimiters, doubled quotes and newlines inside quotes, counting lines through them', () => {
    const { records, lines } = parse('id,note\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines\r\nthree"\n4,x\n')
    expect(records.slice(1)).toEqual([['1', 'a, b'], ['2', 'say "hi"'], ['3', 'two\nlines\r\nthree'], ['4', 'x']])
    expect(lines).toEqual([1, 2, 3, 4, 7])
  })

  it('tells an empty unquoted field (null) from a quoted empty string', () => {
    expect(parse('a,b,c\n,"",x\n').records[1]).toEqual([null, '', 'x'])
    expect(parse('a,b\n1,\n').records[1]).toEqual(['1', null])
    expect(parse('a,b\n1,').records[1]).toEqual(['1', null])
  })

  it('treats configured null markers as null, only when unquoted', () => {
    expect(parse('a,b\nNULL,"NULL"\n', { nullValues: ['NULL'] }).records[1]).toEqual([null, 'NULL'])
  })

  it('skips blank lines', () => {
    expect(parse('a\n\n1\n\r\n2\n\n').records).toEqual([['a'], ['1'], ['2']])
  })

  it('supports other delimiters, quotes and an escape character', () => {
    expect(parse("a;b\n'x;y';z\n", { delimiter: ';', quote: "'" }).records[1]).toEqual(['x;y', 'z'])
    expect(parse('a,b\n"say \\"hi\\"",2\n', { escape: '\\' }).records[1]).toEqual(['say "hi"', '2'])
    expect(parse('a\tb\n1\t2\n', { delimiter: '\t' }).records[1]).toEqual(['1', '2'])
  })

  it('gives the same records however the input is split into chunks', () => {
    const text = 'id,note,n\r\n1,"a, ""quoted""\r\nvalue",3\r\n2,,\n3,"",x\r4,plain,5\n'
    const whole = parse(text)
    for (let seed = 1; seed < 200; seed++) {
      const sizes: number[] = []
      let state = seed
      for (let used = 0; used < text.length; ) {
        state = (state * 1103515245 + 12345) & 0x7fffffff
        const size = 1 + (state % 7)
        sizes.push(size)
        used += size
      }
      expect(parse(text, {}, sizes)).toEqual(whole)
    }
  })

  it('reports an unterminated quote at the line where it opened', () => {
    expect(syntaxError('a,b\n1,2\n3,"open\nmore\n').line).toBe(3)
    expect(syntaxError('a,b\n1,2\n3,"open\nmore\n').message).toContain('unterminated')
  })

  it('rejects a quote inside an unquoted field and text after a closing quote, with the line', () => {
    expect(syntaxError('a,b\n1,2\n5" screen,3\n')).toMatchObject({ line: 3 })
    expect(syntaxError('a,b\n"x"y,2\n').message).toContain('after the closing quote')
  })

  it('rejects NUL bytes', () => {
    expect(syntaxError('a,b\n1,2\n3,\0\n')).toMatchObject({ line: 3 })
  })

  it('refuses a field longer than the limit instead of growing without bound', () => {
    expect(syntaxError(`a\n"${'x'.repeat(100)}`, { maxFieldChars: 50 }).message).toContain('longer than 50')
  })

  it('parses a single 10 MB line without quadratic rescanning', () => {
    const big = 'x'.repeat(10 * 1024 * 1024)
    const parser = new CsvParser({ delimiter: ',', quote: '"' })
    parser.write('a,b\n"')
    for (let i = 0; i < big.length; i += 65_536) parser.write(big.slice(i, i + 65_536))
    parser.write('",2\n')
    parser.end()
    expect(parser.records[1][0]).toHaveLength(big.length)
  })
})
