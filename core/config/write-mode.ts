import type { Destination } from '../destination.js'
import { closest } from './issues.js'
import { storedColumn } from './row-controls.js'
import type { ColumnType, PipelineConfig, ResolvedColumn, ResolvedWriteMode } from './types.js'

/**
 * Resolves a pipeline's `writeMode` (already shape-checked by the schema)
 * against its columns and its destination. Problems are pushed with their
 * key path, like every other config problem; the returned columns are what
 * coercion checks.
 *
 * CDC decisions made here (the README's "Write mode: cdc" explains them):
 * - keys, op and sequence are required whatever the column says: a change
 *   without them cannot be placed, so coercion fails it with its line;
 * - other columns' `required` moves from coercion to the destination, which
 *   checks it on inserts and updates only: a delete needs only its key;
 * - float and json keys are refused (equality on doubles or documents is not
 *   a stable identity across destinations), and so are boolean and json
 *   sequences (they do not order changes).
 */

const KEY_TYPES: readonly ColumnType[] = ['string', 'integer', 'decimal', 'boolean', 'date', 'timestamp']
const SEQUENCE_TYPES: readonly ColumnType[] = ['integer', 'float', 'decimal', 'date', 'timestamp', 'string']

export function resolveWriteMode(
  pipeline: PipelineConfig,
  columns: readonly ResolvedColumn[],
  at: string,
  problems: string[],
): { writeMode: ResolvedWriteMode; columns: readonly ResolvedColumn[] } {
  const input = pipeline.writeMode ?? 'append'
  const modeAt = `${at}.writeMode`
  let writeMode: ResolvedWriteMode
  if (input === 'append') writeMode = { kind: 'append' }
  else if (input === 'truncate') writeMode = { kind: 'truncate', allowEmpty: false }
  else if ((input as unknown) === 'cdc') {
    problems.push(`${modeAt}: cdc needs its keys, op column, sequence column and op values: { cdc: { keys: ['id'], op: 'op', sequence: 'updated_at', ops: { insert: ['c'], update: ['u'], delete: ['d'] } } }`)
    return { writeMode: { kind: 'append' }, columns }
  } else if ('truncate' in input) writeMode = { kind: 'truncate', allowEmpty: input.truncate.allowEmpty ?? false }
  else return resolveCdc(input.cdc, columns, `${modeAt}.cdc`, problems, pipeline.destination)

  checkCapability(pipeline.destination, writeMode.kind, modeAt, problems)
  return { writeMode, columns }
}

function checkCapability(destination: Destination | undefined, kind: ResolvedWriteMode['kind'], at: string, problems: string[]): void {
  if (destination === undefined) return
  const declared = destination.capabilities?.writeModes ?? ['append']
  if (!declared.includes(kind)) {
    problems.push(`${at}: destination "${destination.name}" does not support the ${kind} write mode (it declares ${declared.join(', ') || 'none'}); use another write mode or another destination`)
  }
}

function resolveCdc(
  cdc: Extract<PipelineConfig['writeMode'], { cdc: unknown }>['cdc'],
  columns: readonly ResolvedColumn[],
  at: string,
  problems: string[],
  destination: Destination | undefined,
): { writeMode: ResolvedWriteMode; columns: readonly ResolvedColumn[] } {
  const byName = new Map(columns.map((column) => [column.name, column]))
  const names = columns.map((column) => column.name)
  const before = problems.length

  /** A name in the cdc options must be a declared column (by its name in the table, not its source field). */
  const declared = (name: string, path: string): ResolvedColumn | undefined => {
    const column = byName.get(name)
    if (column !== undefined) return column
    const fed = columns.find((candidate) => candidate.source === name)
    const hint = fed !== undefined ? `; it is the source field of column "${fed.name}", name the column` : closestHint(name, names)
    problems.push(`${path}: "${name}" is not a declared column${hint}`)
    return undefined
  }

  const seen = new Set<string>()
  cdc.keys.forEach((key, index) => {
    const path = `${at}.keys[${index}]`
    if (seen.has(key)) problems.push(`${path}: "${key}" is listed twice`)
    seen.add(key)
    const column = declared(key, path)
    if (column !== undefined && !KEY_TYPES.includes(column.type)) {
      problems.push(`${path}: a key cannot be a ${column.type} column (${column.type === 'float' ? 'doubles make no stable identity; declare it decimal or integer' : 'documents make no stable identity'})`)
    }
  })
  const op = declared(cdc.op, `${at}.op`)
  if (op !== undefined && op.type !== 'string') problems.push(`${at}.op: the op column must be a string column; "${cdc.op}" is ${op.type}`)
  if (cdc.keys.includes(cdc.op)) problems.push(`${at}.op: "${cdc.op}" is also a key`)
  const sequence = declared(cdc.sequence, `${at}.sequence`)
  if (sequence !== undefined && !SEQUENCE_TYPES.includes(sequence.type)) {
    problems.push(`${at}.sequence: a sequence must be one of ${SEQUENCE_TYPES.join(', ')}; "${cdc.sequence}" is ${sequence.type}`)
  }
  if (cdc.keys.includes(cdc.sequence)) problems.push(`${at}.sequence: "${cdc.sequence}" is also a key`)
  if (cdc.sequence === cdc.op) problems.push(`${at}.sequence: "${cdc.sequence}" is also the op column`)

  const ops = { insert: cdc.ops.insert ?? [], update: cdc.ops.update ?? [], delete: cdc.ops.delete ?? [] }
  const meaning = new Map<string, string>()
  for (const kind of ['insert', 'update', 'delete'] as const) {
    ops[kind].forEach((value, index) => {
      const other = meaning.get(value)
      if (other !== undefined) problems.push(`${at}.ops.${kind}[${index}]: ${JSON.stringify(value)} is already ${other === kind ? 'listed' : `${other === 'delete' ? 'a' : 'an'} ${other} op`}`)
      else meaning.set(value, kind)
    })
  }
  if (ops.insert.length === 0 && ops.update.length === 0) problems.push(`${at}.ops: expected insert or update values (e.g. insert: ['c'], update: ['u']); with deletes only no row could ever be written`)

  checkCapability(destination, 'cdc', at.replace(/\.cdc$/, ''), problems)
  if (problems.length > before) return { writeMode: { kind: 'append' }, columns }

  const always = new Set([...cdc.keys, cdc.op, cdc.sequence])
  // As stored: a protected (hashed) column is text in the table and the stage.
  const changeColumns = columns.map(storedColumn).map(({ name, type, required, precision, scale }) =>
    Object.freeze({ name, type, required: required || always.has(name), ...(precision === undefined ? {} : { precision, scale }) }),
  )
  const coerced = columns.map((column) => Object.freeze({ ...column, required: always.has(column.name) }))
  const writeMode: ResolvedWriteMode = Object.freeze({
    kind: 'cdc',
    keys: Object.freeze([...cdc.keys]),
    op: cdc.op,
    sequence: cdc.sequence,
    ops: Object.freeze({ insert: Object.freeze(ops.insert), update: Object.freeze(ops.update), delete: Object.freeze(ops.delete) }),
    changeColumns: Object.freeze(changeColumns),
    labels: Object.freeze(Object.fromEntries(columns.map((column) => [column.name, column.source === column.name ? column.name : `${column.source} (→ ${column.name})`]))),
  })
  return { writeMode, columns: coerced }
}

function closestHint(name: string, names: readonly string[]): string {
  const suggestion = closest(name, names)
  return suggestion === undefined ? `; declared columns: ${names.map((candidate) => JSON.stringify(candidate)).join(', ')}` : `; did you mean "${suggestion}"?`
}
