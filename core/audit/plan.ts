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
  /**
   * The query reads at most the first `count` rows of the table in the order
   * of `column` (less `minus`), NULLs last; `pending` is then exactly its
   * WHERE. See topOf.
   */
  readonly top?: TopNeed
}

export interface TopNeed {
  readonly column: QueryColumn
  readonly minus?: QueryColumn
  readonly descending: boolean
  /** Whether the order relies on DuckDB's defaults (ascending, NULLs last) for its direction or its NULLs. */
  readonly defaults: boolean
  readonly count: number
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

/** The most rows a top pushdown is for: past that, reading them all costs little more than sorting them on the server. */
const TOP_MAX = 100_000

/** Scalar functions a SELECT list may hold for its rows to be the table's own, one for one (no aggregate, no window). */
const ROW_FUNCTIONS = new Set([
  ...STABLE_FUNCTIONS,
  'upper', 'lower', 'length', 'substr', 'substring', 'concat', '||', 'coalesce', 'ifnull', 'nullif', 'round', 'abs', 'floor', 'ceil',
  'date_diff', 'datediff', 'date_part', 'datepart', 'extract', 'epoch', 'epoch_ms', 'strftime', 'replace', 'split_part', 'left', 'right',
  'trim', 'ltrim', 'rtrim', 'starts_with', 'ends_with', 'contains', 'prefix', 'suffix', 'regexp_replace', 'regexp_matches', 'to_json',
])

/** An expression computed from one row alone: no aggregate, window, subquery or unknown function. */
function perRow(node: unknown): boolean {
  if (Array.isArray(node)) return node.every(perRow)
  if (!isNode(node)) return true
  switch (node.class) {
    case 'COLUMN_REF':
    case 'CONSTANT':
      return true
    case 'STAR':
      return node.expr == null && Object.keys((node.replace_list as object | undefined) ?? {}).length === 0
    case 'CAST':
      return perRow(node.child)
    case 'OPERATOR':
    case 'CONJUNCTION':
      return perRow(node.children)
    case 'COMPARISON':
      return perRow(node.left) && perRow(node.right)
    case 'BETWEEN':
      return perRow(node.input) && perRow(node.lower) && perRow(node.upper)
    case 'CASE':
      return perRow(node.case_checks) && perRow(node.else_expr)
    case 'FUNCTION': {
      const orders = (node.order_bys as { orders?: unknown[] } | undefined)?.orders ?? []
      return ROW_FUNCTIONS.has(String(node.function_name).toLowerCase()) && node.filter == null && node.distinct !== true && orders.length === 0 && perRow(node.children)
    }
    default:
      return false
  }
}

/** A non-negative integer literal. */
function count(node: unknown): number | undefined {
  if (!isNode(node) || node.class !== 'CONSTANT') return undefined
  const value = (node.value as { value?: unknown; is_null?: boolean } | undefined)?.value
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined
}

/**
 * A top-N the store can cut the rows to: `SELECT … FROM t [WHERE …] ORDER BY
 * key … LIMIT n [OFFSET m]`, t read once, as the sole item of the FROM.
 * Only the first n + m rows in the order of the first key can be read, ties
 * with the last of them included, so the store may keep only those
 * (LedgerSnapshot.top); DuckDB then runs the query as written.
 *
 * It holds only when the rows the store keeps are exactly those the WHERE
 * keeps (a superset would put its own rows among the first n and push out
 * some the query reads), so every condition of the WHERE must be a text
 * column `=` or `IN` text literals, which the store applies exactly; and
 * only when each row of the result is one row of the table: no GROUP BY,
 * aggregate, window, DISTINCT, HAVING, QUALIFY, SAMPLE or subquery in the
 * SELECT or its ORDER BY, and no TABLESAMPLE. The key is an integer or time column, or one such column less
 * another of its kind (`committed_at - created_at`), by name, by its alias
 * in the SELECT list, or by position.
 */
function topOf(owner: Node, ref: Ref, table: QueryTable): TopNeed | undefined {
  const modifiers = (owner.modifiers as Node[] | undefined) ?? []
  if (modifiers.length !== 2 || modifiers[0].type !== 'ORDER_MODIFIER' || modifiers[1].type !== 'LIMIT_MODIFIER') return undefined
  if ((owner.group_expressions as unknown[] | undefined)?.length || owner.having != null || owner.qualify != null || owner.sample != null) return undefined
  if (owner.aggregate_handling !== 'STANDARD_HANDLING') return undefined
  if ((owner.from_table as Node | undefined)?.sample != null) return undefined
  const list = (owner.select_list as Node[] | undefined) ?? []
  const orders = ((modifiers[0].orders as Node[] | undefined) ?? []).map((order) => order.expression)
  // Every ORDER BY key too: a window there (`row_number() OVER (…)`) would number the rows kept, not the table's.
  if (!list.every(perRow) || !orders.every(perRow)) return undefined
  const limit = count(modifiers[1].limit)
  const offset = modifiers[1].offset == null ? 0 : count(modifiers[1].offset)
  if (limit === undefined || offset === undefined || limit === 0 || limit + offset > TOP_MAX) return undefined
  for (const condition of conjuncts(owner.where_clause)) {
    const pushed = pushable(condition, ref, table)
    if (pushed.length !== 1 || pushed[0].kind !== 'in' || pushed[0].column.type !== 'VARCHAR') return undefined
  }
  const first = ((modifiers[0].orders as Node[] | undefined) ?? [])[0]
  // Spelled as DuckDB serializes them; anything else (NULLS FIRST) is not cut.
  if (first === undefined || !['ORDER_DEFAULT', 'NULLS LAST', 'NULLS_LAST'].includes(String(first.null_order)) || !['ORDER_DEFAULT', 'ASCENDING', 'DESCENDING'].includes(String(first.type))) return undefined
  const key = keyOf(first.expression, list, ref, table)
  if (key === undefined) return undefined
  const descending = first.type === 'DESCENDING'
  const defaults = first.null_order === 'ORDER_DEFAULT' || first.type === 'ORDER_DEFAULT'
  return { ...key, descending, defaults, count: limit + offset }
}

const ORDERABLE = new Set(['BIGINT', 'INTEGER', 'TIMESTAMP'])

/** What an ORDER BY key sorts by, as columns of the table: a column, or one less another of its kind. */
function keyOf(expression: unknown, list: readonly Node[], ref: Ref, table: QueryTable): { column: QueryColumn; minus?: QueryColumn } | undefined {
  if (!isNode(expression)) return undefined
  // By position, or by a SELECT alias (which DuckDB binds before a column): the item it names.
  const position = count(expression)
  if (position !== undefined) {
    if (list.some((item) => item.class === 'STAR')) return undefined
    return position >= 1 && position <= list.length ? keyOf(withoutAlias(list[position - 1]), [], ref, table) : undefined
  }
  if (expression.class === 'COLUMN_REF' && (expression.column_names as string[]).length === 1) {
    const name = (expression.column_names as string[])[0].toLowerCase()
    const aliased = list.find((item) => String(item.alias ?? '').toLowerCase() === name)
    if (aliased !== undefined) return keyOf(withoutAlias(aliased), [], ref, table)
  }
  const column = columnOf(expression, ref, table)
  if (column !== undefined) return ORDERABLE.has(column.type) ? { column } : undefined
  if (expression.class === 'FUNCTION' && expression.function_name === '-' && (expression.children as unknown[]).length === 2) {
    const [a, b] = (expression.children as unknown[]).map((child) => columnOf(child, ref, table))
    if (a === undefined || b === undefined || !ORDERABLE.has(a.type) || !ORDERABLE.has(b.type)) return undefined
    if ((a.type === 'TIMESTAMP') !== (b.type === 'TIMESTAMP')) return undefined
    return { column: a, minus: b }
  }
  return undefined
}

function withoutAlias(item: Node): Node {
  return { ...item, alias: '' }
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
    const top = only?.owner === undefined ? undefined : topOf(only.owner, only, table)
    return { table, columns, fixed: [], pending, ...(top === undefined ? {} : { top }) }
  })
}
