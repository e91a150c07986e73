import { randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import ExcelJS from 'exceljs'
import { afterEach, describe, expect, it } from 'vitest'
import yauzl from 'yauzl'
import { DEFAULT_LIMITS } from '../core/config/limits.js'
import { loadXlsx } from '../core/formats/xlsx.js'
import { builtinKind, DATE, DATE_TIME, formatKind, NUMBER, serialToText, TIME, type NumberKind } from '../core/formats/xlsx-dates.js'
import { nativeCsvUnsupported } from '../plugins/duckdb/native-csv.js'
import type { LoadRequest } from '../core/hooks.js'
import type { WriteJob } from '../core/index.js'
import { readDuckdb } from './helpers/duckdb.js'
import { workbook, zip } from './helpers/xlsx-zip.mjs'
import { waitFor, workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
afterEach(() => ws?.remove())

/** A pipeline config over one SQLite table; `pipeline` holds the keys that differ. */
function config(pipeline: string, imports = ''): string {
  return `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
${imports}
export default defineConfig({
  pipelines: [{
    name: 'orders',
    destination: sqlite({ path: 'warehouse.db' }),
    table: 'orders',
    ${pipeline}
  }],
})
`
}

const COLUMNS = `columns: {
  id: { type: 'integer', required: true },
  name: 'string',
  amount: { type: 'decimal', precision: 12, scale: 2 },
  day: 'date',
  at: 'timestamp',
  ok: 'boolean',
  total: 'float',
  note: 'string',
},`

type Book = ExcelJS.Workbook | ExcelJS.stream.xlsx.WorkbookWriter

/**
 * The workbook most tests read: a hidden first sheet, then "Orders" with a
 * title row, a blank row, the header on row 3, and rows 4, 6 and 7 (row 5
 * empty). Dates at UTC midnight and times in UTC, as exceljs writes a JS Date.
 */
function orders(book: Book, rows: readonly (readonly unknown[])[] = ORDERS): void {
  book.addWorksheet('Notes', { state: 'hidden' }).addRow(['not this one']).commit()
  const sheet = book.addWorksheet('Orders')
  sheet.addRow(['Orders export, May 2024']).commit()
  sheet.addRow([]).commit()
  sheet.addRow(['id', 'name', 'amount', 'day', 'at', 'ok', 'total', 'note']).commit()
  for (const [index, values] of rows.entries()) {
    const row = sheet.getRow(4 + index)
    row.values = values as ExcelJS.CellValue[]
    row.getCell(4).numFmt = 'yyyy-mm-dd'
    row.getCell(5).numFmt = 'yyyy-mm-dd hh:mm:ss.000'
    row.commit()
  }
}

const ORDERS: readonly (readonly unknown[])[] = [
  [1, 'Ann', 129.9, new Date(Date.UTC(2024, 4, 1)), new Date(Date.UTC(2024, 4, 1, 13, 45, 30, 250)), true, { formula: 'C4*2', result: 259.8 }, { richText: [{ text: 'rich ', font: { bold: true } }, { text: 'text' }] }],
  [],
  [2, 'Bob', 15, new Date(Date.UTC(2024, 1, 29)), new Date(Date.UTC(2024, 11, 31, 23, 59, 59)), false, { formula: 'C6*2', result: 30 }, { formula: 'B6&"!"', result: 'Bob!' }],
  [3, '  padded  ', null, null, null, null, null, 'two\nlines'],
]

const EXPECTED = [
  { id: 1, name: 'Ann', amount: '129.90', day: '2024-05-01', at: '2024-05-01T13:45:30.250000Z', ok: 1, total: 259.8, note: 'rich text', row: 1 },
  { id: 2, name: 'Bob', amount: '15.00', day: '2024-02-29', at: '2024-12-31T23:59:59.000000Z', ok: 0, total: 30, note: 'Bob!', row: 2 },
  { id: 3, name: '  padded  ', amount: null, day: null, at: null, ok: null, total: null, note: 'two\nlines', row: 3 },
]

async function writeBook(target: string, fill: (book: ExcelJS.Workbook) => void, date1904 = false): Promise<void> {
  mkdirSync(path.dirname(target), { recursive: true })
  const book = new ExcelJS.Workbook()
  book.properties.date1904 = date1904
  fill(book)
  await book.xlsx.writeFile(target)
}

/** exceljs's streaming writer: without shared strings it writes text inline (`t="str"`, rich text as `<is>`). */
async function streamBook(target: string, fill: (book: ExcelJS.stream.xlsx.WorkbookWriter) => void, useSharedStrings = false): Promise<void> {
  mkdirSync(path.dirname(target), { recursive: true })
  const book = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: target, useSharedStrings, useStyles: true })
  fill(book)
  await book.commit()
}

/** A part of a workbook, as text, or only its size (from the zip's index). */
async function part(file: string, name: string): Promise<string>
async function part(file: string, name: string, size: 'size'): Promise<number>
async function part(file: string, name: string, size?: 'size'): Promise<string | number> {
  const zip = await yauzl.openPromise(file)
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName !== name) continue
      if (size !== undefined) return entry.uncompressedSize
      const chunks: Buffer[] = []
      for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    }
    throw new Error(`${file} holds no ${name}`)
  } finally {
    zip.close()
  }
}

function stored(w: Workspace) {
  return w.query('warehouse.db', 'SELECT id, name, amount, day, at, ok, total, note, _source_row_number AS row FROM orders ORDER BY _source_file_hash, row')
}

function failures(w: Workspace) {
  return w.query<{ path: string; error: string }>('.filedge/ledger.db', "SELECT path, error FROM files WHERE state = 'FAILED' ORDER BY path")
}

describe('Excel workbooks', () => {
  it('loads the named sheet under its header row: numbers, dates in both date systems, timestamps, booleans, cached formula results, shared, rich and inline strings', async () => {
    ws = workspace({ 'filedge.config.ts': config(`source: 'incoming', format: { type: 'xlsx', sheet: 'Orders', header: 3 }, ${COLUMNS}`) })
    await writeBook(ws.file('incoming/shared.xlsx'), (book) => orders(book))
    await writeBook(ws.file('incoming/1904.xlsx'), (book) => orders(book), true)
    await streamBook(ws.file('incoming/inline.xlsx'), (book) => orders(book))
    // The owner file Excel writes beside a workbook it has open: not a workbook, never listed.
    ws.write('incoming/~$shared.xlsx', Buffer.concat([Buffer.from([5]), Buffer.from('Ann Owner'), Buffer.alloc(150)]))
    // The 1904 system is the workbook's, and its serials are 1,462 days smaller: the same dates come out.
    expect(await part(ws.file('incoming/1904.xlsx'), 'xl/workbook.xml')).toContain('date1904="1"')
    expect(await part(ws.file('incoming/1904.xlsx'), 'xl/worksheets/sheet2.xml')).toContain('<v>43951</v>')
    expect(await part(ws.file('incoming/shared.xlsx'), 'xl/worksheets/sheet2.xml')).toContain('<v>45413</v>')
    expect(await part(ws.file('incoming/inline.xlsx'), 'xl/worksheets/sheet2.xml')).toMatch(/t="inlineStr"><is>.*t="str"/s)
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const rows = stored(ws)
    expect(rows).toHaveLength(9)
    for (let file = 0; file < 3; file++) expect(rows.slice(file * 3, file * 3 + 3)).toEqual(EXPECTED)
  })

  it('picks a sheet by its 1-based tab position or by name whatever its case; a .xlsx file needs no format', async () => {
    ws = workspace({ 'filedge.config.ts': config(`source: 'incoming', format: { type: 'xlsx', sheet: 2, header: 3 }, ${COLUMNS}`) })
    await writeBook(ws.file('incoming/book.xlsx'), (book) => orders(book))
    expect((await ws.cli(['--reporter', 'simple'])).code).toBe(0)
    expect(stored(ws)).toEqual(EXPECTED)

    ws.remove()
    ws = workspace({ 'filedge.config.ts': config(`source: 'incoming', format: { type: 'xlsx', sheet: 'ORDERS', header: 3 }, ${COLUMNS}`) })
    await writeBook(ws.file('incoming/book.xlsx'), (book) => orders(book))
    expect((await ws.cli(['--reporter', 'simple'])).code).toBe(0)
    expect(stored(ws)).toEqual(EXPECTED)

    // By extension: the first tab, header on row 1.
    ws.remove()
    ws = workspace({ 'filedge.config.ts': config("source: 'incoming', columns: { id: 'integer', name: 'string' },") })
    await writeBook(ws.file('incoming/plain.xlsx'), (book) => {
      const sheet = book.addWorksheet('Data')
      sheet.addRows([['id', 'name'], [7, 'first tab']])
    })
    expect((await ws.cli(['--reporter', 'simple'])).code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, name FROM orders')).toEqual([{ id: 7, name: 'first tab' }])
  })

  it('fails a file on its first bad cell by sheet row and column; validate lists every one', async () => {
    ws = workspace({ 'filedge.config.ts': config(`source: 'incoming', format: { type: 'xlsx', sheet: 'Orders', header: 3 }, ${COLUMNS}`) })
    await writeBook(ws.file('incoming/bad.xlsx'), (book) =>
      orders(book, [
        [1, 'error cell', 1, null, null, null, { formula: '1/0', result: { error: '#DIV/0!' } }],
        [2, 'never calculated', 1, null, null, null, { formula: 'C5*2' }],
        ['x', 'text for an integer', 1],
        [4, 'a time of day in a date', 1, new Date(Date.UTC(2024, 4, 1, 9, 30))],
        [5, 'good'],
        [6, 'a cent too precise', 1.005],
      ]),
    )
    const run = await ws.cli(['--reporter', 'simple'])
    expect(run.code).toBe(1)
    expect(failures(ws)).toEqual([{ path: 'incoming/bad.xlsx', error: 'incoming/bad.xlsx:4 column total: cell G4 holds the error #DIV/0!' }])
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 0 }])

    const validate = await ws.cli(['validate', 'incoming/bad.xlsx'])
    expect(validate.code).toBe(1)
    expect(validate.stdout).toBe(`✗ incoming/bad.xlsx (orders, xlsx): 5 failures, 5 of 6 rows
  incoming/bad.xlsx:4 column total: cell G4 holds the error #DIV/0!
  incoming/bad.xlsx:5 column total: cell G5 holds a formula with no cached result (the workbook was saved without calculating it; open and save it in Excel)
  incoming/bad.xlsx:6 column id: cannot coerce "x" to integer
  incoming/bad.xlsx:7 column day: cannot coerce "2024-05-01T09:30:00" to date (expected YYYY-MM-DD)
  incoming/bad.xlsx:9 column amount: 1.005 has more than 2 digits after the point (decimal(12,2)); it is not rounded
`)
    const json = JSON.parse((await ws.cli(['validate', 'incoming/bad.xlsx', '--json'])).stdout)
    expect(json.files[0].failures[0]).toEqual({ code: 'ROW_INVALID', message: 'incoming/bad.xlsx:4 column total: cell G4 holds the error #DIV/0!', line: 4, column: 'total', value: '#DIV/0!' })
  })

  it('refuses a value in a column the header does not name, unless unknownColumns is ignore', async () => {
    const fill = (book: ExcelJS.Workbook) => {
      const sheet = book.addWorksheet('Data')
      sheet.addRows([['id', '', 'name'], [1, null, 'a'], [2, 'stray note', 'b']])
    }
    ws = workspace({ 'filedge.config.ts': config("source: 'incoming', columns: { id: 'integer', name: 'string' },") })
    await writeBook(ws.file('incoming/book.xlsx'), fill)
    expect((await ws.cli(['--reporter', 'simple'])).code).toBe(1)
    expect(failures(ws)).toEqual([
      { path: 'incoming/book.xlsx', error: "incoming/book.xlsx:3: cell B3 has a value, but column B has no name in the header (row 1); name it, or set unknownColumns: 'ignore'" },
    ])
    ws.write('filedge.config.ts', config("source: 'incoming', unknownColumns: 'ignore', columns: { id: 'integer', name: 'string' },"))
    expect((await ws.cli(['requeue', '--failed'])).code).toBe(0)
    expect((await ws.cli(['--reporter', 'simple'])).code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, name, _source_row_number AS row FROM orders ORDER BY row')).toEqual([
      { id: 1, name: 'a', row: 1 },
      { id: 2, name: 'b', row: 2 },
    ])
  })

  it('reads what other writers write: namespace prefixes, text runs and phonetic guides, _xHHHH_ escapes, cells without references, gaps between rows', async () => {
    const main = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
    const text = (value: string) => `<x:c t="inlineStr"><x:is>${value}</x:is></x:c>`
    const sheet = `<?xml version="1.0" encoding="UTF-8"?><x:worksheet xmlns:x="${main}"><x:sheetData>
<x:row r="1">${text('<x:t>id</x:t>')}${text('<x:r><x:t>na</x:t></x:r><x:r><x:rPr><x:b/></x:rPr><x:t>me</x:t></x:r>')}</x:row>
<x:row><x:c><x:v>1</x:v></x:c>${text('<x:t>東京</x:t><x:rPh sb="0" eb="2"><x:t>トウキョウ</x:t></x:rPh>')}</x:row>
<x:row r="7"><x:c r="A7"><x:v>2</x:v></x:c>${text('<x:t xml:space="preserve"> a_x000D_b _x005F_x000D_ </x:t>')}</x:row>
</x:sheetData></x:worksheet>`
    ws = workspace({ 'filedge.config.ts': config("source: 'incoming', columns: { id: 'integer', name: 'string' },") })
    ws.write('incoming/other.xlsx', zip(workbook({ text: sheet })))
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT id, name, _source_row_number AS row FROM orders ORDER BY row')).toEqual([
      { id: 1, name: '東京', row: 1 },
      { id: 2, name: ' a\rb _x000D_ ', row: 2 },
    ])
    // Row 7 is line 7: the gap is kept in messages.
    ws.write('incoming/other.xlsx', zip(workbook({ text: sheet.replace('<x:v>2</x:v>', '<x:v>2.5</x:v>') })))
    expect((await ws.cli(['validate', 'incoming/other.xlsx'])).stdout).toContain('incoming/other.xlsx:7 column id: 2.5 is not an integer')
  })

  it('inspect proposes columns for a sheet, and notes error cells instead of typing their column as string', async () => {
    ws = workspace()
    await writeBook(ws.file('book.xlsx'), (book) => orders(book, [...ORDERS, [4, 'Dee', 2, null, null, null, { formula: 'C8*2', result: { error: '#N/A' } }, 'x']]))
    const result = await ws.cli(['inspect', 'book.xlsx', '--sheet', 'Orders', '--header', '3'])
    expect(result.stderr).toBe('')
    expect(result.stdout).toBe(`// book.xlsx: 4 rows sampled (xlsx)
columns: {
  id: 'integer',
  name: 'string',
  amount: 'float', // low: nulls in 1 of 4 rows (not required)
  day: 'date', // low: nulls in 2 of 4 rows (not required)
  at: 'timestamp', // low: nulls in 2 of 4 rows (not required)
  ok: 'boolean', // low: nulls in 2 of 4 rows (not required)
  total: 'float', // ambiguous: 1 of 4 values fail any type (cell G8 holds the error #N/A); nulls in 1 of 3 rows (not required)
  note: 'string',
},
`)
    const missing = await ws.cli(['inspect', 'book.xlsx', '--sheet', 'Sales'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('book.xlsx: there is no sheet "Sales": the workbook has "Notes", "Orders"')
    expect((await ws.cli(['inspect', 'book.xlsx', '--sheet', '0'])).code).toBe(2)
    ws.write('data.csv', 'a\n1\n')
    expect((await ws.cli(['inspect', 'data.csv', '--sheet', 'Orders'])).stderr).toContain('--sheet: only Excel files have sheets')
  })

  it('reads a 100k-row sheet in bounded memory: the peak RSS of the CLI loading it stays far below what holding it would take', async () => {
    ws = workspace({
      'filedge.config.ts': config("source: 'incoming', columns: { id: 'integer', name: 'string', amount: 'float', day: 'date', ok: 'boolean', note: 'string' },"),
      // Written by the child as it exits: its peak resident set (Linux's VmHWM), in kB.
      'peak.cjs': "process.on('exit', () => require('fs').writeFileSync(process.env.PEAK_FILE, /VmHWM:\\s*(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]))\n",
    })
    const rows = 100_000
    await streamBook(
      ws.file('incoming/big.xlsx'),
      (book) => {
        const sheet = book.addWorksheet('Orders')
        sheet.addRow(['id', 'name', 'amount', 'day', 'ok', 'note']).commit()
        for (let i = 1; i <= rows; i++) {
          // Random notes do not compress: the workbook is over the 8 MiB kept in memory, so it is read from a temporary file.
          const row = sheet.addRow([i, `customer ${i % 5000}`, i * 1.25, new Date(Date.UTC(2024, 0, 1 + (i % 365))), i % 2 === 0, randomBytes(48).toString('base64')])
          row.getCell(4).numFmt = 'yyyy-mm-dd'
          row.commit()
        }
      },
      true,
    )
    const bytes = readFileSync(ws.file('incoming/big.xlsx')).length
    expect(bytes).toBeGreaterThan(8 * 1024 * 1024)
    const started = performance.now()
    const result = await ws.cli(['--reporter', 'simple'], { env: { NODE_OPTIONS: `--require ${ws.file('peak.cjs')}`, PEAK_FILE: ws.file('peak.txt') } })
    const seconds = (performance.now() - started) / 1000
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const peakMiB = Number(readFileSync(ws.file('peak.txt'), 'utf8')) / 1024
    const xml = (await part(ws.file('incoming/big.xlsx'), 'xl/worksheets/sheet1.xml', 'size')) + (await part(ws.file('incoming/big.xlsx'), 'xl/sharedStrings.xml', 'size'))
    console.info(`100k-row xlsx (${(bytes / 2 ** 20).toFixed(1)} MiB zipped, ${(xml / 2 ** 20).toFixed(0)} MiB of XML): CLI run ${seconds.toFixed(1)} s, peak RSS ${peakMiB.toFixed(0)} MiB`)
    // The CLI alone (Node, SQLite, the config) peaks near 85 MiB; the sheet adds its shared strings (held: cells refer to them) and a
    // few chunks of XML. A reader that held the sheet's XML and rows would need hundreds more.
    expect(peakMiB).toBeLessThan(300)
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n, min(day) AS first, max(_source_row_number) AS last, sum(ok) AS ok FROM orders')).toEqual([{ n: rows, first: '2024-01-01', last: rows, ok: rows / 2 }])
  })

  it('loads a workbook from a source with no local files from the copy the runner spooled while hashing it', async () => {
    const source = `const remote = defineSource({
  name: 'remote',
  capabilities: { exactVersions: true },
  describe: () => 'remote://drop',
  async *list() {
    for (const name of readdirSync('remote')) {
      const { size, mtimeMs } = statSync(join('remote', name))
      yield { path: 'remote://drop/' + name, size, version: String(mtimeMs), modifiedAt: mtimeMs }
    }
  },
  async read(entry) {
    return createReadStream(join('remote', entry.path.slice('remote://drop/'.length)))
  },
})`
    ws = workspace({
      'filedge.config.ts': config(
        "source: remote, format: 'xlsx', columns: { id: 'integer', name: 'string' },",
        `import { defineSource } from 'filedge'\nimport { createReadStream, readdirSync, statSync } from 'node:fs'\nimport { join } from 'node:path'\n${source}`,
      ),
    })
    // Over the 1 MiB the runner keeps in memory: spooled to disk while hashed.
    await streamBook(ws.file('remote/big.xlsx'), (book) => {
      const sheet = book.addWorksheet('Data')
      sheet.addRow(['id', 'name']).commit()
      for (let i = 1; i <= 30_000; i++) sheet.addRow([i, randomBytes(48).toString('base64')]).commit()
    })
    expect(readFileSync(ws.file('remote/big.xlsx')).length).toBeGreaterThan(1024 * 1024)
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(ws.query('warehouse.db', 'SELECT count(*) AS n, max(id) AS last FROM orders')).toEqual([{ n: 30_000, last: 30_000 }])
  })

  it.skipIf(process.platform !== 'linux')('lets go of a large workbook when its rows are never read: its temporary copy is gone at once, its descriptors once closed', async () => {
    const descriptors = () => readdirSync('/proc/self/fd').length
    const copies = () => readdirSync(os.tmpdir()).filter((name) => name.startsWith(`filedge-xlsx-${process.pid}-`))
    // Incompressible bytes in a part of their own put the workbook over the 8 MiB kept in memory.
    const bytes = zip([...workbook({ text: '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row><c t="inlineStr"><is><t>id</t></is></c></row></sheetData></worksheet>' }), { name: 'xl/media/noise.txt', text: randomBytes(9 * 2 ** 20).toString('base64') }])
    expect(bytes.length).toBeGreaterThan(8 * 2 ** 20)
    const before = descriptors()
    const request = {
      pipeline: { batchSize: 100, limits: DEFAULT_LIMITS, unknownColumns: 'error' },
      file: { path: 'big.xlsx' },
      format: { type: 'xlsx', options: {} },
      open: () => Readable.from([bytes]),
    } as unknown as LoadRequest
    const raw = await loadXlsx(request)
    expect(raw.fields).toEqual(['id'])
    expect(copies()).toEqual([])
    expect(descriptors()).toBeGreaterThan(before)
    // A header that fails coercion leaves the batches unread: the core calls close.
    raw.close!()
    await waitFor(() => descriptors() === before, 5_000, 'the workbook to be closed')
  })

  it('takes the JS path into DuckDB, never the native CSV reader, for Excel and fixed-width files', async () => {
    const job = (type: string) => ({ file: { path: `a.${type}` }, localPath: '/tmp/a', source: { format: { type, options: {} }, fields: ['id'], headerLine: 1, columns: [] } }) as unknown as WriteJob
    expect(nativeCsvUnsupported(job('xlsx'))).toBe('xlsx is read by filedge')
    expect(nativeCsvUnsupported(job('fixed'))).toBe('fixed is read by filedge')
    ws = workspace({
      'filedge.config.ts': `import { defineConfig } from 'filedge'
import { duckdb } from 'filedge/plugins/duckdb'
const destination = duckdb({ path: 'warehouse.duckdb' })
export default defineConfig({
  pipelines: [
    { name: 'sheets', source: 'sheets', destination, table: 'sheets', columns: { id: 'integer', day: 'date' } },
    { name: 'lines', source: { dir: 'lines', include: ['*.txt'] }, format: { type: 'fixed', layout: [{ name: 'id', start: 1, width: 3 }, { name: 'day', start: 4, width: 10 }] }, destination, table: 'lines', columns: { id: 'integer', day: 'date' } },
  ],
})
`,
      'lines/a.txt': '  12024-05-01\n  22024-05-02\n',
    })
    await writeBook(ws.file('sheets/a.xlsx'), (book) => {
      const sheet = book.addWorksheet('Data')
      sheet.addRows([['id', 'day'], [1, new Date(Date.UTC(2024, 4, 1))]])
      sheet.getCell('B2').numFmt = 'yyyy-mm-dd'
    })
    const result = await ws.cli(['--reporter', 'simple'])
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    const read = (table: string) => readDuckdb(ws!.file('warehouse.duckdb'), `SELECT id, CAST(day AS VARCHAR) AS day FROM ${table} ORDER BY id`)
    expect(await read('sheets')).toEqual([{ id: 1n, day: '2024-05-01' }])
    expect(await read('lines')).toEqual([
      { id: 1n, day: '2024-05-01' },
      { id: 2n, day: '2024-05-02' },
    ])
  })
})

describe('Excel dates', () => {
  it('knows date formats by built-in id and by the letters of a custom code, outside quotes, escapes and brackets', () => {
    expect([14, 15, 17, 22, 18, 21, 45, 46, 47, 0, 2, 49].map(builtinKind)).toEqual([DATE, DATE, DATE, DATE_TIME, TIME, TIME, TIME, TIME, TIME, NUMBER, NUMBER, NUMBER])
    const kinds = Object.fromEntries(
      [
        'yyyy-mm-dd',
        'd/m/yy;@',
        '[$-409]mmmm d, yyyy',
        'yyyy-mm-dd hh:mm:ss.000',
        'm/d/yy h:mm AM/PM',
        'hh:mm',
        'mm:ss',
        '[h]:mm:ss',
        '[mm]',
        'h "hours"',
        '0.00',
        '#,##0 "days"',
        '0.0 \\d',
        '[Red]0.00;[Blue]-0.00',
        '_(* #,##0_);_(* (#,##0)',
        '"Date: "@',
        'General',
        '0.00E+00',
      ].map((code) => [code, formatKind(code)]),
    )
    expect(kinds).toEqual({
      'yyyy-mm-dd': DATE,
      'd/m/yy;@': DATE,
      '[$-409]mmmm d, yyyy': DATE,
      'yyyy-mm-dd hh:mm:ss.000': DATE_TIME,
      'm/d/yy h:mm AM/PM': DATE_TIME,
      'hh:mm': TIME,
      'mm:ss': TIME,
      '[h]:mm:ss': TIME,
      '[mm]': TIME,
      'h "hours"': TIME,
      '0.00': NUMBER,
      '#,##0 "days"': NUMBER,
      '0.0 \\d': NUMBER,
      '[Red]0.00;[Blue]-0.00': NUMBER,
      '_(* #,##0_);_(* (#,##0)': NUMBER,
      '"Date: "@': NUMBER,
      General: NUMBER,
      '0.00E+00': NUMBER,
    })
  })

  it('turns serials into the day Excel shows, with the 1900 leap-year bug and the 1904 system; refuses what is no date', () => {
    const text = (serial: number, kind: NumberKind = DATE, date1904 = false) => serialToText(serial, kind, date1904)
    expect(text(1)).toBe('1900-01-01')
    expect(text(59)).toBe('1900-02-28')
    expect(text(60)).toEqual({ problem: '60 is 1900-02-29, a day Excel counts that never existed' })
    expect(text(61)).toBe('1900-03-01')
    expect(text(45413)).toBe('2024-05-01')
    expect(text(45413, DATE, true)).toBe('2028-05-02')
    expect(text(0, DATE, true)).toBe('1904-01-01')
    expect(text(2958465)).toBe('9999-12-31')
    expect(text(2958466)).toEqual({ problem: '2958466 is after 9999-12-31' })
    expect(text(0)).toEqual({ problem: "0 is before 1900-01-01, the first day of Excel's 1900 date system" })
    expect(text(-1, DATE, true)).toEqual({ problem: "-1 is before 1904-01-01, the first day of the workbook's 1904 date system" })
    // A fraction is a time of day: a date format shows it, and it is not dropped.
    expect(text(45413.5)).toBe('2024-05-01T12:00:00')
    expect(text(45413, DATE_TIME)).toBe('2024-05-01T00:00:00')
    // Milliseconds are Excel's resolution; the noise below them is rounded away.
    expect(text(45413.573266782405, DATE_TIME)).toBe('2024-05-01T13:45:30.250')
    expect(text(0.5729166666666666, TIME)).toBe('13:45:00')
    expect(text(1.5, TIME)).toBe('36:00:00')
    expect(text(-0.5, TIME)).toEqual({ problem: '-0.5 is a negative time' })
  })
})
