import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../core/config/limits.js'
import { readFixed } from '../core/formats/fixed.js'
import type { LoadRequest } from '../core/hooks.js'
import { workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

/** Positions as a spec sheet prints them: id 1–5, name 6–17, amount 18–25, day 26–35, and the day's year again at 26–29. */
const LAYOUT = `[
  { name: 'id', start: 1, width: 5 },
  { name: 'name', start: 6, width: 12 },
  { name: 'amount', start: 18, width: 8 },
  { name: 'day', start: 26, width: 10 },
  { name: 'year', start: 26, width: 4 },
]`

const COLUMNS = `{ id: { type: 'integer', required: true }, name: 'string', amount: { type: 'decimal', precision: 10, scale: 2 }, day: 'date', year: 'integer' }`

/** Padding by characters (code points): padStart and padEnd count UTF-16 units, and 🎉 is two. */
const characters = (text: string) => [...text].length
const left = (text: string, width: number) => text + ' '.repeat(width - characters(text))
const right = (text: string, width: number) => ' '.repeat(width - characters(text)) + text

/** One line: numbers right-aligned, text left-aligned, as fixed-width writers pad them; `rest` runs past the layout. */
const line = (id: string, name: string, amount: string, day: string, rest = '') => `${right(id, 5)}${left(name, 12)}${right(amount, 8)}${left(day, 10)}${rest}`

function config(pipelines: readonly string[]): string {
  return `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
const destination = sqlite({ path: 'warehouse.db' })
export default defineConfig({
  pipelines: [${pipelines.join(',\n')}],
})
`
}

const pipeline = (name: string, dir: string, format: string, extra = '') =>
  `{ name: '${name}', source: { dir: '${dir}', include: ['*.txt', '*.txt.gz'] }, format: { type: 'fixed', layout: ${LAYOUT}${format} }, destination, table: '${name}', columns: ${COLUMNS}${extra} }`

const lines = (third: string) => [
  'ID   NAME          AMOUNT DAY',
  line('1', 'Ann', '129.90', '2024-05-01', '  filler past the layout'),
  '',
  line('2', '  indented', '', '2024-05-02'),
  ' '.repeat(35),
  line('3', third, '-0.05', '2024-05-03'),
  line('4', 'no day', '7', ''),
]
const LINES = lines('Zoë 🎉')

const EXPECTED = [
  { id: 1, name: 'Ann', amount: '129.90', day: '2024-05-01', year: 2024, row: 1 },
  { id: 2, name: '  indented', amount: null, day: '2024-05-02', year: 2024, row: 2 },
  { id: 3, name: 'Zoë 🎉', amount: '-0.05', day: '2024-05-03', year: 2024, row: 3 },
  { id: 4, name: 'no day', amount: '7.00', day: null, year: null, row: 4 },
]

const rows = (w: Workspace, table: string) => w.query(`warehouse.db`, `SELECT id, name, amount, day, year, _source_row_number AS row FROM "${table}" ORDER BY _source_file_hash, row`)

function failures(w: Workspace) {
  return w.query<{ path: string; error: string }>('.filedge/ledger.db', "SELECT path, error FROM files WHERE state = 'FAILED' ORDER BY path")
}

describe('fixed-width files', () => {
  it('reads fields at 1-based character positions: padding trimmed, leading spaces kept, blank fields NULL, overlapping fields, a header and blank lines skipped', async () => {
    ws = workspace({
      'filedge.config.ts': config([pipeline('orders', 'incoming', ', header: true')]),
      'incoming/crlf.txt': LINES.join('\r\n'),
      'incoming/lf.txt.gz': gzipSync(`${LINES.join('\n').replace('Ann', 'Ana')}\n`),
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const stored = rows(ws, 'orders')
    expect(stored).toHaveLength(8)
    expect(stored).toEqual(expect.arrayContaining([...EXPECTED, { ...EXPECTED[0], name: 'Ana' }]))
  })

  it('counts characters, not bytes, in Latin-1 and UTF-16 files alike', async () => {
    ws = workspace({
      'filedge.config.ts': config([pipeline('latin', 'latin', ", encoding: 'latin1'"), pipeline('wide', 'wide', ", encoding: 'utf16le'")]),
      'latin/a.txt': Buffer.from(lines('Zoë').slice(1).join('\n'), 'latin1'),
      'wide/a.txt': Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(lines('Zoë🎉').slice(1).join('\n'), 'utf16le')]),
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const expected = (name: string) => EXPECTED.map((row) => (row.id === 3 ? { ...row, name } : row))
    expect(rows(ws, 'latin')).toEqual(expected('Zoë'))
    // 🎉 is one character (two UTF-16 units): the fields after it do not shift.
    expect(rows(ws, 'wide')).toEqual(expected('Zoë🎉'))
  })

  it('fails a file at a line too short for the layout, naming the field that does not fit; the other files commit', async () => {
    ws = workspace({
      'filedge.config.ts': config([pipeline('orders', 'incoming', '')]),
      'incoming/good.txt': `${LINES.slice(1).join('\n')}\n`,
      'incoming/short.txt': `${line('1', 'Ann', '1', '2024-05-01')}\n${[...line('2', 'Bob 🎉', '2', '2024-05-02')].slice(0, 32).join('')}\n`,
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.code).toBe(1)
    // 🎉 counts once: the line is 32 characters (33 UTF-16 units).
    expect(failures(ws)).toEqual([{ path: 'incoming/short.txt', error: 'incoming/short.txt:2: line is 32 characters, the layout needs 35 (field "day" at 26–35)' }])
    expect(rows(ws, 'orders')).toEqual(EXPECTED)
  })

  it('validate lists each bad value by line, and stops at a line that cannot be read', async () => {
    ws = workspace({
      'filedge.config.ts': config([pipeline('orders', 'incoming', '')]),
      'incoming/a.txt': [line('1', 'Ann', '1.5', '2024-05-01'), line('x', 'Bob', '2', '2024-05-02'), line('3', 'Cy', '3.333', '2024-13-01'), line('4', 'Dee', '4', '2024-05-04'), 'too short', line('6', 'never read', '6', '2024-05-06')].join('\n'),
    })
    const result = await ws.cli(['validate', 'incoming/a.txt'])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe(`✗ incoming/a.txt (orders, fixed): 4 failures, reading stopped after 4 rows
  incoming/a.txt:2 column id: cannot coerce "x" to integer
  incoming/a.txt:3 column amount: 3.333 has more than 2 digits after the point (decimal(10,2)); it is not rounded
  incoming/a.txt:3 column day: cannot coerce "2024-13-01" to date (expected YYYY-MM-DD)
  incoming/a.txt:5: line is 9 characters, the layout needs 35 (field "name" at 6–17)
`)
  })

  it('checks the layout with the config: positions, names, the encoding, and that fields and columns meet', async () => {
    const broken = (format: string, columns = COLUMNS, source = "{ dir: 'incoming', include: ['*.txt'] }") =>
      config([`{ name: 'orders', source: ${source}, format: ${format}, destination, table: 'orders', columns: ${columns} }`])
    ws = workspace({
      'filedge.config.ts': broken(
        "{ type: 'fixed', encoding: 'latin-9x', layout: [{ name: 'id', start: 0, width: 5 }, { name: 'id', start: 6, widht: 3 }, { name: 'amount', start: 9, width: 1.5 }] }",
      ),
    })
    const schema = await ws.cli()
    expect(schema.code).toBe(2)
    for (const problem of [
      'pipelines[0].format.encoding: expected an encoding label: utf-8, latin1 (= windows-1252), utf-16le, …; got "latin-9x"',
      'pipelines[0].format.layout[0].start: expected 1 or more characters (the first character of a line is 1); got 0',
      'pipelines[0].format.layout[1].widht: unknown key; did you mean "width"?',
      'pipelines[0].format.layout[2].width: expected a whole number of characters; got 1.5',
    ]) {
      expect(schema.stderr).toContain(problem)
    }
    ws.write('filedge.config.ts', broken("{ type: 'fixed', layout: [{ name: 'id', start: 1, width: 5 }, { name: 'id', start: 6, width: 3 }] }"))
    expect((await ws.cli()).stderr).toContain('pipelines[0].format.layout[1].name: "id" is already the name of layout[0]; names must be unique')
    ws.write('filedge.config.ts', broken("{ type: 'fixed', layout: [] }"))
    expect((await ws.cli()).stderr).toContain('pipelines[0].format.layout: expected at least one field: [{ name, start, width }]')

    ws.write('filedge.config.ts', broken(`{ type: 'fixed', layout: [{ name: 'id', start: 1, width: 5 }, { name: 'note', start: 6, width: 9 }] }`, "{ id: 'integer', name: { type: 'string', required: true } }", "'incoming'"))
    const crossed = await ws.cli()
    expect(crossed.code).toBe(2)
    for (const problem of [
      `pipelines[0].columns.name: required, but the layout has no field "name"`,
      `pipelines[0].format.layout[1].name: "note" feeds no column; declare it in columns or set unknownColumns: 'ignore'`,
      // No extension means fixed width: the pipeline lists its files.
      `pipelines[0].source.include: no default patterns for the pipeline's format; list the files to include`,
    ]) {
      expect(crossed.stderr).toContain(problem)
    }
  })

  it("inspect reads a fixed-width file with its pipeline's layout", async () => {
    ws = workspace({ 'filedge.config.ts': config([pipeline('orders', 'incoming', ', header: true')]), 'incoming/a.txt': LINES.join('\n') })
    const result = await ws.cli(['inspect', 'incoming/a.txt', '--pipeline', 'orders'])
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe(`// incoming/a.txt: 4 rows sampled (fixed)
columns: {
  id: 'integer',
  name: 'string',
  amount: 'float', // low: nulls in 1 of 4 rows (not required)
  day: 'date', // low: nulls in 1 of 4 rows (not required)
  year: 'integer', // low: nulls in 1 of 4 rows (not required)
},
`)
    const alone = await ws.cli(['inspect', 'incoming/a.txt', '--format', 'fixed'])
    expect(alone.code).toBe(2)
    expect(alone.stderr).toContain('--format fixed: a fixed-width file is read by its layout; name the pipeline whose format holds it with --pipeline')
  })

  it('reads lines whatever the chunks: a CRLF, a UTF-8 character or a surrogate pair split between reads, and lone CRs', async () => {
    const bytes = Buffer.from('  1é\r\n  2🎉\r  3x\r\r\n  4y')
    // Cut inside é (2 bytes), between a CR and its LF, inside 🎉 (4 bytes), after a lone CR, and inside the CRLF that follows it.
    const cuts = [4, 6, 12, 20, 21]
    const request = {
      pipeline: { batchSize: 2, limits: DEFAULT_LIMITS },
      file: { path: 'chunks.txt' },
      format: { type: 'fixed', options: { layout: [{ name: 'id', start: 1, width: 3 }, { name: 'rest', start: 4, width: 1 }] } },
      open: () => Readable.from(cuts.map((at, index) => bytes.subarray(index === 0 ? 0 : cuts[index - 1], at)).concat(bytes.subarray(cuts.at(-1)))),
    } as unknown as LoadRequest
    const batches = []
    for await (const batch of readFixed(request).batches) batches.push(batch)
    expect(batches).toEqual([
      { records: [['  1', 'é'], ['  2', '🎉']], lines: [1, 2] },
      { records: [['  3', 'x'], ['  4', 'y']], lines: [3, 5] },
    ])
  })
})
