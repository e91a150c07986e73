import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import type { RejectedRecord } from '../columns/coerce.js'
import type { ResolvedFormat, ResolvedQuarantine } from '../config/types.js'
import { FiledgeError, capMessage } from '../errors.js'
import { sealTexts } from '../protect/frame.js'
import type { ProtectKey } from '../protect/keys.js'
import { count } from '../reporters/format.js'

/**
 * The quarantine sidecar of one load of one file: NDJSON, a header line,
 * then one line per record set aside, written as the file is read.
 *
 * One sidecar per file, named by its hash (`<dir>/<pipeline>/<hash>.ndjson`),
 * rather than one per run: a file is the unit that commits or not, so its
 * bad records are written, replaced and replayed with it; workers on many
 * machines never append to one shared file; and a retry of the file writes
 * its own sidecar again, whole.
 *
 * Consistent with the commit: records go to a temporary file next to it;
 * when the file's last record is read (inside the destination's
 * transaction, before its COMMIT) the limits are checked, the temporary
 * file is fsynced and renamed over `<hash>.ndjson`, and the directory
 * fsynced. Only then does the destination commit, and the ledger's
 * COMMITTED record names the sidecar. So a crash
 * - before the rename leaves no sidecar and no rows (the retry writes both);
 * - between the rename and the COMMIT leaves a sidecar and no rows: the
 *   retry (same load id) writes the same bytes again over it, as nothing in
 *   a sidecar depends on time or on the worker;
 * - after the COMMIT, before the ledger heard, leaves both: the load heals
 *   from the destination's marker and reads its count from the sidecar.
 * A sidecar no committed load names (its load then failed) is refused by
 * `filedge quarantine replay`.
 */

export const SIDECAR_VERSION = 1

/** The first line of a sidecar. */
export interface SidecarHeader {
  readonly filedge: 'quarantine'
  readonly version: number
  readonly pipeline: string
  /** The file as the ledger names it, and its SHA-256. */
  readonly file: string
  readonly hash: string
  /** The load the records were set aside by: the ledger's and the destination's load id. */
  readonly loadId: string
  /** How the file was read; a replay writes its records back the same way. */
  readonly format: ResolvedFormat
  /** The header line of the file as it wrote it (CSV, fixed-width with `header: true`); null without one. */
  readonly header: string | null
  /** Set when `record` values are sealed (the pipeline has protected columns): the id of the quarantine key. */
  readonly sealed?: string
}

/** One record set aside. */
export interface SidecarEntry {
  readonly file: string
  readonly line: number
  /** Its record number: `_source_row_number` had it loaded. */
  readonly row: number
  readonly errors: readonly { readonly column?: string; readonly reason: string }[]
  /** The record as the file wrote it (a sealed frame when the header says `sealed`); null when the format could not tell. */
  readonly record: string | null
}

/** A path as the ledger and messages show it: relative to the project root when inside it (as source files are), else absolute. */
export function shownPath(root: string, absolute: string): string {
  const relative = path.relative(root, absolute)
  return relative.startsWith('..') || path.isAbsolute(relative) ? absolute : relative.split(path.sep).join('/')
}

export function sidecarPath(quarantine: ResolvedQuarantine, pipeline: string, hash: string): string {
  return path.join(quarantine.dir, pipeline, `${hash}.ndjson`)
}

/** What a load set aside, for the ledger and the reporters. */
export interface QuarantineOutcome {
  readonly rows: number
  /** The sidecar's absolute path. */
  readonly sidecar: string
}

export interface SidecarWriter {
  /** Sets a record aside; throws QUARANTINE_LIMIT once there are more than `maxRows`. */
  reject(record: RejectedRecord): void
  /**
   * The file's records are all read (`records` of them, bad ones included):
   * checks `maxFraction`, then makes the sidecar durable under its name (or
   * removes one an earlier attempt left, when nothing was set aside).
   */
  finish(records: number): QuarantineOutcome | undefined
  /** The load failed: the temporary file goes. */
  abort(): void
}

export interface SidecarOptions {
  readonly quarantine: ResolvedQuarantine
  readonly pipeline: string
  readonly file: string
  readonly hash: string
  readonly loadId: string
  readonly format: ResolvedFormat
  /** The file's header text, once read. */
  readonly headerText?: () => string | undefined
  /** Seals records' text (pipelines with protected columns). */
  readonly key?: ProtectKey
}

const FLUSH_CHARS = 256 * 1024

function describe(record: RejectedRecord): string {
  return record.errors[0]?.message ?? `line ${record.line}`
}

function limitError(file: string, message: string): FiledgeError {
  return new FiledgeError('QUARANTINE_LIMIT', capMessage(`${file}: ${message}`), { file })
}

/** The share as people write it: 1.2%, 0.05%. */
function percent(fraction: number): string {
  return `${Number((fraction * 100).toPrecision(3))}%`
}

export function sidecarWriter(options: SidecarOptions): SidecarWriter {
  const { quarantine, file } = options
  const target = sidecarPath(quarantine, options.pipeline, options.hash)
  const temp = path.join(path.dirname(target), `.${options.hash}.${options.loadId}.${process.pid}.tmp`)
  let fd: number | undefined
  let rejected = 0
  let first: RejectedRecord | undefined
  let pending: string[] = []
  let pendingChars = 0
  // Records to seal wait for a whole batch's worth: one salt and one AES call for them all.
  let unsealed: RejectedRecord[] = []

  const open = (): number => {
    mkdirSync(path.dirname(target), { recursive: true })
    // Temporary files of this file's earlier attempts whose process died: this attempt's sidecar replaces theirs.
    for (const name of readdirSync(path.dirname(target))) {
      if (name.startsWith(`.${options.hash}.`) && name.endsWith('.tmp') && name !== path.basename(temp)) rmSync(path.join(path.dirname(target), name), { force: true })
    }
    const handle = openSync(temp, 'w', 0o600)
    const header: SidecarHeader = {
      filedge: 'quarantine',
      version: SIDECAR_VERSION,
      pipeline: options.pipeline,
      file,
      hash: options.hash,
      loadId: options.loadId,
      format: options.format,
      header: options.headerText?.() ?? null,
      ...(options.key === undefined ? {} : { sealed: options.key.id }),
    }
    writeSync(handle, `${JSON.stringify(header)}\n`)
    return handle
  }
  const line = (record: RejectedRecord, text: string | null) => {
    const entry: SidecarEntry = {
      file,
      line: record.line,
      row: record.record,
      errors: record.errors.map((error) => ({ ...(error.column === undefined ? {} : { column: error.column }), reason: reasonOf(error.message, file, record.line, error.column) })),
      record: text,
    }
    const json = `${JSON.stringify(entry)}\n`
    pending.push(json)
    pendingChars += json.length
  }
  const seal = () => {
    if (unsealed.length === 0) return
    const frames = sealTexts(options.key!, unsealed.map((record) => record.text ?? ''))
    unsealed.forEach((record, index) => line(record, record.text === undefined ? null : frames[index]))
    unsealed = []
  }
  const flush = () => {
    if (options.key !== undefined) seal()
    if (pending.length === 0) return
    fd ??= open()
    writeSync(fd, pending.join(''))
    pending = []
    pendingChars = 0
  }
  const close = () => {
    if (fd === undefined) return
    closeSync(fd)
    fd = undefined
  }

  return {
    reject(record) {
      rejected++
      first ??= record
      if (quarantine.maxRows !== undefined && rejected > quarantine.maxRows) {
        throw limitError(file, `more than ${count(quarantine.maxRows)} bad ${quarantine.maxRows === 1 ? 'record' : 'records'} (quarantine.maxRows); nothing was loaded. First: ${describe(first)}; the one over the limit: ${describe(record)}`)
      }
      if (options.key !== undefined) {
        unsealed.push(record)
        if (unsealed.length >= 1000) seal()
      } else line(record, record.text ?? null)
      if (pendingChars >= FLUSH_CHARS) flush()
    },
    finish(records) {
      if (quarantine.maxFraction !== undefined && records > 0 && rejected / records > quarantine.maxFraction) {
        throw limitError(
          file,
          `${count(rejected)} of ${count(records)} records are bad (${percent(rejected / records)}), more than quarantine.maxFraction (${percent(quarantine.maxFraction)}); nothing was loaded. First: ${describe(first!)}`,
        )
      }
      if (rejected === 0) {
        // A sidecar an earlier attempt or load left would describe rows this load does not set aside.
        rmSync(target, { force: true })
        return undefined
      }
      flush()
      fsyncSync(fd!)
      close()
      renameSync(temp, target)
      syncDirectory(path.dirname(target))
      return { rows: rejected, sidecar: target }
    },
    abort() {
      close()
      rmSync(temp, { force: true })
    },
  }
}

/** The reason part of a row error's message (`file:line column c: reason`): the entry has the rest as fields. */
function reasonOf(message: string, file: string, line: number, column: string | undefined): string {
  const prefix = column === undefined ? `${file}:${line}: ` : `${file}:${line} column ${column}: `
  return message.startsWith(prefix) ? message.slice(prefix.length) : message
}

/** A rename is durable once its directory is: fsync the directory (a no-op where a directory cannot be opened so). */
function syncDirectory(dir: string): void {
  let handle: number | undefined
  try {
    handle = openSync(dir, 'r')
    fsyncSync(handle)
  } catch {
    // Windows cannot open a directory for fsync; its renames are durable by the file system's own journal.
  } finally {
    if (handle !== undefined) closeSync(handle)
  }
}

/** A sidecar's lines, plain or gzipped (`.gz`, or gzip's magic bytes: a sidecar someone compressed and kept its name). */
export function readSidecar(file: string): { header: SidecarHeader; entries: SidecarEntry[] } {
  let bytes = readFileSync(file)
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes)
  const lines = bytes.toString('utf8').split('\n')
  let header: SidecarHeader | undefined
  const entries: SidecarEntry[] = []
  lines.forEach((text, index) => {
    if (text.trim() === '') return
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (error) {
      throw new FiledgeError('FILE_INVALID', `${file}:${index + 1}: not a JSON line (${(error as Error).message})`, { file, line: index + 1 })
    }
    if (header === undefined) {
      const candidate = value as Partial<SidecarHeader>
      if (candidate?.filedge !== 'quarantine') throw new FiledgeError('FILE_INVALID', `${file}:1: not a filedge quarantine sidecar (its first line has no "filedge": "quarantine")`, { file, line: 1 })
      if (candidate.version !== SIDECAR_VERSION) throw new FiledgeError('FILE_INVALID', `${file}:1: a sidecar of version ${String(candidate.version)}; this filedge reads version ${SIDECAR_VERSION}`, { file, line: 1 })
      header = candidate as SidecarHeader
      return
    }
    const entry = value as Partial<SidecarEntry>
    if (typeof entry?.line !== 'number' || typeof entry.row !== 'number' || !(typeof entry.record === 'string' || entry.record === null)) {
      throw new FiledgeError('FILE_INVALID', `${file}:${index + 1}: expected a quarantined record ({ line, row, errors, record })`, { file, line: index + 1 })
    }
    entries.push(entry as SidecarEntry)
  })
  if (header === undefined) throw new FiledgeError('FILE_INVALID', `${file}: empty; a sidecar starts with its header line`, { file })
  return { header, entries }
}

/**
 * What a committed load's sidecar says it set aside, for a load healed from
 * the destination's marker (the worker died before the ledger heard): the
 * sidecar of that very load, or nothing.
 */
export function sidecarOutcome(quarantine: ResolvedQuarantine, pipeline: string, hash: string, loadId: string): QuarantineOutcome | undefined {
  const target = sidecarPath(quarantine, pipeline, hash)
  try {
    const { header, entries } = readSidecar(target)
    return header.loadId === loadId ? { rows: entries.length, sidecar: target } : undefined
  } catch {
    return undefined
  }
}
