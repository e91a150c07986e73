import { randomUUID } from 'node:crypto'
import { open as openFile, unlink, type FileHandle } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import type { TextDecoder as Decoder } from 'node:util'
import type { SaxesParser } from 'saxes'
import type { Entry, RandomAccessReader, ZipFile } from 'yauzl'
import { formatApprox, formatCount, overLimit } from '../config/limits.js'
import type { ResolvedLimits } from '../config/types.js'
import { fileInvalid, isFiledgeError } from '../errors.js'

/**
 * An .xlsx file is a zip of XML parts (ECMA-376's Open Packaging
 * Conventions). A zip keeps its index at its end, and Excel writes the
 * shared strings after the sheets that refer to them, so the file is read
 * at random, never front to back: the verified bytes are kept (in memory up
 * to IN_MEMORY, beyond that in a temporary file, unlinked as soon as it is
 * open so no crash leaves it behind), and each part is inflated as a stream
 * (yauzl) into a streaming XML parser (saxes): one sheet of any size is read
 * in the memory of a few chunks.
 *
 * A part's sizes in the zip's index are checked before it is inflated (the
 * gzip limits apply: a part may expand to gzipMaxRatio × its compressed size,
 * or gzipRatioGraceBytes), and yauzl stops a part whose inflated bytes exceed
 * its declared size, so an index that lies about a bomb cannot let it through.
 */

/**
 * yauzl and saxes, loaded when the first workbook is met (like hyparquet for
 * Parquet): a run without Excel files does not pay their 8 ms of loading.
 * Set by openPackage, so every part (read through a package) has them.
 */
let libraries: { readonly yauzl: typeof import('yauzl'); readonly Saxes: typeof SaxesParser } | undefined

async function loadLibraries(): Promise<NonNullable<typeof libraries>> {
  if (libraries === undefined) {
    const [yauzl, { SaxesParser: Saxes }] = await Promise.all([import('yauzl'), import('saxes')])
    libraries = { yauzl: yauzl.default, Saxes }
  }
  return libraries
}

/** Workbooks up to this size stay in memory; larger ones are copied to a temporary file. */
const IN_MEMORY = 8 * 1024 * 1024

/** A zip's entry count without ZIP64; a workbook has tens of parts, or a few thousand with many sheets and images. */
const MAX_PARTS = 65_535

/** OLE2 compound files: legacy .xls workbooks, and every password-protected .xlsx. */
const OLE2 = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])

export interface XlsxPackage {
  /** The part at a path inside the zip (case-insensitive, as OPC part names are), or undefined. */
  has(name: string): boolean
  /** A part's size once inflated, from the zip's index. */
  size(name: string): number
  /** A part's bytes, inflated as they are read; refused before reading if they would expand past the limits. */
  read(name: string): Promise<Readable>
  close(): void
}

/**
 * Opens the workbook from the claimed bytes: `localCopy` when the core has
 * them on disk already (a remote file spooled while hashed), otherwise the
 * verified stream, read to its end first (so bytes changed after hashing
 * fail it before any is parsed). Undefined for a file with no bytes at all,
 * an empty load as for every format.
 */
export async function openPackage(bytes: Readable | string, file: string, limits: ResolvedLimits): Promise<XlsxPackage | undefined> {
  const { yauzl } = await loadLibraries()
  let zip: ZipFile
  let release = async () => {}
  try {
    if (typeof bytes === 'string') {
      zip = await yauzl.openPromise(bytes, { autoClose: false })
    } else {
      const kept = await keep(bytes, file)
      if (kept === undefined) return undefined
      if (Buffer.isBuffer(kept)) {
        zip = await yauzl.fromBufferPromise(kept)
      } else {
        release = kept.release
        zip = await yauzl.fromRandomAccessReaderPromise(handleReader(yauzl, kept.handle), kept.size, { autoClose: false })
      }
    }
  } catch (error) {
    await release()
    if (isFiledgeError(error)) throw error
    throw fileInvalid(file, `not a readable .xlsx workbook (${(error as Error).message})`)
  }
  const close = () => {
    zip.close()
    void release()
    release = async () => {}
  }
  const parts = new Map<string, Entry>()
  try {
    if (zip.entryCount > MAX_PARTS) throw fileInvalid(file, `the zip holds ${formatCount(zip.entryCount)} entries; a workbook has far fewer (at most ${formatCount(MAX_PARTS)} are read)`)
    for await (const entry of zip.eachEntry()) parts.set(entry.fileName.toLowerCase(), entry)
  } catch (error) {
    close()
    if (isFiledgeError(error)) throw error
    throw fileInvalid(file, `not a readable .xlsx workbook (${(error as Error).message})`)
  }
  const entry = (name: string) => {
    const found = parts.get(name.toLowerCase())
    if (found === undefined) throw fileInvalid(file, `the workbook refers to ${name}, which the file does not hold (a damaged workbook?)`)
    return found
  }
  return {
    has: (name) => parts.has(name.toLowerCase()),
    size: (name) => entry(name).uncompressedSize,
    async read(name) {
      const found = entry(name)
      const limit = Math.max(limits.gzipRatioGraceBytes, found.compressedSize * limits.gzipMaxRatio)
      if (found.uncompressedSize > limit) {
        const what = `${name} would expand to ${formatApprox(found.uncompressedSize)} from ${formatApprox(found.compressedSize)} in the zip, over ${limits.gzipMaxRatio}×: refusing a likely zip bomb`
        throw fileInvalid(file, overLimit(what, 'gzipMaxRatio'))
      }
      try {
        return await zip.openReadStreamPromise(found)
      } catch (error) {
        throw fileInvalid(file, `cannot read ${name} from the workbook: ${(error as Error).message}`)
      }
    },
    close,
  }
}

interface Spooled {
  readonly handle: FileHandle
  readonly size: number
  release(): Promise<void>
}

/**
 * The spooled file as yauzl reads it, through our handle, which only
 * `release` closes. Not yauzl's fromFd: its reader closes the descriptor
 * when the zip closes, and the handle would then close it a second time, by
 * then perhaps another file's. Nor the handle's createReadStream: destroying
 * one (yauzl does, for a part read no further) closes the handle, whatever
 * autoClose says.
 */
function handleReader(yauzl: typeof import('yauzl'), handle: FileHandle): RandomAccessReader {
  class HandleReader extends yauzl.RandomAccessReader {
    override _readStreamForRange(start: number, end: number): Readable {
      let position = start
      return new Readable({
        highWaterMark: 64 * 1024,
        read(size) {
          const length = Math.min(size, end - position)
          if (length <= 0) return void this.push(null)
          handle.read(Buffer.allocUnsafe(length), 0, length, position).then(
            ({ bytesRead, buffer }) => {
              if (bytesRead === 0) return this.destroy(new Error('unexpected end of the file'))
              position += bytesRead
              this.push(buffer.subarray(0, bytesRead))
            },
            (error: Error) => this.destroy(error),
          )
        },
      })
    }

    override read(buffer: Buffer, offset: number, length: number, position: number, callback: (error: Error | null, bytesRead?: number) => void): void {
      handle.read(buffer, offset, length, position).then(({ bytesRead }) => callback(null, bytesRead), callback)
    }

    override close(callback: (error: Error | null) => void): void {
      callback(null)
    }
  }
  return new HandleReader()
}

/** The stream's bytes: in memory while small, else in a private temporary file. */
async function keep(stream: Readable, file: string): Promise<Buffer | Spooled | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  let spooled: Omit<Spooled, 'size'> | undefined
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (size === 0 && chunk.length >= OLE2.length && chunk.subarray(0, OLE2.length).equals(OLE2)) {
        throw fileInvalid(file, 'an .xls workbook or a password-protected one (an OLE2 file, not a zip): save it as .xlsx without a password')
      }
      size += chunk.length
      if (spooled === undefined && size <= IN_MEMORY) {
        chunks.push(chunk)
        continue
      }
      if (spooled === undefined) {
        spooled = await temporaryFile()
        for (const kept of chunks) await spooled.handle.write(kept)
        chunks.length = 0
      }
      await spooled.handle.write(chunk)
    }
  } catch (error) {
    await spooled?.release()
    throw error
  }
  if (spooled !== undefined) return { ...spooled, size }
  return size === 0 ? undefined : Buffer.concat(chunks)
}

/** A file only this process can open, gone from the directory at once where the system allows it (the descriptor keeps it). */
async function temporaryFile(): Promise<Omit<Spooled, 'size'>> {
  const at = path.join(os.tmpdir(), `filedge-xlsx-${process.pid}-${randomUUID()}`)
  const handle = await openFile(at, 'wx+', 0o600)
  const unlinked = await unlink(at).then(
    () => true,
    () => false,
  )
  return {
    handle,
    async release() {
      await handle.close().catch(() => undefined)
      if (!unlinked) await unlink(at).catch(() => undefined)
    },
  }
}

export interface XmlHandlers {
  /** An element opens: its local name (any namespace prefix dropped) and attributes as written (prefixed keys kept). */
  open?(name: string, attributes: Readonly<Record<string, string>>): void
  close?(name: string): void
  /** Character data (text and CDATA); one text node may arrive in pieces. */
  text?(text: string): void
}

const localName = (name: string) => {
  const colon = name.indexOf(':')
  return colon < 0 ? name : name.slice(colon + 1)
}

/**
 * One XML part fed chunk by chunk into saxes, which calls `handlers` as
 * elements open and close. saxes holds a text node or a tag whole until it
 * ends: a part whose parser goes more than `maxChars` characters without an
 * event (one huge text or attribute) is refused, so a hostile part cannot
 * grow one string without bound. saxes expands no entities but XML's five
 * and character references (no DTDs), so no billion laughs either.
 */
export class XmlPart {
  private readonly parser = new libraries!.Saxes({ position: false })
  private readonly chunks: AsyncIterator<Buffer>
  private decoder: Decoder | undefined
  private sinceEvent = 0
  done = false

  constructor(
    private readonly stream: Readable,
    private readonly file: string,
    readonly name: string,
    private readonly maxChars: number,
    handlers: XmlHandlers,
    /** The line messages name (a sheet's row), when there is one. */
    private readonly line: () => number | undefined = () => undefined,
  ) {
    this.chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
    this.parser.on('opentag', (tag) => {
      this.sinceEvent = 0
      handlers.open?.(localName(tag.name), tag.attributes as Record<string, string>)
    })
    this.parser.on('closetag', (tag) => {
      this.sinceEvent = 0
      handlers.close?.(localName(tag.name))
    })
    const onText = (data: string) => {
      this.sinceEvent = 0
      handlers.text?.(data)
    }
    this.parser.on('text', onText)
    this.parser.on('cdata', onText)
  }

  /** Feeds the next chunk; false once the part has ended. Errors name the file, the part and the line. */
  async pump(): Promise<boolean> {
    if (this.done) return false
    let next: IteratorResult<Buffer>
    try {
      next = await this.chunks.next()
    } catch (error) {
      if (isFiledgeError(error)) throw error
      throw fileInvalid(this.file, `${this.name} in the workbook is damaged (${(error as Error).message})`, this.line())
    }
    try {
      if (next.done) {
        this.done = true
        this.write(this.decode(undefined))
        this.parser.close()
        return false
      }
      this.write(this.decode(next.value))
      return true
    } catch (error) {
      this.destroy()
      if (isFiledgeError(error)) throw error
      throw fileInvalid(this.file, `${this.name} in the workbook is not well-formed XML (${(error as Error).message})`, this.line())
    }
  }

  /** Stops reading the part (the rest is not needed, or reading failed). */
  destroy(): void {
    this.done = true
    this.stream.destroy()
  }

  private write(text: string): void {
    if (text === '') return
    this.parser.write(text)
    this.sinceEvent += text.length
    if (this.sinceEvent > this.maxChars) {
      throw fileInvalid(this.file, overLimit(`${this.name} holds a text or tag longer than ${formatCount(this.maxChars)} characters`, 'maxFieldChars'), this.line())
    }
  }

  /** UTF-8, or UTF-16 when the part starts with its byte-order mark (the encodings XML allows without a declaration). */
  private decode(chunk: Buffer | undefined): string {
    if (this.decoder === undefined) {
      const bom = chunk === undefined ? 0 : (chunk[0] << 8) | chunk[1]
      this.decoder = new TextDecoder(bom === 0xfffe ? 'utf-16le' : bom === 0xfeff ? 'utf-16be' : 'utf-8', { fatal: true })
    }
    try {
      return chunk === undefined ? this.decoder.decode() : this.decoder.decode(chunk, { stream: true })
    } catch {
      throw fileInvalid(this.file, `${this.name} in the workbook is not valid ${this.decoder.encoding} text`, this.line())
    }
  }
}

/** Reads a whole (small) part through `handlers`. */
export async function readXml(pkg: XlsxPackage, file: string, name: string, maxChars: number, handlers: XmlHandlers): Promise<void> {
  const part = new XmlPart(await pkg.read(name), file, name, maxChars, handlers)
  try {
    while (await part.pump());
  } finally {
    part.destroy()
  }
}

/** `_x000D_` → CR: OOXML writes characters XML cannot hold (controls) as `_xHHHH_`, and `_x005F_` for the underscore that starts one. */
export function unescapeText(text: string): string {
  return text.includes('_x') ? text.replace(/_x([0-9A-Fa-f]{4})_/g, (_match, hex: string) => String.fromCharCode(parseInt(hex, 16))) : text
}
