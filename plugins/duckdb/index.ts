import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import {
  assertCreatable,
  assertNoDrift,
  cdcTombstoneSpec,
  createCsvStructureCheck,
  createMutex,
  sleep,
  toMs,
  destinationLocked,
  FiledgeError,
  LOAD_MARKER_ADDED_COLUMNS,
  LOAD_MARKER_TABLE,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  readClaimedBytes,
  truncateLogTable,
  truncateMarker,
  type ActualColumn,
  type CsvFormatOptions,
  type Destination,
  type DestinationContext,
  type LoadMarker,
  type Duration,
  type Logger,
  type TableColumn,
  type TableSpec,
  type TruncateLoad,
  type Value,
  type WriteJob,
  type WriteResult,
} from '../../core/index.js'
import { nativeCsvInsert, nativeCsvUnsupported } from './native-csv.js'
import { nativeParquetInsert, nativeParquetUnsupported, type ParquetField } from './native-parquet.js'
import { markerDdl, modeWrite, readMarker, truncateLogDdl, writeMarker } from './write-modes.js'
import { duckdbDriftCheck, duckdbType } from './types.js'

/**
 * The parts of `@duckdb/node-api` this plugin calls, described structurally so
 * a user can hand in their own connection (and version) without filedge
 * importing the package's types.
 */
export interface DuckDBAppenderLike {
  appendVarchar(value: string): void
  appendBigInt(value: bigint): void
  appendDouble(value: number): void
  appendBoolean(value: boolean): void
  appendNull(): void
  endRow(): void
  flushSync(): void
  closeSync(): void
}

export interface DuckDBConnectionLike {
  run(sql: string, values?: Record<string, unknown>): Promise<{ readonly rowsChanged: number }>
  runAndReadAll(sql: string, values?: Record<string, unknown>): Promise<{ getRowObjectsJS(): Record<string, unknown>[] }>
  createAppender(table: string): Promise<DuckDBAppenderLike>
  closeSync(): void
}

export interface DuckDBDestinationOptions {
  /** Database file, relative to the config file. */
  path: string
  /**
   * Let DuckDB read CSV and Parquet files itself when a pipeline has no transform
   * (default true). `false`: every file goes through filedge's parser and the
   * Appender. See "DuckDB destination" in the README for when the native path
   * applies.
   */
  native?: boolean
  /** An open `@duckdb/node-api` connection to use instead of opening `path` (its database must be a file, not `:memory:`, for a durable ledger). */
  client?: DuckDBConnectionLike
  /**
   * How long the database file stays open after the last write (default
   * `'1s'`). DuckDB lets one process at a time open a file, even to read: a
   * watcher that held it for its whole life would lock out every query and
   * every other `filedge` run. `false` holds it until the run ends.
   */
  releaseAfter?: Duration | false
  /**
   * How long to wait for a file another process holds (a query, another
   * run) before the file is given back to the ledger as DESTINATION_LOCKED.
   * Default `'2m'`; the wait is reported once.
   */
  lockWait?: Duration
}

type NodeApi = typeof import('@duckdb/node-api')

/** DuckDB's message for a file another process holds: "Could not set lock on file …: Conflicting lock is held in /usr/bin/node (PID 123)". */
function lockHolder(error: unknown): string | undefined {
  const message = error instanceof Error ? error.message : String(error)
  if (!/could not set lock on file/i.test(message)) return undefined
  const held = /Conflicting lock is held in (.*?) \(PID (\d+)\)/.exec(message)
  return held ? `held by ${held[1]} (PID ${held[2]})` : 'held by another process'
}

type Append = (appender: DuckDBAppenderLike, value: Value) => void

/** One function per column, chosen once per file: the per-row loop does no type dispatch. */
function appenderFor(column: TableColumn): Append {
  switch (column.type) {
    case 'integer':
      return (appender, value) => appender.appendBigInt(typeof value === 'bigint' ? value : BigInt(value as number))
    case 'float':
      return (appender, value) => appender.appendDouble(value as number)
    case 'boolean':
      return (appender, value) => appender.appendBoolean(value as boolean)
    default:
      // Strings, and the exact text forms of decimals, dates, timestamps and JSON: DuckDB casts them into the column exactly.
      return (appender, value) => appender.appendVarchar(value as string)
  }
}

/**
 * DuckDB destination: one file = one transaction (DELETE this hash's rows,
 * then the file's rows), on one connection guarded by a mutex.
 *
 * Durability: DuckDB writes and fsyncs its WAL at COMMIT, so a file's rows are
 * on disk before the ledger records COMMITTED. Checkpoints (WAL into the
 * database file) run automatically past `checkpoint_threshold` (16 MiB by
 * default) and when the database closes; filedge changes neither.
 *
 * No index on `_source_file_hash`: an ART index slows every bulk insert,
 * while the DELETE before each file scans one VARCHAR column whose row groups'
 * min/max skip the rest (each file's rows are contiguous). Measured on a
 * 1M-row table: 1–3 ms when the hash has no rows, 35–40 ms to delete 1M.
 */
export function duckdb(options: DuckDBDestinationOptions): Destination {
  let api: NodeApi | undefined
  let instance: { closeSync(): void } | undefined
  let connection: DuckDBConnectionLike | undefined = options.client
  let file = options.path
  let logger: Logger | undefined
  let ordered = false
  const lock = createMutex()

  const connected = (): DuckDBConnectionLike => {
    if (connection === undefined) throw new FiledgeError('INTERNAL', `duckdb destination ${file} used before open()`)
    return connection
  }
  const releaseAfter = options.releaseAfter === false || options.client !== undefined ? undefined : toMs(options.releaseAfter ?? '1s')
  const lockWait = toMs(options.lockWait ?? '2m')
  let root: string | undefined
  let active = 0
  let releaseTimer: NodeJS.Timeout | undefined

  /** Opens the file, waiting (bounded, reported once) while another process holds it. */
  async function connect(): Promise<void> {
    file = path.resolve(root!, options.path)
    mkdirSync(path.dirname(file), { recursive: true })
    const deadline = Date.now() + lockWait
    let reported = false
    for (;;) {
      try {
        // fromCache: two pipelines writing one file in one process share one database instance (a second instance on the same file would not see the first's lock).
        const opened = await api!.DuckDBInstance.fromCache(file)
        instance = opened
        connection = (await opened.connect()) as unknown as DuckDBConnectionLike
        if (reported) logger?.info(`${file}: the other process let go; writing`)
        return
      } catch (error) {
        const holder = lockHolder(error)
        if (holder === undefined) throw error
        if (Date.now() >= deadline) {
          throw destinationLocked(
            `duckdb ${file}`,
            `${holder} for over ${Math.round(lockWait / 1000)} s (lockWait); DuckDB allows one process per database file: close the other process's connection (a DuckDB shell, a notebook), or raise lockWait`,
          )
        }
        if (!reported) logger?.warn(`${file} is ${holder}; waiting up to ${Math.round(lockWait / 1000)} s for it (DuckDB allows one process per database file)`)
        reported = true
        await sleep(250)
      }
    }
  }

  /** Closes the file (a checkpoint first, by DuckDB): readers and other runs can open it until the next write. */
  function release(): void {
    connection?.closeSync()
    instance?.closeSync()
    connection = undefined
    instance = undefined
  }

  /**
   * Runs `task` on the connection, one at a time (a write holds it for its
   * whole transaction), opening the file first if it was released, and
   * releasing it `releaseAfter` after the last task.
   */
  async function use<T>(task: (db: DuckDBConnectionLike) => Promise<T>): Promise<T> {
    active++
    clearTimeout(releaseTimer)
    try {
      return await lock.run(async () => {
        if (connection === undefined && root !== undefined) await connect()
        return task(connected())
      })
    } finally {
      active--
      if (active === 0 && releaseAfter !== undefined) {
        releaseTimer = setTimeout(() => void lock.run(async () => active === 0 && release()), releaseAfter)
        // An idle file must not keep the process alive.
        releaseTimer.unref()
      }
    }
  }

  async function rollback(db: DuckDBConnectionLike): Promise<void> {
    await db.run('ROLLBACK').catch(() => undefined)
  }

  /** The JS path: typed batches through the Appender, inside the open transaction. */
  async function appendBatches(db: DuckDBConnectionLike, job: WriteJob): Promise<number> {
    const appender = await db.createAppender(job.table.name)
    const appends = job.table.columns.map(appenderFor)
    const width = appends.length
    // As text, cast by DuckDB: appendValue/appendTimestampTZ build a value object per call (1.8 µs a row, measured), appendVarchar does not.
    const ingestedAt = job.ingestedAt
    const hash = job.file.hash
    let total = 0
    try {
      for await (const batch of job.batches) {
        const { rows, rowNumbers } = batch
        for (let r = 0; r < rows.length; r++) {
          const row = rows[r]
          for (let c = 0; c < width; c++) {
            const value = row[c]
            if (value === null) appender.appendNull()
            else appends[c](appender, value)
          }
          appender.appendVarchar(hash)
          appender.appendVarchar(ingestedAt)
          appender.appendBigInt(BigInt(rowNumbers[r]))
          appender.endRow()
        }
        total += rows.length
      }
      appender.closeSync()
    } catch (error) {
      try {
        appender.closeSync()
      } catch {
        // The transaction is rolled back anyway; the first error is the one to report.
      }
      throw error
    }
    return total
  }

  /**
   * The native path (see native-csv.ts). Resolves to the row count, or to
   * undefined when DuckDB's reader or the SQL checks did not accept the file
   * the way filedge's parser and coercion would: the caller then loads it
   * through the JS path. A file that changed is an error, not a fallback.
   */
  async function loadNatively(db: DuckDBConnectionLike, job: WriteJob): Promise<number | undefined> {
    const source = job.source!
    const csv = source.format.options as Omit<CsvFormatOptions, 'type'>
    const statement = nativeCsvInsert(job, source, csv.nullValues ?? [])
    const structure = createCsvStructureCheck({ delimiter: csv.delimiter ?? ',', quote: csv.quote ?? '"', fields: source.fields.length })
    const params = { ...statement.params, nulls: api!.listValue(statement.params.nulls as string[]) }
    const [inserted, verified] = await Promise.allSettled([db.run(statement.sql, params), readClaimedBytes(job.file, job.localPath!, structure.write)])
    if (verified.status === 'rejected') throw verified.reason
    await verified.value.confirmUnchanged()
    const records = structure.end()
    if (inserted.status === 'rejected') {
      logger?.debug(`${job.file.path}: DuckDB's reader did not load it under filedge's rules (${firstLine(inserted.reason)}); reading it with filedge's parser`)
      return undefined
    }
    if (records === undefined || records !== inserted.value.rowsChanged) {
      logger?.debug(`${job.file.path}: filedge's parser would read ${records ?? 'no'} records, DuckDB read ${inserted.value.rowsChanged}; reading it with filedge's parser`)
      return undefined
    }
    return records
  }

  /**
   * The native Parquet path (see native-parquet.ts), like loadNatively: the row count, or undefined when the file's
   * types or values are not ones DuckDB reads as filedge does, and the JS path takes the file.
   */
  async function loadParquetNatively(db: DuckDBConnectionLike, job: WriteJob): Promise<number | undefined> {
    const source = job.source!
    const read = async (): Promise<number | string> => {
      const params = { path: job.localPath! }
      const described = (await db.runAndReadAll('DESCRIBE SELECT * FROM read_parquet($path)', params)).getRowObjectsJS()
      const fields: ParquetField[] = described.map((row) => ({ name: String(row.column_name), type: String(row.column_type) }))
      if (fields.length !== source.fields.length || fields.some((field, index) => field.name !== source.fields[index])) {
        return `DuckDB reads the columns ${fields.map((field) => field.name).join(', ')}, filedge ${source.fields.join(', ')}`
      }
      // DuckDB shows INT96 (legacy) timestamps as TIMESTAMP; filedge's reader reads them its own way.
      const [legacy] = (await db.runAndReadAll("SELECT count(*) AS n FROM parquet_schema($path) WHERE type = 'INT96'", params)).getRowObjectsJS()
      if (Number(legacy?.n) > 0) return 'an INT96 timestamp'
      const [count] = (await db.runAndReadAll('SELECT sum(row_group_num_rows) AS n FROM (SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata($path))', params)).getRowObjectsJS()
      const statement = nativeParquetInsert(job, fields)
      if (typeof statement === 'string') return statement
      const inserted = await db.run(statement.sql, statement.params)
      const records = Number(count?.n ?? 0)
      return inserted.rowsChanged === records ? records : `DuckDB inserted ${inserted.rowsChanged} of its ${records} rows (a value filedge's rules refuse)`
    }
    const [loaded, verified] = await Promise.allSettled([read(), readClaimedBytes(job.file, job.localPath!)])
    if (verified.status === 'rejected') throw verified.reason
    await verified.value.confirmUnchanged()
    if (loaded.status === 'rejected' || typeof loaded.value === 'string') {
      const why = loaded.status === 'rejected' ? firstLine(loaded.reason) : loaded.value
      logger?.debug(`${job.file.path}: not loaded by DuckDB's Parquet reader (${why}); reading it with filedge's`)
      return undefined
    }
    return loaded.value
  }

  /** Creates `table` with the provenance columns unless it exists, then checks it for drift. */
  async function prepareTable(table: TableSpec): Promise<void> {
    const columns = [...table.columns, ...PROVENANCE_COLUMNS]
    const definitions = columns.map((column) => `${quoteIdentifier(column.name)} ${duckdbType(column)}${column.required ? ' NOT NULL' : ''}`)
    const actual = await use(async (db) => {
      await db.run(`CREATE TABLE IF NOT EXISTS ${quoteIdentifier(table.name)} (${definitions.join(', ')})`)
      const reader = await db.runAndReadAll(
        'SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = $table ORDER BY ordinal_position',
        { table: table.name },
      )
      return reader.getRowObjectsJS()
    })
    const found = actual.map((row): ActualColumn => ({ name: String(row.column_name), type: String(row.data_type), notNull: row.is_nullable === 'NO' }))
    assertNoDrift(table, found, duckdbDriftCheck, `${table.name} in ${file}`)
  }

  return {
    name: 'duckdb',
    capabilities: { transactions: true, writeModes: ['append', 'truncate', 'cdc'] },
    describe: () => `duckdb ${file}`,

    async open({ config, logger: log }: DestinationContext) {
      logger = log
      api ??= await import('@duckdb/node-api')
      if (options.client === undefined) root = config.root
      // Record numbers on the native path come from row_number() over the reader's output, which keeps file order only while insertion order is preserved (DuckDB's default).
      const [setting] = await use(async (db) => (await db.runAndReadAll("SELECT current_setting('preserve_insertion_order') AS value")).getRowObjectsJS())
      ordered = setting?.value === true
      if (!ordered && options.native !== false) log.info(`${file}: preserve_insertion_order is off, so CSV files are read by filedge's parser, not DuckDB's`)
    },

    async healthcheck({ config }: DestinationContext) {
      // This process has the file open (or was handed a connection): ask on it.
      if (connection !== undefined) {
        await use((db) => db.run('SELECT 1'))
        return
      }
      const target = path.resolve(config.root, options.path)
      if (!existsSync(target)) return assertCreatable(target, `duckdb ${target}`)
      const { DuckDBInstance } = await import('@duckdb/node-api')
      let probe: Awaited<ReturnType<typeof DuckDBInstance.create>>
      try {
        // Read-only, and never waiting: another process holding the file is busy, not down (a run would wait for it).
        probe = await DuckDBInstance.create(target, { access_mode: 'READ_ONLY' })
      } catch (error) {
        const holder = lockHolder(error)
        if (holder !== undefined) throw destinationLocked(`duckdb ${target}`, `${holder}; DuckDB allows one process per database file, and a run waits for it (lockWait)`)
        throw new FiledgeError('PLUGIN_ERROR', `duckdb ${target}: ${firstLine(error)}`)
      }
      try {
        const probing = await probe.connect()
        try {
          await probing.run('SELECT 1')
        } finally {
          probing.closeSync()
        }
      } finally {
        probe.closeSync()
      }
    },

    async prepare(table, writeMode) {
      await use(async (db) => {
        const [create, ...added] = markerDdl()
        await db.run(create!)
        // Columns added since the table was made, only when missing (an ALTER is a schema change, not a no-op).
        const present = (await db.runAndReadAll(`SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = $name`, { name: LOAD_MARKER_TABLE })).getRowObjectsJS()
        for (const [index, column] of LOAD_MARKER_ADDED_COLUMNS.entries()) {
          if (!present.some((row) => row.column_name === column.name)) await db.run(added[index]!)
        }
      })
      await prepareTable(table)
      if (writeMode?.kind === 'cdc') await prepareTable(cdcTombstoneSpec(table, writeMode))
      if (writeMode?.kind === 'truncate') await use((db) => db.run(truncateLogDdl(table.name)))
    },

    write(job: WriteJob) {
      return use(async (db) => {
        const native = options.native !== false && ordered && nativeCsvUnsupported(job) === undefined
        // The mode decides what is done around the loader, and which table it fills (cdc: a staging table).
        const mode = modeWrite(db, job, logger)
        const loading: WriteJob = { ...job, table: mode.target, batches: mode.batches }
        /**
         * One try in a transaction of its own. Undefined, after rolling back, when the loader or the
         * mode's checks hand the file over (the native path giving way to the JS path).
         */
        const attempt = async (load: () => Promise<number | undefined>, lines: boolean): Promise<WriteResult | undefined> => {
          await db.run('BEGIN TRANSACTION')
          try {
            const done = await mode.before()
            if (done !== undefined) {
              await rollback(db)
              return done
            }
            const rows = await load()
            const result = rows === undefined ? undefined : await mode.after(rows, lines)
            if (result === undefined) {
              await rollback(db)
              return undefined
            }
            await writeMarker(db, job, result.rows)
            await job.assertLease()
            await db.run('COMMIT')
            return result
          } catch (error) {
            await rollback(db)
            throw error
          }
        }
        const parquet = options.native !== false && nativeParquetUnsupported(job) === undefined
        const result = native ? await attempt(() => loadNatively(db, loading), false) : parquet ? await attempt(() => loadParquetNatively(db, loading), false) : undefined
        if (result !== undefined) return result
        const loaded = await attempt(() => appendBatches(db, loading), true)
        if (loaded === undefined) throw new FiledgeError('INTERNAL', `${job.file.path}: the duckdb destination's JS path gave up on the file`)
        return loaded
      })
    },

    hasLoaded({ pipeline, table, writeMode, hash }) {
      // Under the mutex: a write holds it for its whole transaction, so this reads committed state only.
      return use(async (db): Promise<LoadMarker | null> => {
        const marker = await readMarker(db, pipeline, hash)
        if (marker === null || writeMode.kind !== 'truncate') return marker
        const log = quoteIdentifier(truncateLogTable(table.name))
        const rows = (await db.runAndReadAll(`SELECT applied, file_hash, file_path, rows FROM ${log} WHERE file_hash = $hash OR applied = (SELECT max(applied) FROM ${log})`, { hash })).getRowObjectsJS()
        const loads = rows.map((row): TruncateLoad => ({ applied: Number(row.applied), fileHash: String(row.file_hash), filePath: String(row.file_path), rows: Number(row.rows) }))
        return truncateMarker(marker, hash, loads, table.name)
      })
    },

    dialect: 'duckdb',

    session(task) {
      return use((db) =>
        task({
          run: async (sql, values) => void (await db.run(sql, values)),
          all: async (sql, values) => (await db.runAndReadAll(sql, values)).getRowObjectsJS(),
        }),
      )
    },

    async close() {
      clearTimeout(releaseTimer)
      root = undefined
      if (options.client !== undefined) return
      await lock.run(async () => release())
    },
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]
}

export default duckdb
