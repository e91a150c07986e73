import { createHash, randomUUID } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { coerceRows } from '../columns/coerce.js'
import type { ResolvedConfig, ResolvedPipeline } from '../config/types.js'
import type { FileRef } from '../destination.js'
import { FiledgeError, usageError } from '../errors.js'
import { isGzipPath } from '../formats/registry.js'
import type { Hooks } from '../hooks.js'
import type { LedgerStore } from '../ledger/types.js'
import { isFrame, openFrame } from '../protect/frame.js'
import type { ProtectKey } from '../protect/keys.js'
import { cdcChangeCheck } from '../write-modes/cdc.js'
import { readSidecar, shownPath, type SidecarEntry, type SidecarHeader } from './sidecar.js'

/**
 * `filedge quarantine replay <sidecar>`: the records a load set aside,
 * fixed, written back as a new input file in the pipeline's source.
 *
 * How records are fixed: in the sidecar itself. Each line's `record` is the
 * record as the file wrote it (a CSV line, an NDJSON line); correct it there
 * (an editor, `jq`), or delete the line of a record that must not load. A
 * sealed record (a pipeline with protected columns) may be replaced by its
 * corrected text in clear, or left sealed: replay opens it with the
 * quarantine key. The edited sidecar may be a copy anywhere: its first line
 * says which pipeline, file and load its records come from.
 *
 * Replay then checks every record against the pipeline's columns (a record
 * that still fails stops the replay, naming it), writes the header and the
 * records in the file's own format and encoding (gzipped if the original
 * was) next to the original file as `<name>.replay-<hash12>.<ext>`, and
 * records `file:replayed` in the original's history with the new file's
 * path and hash. The next run loads it as any new file (new bytes, new hash),
 * and `filedge history` of it leads back to the original.
 *
 * Refused: a sidecar whose load is not the file's committed one (it failed,
 * or a later load replaced it: its good rows are not in the table either);
 * one replayed before (`force` writes it again); and truncate pipelines,
 * where a file is the whole table: a file of the fixed records alone would
 * replace it. Fix the export there, and drop the whole corrected file.
 */

export interface ReplayOptions {
  readonly sidecar: string
  /** Keys that may open sealed records besides the pipeline's quarantine key (rotation). */
  readonly keys: readonly ProtectKey[]
  /** Where to write, instead of next to the original (required for sources with no local folder). */
  readonly out?: string
  readonly force: boolean
  /** Check and name the file, write nothing. */
  readonly dryRun: boolean
  readonly worker: string
}

export interface ReplayResult {
  /** Absolute path of the file written (or that would be). */
  readonly file: string
  /** As the ledger and the source name it. */
  readonly path: string
  readonly hash: string
  readonly records: number
  readonly from: { readonly pipeline: string; readonly hash: string; readonly file: string; readonly loadId: string }
  readonly written: boolean
}

function refused(message: string): FiledgeError {
  return new FiledgeError('USAGE', message)
}

/** An encoder back into the encoding a text format declared: the inverse of its decoder, or undefined for one it cannot invert. */
export function encoderFor(label: string | undefined): ((text: string) => Buffer) | undefined {
  const name = new TextDecoder(label ?? 'utf-8').encoding
  if (name === 'utf-8') return (text) => Buffer.from(text, 'utf8')
  if (name === 'utf-16le') return (text) => Buffer.from(text, 'utf16le')
  if (name === 'utf-16be') return (text) => Buffer.from(text, 'utf16le').swap16()
  // A single-byte encoding (windows-1252, iso-8859-*, koi8-r…): its decoder maps the 256 bytes to 256 characters; inverted.
  const decoded = new TextDecoder(name).decode(Uint8Array.from({ length: 256 }, (_, byte) => byte))
  if ([...decoded].length !== 256) return undefined
  const byteOf = new Map([...decoded].map((char, byte) => [char, byte]))
  if (byteOf.size !== 256) return undefined
  return (text) => {
    const out = Buffer.alloc(text.length)
    for (let i = 0; i < text.length; i++) {
      const byte = byteOf.get(text[i])
      if (byte === undefined) throw refused(`a fixed record holds ${JSON.stringify(text[i])}, which ${name} cannot write; the pipeline's files are ${name}`)
      out[i] = byte
    }
    return out
  }
}

/** The replay file's text: header, then the records, as the format lays them out; and the line each record starts on. */
function layout(header: SidecarHeader, records: readonly string[]): { text: string; starts: number[] } {
  const starts: number[] = []
  const lines = (text: string) => text.split(/\r\n|\r|\n/).length
  if (header.format.type === 'json') {
    let line = 2
    for (const record of records) {
      starts.push(line)
      line += lines(record)
    }
    return { text: `[\n${records.join(',\n')}\n]\n`, starts }
  }
  let line = header.header === null ? 1 : 1 + lines(header.header)
  for (const record of records) {
    starts.push(line)
    line += lines(record)
  }
  return { text: `${header.header === null ? '' : `${header.header}\n`}${records.join('\n')}\n`, starts }
}

/** `incoming/orders.csv.gz` → `orders.replay-<hash12>.csv.gz`: the original's name and extensions, so the source's patterns still match. */
function replayName(original: string, hash: string): string {
  const base = path.posix.basename(original)
  const dot = base.indexOf('.', 1)
  const stem = dot < 0 ? base : base.slice(0, dot)
  const extensions = dot < 0 ? '' : base.slice(dot)
  return `${stem}.replay-${hash.slice(0, 12)}${extensions}`
}

/** Checks the records as a load would: parsed with the pipeline's format, coerced with its columns (and a cdc pipeline's change checks). */
async function check(hooks: Hooks, pipeline: ResolvedPipeline, header: SidecarHeader, bytes: Buffer, name: string): Promise<{ line: number; message: string }[]> {
  const file: FileRef = { hash: createHash('sha256').update(bytes).digest('hex'), path: name, size: bytes.length, version: 'replay', modifiedAt: Date.now() }
  const problems: { line: number; message: string }[] = []
  const raw = await hooks.load.promise({ pipeline, file, format: header.format, open: () => Readable.from([bytes]), signal: new AbortController().signal, validating: true })
  if (raw === undefined || 'replayed' in raw) throw new FiledgeError('INTERNAL', `no format reads "${header.format.type}" files`)
  try {
    const rows = coerceRows(raw, pipeline.columns, {
      file: name,
      unknownColumns: pipeline.unknownColumns,
      onReject: (record) => problems.push(...record.errors.map((error) => ({ line: record.line, message: error.message }))),
      ...(pipeline.writeMode.kind === 'cdc' ? { rowCheck: cdcChangeCheck(pipeline.writeMode, name, pipeline.columns.map((column) => column.name)) } : {}),
    })
    for await (const batch of rows) void batch
  } catch (error) {
    problems.push({ line: (error as FiledgeError).line ?? 0, message: (error as Error).message })
  } finally {
    raw.close?.()
  }
  return problems
}

export async function replaySidecar(config: ResolvedConfig, ledger: LedgerStore, hooks: Hooks, options: ReplayOptions): Promise<ReplayResult> {
  const { header, entries } = readSidecar(options.sidecar)
  const pipeline = config.pipelines.find((candidate) => candidate.name === header.pipeline)
  if (pipeline === undefined) throw refused(`${options.sidecar}: pipeline "${header.pipeline}" is not in the config (it has ${config.pipelines.map((candidate) => `"${candidate.name}"`).join(', ')})`)
  if (pipeline.writeMode.kind === 'truncate') {
    throw refused(
      `pipeline "${pipeline.name}" is a truncate pipeline: each file replaces the whole table, so a file of the ${entries.length} fixed records alone would replace it. Fix the export and drop the whole corrected file instead`,
    )
  }
  if (entries.length === 0) throw refused(`${options.sidecar}: no records left to replay`)

  // Only the committed load's records: those of a load that failed or was replaced have no good rows in the table beside them.
  const [file] = (await ledger.find(header.hash)).filter((candidate) => candidate.pipeline === header.pipeline && candidate.hash === header.hash)
  if (file === undefined) throw refused(`${header.file} (${header.hash.slice(0, 12)}) is not in the ledger of pipeline "${header.pipeline}"`)
  if (file.state !== 'COMMITTED' || file.loadId !== header.loadId) {
    const now = file.state === 'COMMITTED' ? `a later load of it (${file.loadId?.slice(0, 8)}) committed since` : `it is ${file.state}`
    throw refused(`${options.sidecar}: these records were set aside by load ${header.loadId.slice(0, 8)} of ${header.file}, which is not its committed load (${now}); nothing to replay`)
  }
  const earlier = (await ledger.events(file.pipeline, file.hash)).filter((event) => event.event === 'file:replayed' && (event.error ?? '').includes(header.loadId))
  if (earlier.length > 0 && !options.force) {
    const last = earlier.at(-1)!
    throw refused(`${options.sidecar}: already replayed as ${last.path} at ${last.at}; --force writes the records once more (if that file was not loaded, or its rows were removed)`)
  }

  // Records as text: sealed ones opened with the quarantine key (or another given), edited ones as they are.
  const records = entries.map((entry: SidecarEntry, index) => {
    if (entry.record === null) throw refused(`${options.sidecar}:${index + 2}: the record from line ${entry.line} has no text to replay (its format kept none)`)
    if (header.sealed === undefined || !isFrame(entry.record)) return entry.record
    try {
      return openFrame(entry.record, options.keys)
    } catch (error) {
      throw new FiledgeError('DECRYPT_FAILED', `${options.sidecar}:${index + 2}: the record from line ${entry.line}: ${(error as Error).message}`)
    }
  })
  const { text, starts } = layout(header, records)
  const encode = encoderFor(header.format.options.encoding as string | undefined)
  if (encode === undefined) throw refused(`pipeline "${pipeline.name}" reads ${String(header.format.options.encoding)} files, which replay cannot write; write the fixed records as such a file yourself`)
  const plain = encode(text)

  let target: string
  if (options.out !== undefined) target = path.resolve(options.out)
  else {
    const original = pipeline.source.localPath?.(header.file)
    if (original === undefined) throw usageError(`the ${pipeline.source.name} source has no local folder to write the replay into; give --out <path> and upload it yourself`)
    target = path.join(path.dirname(original), replayName(header.file, createHash('sha256').update(plain).digest('hex')))
  }
  const bytes = isGzipPath(target) ? gzipSync(plain) : plain
  const hash = createHash('sha256').update(bytes).digest('hex')
  const shown = shownPath(config.root, target)

  const problems = await check(hooks, pipeline, header, plain, shown)
  if (problems.length > 0) {
    const lines = problems.map((problem) => {
      const at = starts.findLastIndex((start) => start <= problem.line)
      const entry = entries[at]
      // `<replay>:<line> column c: reason` → `column c: reason`, placed by the sidecar line of the record it is in.
      const what = problem.message.startsWith(`${shown}:`) ? problem.message.slice(shown.length + 1).replace(/^\d+:? ?/, '') : problem.message
      return entry === undefined ? problem.message : `sidecar line ${at + 2} (line ${entry.line} of ${header.file}): ${what}`
    })
    throw new FiledgeError('ROW_INVALID', `${options.sidecar}: ${problems.length === 1 ? 'a record still fails' : `${problems.length} problems in the records`}; fix ${problems.length === 1 ? 'it' : 'them'} in the sidecar (or delete the line of a record that must not load), then replay again:\n  ${lines.join('\n  ')}`)
  }
  const result = { file: target, path: shown, hash, records: records.length, from: { pipeline: pipeline.name, hash: header.hash, file: header.file, loadId: header.loadId }, written: !options.dryRun }
  if (options.dryRun) return result

  // Written under a dot name (no source lists it), made durable, recorded in the original's history, then renamed into view.
  mkdirSync(path.dirname(target), { recursive: true })
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`)
  try {
    const fd = openSync(temp, 'wx', 0o644)
    try {
      writeSync(fd, bytes)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    const recorded = await ledger.replayed(file.pipeline, file.hash, header.loadId, shown, options.worker, `${records.length} records of load ${header.loadId} as ${hash}`)
    if (!recorded) throw refused(`${header.file}: its committed load changed while replaying; nothing was written`)
    renameSync(temp, target)
  } finally {
    rmSync(temp, { force: true })
  }
  return result
}
