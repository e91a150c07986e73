import type { ResolvedCdc } from '../config/types.js'
import { FiledgeError, rowInvalid, showValue } from '../errors.js'
import { PROVENANCE_COLUMNS, type RowBatch, type TableColumn, type TableSpec } from '../rows.js'
import { quoteIdentifier } from '../sql.js'

/**
 * CDC in SQL, shared by the destinations that can run it: the change file is
 * staged in a temporary table through the destination's own bulk path (the
 * Appender, COPY, multi-row INSERTs), then checked, collapsed and applied by
 * a handful of statements, all in the file's transaction. Nothing of the file
 * is held in JavaScript beyond one batch, so a change file of any size loads
 * in bounded memory; the database sorts and joins (and spills to disk).
 *
 * Per file:
 * 1. stage: every change, with its record number and line;
 * 2. check: a change missing a key, op or sequence, an op value no list
 *    names, an insert or update missing a required value, or two changes of
 *    one key with one sequence fail the file, naming the line(s);
 * 3. collapse: the last change per key by sequence (compared by the
 *    column's type), marked newer or not than what the table holds for the
 *    key: its row's sequence, or its tombstone's;
 * 4. apply the newer ones: delete the keys' rows and tombstones, insert the
 *    rows of inserts and updates and the tombstones of deletes.
 *
 * Not newer means older *or equal*: re-applying a file, or a later file that
 * repeats changes already applied (overlapping extracts), changes nothing.
 */

/** Where the deletes of `table` are remembered, so an older insert arriving later cannot resurrect a key. */
export function cdcTombstoneTable(table: string): string {
  return `${table}__filedge_deleted`
}

/** The tombstone table: the keys and the sequence of the delete, with the delete's provenance. */
export function cdcTombstoneSpec(table: TableSpec, mode: ResolvedCdc): TableSpec {
  const column = (name: string): TableColumn => {
    const found = table.columns.find((candidate) => candidate.name === name)
    if (found === undefined) throw new FiledgeError('INTERNAL', `cdc column "${name}" is not a column of ${table.name}`)
    return { ...found, required: true }
  }
  return { name: cdcTombstoneTable(table.name), columns: [...mode.keys.map(column), column(mode.sequence)] }
}

/** Line of each staged change (filedge's parser knows it; a destination's own reader does not and leaves it NULL). */
export const CDC_LINE_COLUMN = '_filedge_line'

/**
 * The staging table of a cdc job: every change column (the op included), all
 * nullable so that the checks, not a constraint, report a missing value with
 * its line; then `CDC_LINE_COLUMN`. The destination adds the provenance
 * columns, as for any table.
 */
export function cdcStageSpec(name: string, mode: ResolvedCdc): TableSpec {
  return {
    name,
    columns: [...mode.changeColumns.map((column) => ({ ...column, required: false })), { name: CDC_LINE_COLUMN, type: 'integer', required: false }],
  }
}

/**
 * The job's batches laid out for `cdcStageSpec`: each row gains its line as
 * a last value. Rows are extended in place (one assignment per row, no copy):
 * they belong to this job and nothing reads them after the destination.
 */
export async function* withLines(batches: AsyncIterable<RowBatch>): AsyncGenerator<RowBatch> {
  for await (const batch of batches) {
    const { rows, lines } = batch
    for (let r = 0; r < rows.length; r++) rows[r].push(lines[r])
    yield batch
  }
}

/** What differs between the destinations' SQL. */
export interface CdcDialect {
  /** The placeholder of the n-th (1-based) value of a statement: `?`, `$1`, `$p1`. */
  placeholder(n: number): string
  /**
   * A sequence value as an expression that `<`, `>=` and ORDER BY compare by
   * the column's type, when the stored value does not already (SQLite keeps
   * decimals as text; Postgres compares text by the database's collation).
   */
  sequenceOrder?(expression: string, column: TableColumn): string
  /** A statement deleting the rows of `target` whose keys match a row of `source` for which `condition` (on alias `a`) holds. */
  deleteMatching(target: string, source: string, keys: readonly string[], condition: string): string
  /** A statement creating temporary table `name` from `select`. */
  createTempAs(name: string, select: string): string
}

/** SQL names (quoted, qualified as needed) of the tables a cdc job touches. */
export interface CdcTables {
  readonly target: string
  readonly tombstones: string
  readonly stage: string
  /** The collapsed changes; created by `collapse`. */
  readonly changes: string
}

export interface SqlStatement {
  readonly sql: string
  readonly values: readonly unknown[]
}

export interface CdcCounts {
  /** Keys the file changes (after collapsing). */
  readonly keys: number
  /** Of those, changes newer than the table's: applied. */
  readonly applied: number
  /** Of the applied, deletes. */
  readonly deletes: number
}

export interface CdcPlan {
  /** First change (by record) missing a key, op or sequence, with an unknown op, or an insert or update missing a required value. */
  readonly rowProblem: SqlStatement
  /** First change (by record) whose key and sequence an earlier change of the file already has. */
  readonly duplicate: SqlStatement
  /** Creates `tables.changes`: the last change per key, flagged newer or not than the table. */
  readonly collapse: SqlStatement
  /** Counts over `tables.changes`, read with `counts()`. */
  readonly count: SqlStatement
  /** The statements that apply the newer changes, in order. */
  readonly apply: readonly SqlStatement[]
  /**
   * The file's error from what `rowProblem` and `duplicate` found (each a row
   * or undefined): the problem that shows first in the file, or undefined when
   * there is none. `exact` is false when the stage does not know lines.
   */
  problem(found: { readonly row?: Record<string, unknown>; readonly duplicate?: Record<string, unknown> }, file: string): { error: FiledgeError; exact: boolean } | undefined
  counts(row: Record<string, unknown>): CdcCounts
}

const NEWER = '_filedge_newer'
const PICK = '_filedge_pick'

/** Builds a statement, numbering placeholders as values are added. */
function statement(dialect: CdcDialect) {
  const values: unknown[] = []
  return {
    value(value: unknown): string {
      values.push(value)
      return dialect.placeholder(values.length)
    },
    list(list: readonly unknown[]): string {
      return list.map((value) => this.value(value)).join(', ')
    },
    done: (sql: string): SqlStatement => ({ sql, values }),
  }
}

/** How a cdc check's messages read, for the SQL checks and `cdcRowCheck` alike. */
function cdcReasons(mode: ResolvedCdc) {
  const opNames = [
    ...mode.ops.insert.map((value) => `${JSON.stringify(value)} (insert)`),
    ...mode.ops.update.map((value) => `${JSON.stringify(value)} (update)`),
    ...mode.ops.delete.map((value) => `${JSON.stringify(value)} (delete)`),
  ].join(', ')
  return {
    allOps: [...mode.ops.insert, ...mode.ops.update, ...mode.ops.delete],
    /** Columns declared required besides keys, op and sequence: inserts and updates must fill them, deletes need not. */
    requiredOnWrite: mode.changeColumns.filter((column) => column.required && !mode.keys.includes(column.name) && column.name !== mode.op && column.name !== mode.sequence),
    missingIdentity: `required value is missing (every change needs its ${mode.keys.length > 1 ? 'keys' : 'key'}, op and sequence)`,
    unknownOp: (op: string | null) => `unknown op ${showValue(op)}; expected one of ${opNames}`,
    missingOnWrite: (op: string) => `required value is missing (an ${mode.ops.insert.includes(op) ? 'insert' : 'update'} carries the whole row; only a delete may leave it empty)`,
    duplicate: (sequence: string | null, earlier: string, key: string) => `same ${mode.sequence} ${showValue(sequence)} as ${earlier} for key ${key}; which change is the last cannot be told`,
    keyText: (values: readonly (string | null)[]) => mode.keys.map((key, index) => `${key}=${showValue(values[index])}`).join(', '),
  }
}

/**
 * The checks of a cdc file's changes, in JavaScript, over coerced batches:
 * what `CdcPlan.rowProblem` and `duplicate` find in the stage, for
 * `filedge validate`, which writes nothing. `check` reports every problem of
 * a batch's rows and returns how many rows had one; rows are checked in file
 * order, across batches (a duplicate names the line of the first change).
 * It keeps one entry per (keys, sequence) seen, so its memory grows with the
 * file, unlike a load's checks, which the database runs.
 */
export function cdcRowCheck(mode: ResolvedCdc, file: string) {
  const reasons = cdcReasons(mode)
  const label = (name: string) => mode.labels?.[name] ?? name
  const seen = new Map<string, number>()
  let columns: readonly string[] | undefined
  let at: { keys: number[]; op: number; sequence: number; required: { name: string; index: number }[] } | undefined
  return (batch: RowBatch, report: (error: FiledgeError) => void): number => {
    if (columns !== batch.columns) {
      columns = batch.columns
      const index = (name: string) => batch.columns.indexOf(name)
      at = { keys: mode.keys.map(index), op: index(mode.op), sequence: index(mode.sequence), required: reasons.requiredOnWrite.map((column) => ({ name: column.name, index: index(column.name) })) }
    }
    const { keys, op, sequence, required } = at!
    let failed = 0
    for (let r = 0; r < batch.rows.length; r++) {
      const row = batch.rows[r]
      const line = batch.lines[r]
      const fail = (name: string, value: unknown, reason: string) => {
        report(rowInvalid(file, line, label(name), value, reason))
        return true
      }
      let bad = false
      // Keys, op and sequence are required columns in a cdc pipeline: coercion has refused a row without one.
      const opValue = String(row[op])
      if (!reasons.allOps.includes(opValue)) bad = fail(mode.op, opValue, reasons.unknownOp(opValue))
      else if (!mode.ops.delete.includes(opValue)) {
        for (const column of required) if (row[column.index] === null) bad = fail(column.name, null, reasons.missingOnWrite(opValue))
      }
      const identityKey = JSON.stringify([...keys, sequence].map((index) => `${typeof row[index]}:${String(row[index])}`))
      const earlier = seen.get(identityKey)
      if (earlier === undefined) seen.set(identityKey, line)
      else {
        const sequenceText = String(row[sequence])
        bad = fail(mode.sequence, sequenceText, reasons.duplicate(sequenceText, `line ${earlier}`, reasons.keyText(keys.map((index) => String(row[index])))))
      }
      if (bad) failed++
    }
    return failed
  }
}

/**
 * The checks of one change that need no other change: a known op, and the
 * required values an insert or update carries. For quarantine, which sets
 * such a change aside while coercion has its record at hand (a load's
 * database checks would fail the whole file). Rows are laid out as
 * `columns` (the pipeline's). Two changes of one key with one sequence
 * still fail the file: which of them is wrong cannot be told.
 */
export function cdcChangeCheck(mode: ResolvedCdc, file: string, columns: readonly string[]): (row: readonly unknown[], line: number) => FiledgeError[] | undefined {
  const reasons = cdcReasons(mode)
  const label = (name: string) => mode.labels?.[name] ?? name
  const op = columns.indexOf(mode.op)
  const required = reasons.requiredOnWrite.map((column) => ({ name: column.name, index: columns.indexOf(column.name) }))
  return (row, line) => {
    const opValue = String(row[op])
    if (!reasons.allOps.includes(opValue)) return [rowInvalid(file, line, label(mode.op), opValue, reasons.unknownOp(opValue))]
    if (mode.ops.delete.includes(opValue)) return undefined
    const missing = required.filter((column) => row[column.index] === null)
    return missing.length === 0 ? undefined : missing.map((column) => rowInvalid(file, line, label(column.name), null, reasons.missingOnWrite(opValue)))
  }
}

const asNumber = (value: unknown): number => Number(value)
const asText = (value: unknown): string | null => (value === null || value === undefined ? null : String(value))

/**
 * The statements of a cdc job for one table. `table` is the destination table
 * (no op column); the stage holds `cdcStageSpec`'s columns.
 */
export function cdcPlan(mode: ResolvedCdc, table: TableSpec, tables: CdcTables, dialect: CdcDialect): CdcPlan {
  const q = quoteIdentifier
  const sequenceColumn = mode.changeColumns.find((column) => column.name === mode.sequence)!
  const order = (expression: string) => dialect.sequenceOrder?.(expression, sequenceColumn) ?? expression
  const keys = mode.keys.map(q)
  const op = q(mode.op)
  const sequence = q(mode.sequence)
  const line = q(CDC_LINE_COLUMN)
  const rowNumber = q('_source_row_number')
  const reasons = cdcReasons(mode)
  const { allOps, requiredOnWrite } = reasons
  const identity = [...mode.keys, mode.op, mode.sequence]

  // Checks read every value as text (aliases c0, c1… are ours, so no user column name can clash).
  const rowProblem = (() => {
    const s = statement(dialect)
    const missing = identity.map((name) => `${q(name)} IS NULL`)
    const conditions = [...missing, `${op} NOT IN (${s.list(allOps)})`]
    if (requiredOnWrite.length > 0) {
      const empty = requiredOnWrite.map((column) => `${q(column.name)} IS NULL`).join(' OR ')
      conditions.push(mode.ops.delete.length > 0 ? `(${op} NOT IN (${s.list(mode.ops.delete)}) AND (${empty}))` : `(${empty})`)
    }
    const selected = [
      ...identity.map((name, index) => `CAST(${q(name)} AS TEXT) AS c${index}`),
      ...requiredOnWrite.map((column, index) => `CASE WHEN ${q(column.name)} IS NULL THEN 1 ELSE 0 END AS r${index}`),
    ]
    return s.done(`SELECT ${rowNumber} AS rn, ${line} AS line, ${selected.join(', ')} FROM ${tables.stage} WHERE ${conditions.join(' OR ')} ORDER BY ${rowNumber} LIMIT 1`)
  })()

  const duplicate = (() => {
    const s = statement(dialect)
    const partition = [...keys, sequence].join(', ')
    const inner =
      `SELECT ${rowNumber} AS rn, ${line} AS line, lag(${line}) OVER (PARTITION BY ${partition} ORDER BY ${rowNumber}) AS prev_line, ` +
      `lag(${rowNumber}) OVER (PARTITION BY ${partition} ORDER BY ${rowNumber}) AS prev_rn, ` +
      [...mode.keys, mode.sequence].map((name, index) => `CAST(${q(name)} AS TEXT) AS c${index}`).join(', ') +
      ` FROM ${tables.stage}`
    return s.done(`SELECT rn, line, prev_rn, prev_line, ${[...mode.keys, mode.sequence].map((_, index) => `c${index}`).join(', ')} FROM (${inner}) d WHERE prev_rn IS NOT NULL ORDER BY rn LIMIT 1`)
  })()

  const stageColumns = [...mode.changeColumns.map((column) => column.name), CDC_LINE_COLUMN].map(q)
  const provenance = PROVENANCE_COLUMNS.map((column) => q(column.name))

  const collapse = (() => {
    const s = statement(dialect)
    const sameKey = (alias: string) => keys.map((key) => `${alias}.${key} = c.${key}`).join(' AND ')
    const notOlder = (other: string, alias: string) => `SELECT 1 FROM ${other} ${alias} WHERE ${sameKey(alias)} AND ${order(`${alias}.${sequence}`)} >= ${order(`c.${sequence}`)}`
    const picked = `SELECT s.*, row_number() OVER (PARTITION BY ${keys.map((key) => `s.${key}`).join(', ')} ORDER BY ${order(`s.${sequence}`)} DESC) AS ${PICK} FROM ${tables.stage} s`
    const newer = `CASE WHEN EXISTS (${notOlder(tables.target, 't')}) OR EXISTS (${notOlder(tables.tombstones, 'd')}) THEN 0 ELSE 1 END AS ${NEWER}`
    const select = `SELECT ${[...stageColumns, ...provenance].map((column) => `c.${column}`).join(', ')}, ${newer} FROM (${picked}) c WHERE c.${PICK} = 1`
    return s.done(dialect.createTempAs(tables.changes, select))
  })()

  const count = (() => {
    const s = statement(dialect)
    const deletes = mode.ops.delete.length > 0 ? `CASE WHEN ${NEWER} = 1 AND ${op} IN (${s.list(mode.ops.delete)}) THEN 1 ELSE 0 END` : '0'
    return s.done(`SELECT count(*) AS n_keys, coalesce(sum(${NEWER}), 0) AS n_applied, coalesce(sum(${deletes}), 0) AS n_deletes FROM ${tables.changes}`)
  })()

  const apply: SqlStatement[] = []
  const whereNewer = `a.${NEWER} = 1`
  apply.push(statement(dialect).done(dialect.deleteMatching(tables.target, tables.changes, keys, whereNewer)))
  apply.push(statement(dialect).done(dialect.deleteMatching(tables.tombstones, tables.changes, keys, whereNewer)))
  {
    const s = statement(dialect)
    const columns = [...table.columns.map((column) => q(column.name)), ...provenance]
    const writes = mode.ops.delete.length > 0 ? ` AND ${op} NOT IN (${s.list(mode.ops.delete)})` : ''
    apply.push(s.done(`INSERT INTO ${tables.target} (${columns.join(', ')}) SELECT ${columns.join(', ')} FROM ${tables.changes} WHERE ${NEWER} = 1${writes}`))
  }
  if (mode.ops.delete.length > 0) {
    const s = statement(dialect)
    const columns = [...keys, sequence, ...provenance]
    apply.push(s.done(`INSERT INTO ${tables.tombstones} (${columns.join(', ')}) SELECT ${columns.join(', ')} FROM ${tables.changes} WHERE ${NEWER} = 1 AND ${op} IN (${s.list(mode.ops.delete)})`))
  }

  const keyText = (row: Record<string, unknown>) => reasons.keyText(mode.keys.map((_, index) => asText(row[`c${index}`])))

  return {
    rowProblem,
    duplicate,
    collapse,
    count,
    apply,
    problem(found, file) {
      // A duplicate shows at its second change: both problems are placed by the record where they appear.
      const kind = found.row === undefined ? 'duplicate' : found.duplicate === undefined || asNumber(found.row.rn) < asNumber(found.duplicate.rn) ? 'row' : 'duplicate'
      const row = kind === 'row' ? found.row : found.duplicate
      if (row === undefined) return undefined
      const lineValue = row.line
      const exact = lineValue !== null && lineValue !== undefined
      const at = exact ? asNumber(lineValue) : asNumber(row.rn)
      const where = (name: string, value: unknown, reason: string) => {
        const column = mode.labels?.[name] ?? name
        if (exact) return rowInvalid(file, at, column, value, reason)
        return new FiledgeError('ROW_INVALID', `${file}: record ${at} column ${column}: ${reason}`, { file, column, value })
      }
      if (kind === 'duplicate') {
        const earlier = exact ? `line ${asNumber(row.prev_line)}` : `record ${asNumber(row.prev_rn)}`
        const value = asText(row[`c${mode.keys.length}`])
        return {
          exact,
          error: where(mode.sequence, value, reasons.duplicate(value, earlier, keyText(row))),
        }
      }
      for (const [index, name] of identity.entries()) {
        if (row[`c${index}`] === null || row[`c${index}`] === undefined) {
          return { exact, error: where(name, null, reasons.missingIdentity) }
        }
      }
      const opValue = asText(row[`c${mode.keys.length}`])
      if (!allOps.includes(opValue!)) return { exact, error: where(mode.op, opValue, reasons.unknownOp(opValue)) }
      const empty = requiredOnWrite.find((_, index) => asNumber(row[`r${index}`]) === 1)
      return { exact, error: where(empty?.name ?? mode.op, null, reasons.missingOnWrite(opValue!)) }
    },
    counts: (row) => ({ keys: asNumber(row.n_keys), applied: asNumber(row.n_applied), deletes: asNumber(row.n_deletes) }),
  }
}
