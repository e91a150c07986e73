import path from 'node:path'
import { FiledgeError } from '../errors.js'
import { parseKey, type ProtectKey } from '../protect/keys.js'
import { env, readEnv, type EnvRef } from '../secrets.js'
import type {
  ColumnProtection,
  ColumnSpec,
  PipelineConfig,
  ResolvedColumn,
  ResolvedFormat,
  ResolvedLedger,
  ResolvedPipeline,
  ResolvedQuarantine,
  ResolvedWriteMode,
} from './types.js'

/**
 * Row controls in the config: protected columns (`encrypt`, `hash`) and
 * `quarantine`. Checked with the rest of the config, before anything is
 * opened; keys are checked for their shape whenever their variable is set,
 * and for their presence by `requireKeys` before any load writes anything
 * (`filedge status` needs no keys, `filedge run` needs them all).
 */

/** Formats whose records have no text of their own to keep and replay: their bad rows cannot be set aside faithfully. */
export const NO_RECORD_TEXT = new Set(['parquet', 'xlsx'])

/** What a key reference holds now: a key (with its id), nothing (unset), or a problem with its value (never the value). */
function readKey(ref: EnvRef): { key: ProtectKey } | { missing: true } | { problem: string } {
  const text = readEnv(ref)
  if (text === undefined) return { missing: true }
  const parsed = parseKey(text)
  return 'problem' in parsed ? { problem: `the value of ${ref.name} ${parsed.problem}` } : { key: parsed }
}

export function resolveProtection(spec: ColumnSpec, at: string, problems: string[]): ColumnProtection | undefined {
  if (spec.encrypt !== undefined && spec.hash !== undefined) {
    problems.push(`${at}: encrypt or hash, not both (encrypt keeps the value for authorised reads; hash keeps only a joinable pseudonym)`)
    return undefined
  }
  const kind = spec.encrypt !== undefined ? 'encrypt' : spec.hash !== undefined ? 'hash' : undefined
  if (kind === undefined) return undefined
  const ref = spec[kind]!.key
  const read = readKey(ref)
  if ('problem' in read) problems.push(`${at}.${kind}.key: ${read.problem}`)
  return Object.freeze({ kind, key: ref, ...('key' in read ? { keyId: read.key.id } : {}) })
}

/** How a column is stored: a protected one is text (a frame or a pseudonym), whatever its type was checked as. */
export function storedColumn<T extends ResolvedColumn>(column: T): T {
  if (column.protect === undefined) return column
  const { precision: _precision, scale: _scale, ...rest } = column
  return Object.freeze({ ...rest, type: 'string' }) as T
}

/**
 * A cdc pipeline finds rows by key and orders changes by sequence: an
 * encrypted key would never match itself (every sealing differs), and a
 * sealed or hashed sequence or op no longer orders or says anything. A
 * hashed key works: equal values give equal pseudonyms.
 */
export function checkProtectedCdc(columns: readonly ResolvedColumn[], mode: ResolvedWriteMode, at: string, problems: string[]): void {
  if (mode.kind !== 'cdc') return
  for (const column of columns) {
    if (column.protect === undefined) continue
    const columnAt = `${at}.columns.${column.name}.${column.protect.kind}`
    if (column.name === mode.op) problems.push(`${columnAt}: the op column of a cdc pipeline cannot be protected (it says what each change is)`)
    else if (column.name === mode.sequence) problems.push(`${columnAt}: the sequence column of a cdc pipeline cannot be protected (it orders the changes)`)
    else if (mode.keys.includes(column.name) && column.protect.kind === 'encrypt') {
      problems.push(`${columnAt}: a cdc key cannot be encrypted (every encryption of a value differs, so a change would never find its row); use hash, which gives equal values equal pseudonyms`)
    }
  }
}

/** Sidecars' default place: next to a SQLite ledger; a Postgres ledger has no folder, so under the project's `.filedge`. */
function defaultQuarantineDir(root: string, ledger: ResolvedLedger | undefined): string {
  return ledger?.kind === 'sqlite' ? path.join(path.dirname(ledger.path), 'quarantine') : path.join(root, '.filedge', 'quarantine')
}

export function resolveQuarantine(
  pipeline: PipelineConfig,
  columns: readonly ResolvedColumn[],
  format: ResolvedFormat | undefined,
  root: string,
  ledger: ResolvedLedger | undefined,
  at: string,
  problems: string[],
): ResolvedQuarantine | undefined {
  const input = pipeline.quarantine
  if (input === undefined) return undefined
  const quarantineAt = `${at}.quarantine`
  if (input.maxRows === undefined && input.maxFraction === undefined) {
    problems.push(`${quarantineAt}: say how many bad rows a file may set aside before it fails whole: maxRows (e.g. 100), maxFraction (e.g. 0.01), or both`)
  }
  if (format !== undefined && NO_RECORD_TEXT.has(format.type)) {
    problems.push(`${quarantineAt}: ${format.type} records have no text of their own, so a bad one cannot be kept as it was and replayed; quarantine works with csv, tsv, ndjson, json and fixed-width files`)
  }
  const protectedColumns = columns.filter((column) => column.protect !== undefined)
  let keyId: string | undefined
  if (input.key !== undefined) {
    const read = readKey(input.key)
    if ('problem' in read) problems.push(`${quarantineAt}.key: ${read.problem}`)
    else if ('key' in read) keyId = read.key.id
  } else if (protectedColumns.length > 0) {
    problems.push(
      `${quarantineAt}.key: required, because ${protectedColumns.map((column) => `"${column.name}"`).join(', ')} ${protectedColumns.length === 1 ? 'is' : 'are'} protected and a bad record holds ${protectedColumns.length === 1 ? 'its value' : 'their values'} in clear; the sidecar seals records with this key (it may be the same variable as a column's): key: env('QUARANTINE_KEY')`,
    )
  }
  return Object.freeze({
    ...(input.maxRows === undefined ? {} : { maxRows: input.maxRows }),
    ...(input.maxFraction === undefined ? {} : { maxFraction: input.maxFraction }),
    dir: input.dir === undefined ? defaultQuarantineDir(root, ledger) : path.resolve(root, input.dir),
    ...(input.key === undefined ? {} : { key: input.key }),
    ...(keyId === undefined ? {} : { keyId }),
  })
}

/** The keys a pipeline's loads need, read from the environment now. */
export interface PipelineKeys {
  /** By column name. */
  readonly columns: ReadonlyMap<string, ProtectKey>
  readonly quarantine?: ProtectKey
}

/**
 * Reads every key the pipelines need, before anything is written: a key
 * missing or of the wrong shape stops the command (KEY_INVALID, exit 2),
 * naming each variable and never its value.
 */
export function requireKeys(pipelines: readonly ResolvedPipeline[]): Map<string, PipelineKeys> {
  const problems: string[] = []
  const keys = new Map<string, PipelineKeys>()
  for (const pipeline of pipelines) {
    const columns = new Map<string, ProtectKey>()
    const need = (ref: EnvRef, what: string): ProtectKey | undefined => {
      const read = readKey(ref)
      if ('key' in read) return read.key
      problems.push(`pipeline "${pipeline.name}" ${what}: ${'missing' in read ? `environment variable ${ref.name} is not set` : read.problem}`)
      return undefined
    }
    for (const column of pipeline.columns) {
      if (column.protect === undefined) continue
      const key = need(column.protect.key, `column "${column.name}" ${column.protect.kind} key`)
      if (key !== undefined) columns.set(column.name, key)
    }
    const quarantine = pipeline.quarantine?.key === undefined ? undefined : need(pipeline.quarantine.key, 'quarantine key')
    keys.set(pipeline.name, { columns, ...(quarantine === undefined ? {} : { quarantine }) })
  }
  if (problems.length > 0) {
    throw new FiledgeError('KEY_INVALID', problems.length === 1 ? `${problems[0]}; nothing was loaded` : `keys missing or invalid; nothing was loaded:\n  ${problems.join('\n  ')}`)
  }
  return keys
}

/**
 * Keys named by environment variables (`--key-env PII_KEY`), for `decrypt`
 * and `quarantine replay`: each must be set and hold a 32-byte key.
 */
export function keysFromEnv(names: readonly string[]): ProtectKey[] {
  const problems: string[] = []
  const keys: ProtectKey[] = []
  for (const name of names) {
    const read = readKey(env(name))
    if ('key' in read) keys.push(read.key)
    else problems.push('missing' in read ? `environment variable ${name} is not set` : read.problem)
  }
  if (problems.length > 0) throw new FiledgeError('KEY_INVALID', problems.join('; '))
  return keys
}

/** Every encrypt and quarantine key the pipelines name whose variable is set, for reading what they sealed. */
export function configKeys(pipelines: readonly ResolvedPipeline[]): ProtectKey[] {
  const refs = pipelines.flatMap((pipeline) => [
    ...pipeline.columns.filter((column) => column.protect?.kind === 'encrypt').map((column) => column.protect!.key),
    ...(pipeline.quarantine?.key === undefined ? [] : [pipeline.quarantine.key]),
  ])
  const keys = new Map<string, ProtectKey>()
  for (const ref of refs) {
    const read = readKey(ref)
    if ('key' in read) keys.set(read.key.id, read.key)
  }
  return [...keys.values()]
}
