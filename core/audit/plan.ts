import type { ExportFilter, ExportTable } from '../ledger/export.js'
import { QUERY_TABLES, queryTable, queryView, type QueryColumn, type QueryTable } from './tables.js'

/**
 * What a query needs of the ledger, read off DuckDB's own parse of it
 * (`json_serialize_sql`): which tables, which of their columns, and which
 * rows can stay in the store. A million files are loaded in seconds, not
 * milliseconds, so loading only what a question reads is what keeps
 * `filedge query` fast: `rows per pipeline` reads two columns of one table,
 * `failures per day` the failure events alone.
 *
 * Every rule errs towards loading more: a query is never answered from less
 * than it reads.
 * - Tables: every table the query names, and the table under each view it
 *   names. A table function anywhere (`query_table('files')`) loads them all.
 * - Columns: those whose name appears anywhere in the query (any part of a
 *   column reference: `f.path`, `path`). A star (`*`, `COLUMNS(*)`, a natural
 *   join, DESCRIBE) or a table used as a value (`SELECT f FROM files f`)
 *   loads every column of the tables in the query.
 * - Rows: only for a table the query reads exactly once, as the sole item of
 *   a FROM, and only the conditions ANDed into that SELECT's WHERE of the
 *   form `column <op> constant`: `=`, `IN (…)` and, for numbers and times,
 *   `<`, `<=`, `>`, `>=`, `BETWEEN`. A constant is literals, casts and a few
 *   functions stable within a transaction (`now()`, `current_date`,
 *   `INTERVAL …`, arithmetic); DuckDB evaluates it and the store keeps the
 *   rows that may pass, bounds widened to whole milliseconds. The clock is
 *   read before the query runs, and only moves forward: a lower bound on
 *   `now()` keeps more rows than the query will (`created_at > now() -
 *   INTERVAL 1 DAY`), an upper one would keep fewer, so it stays in DuckDB. DuckDB
 *   applies the whole WHERE again, so what the store keeps is only ever a
 *   superset of what the query reads. A view reads its table with its own
 *   condition (loads: the load events), under the same once-only rule.
 */

/** A condition to hand to the store once DuckDB has evaluated its constants (`expressions`: DuckDB parse trees). */
export interface PendingFilter {
  readonly column: QueryColumn
  readonly kind: 'in' | 'min' | 'max'
  readonly expressions: readonly unknown[]
}

export interface TableNeed {
  readonly table: QueryTable
  readonly columns: readonly QueryColumn[]
  /** Conditions that come with a view (already values). */
  readonly fixed: readonly ExportFilter[]
  readonly pending: readonly PendingFilter[]
}

type Node = Record<string, unknown>

const isNode = (value: unknown): value is Node => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Functions that read the clock. */
const CLOCK_FUNCTIONS = new Set(['now', 'current_timestamp', 'get_current_timestamp', 'transaction_timestamp', 'current_date', 'today'])

function readsClock(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(readsClock)
  if (!isNode(node)) return false
  if (node.class === 'FUNCTION' && CLOCK_FUNCTIONS.has(String(node.function_name).toLowerCase())) return true
  return Object.values(node).some(readsClock)
}

/** Functions whose value is the same for every row of a query. */
const STABLE_FUNCTIONS = new Set([
  '+', '-', '*', '/', '//', '%',
  'now', 'current_timestamp', 'get_current_timestamp', 'transaction_timestamp', 'current_date', 'today',
  'to_years', 'to_months', 'to_weeks', 'to_days', 'to_hours', 'to_minutes', 'to_seconds', 'to_milliseconds', 'to_microseconds',
  'trunc', 'date_trunc', 'date_add', 'date_sub', 'epoch_ms', 'make_date', 'make_timestamp', 'make_timestamptz', 'strptime',
])

function isConstant(node: unknown): boolean {
  if (!isNode(node)) return false
  if (node.class === 'CONSTANT') {
    const value = (node.value as Node | undefined)?.value
    // A parse tree read through JSON.parse holds integers beyond 2^53 rounded: such a bound could drop rows.
    return typeof value !== 'number' || Math.abs(value) < Number.MAX_SAFE_INTEGER
  }
  if (node.class === 'CAST') return node.try_cast !== true && isConstant(node.child)
  if (node.class === 'FUNCTION') {
    const orders = (node.order_bys as { orders?: unknown[] } | undefined)?.orders ?? []
    return STABLE_FUNCTIONS.has(String(node.function_name).toLowerCase()) && node.filter == null && orders.length === 0 && (node.children as unknown[]).every(isConstant)
  }
  return false
}

/** A text literal. */
function isText(node: unknown): boolean {
  return isNode(node) && node.class === 'CONSTANT' && (node.value as { type?: { id?: string } } | undefined)?.type?.id === 'VARCHAR'
}

interface Ref {
  readonly table: ExportTable
  readonly name: string
  readonly alias: string
  /** The SELECT whose FROM is this reference alone. */
  readonly owner?: Node
  readonly view?: string
}

const FLIPPED: Record<string, string> = {
  COMPARE_GREATERTHAN: 'COMPARE_LESSTHAN',
  COMPARE_GREATERTHANOREQUALTO: 'COMPARE_LESSTHANOREQUALTO',
  COMPARE_LESSTHAN: 'COMPARE_GREATERTHAN',
  COMPARE_LESSTHANOREQUALTO: 'COMPARE_GREATERTHANOREQUALTO',
  COMPARE_EQUAL: 'COMPARE_EQUAL',
}

function conjuncts(node: unknown): unknown[] {
  if (isNode(node) && node.class === 'CONJUNCTION' && node.type === 'CONJUNCTION_AND') return (node.children as unknown[]).flatMap(conjuncts)
  return node == null ? [] : [node]
}

/** The table column a reference names, if it is one of `ref`'s (`state`, `f.state`, `files.state`). */
function columnOf(node: unknown, ref: Ref, table: QueryTable): QueryColumn | undefined {
  if (!isNode(node) || node.class !== 'COLUMN_REF') return undefined
  const names = (node.column_names as string[]).map((name) => name.toLowerCase())
  const name = names.length === 1 ? names[0] : names.length === 2 && (names[0] === ref.alias || names[0] === ref.name) ? names[1] : undefined
  return table.columns.find((column) => column.name === name)
}

function pushable(condition: unknown, ref: Ref, table: QueryTable): PendingFilter[] {
  if (!isNode(condition)) return []
  const filter = (column: QueryColumn | undefined, kind: PendingFilter['kind'], expressions: unknown[]): PendingFilter[] => {
    if (column === undefined || !expressions.every(isConstant)) return []
    if (kind !== 'min' && expressions.some(readsClock)) return []
    // Text compares equal or not alike everywhere; its order is a collation's, which differ between engines. And only
    // to text: against a number DuckDB casts the column instead (`pipeline = 123` matches '0123').
    if (column.type === 'VARCHAR' && (kind !== 'in' || !expressions.every(isText))) return []
    if (column.type === 'TIMESTAMP' && kind === 'in') return expressions.length === 1 ? [{ column, kind: 'min', expressions }, { column, kind: 'max', expressions }] : []
    return [{ column, kind, expressions }]
  }
  if (condition.class === 'COMPARISON' && String(condition.type) in FLIPPED) {
    const left = columnOf(condition.left, ref, table)
    const [column, type, other] = left !== undefined ? [left, condition.type as string, condition.right] : [columnOf(condition.right, ref, table), FLIPPED[condition.type as string], condition.left]
    if (type === 'COMPARE_EQUAL') return filter(column, 'in', [other])
    return filter(column, type.startsWith('COMPARE_GREATER') ? 'min' : 'max', [other])
  }
  if (condition.class === 'OPERATOR' && condition.type === 'COMPARE_IN') {
    const [input, ...values] = condition.children as unknown[]
    return filter(columnOf(input, ref, table), 'in', values)
  }
  if (condition.class === 'BETWEEN') {
    const column = columnOf(condition.input, ref, table)
    return [...filter(column, 'min', [condition.lower]), ...filter(column, 'max', [condition.upper])]
  }
  return []
}

/** The cheapest column of a table, for a query that reads its rows but none of its columns (`count(*)`). */
function cheapest(table: QueryTable): QueryColumn {
  return table.columns.find((column) => column.type !== 'VARCHAR') ?? table.columns[0]
}

/**
 * The tables `ast` (json_serialize_sql's output for one statement) needs.
 * Without a parse tree (a statement DuckDB cannot serialize), every table,
 * whole.
 */
export function planQuery(ast: unknown): TableNeed[] {
  if (ast === undefined) return QUERY_TABLES.map((table) => ({ table, columns: table.columns, fixed: [], pending: [] }))
  const refs: Ref[] = []
  const names = new Set<string>()
  /** Names used alone: a column, or a table used as a value. */
  const singles = new Set<string>()
  const ctes = new Set<string>()
  let everything = false
  let everyTable = false
  const visit = (value: unknown, owner?: Node): void => {
    if (Array.isArray(value)) return value.forEach((item) => visit(item))
    if (!isNode(value)) return
    if (value.type === 'SELECT_NODE') {
      for (const entry of ((value.cte_map as { map?: { key: string }[] } | undefined)?.map ?? [])) ctes.add(entry.key.toLowerCase())
      const from = value.from_table
      for (const [key, child] of Object.entries(value)) visit(child, key === 'from_table' && isNode(from) && from.type === 'BASE_TABLE' ? value : undefined)
      return
    }
    if (value.type === 'BASE_TABLE') {
      const name = String(value.table_name).toLowerCase()
      const alias = String(value.alias ?? '').toLowerCase()
      const view = queryView(name)
      if (view !== undefined) refs.push({ table: view.table, name, alias, view: view.name })
      else if (queryTable(name) !== undefined) refs.push({ table: name as ExportTable, name, alias, ...(owner === undefined ? {} : { owner }) })
    } else if (value.type === 'TABLE_FUNCTION') everyTable = true
    else if (value.class === 'STAR' || value.type === 'SHOW_REF' || (value.type === 'JOIN' && value.ref_type === 'NATURAL')) everything = true
    else if (value.class === 'COLUMN_REF') {
      const parts = (value.column_names as string[]).map((name) => name.toLowerCase())
      for (const name of parts) names.add(name)
      if (parts.length === 1) singles.add(parts[0])
    }
    if (value.type === 'JOIN') for (const name of (value.using_columns as string[] | undefined) ?? []) names.add(name.toLowerCase())
    for (const child of Object.values(value)) visit(child)
  }
  visit(ast)

  const wanted = everyTable ? QUERY_TABLES.map((table) => table.name) : [...new Set(refs.map((ref) => ref.table))]
  // A CTE named like a table or view hides it: conditions on that name are not about the ledger.
  const shadowed = [...ctes].some((name) => queryTable(name) !== undefined || queryView(name) !== undefined)
  return wanted.map((name): TableNeed => {
    const table = queryTable(name)!
    const mine = refs.filter((ref) => ref.table === name)
    const whole = everything || everyTable || mine.some((ref) => singles.has(ref.alias) || singles.has(ref.name))
    const columnNames = new Set([...names, ...mine.flatMap((ref) => (ref.view === undefined ? [] : queryView(ref.view)!.columns))])
    const picked = whole ? table.columns : table.columns.filter((column) => columnNames.has(column.name))
    const columns = picked.length > 0 ? picked : [cheapest(table)]
    const only = mine.length === 1 && !everyTable && !shadowed ? mine[0] : undefined
    if (only?.view !== undefined) return { table, columns, fixed: queryView(only.view)!.where ?? [], pending: [] }
    const pending = only?.owner === undefined ? [] : conjuncts(only.owner.where_clause).flatMap((condition) => pushable(condition, only, table))
    return { table, columns, fixed: [], pending }
  })
}
