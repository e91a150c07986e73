import { constants, crc32, deflateRawSync } from 'node:zlib'

/**
 * Hand-made .xlsx files, for workbooks no spreadsheet program would write:
 * zip bombs, zips whose index lies, sheets with absurd dimensions. A part is
 * `{ name, text }` (deflated here) or `{ name, deflated: { bytes, size, crc } }`
 * (already deflated; `size` is what the zip's index declares).
 */

/** A zip of the parts, deflated, without ZIP64 (every size under 4 GiB). */
export function zip(parts) {
  const locals = []
  const centrals = []
  let offset = 0
  for (const part of parts) {
    const name = Buffer.from(part.name)
    const data = part.text === undefined ? undefined : Buffer.from(part.text)
    const { bytes, size, crc } = part.deflated ?? { bytes: deflateRawSync(data), size: data.length, crc: crc32(data) }
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt16LE(8, 8)
    local.writeUInt32LE(crc >>> 0, 14)
    local.writeUInt32LE(bytes.length, 18)
    local.writeUInt32LE(size, 22)
    local.writeUInt16LE(name.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4)
    central.writeUInt16LE(20, 6)
    central.writeUInt16LE(8, 10)
    central.writeUInt32LE(crc >>> 0, 16)
    central.writeUInt32LE(bytes.length, 20)
    central.writeUInt32LE(size, 24)
    central.writeUInt16LE(name.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, name, bytes)
    centrals.push(central, name)
    offset += local.length + name.length + bytes.length
  }
  const directory = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(parts.length, 8)
  end.writeUInt16LE(parts.length, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, directory, end])
}

const MAIN = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'
const RELS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships'

/** The parts of a one-sheet workbook around `sheet` (a part: text or deflated), with `sharedStrings` when given. */
export function workbook(sheet, sharedStrings) {
  const related = [`<Relationship Id="rId1" Type="${RELS}/worksheet" Target="worksheets/sheet1.xml"/>`]
  if (sharedStrings !== undefined) related.push(`<Relationship Id="rId2" Type="${RELS}/sharedStrings" Target="sharedStrings.xml"/>`)
  return [
    { name: '_rels/.rels', text: `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="${RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>` },
    { name: 'xl/workbook.xml', text: `<?xml version="1.0"?><workbook xmlns="${MAIN}" xmlns:r="${RELS}"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>` },
    { name: 'xl/_rels/workbook.xml.rels', text: `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">${related.join('')}</Relationships>` },
    { name: 'xl/worksheets/sheet1.xml', ...sheet },
    ...(sharedStrings === undefined ? [] : [{ name: 'xl/sharedStrings.xml', ...sharedStrings }]),
  ]
}

/** Sheet XML around rows of inline strings and numbers: `[[1, 'a'], …]`, the first row the header. */
export function sheetXml(rows, before = '') {
  const cell = (value) => (typeof value === 'number' ? `<c><v>${value}</v></c>` : `<c t="inlineStr"><is><t>${value}</t></is></c>`)
  return `<?xml version="1.0"?><worksheet xmlns="${MAIN}">${before}<sheetData>${rows.map((row) => `<row>${row.map(cell).join('')}</row>`).join('')}</sheetData></worksheet>`
}

/**
 * `head`, then `piece` `times` over, then `tail`, deflated without holding the
 * whole: each piece is deflated once and its bytes repeated (a full flush
 * ends each at a byte boundary with an empty dictionary, so copies chain
 * into one valid stream). The CRC is computed over the real content.
 */
export function deflatedRepeat(head, piece, times, tail) {
  const flush = (text) => deflateRawSync(Buffer.from(text), { level: 9, finishFlush: constants.Z_FULL_FLUSH })
  const block = Buffer.from(piece)
  const compressed = flush(piece)
  let crc = crc32(head)
  for (let i = 0; i < times; i++) crc = crc32(block, crc)
  crc = crc32(tail, crc)
  const bytes = Buffer.concat([flush(head), ...Array(times).fill(compressed), flush(tail), deflateRawSync(Buffer.alloc(0))])
  return { bytes, size: Buffer.byteLength(head) + block.length * times + Buffer.byteLength(tail), crc }
}
