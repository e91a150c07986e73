import path from 'node:path'
import { formatApprox, formatBytes, formatCount, overLimit } from '../config/limits.js'
import type { ResolvedLimits } from '../config/types.js'
import { fileInvalid, showList, showValue } from '../errors.js'
import { builtinKind, formatKind, NUMBER, type NumberKind } from './xlsx-dates.js'
import { readXml, unescapeText, type XlsxPackage } from './xlsx-package.js'

/**
 * What a sheet needs from the rest of its workbook, read before the sheet:
 * the sheets' names and parts (workbook.xml and its relationships), whether
 * dates count from 1904, which styles are dates (styles.xml), and the shared
 * strings cells refer to by number (sharedStrings.xml). Parts are found
 * through their relationships, as OPC defines, not by conventional paths.
 */

export interface SheetEntry {
  readonly name: string
  /** The part holding its cells; undefined when the workbook names none. */
  readonly part: string | undefined
  readonly kind: 'worksheet' | 'chartsheet' | 'other'
  readonly hidden: boolean
}

export interface Workbook {
  readonly sheets: readonly SheetEntry[]
  readonly date1904: boolean
  readonly styles: string | undefined
  readonly sharedStrings: string | undefined
}

/** Excel's own limit is 64,000 cell formats; more than this is not a workbook but a way to fill memory. */
const MAX_STYLES = 65_536

interface Relationship {
  readonly type: string
  readonly target: string
}

/** A part's relationships (`xl/_rels/workbook.xml.rels` for `xl/workbook.xml`) by id, targets resolved to zip paths. */
async function relationships(pkg: XlsxPackage, file: string, source: string, maxChars: number): Promise<Map<string, Relationship>> {
  const dir = path.posix.dirname(source)
  const rels = path.posix.join(dir, '_rels', `${path.posix.basename(source)}.rels`)
  const found = new Map<string, Relationship>()
  if (!pkg.has(rels)) return found
  await readXml(pkg, file, rels, maxChars, {
    open(name, attributes) {
      if (name !== 'Relationship' || attributes.TargetMode === 'External' || attributes.Id === undefined || attributes.Target === undefined) return
      const target = attributes.Target.startsWith('/') ? attributes.Target.slice(1) : path.posix.join(dir, attributes.Target)
      found.set(attributes.Id, { type: attributes.Type ?? '', target: path.posix.normalize(target) })
    },
  })
  return found
}

/** Relationship types end in the same word in transitional (`schemas.openxmlformats.org`) and strict (`purl.oclc.org`) OOXML. */
const typeIs = (relationship: Relationship | undefined, kind: string) => relationship !== undefined && relationship.type.endsWith(`/${kind}`)

export async function readWorkbook(pkg: XlsxPackage, file: string, limits: ResolvedLimits): Promise<Workbook> {
  const root = await relationships(pkg, file, '', limits.maxFieldChars)
  const main = [...root.values()].find((relationship) => typeIs(relationship, 'officeDocument'))?.target ?? 'xl/workbook.xml'
  if (!pkg.has(main)) throw fileInvalid(file, `not an .xlsx workbook: the zip holds no ${main}`)
  const parts = await relationships(pkg, file, main, limits.maxFieldChars)
  const sheets: SheetEntry[] = []
  let date1904 = false
  await readXml(pkg, file, main, limits.maxFieldChars, {
    open(name, attributes) {
      if (name === 'workbookPr') date1904 = attributes.date1904 === '1' || attributes.date1904 === 'true'
      if (name !== 'sheet') return
      // The relationship id is `r:id`, whatever prefix the workbook gave its namespace.
      const id = Object.entries(attributes).find(([key]) => key.endsWith(':id'))?.[1]
      const relationship = id === undefined ? undefined : parts.get(id)
      sheets.push({
        name: attributes.name ?? '',
        part: relationship?.target,
        kind: typeIs(relationship, 'worksheet') ? 'worksheet' : typeIs(relationship, 'chartsheet') ? 'chartsheet' : 'other',
        hidden: attributes.state === 'hidden' || attributes.state === 'veryHidden',
      })
    },
  })
  // Some writers leave these two out of the relationships; their conventional paths are tried then.
  const related = (kind: string, usual: string) => [...parts.values()].find((relationship) => typeIs(relationship, kind))?.target ?? (pkg.has(usual) ? usual : undefined)
  return { sheets, date1904, styles: related('styles', 'xl/styles.xml'), sharedStrings: related('sharedStrings', 'xl/sharedStrings.xml') }
}

/**
 * The sheet `format.sheet` names: by name (as written, else ignoring case,
 * as Excel does), or by 1-based position among the tabs; default the first.
 * A miss lists the sheets there are.
 */
export function pickSheet(workbook: Workbook, wanted: string | number | undefined, file: string): SheetEntry & { readonly part: string } {
  const { sheets } = workbook
  const names = sheets.map((sheet) => sheet.name)
  const listing = sheets.length === 0 ? 'the workbook has no sheets' : `the workbook has ${showList(names)}`
  let sheet: SheetEntry | undefined
  if (wanted === undefined || typeof wanted === 'number') {
    sheet = sheets[(wanted ?? 1) - 1]
    if (sheet === undefined) throw fileInvalid(file, `there is no sheet ${wanted ?? 1}: ${listing}`)
  } else {
    sheet = sheets.find((candidate) => candidate.name === wanted) ?? sheets.find((candidate) => candidate.name.toLowerCase() === wanted.toLowerCase())
    if (sheet === undefined) throw fileInvalid(file, `there is no sheet ${showValue(wanted)}: ${listing}`)
  }
  if (sheet.kind !== 'worksheet') throw fileInvalid(file, `sheet ${showValue(sheet.name)} is a ${sheet.kind === 'chartsheet' ? 'chart' : 'macro or dialog'} sheet, not a sheet of cells; ${listing}`)
  if (sheet.part === undefined) throw fileInvalid(file, `the workbook names no part for sheet ${showValue(sheet.name)} (a damaged workbook?)`)
  return { ...sheet, part: sheet.part }
}

/**
 * The number kind of each cell style (the `s` of a cell indexes
 * `cellXfs`), decided once here so a cell costs an array lookup. A
 * workbook without styles has only numbers.
 */
export async function readStyles(pkg: XlsxPackage, file: string, part: string | undefined, limits: ResolvedLimits): Promise<Uint8Array> {
  if (part === undefined || !pkg.has(part)) return new Uint8Array(0)
  const codes = new Map<number, NumberKind>()
  const formats: number[] = []
  let within: 'numFmts' | 'cellXfs' | undefined
  const tooMany = () => fileInvalid(file, `${part} defines more than ${formatCount(MAX_STYLES)} formats; Excel's limit is 64,000`)
  await readXml(pkg, file, part, limits.maxFieldChars, {
    open(name, attributes) {
      if (name === 'numFmts' || name === 'cellXfs') within = name
      else if (within === 'numFmts' && name === 'numFmt') {
        if (codes.size >= MAX_STYLES) throw tooMany()
        codes.set(Number(attributes.numFmtId), formatKind(attributes.formatCode ?? ''))
      } else if (within === 'cellXfs' && name === 'xf') {
        if (formats.length >= MAX_STYLES) throw tooMany()
        formats.push(Number(attributes.numFmtId ?? 0))
      }
    },
    close(name) {
      if (name === within) within = undefined
    },
  })
  // A custom code given for a built-in id overrides it (Excel writes some localized built-ins that way).
  return Uint8Array.from(formats, (id) => codes.get(id) ?? (Number.isInteger(id) ? builtinKind(id) : NUMBER))
}

/**
 * The shared strings, in order; rich text runs joined, phonetic guides
 * (`<rPh>`, furigana above Japanese text) left out as Excel's cell value
 * leaves them. They are held for the whole sheet, so their part's size is
 * checked against limits.xlsxMaxSharedStringsBytes before it is read (the
 * zip's index gives it, and yauzl holds the part to it). Held as JS
 * strings they took 1.6–2.2 bytes of heap per byte of XML (measured on
 * 100k–1M distinct strings of 10–40 characters; the string headers, not the
 * text, are most of it): within a small multiple of the limit, whatever
 * the file.
 */
export async function readSharedStrings(pkg: XlsxPackage, file: string, part: string | undefined, limits: ResolvedLimits): Promise<string[]> {
  if (part === undefined || !pkg.has(part)) return []
  const bytes = pkg.size(part)
  if (bytes > limits.xlsxMaxSharedStringsBytes) {
    const what = `the workbook's shared strings (${part}) are ${formatApprox(bytes)}, more than ${formatBytes(limits.xlsxMaxSharedStringsBytes)}; they are held in memory while the sheet loads`
    throw fileInvalid(file, overLimit(what, 'xlsxMaxSharedStringsBytes'))
  }
  const strings: string[] = []
  let text = ''
  let inItem = false
  let phonetic = false
  let capturing = false
  await readXml(pkg, file, part, limits.maxFieldChars, {
    open(name) {
      if (name === 'si') {
        inItem = true
        text = ''
      } else if (name === 'rPh') phonetic = true
      else if (name === 't' && inItem && !phonetic) capturing = true
    },
    close(name) {
      if (name === 't') capturing = false
      else if (name === 'rPh') phonetic = false
      else if (name === 'si') {
        strings.push(unescapeText(text))
        inItem = false
      }
    },
    text(data) {
      if (capturing) text += data
    },
  })
  return strings
}
