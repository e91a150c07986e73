import { rmSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api'
import { duckdb } from './duckdb.js'
import { describeError, FiledgeError, usageError } from '../errors.js'
import { emptySnapshot, type ExportFilter, type LedgerSnapshot } from '../ledger/export.js'
import type { LedgerStore } from '../ledger/types.js'
import { loadTable } from './load.js'
import { planQuery, type PendingFilter, type TableNeed } from './plan.js'
import { createTableSql, QUERY_TABLES, QUERY_VIEWS, type QueryColumn, type QueryTable } from './tables.js'

/**
 * An in-memory DuckDB database holding the ledger's tables (tables.ts): the
 * read side of the ledger, as dkdc-state reads its SQLite state through
 * DuckDB. Nothing else is opened: external access (files, URLs, extension
 * downloads) is off before any SQL runs.
 */
interface Duck {
  readonly instance: DuckDBInstance
  readonly connection: DuckDBConnection
  /** A second connection: unpacks what the first appends (load.ts). */
  readonly unpack: DuckDBConnection
  /** The one folder DuckDB may read: where a store that writes CSV itself writes it (load.ts). */
  readonly dir: string
}

/**
 * External access is turned off by SQL before any other statement runs,
 * with one folder allowed: a private temporary folder, where a store that
 * writes its rows as CSV (Postgres) writes them and DuckDB reads them. The
 * folder holds nothing but the ledger's own rows, each file removed once
 * read, and a path out of it (`..`) is refused; DuckDB's instance settings
 * take no list (allowed_directories), hence SQL.
 */
async function openDuck(): Promise<Duck> {
  const dir = await mkdtemp(path.join(tmpdir(), 'filedge-ledger-'))
  let instance: DuckDBInstance | undefined
  try {
    instance = await duckdb.DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
    })
    const connection = await instance.connect()
    await connection.run(`SET allowed_directories = ['${(dir + path.sep).replace(/'/g, "''")}']`)
    await connection.run('SET enable_external_access = false')
    // Times read and print in UTC, as the ledger writes them: `occurred_at::DATE` is the same day for everyone.
    await connection.run("SET TimeZone = 'UTC'")
    for (const table of QUERY_TABLES) await connection.run(createTableSql(table))
    for (const view of QUERY_VIEWS) await connection.run(view.sql)
    return { instance, connection, unpack: await instance.connect(), dir }
  } catch (error) {
    instance?.closeSync()
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

/**
 * DuckDB unpacks with one thread while the ledger is read: reading a SQLite
 * ledger holds the JavaScript thread, and with DuckDB on every core the two
 * fought over them (960,000 files, five columns: 1.18 s with one thread,
 * 1.40 s with two, on two cores). `task` reads; once it is done DuckDB gets
 * every core back for what is left to unpack, and for the queries. So `task`
 * returns what it loaded without waiting for it to be unpacked (`unpacked`),
 * which the caller then awaits.
 */
async function reading<T>(duck: Duck, task: () => Promise<T>): Promise<T> {
  await duck.connection.run('SET threads = 1')
  try {
    return await task()
  } finally {
    await duck.connection.run('RESET threads')
  }
}

function closeDuck(duck: Duck): void {
  duck.unpack.closeSync()
  duck.connection.closeSync()
  duck.instance.closeSync()
  rmSync(duck.dir, { recursive: true, force: true })
}

/**
 * The ledger in DuckDB for a caller that runs its own queries (the audit
 * page): empty tables, filled by `load` from one snapshot of the store. No
 * ledger yet (a SQLite file no run has created): the tables stay empty.
 */
export interface LedgerDuck {
  readonly connection: DuckDBConnection
  /** The snapshot's clock, ms since the epoch: what "now" means for leases. */
  readonly now: number
  /**
   * (Re)creates `into` (default: the table's own name) with `columns` of the
   * ledger table, read from the snapshot. Resolves once read, with the rows
   * and `unpacked`, which settles once the table holds them (load.ts).
   */
  load(table: QueryTable, columns: readonly QueryColumn[], where?: readonly ExportFilter[], into?: string): Promise<{ readonly rows: number; readonly unpacked: Promise<void> }>
  /** Runs `task`, which reads (`load`s, not waiting for them to be unpacked), with DuckDB on one thread: see `reading`. */
  reading<T>(task: () => Promise<T>): Promise<T>
  /** Ends the snapshot and closes the database. */
  close(): Promise<void>
}

export async function openLedgerDuck(ledger: LedgerStore | undefined): Promise<LedgerDuck> {
  const duck = await openDuck()
  let snapshot: LedgerSnapshot
  try {
    snapshot = ledger === undefined ? emptySnapshot() : await ledger.snapshot()
  } catch (error) {
    closeDuck(duck)
    throw error
  }
  return {
    connection: duck.connection,
    now: snapshot.now,
    load: (table, columns, where = [], into = table.name) => loadTable({ append: duck.connection, unpack: duck.unpack, dir: duck.dir }, snapshot, table, columns, where, into),
    reading: (task) => reading(duck, task),
    async close() {
      try {
        await snapshot.close()
      } finally {
        closeDuck(duck)
      }
    },
  }
}

/** Values of a condition's constants, evaluated by DuckDB as the column's type; undefined when they cannot be (left to the query). */
async function evaluate(connection: DuckDBConnection, template: Record<string, unknown>, filter: PendingFilter): Promise<ExportFilter | undefined> {
  const values: (string | number)[] = []
  for (const expression of filter.expressions) {
    const statement = structuredClone(template) as { statements: { node: { select_list: unknown[] } }[] }
    statement.statements[0].node.select_list = [expression]
    // Locations of nodes DuckDB made up are 2^64 - 1, which JSON.parse rounded: it would not read them back.
    const json = JSON.stringify(statement, (key, value: unknown) => (key === 'query_location' ? 0 : value))
    try {
      const sql = (await connection.runAndReadAll('SELECT json_deserialize_sql($json::JSON) AS sql', { json })).getRowsJS()[0][0] as string
      const type = filter.column.type
      const cast = type === 'TIMESTAMP' ? `epoch_us(CAST((${sql}) AS TIMESTAMP))` : `CAST((${sql}) AS ${type})`
      const value = (await connection.runAndReadAll(`SELECT ${cast}`)).getRowsJS()[0][0]
      if (value === null || value === undefined) return undefined
      if (type === 'VARCHAR') values.push(String(value))
      else {
        const number = Number(value)
        if (!Number.isSafeInteger(number)) return undefined
        values.push(type === 'TIMESTAMP' ? number / 1000 : number)
      }
    } catch {
      // The query itself will say what is wrong with it.
      return undefined
    }
  }
  const column = filter.column.source
  if (filter.kind === 'in') return { column, in: values }
  return filter.kind === 'min' ? { column, min: values[0] as number } : { column, max: values[0] as number }
}

/** Whether DuckDB orders as topOf assumes where a query does not say: ascending, NULLs last. */
async function defaultOrder(connection: DuckDBConnection): Promise<boolean> {
  const [order, nulls] = (await connection.runAndReadAll("SELECT current_setting('default_order'), current_setting('default_null_order')")).getRowsJS()[0].map((value) => String(value).toLowerCase())
  return (order === 'asc' || order === 'ascending') && nulls === 'nulls_last'
}

/** Loads what `needs` asks for from one snapshot of the store, with the conditions DuckDB can evaluate (`template`: see evaluate). */
async function fill(duck: Duck, snapshot: LedgerSnapshot, needs: readonly TableNeed[], pendingTemplate: Record<string, unknown>) {
  const { connection } = duck
  const loaded: { table: string; rows: number; columns: string[]; where: ExportFilter[]; unpacked: Promise<void> }[] = []
  for (const need of needs) {
    const where = [...need.fixed]
    for (const pending of need.pending) {
      const filter = await evaluate(connection, pendingTemplate, pending)
      if (filter !== undefined) where.push(filter)
    }
    // Only over exactly the WHERE's rows (see topOf): every condition evaluated, none from a view.
    if (need.top !== undefined && snapshot.top !== undefined && need.fixed.length === 0 && where.length === need.pending.length && (!need.top.defaults || (await defaultOrder(connection)))) {
      const { column, minus, descending, count } = need.top
      const cut = await snapshot.top({ table: need.table.name, column: column.source, ...(minus === undefined ? {} : { minus: minus.source }), descending, count, where })
      if (cut !== null) where.push(cut)
    }
    const { rows, unpacked } = await loadTable({ append: connection, unpack: duck.unpack, dir: duck.dir }, snapshot, need.table, need.columns, where)
    loaded.push({ table: need.table.name, rows, columns: need.columns.map((column) => column.name), where, unpacked })
  }
  return loaded
}

export interface QueryResult {
  readonly columns: readonly { readonly name: string; readonly type: string }[]
  /** DuckDB's values (see output.ts for how each is printed). */
  readonly rows: readonly (readonly unknown[])[]
  /** What was read of the ledger, per table: rows, columns and the conditions the store applied. */
  readonly loaded: readonly { readonly table: string; readonly rows: number; readonly columns: readonly string[]; readonly where: readonly ExportFilter[] }[]
}

/** A statement DuckDB refused (parse, bind, run): the user's to fix, so a usage error. */
function sqlError(error: unknown): FiledgeError {
  return usageError(`query: ${describeError(error)}`)
}

/**
 * `filedge query`: one read-only statement over the ledger.
 *
 * Refused unless it is exactly one statement that DuckDB's own parser and
 * binder type as a SELECT (WITH … SELECT, FROM-first, VALUES, DESCRIBE and
 * SUMMARIZE are SELECTs to it) or an EXPLAIN: the statement is prepared
 * against the empty tables first, so a typo fails before a million files are
 * read, and a statement that would write (INSERT, COPY, ATTACH, SET, PRAGMA
 * with side effects, a second statement after a `;`) is refused before
 * anything runs.
 */
export async function queryLedger(ledger: LedgerStore | undefined, sql: string): Promise<QueryResult> {
  const duck = await openDuck()
  const { connection } = duck
  try {
    let statement
    try {
      const extracted = await connection.extractStatements(sql)
      if (extracted.count !== 1) throw usageError(`query: expected one statement, got ${extracted.count}`)
      statement = await extracted.prepare(0)
    } catch (error) {
      throw error instanceof FiledgeError ? error : sqlError(error)
    }
    if (statement.statementType !== duckdb.StatementType.SELECT && statement.statementType !== duckdb.StatementType.EXPLAIN) {
      throw usageError('query: only a read (SELECT, WITH … SELECT, EXPLAIN) can run over the ledger')
    }
    statement.destroySync()
    const serialized = JSON.parse((await connection.runAndReadAll('SELECT json_serialize_sql($sql::VARCHAR) AS ast', { sql })).getRowsJS()[0][0] as string) as { error?: boolean; statements?: { node: unknown }[] }
    const ast = serialized.error === true ? undefined : serialized.statements?.[0]?.node
    const template = JSON.parse((await connection.runAndReadAll("SELECT json_serialize_sql('SELECT NULL') AS ast")).getRowsJS()[0][0] as string) as Record<string, unknown>
    const snapshot = ledger === undefined ? emptySnapshot() : await ledger.snapshot()
    let loaded
    try {
      loaded = await reading(duck, () => fill(duck, snapshot, planQuery(ast), template))
      await Promise.all(loaded.map((table) => table.unpacked))
    } finally {
      await snapshot.close()
    }
    await connection.run('SET lock_configuration = true')
    let reader
    try {
      reader = await connection.runAndReadAll(sql)
    } catch (error) {
      throw sqlError(error)
    }
    const names = reader.columnNames()
    const types = reader.columnTypes().map(String)
    return { columns: names.map((name, index) => ({ name, type: types[index] })), rows: reader.getRows(), loaded: loaded.map(({ unpacked: _, ...table }) => table) }
  } finally {
    closeDuck(duck)
  }
}
