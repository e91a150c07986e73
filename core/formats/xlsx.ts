import type { XlsxFormatOptions } from '../config/types.js'
import { FiledgeError, isFiledgeError } from '../errors.js'
import type { LoadRequest } from '../hooks.js'
import type { Plugin } from '../plugin.js'
import type { RawBatch, RawRows } from '../rows.js'
import { openPackage } from './xlsx-package.js'
import { SheetReader } from './xlsx-sheet.js'
import { pickSheet, readSharedStrings, readStyles, readWorkbook } from './xlsx-workbook.js'

/**
 * Excel workbooks (`.xlsx`), one sheet per pipeline: `{ type: 'xlsx', sheet,
 * header }`. Read with yauzl (zip, random access) and saxes (streaming XML),
 * both maintained, pure JavaScript, with one small dependency each.
 * Why not a spreadsheet library: SheetJS builds the whole workbook in memory
 * (and its current releases are no longer on npm); exceljs's streaming
 * reader unzips front to back, so when the shared strings come after the
 * sheets (as Excel writes them) it copies every sheet to a temporary file
 * first, finds sheets by conventional paths rather than relationships, and
 * brings nine dependencies (it parses with saxes too). exceljs stays a dev
 * dependency, to write the workbooks tests read. See xlsx-package.ts for
 * how the file is opened, xlsx-sheet.ts for how cells become values.
 */
export async function loadXlsx(request: LoadRequest): Promise<RawRows> {
  const file = request.file.path
  const options = request.format.options as Omit<XlsxFormatOptions, 'type'>
  const { limits, batchSize, unknownColumns } = request.pipeline
  const pkg = await openPackage(request.localCopy ?? request.open(), file, limits)
  // No bytes at all: an empty load, as for every format.
  if (pkg === undefined) return { fields: [], batches: (async function* () {})() }
  let sheet: SheetReader
  try {
    const workbook = await readWorkbook(pkg, file, limits)
    const { part } = pickSheet(workbook, options.sheet, file)
    const kinds = await readStyles(pkg, file, workbook.styles, limits)
    const strings = await readSharedStrings(pkg, file, workbook.sharedStrings, limits)
    sheet = new SheetReader(await pkg.read(part), {
      file,
      part,
      strings,
      kinds,
      date1904: workbook.date1904,
      headerRow: options.header ?? 1,
      unknownColumns,
      maxColumns: limits.maxColumns,
      maxChars: limits.maxFieldChars,
    })
    await sheet.readHeader()
  } catch (error) {
    pkg.close()
    throw named(error, file)
  }
  const close = () => {
    sheet.destroy()
    pkg.close()
  }
  async function* batches(): AsyncGenerator<RawBatch> {
    try {
      for (;;) {
        let more: boolean
        try {
          more = await sheet.fill(batchSize)
        } catch (error) {
          // The rows before a bad one are good: hand them on first (validate checks them too), then fail.
          yield* take(sheet, batchSize, true)
          throw error
        }
        yield* take(sheet, batchSize, !more)
        if (!more) return
      }
    } catch (error) {
      throw named(error, file)
    } finally {
      close()
    }
  }
  return { fields: sheet.fields, headerLine: sheet.headerLine, batches: batches(), close }
}

/** Waiting records in batches of `size`; a shorter rest stays for the next fill unless this is the `last` take. */
function* take(sheet: SheetReader, size: number, last: boolean): Generator<RawBatch> {
  while (sheet.records.length >= size || (last && sheet.records.length > 0)) {
    yield { records: sheet.records.splice(0, size), lines: sheet.lines.splice(0, size) }
  }
}

function named(error: unknown, file: string): FiledgeError {
  if (isFiledgeError(error)) return error
  return new FiledgeError('FILE_INVALID', `${file}: ${(error as Error).message}`, { file, cause: error })
}

/** The built-in Excel format. */
export function xlsxFormat(): Plugin {
  return {
    name: 'filedge:xlsx',
    formats: ['xlsx'],
    apply({ hooks }) {
      hooks.load.tapPromise('filedge:xlsx', async (request) => (request.format.type === 'xlsx' ? loadXlsx(request) : undefined))
    },
  }
}
