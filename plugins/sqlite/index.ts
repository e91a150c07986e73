import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3'
import {
  assertCreatable,
  assertNoDrift,
  cdcTombstoneSpec,
  createMutex,
  FiledgeError,
  LOAD_MARKER_ADDED_COLUMNS,
  LOAD_MARKER_COLUMNS,
  LOAD_MARKER_TABLE,
  markerValues,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  sleep,
  truncateLogTable,
  truncateMarker,
  type ActualColumn,
  type ColumnType,
  type Destination,
  type DestinationContext,
  type DriftCheck,
  type LoadMarker,
  type Logger,
  type TableSpec,
  type TruncateLoad,
  type WriteJob,
} from '../../core/index.js'
import { createGroupCommit, GROUP_MAX_FILE_BYTES } from './group-commit.js'
import { Inserter } from './insert.js'
import { definitions, readMarker, sideObjects, writeMarker, writeMode } from './write-modes.js'

export interface SqliteDestinationOptions {
  /** Database file, relative to the config file. */
  path: string
  /**
   * `'durable'` (default): synchronous=FULL, every file's commit is on disk
   * before the ledger records it. Small files queued behind one another share
   * a transaction, one fsync for several files, each file atomic in its own
   * savepoint (group-commit.ts); the ledger still hears of a file only once
   * the COMMIT holding its rows has returned. `'fast'`: synchronous=NORMAL — faster, but a
   * power cut (not a process crash) can lose the last commits while the
   * ledger says COMMITTED, and those files would not be loaded again.
   */
  durability?: 'durable' | 'fast'
  /**
   * Page size in bytes of a database this destination creates (a power of two
   * from 512 to 65536); an existing database keeps its own. Default 16384.
   */
  pageSize?: number
  /**
   * An open better-sqlite3 connection to use instead of opening `path`. Its
   * journal mode and busy timeout are left as they are; its `synchronous` is
   * set from `durability`.
   */
  client?: SqliteDatabase
}

/** STRICT-table column types: SQLite then enforces them on every insert too. */
const SQLITE_TYPES: Record<ColumnType, 'TEXT' | 'INTEGER' | 'REAL'> = {
  string: 'TEXT',
  integer: 'INTEGER',
  float: 'REAL',
  decimal: 'TEXT',
  boolean: 'INTEGER',
  date: 'TEXT',
  timestamp: 'TEXT',
  json: 'TEXT',
}

/** SQLite's type-affinity rules (§3.1 of "Datatypes In SQLite"), so `BIGINT` or `VARCHAR(20)` in a hand-made table still match. */
function affinity(declared: string): 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC' {
  const type = declared.toUpperCase()
  if (type.includes('INT')) return 'INTEGER'
  if (type.includes('CHAR') || type.includes('CLOB') || type.includes('TEXT')) return 'TEXT'
  if (type.includes('BLOB') || type === '') return 'BLOB'
  if (type.includes('REAL') || type.includes('FLOA') || type.includes('DOUB')) return 'REAL'
  return 'NUMERIC'
}

/**
 * The index behind delete-by-hash is on the first 16 hex digits of the hash
 * (64 bits: two files sharing them are told apart by the full comparison):
 * a quarter of the key bytes of the whole hash. Measured on 1M rows: about
 * 20% less CPU in the inserts and half the COMMIT time of an index on the
 * whole hash, about the cost of no index at all.
 */
const HASH_KEY = `substr(${quoteIdentifier('_source_file_hash')}, 1, 16)`

const driftCheck: DriftCheck = {
  expectedType: (type) => SQLITE_TYPES[type],
  compatible: (actual, type) => affinity(actual.type) === SQLITE_TYPES[type],
}

/**
 * Begins a write transaction without blocking the event loop: SQLite's busy
 * handler sleeps synchronously, which would also stall lease heartbeats while
 * another process holds the database; here we retry with async sleeps.
 */
async function beginImmediate(db: SqliteDatabase, signal: AbortSignal): Promise<void> {
  for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
    try {
      db.exec('BEGIN IMMEDIATE')
      return
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error
      if (signal.aborted) throw signal.reason
      await sleep(wait + Math.random() * wait, signal)
    }
  }
}

/**
 * The page size of a database the destination creates: SQLite's default 4096
 * against 16384, and 65536, measured (medians, alternating runs on a shared
 * 2-core VM, load 2–3): one file of 1M rows 4.78 s of CPU at 4096, 4.08 s at
 * 16384, 3.77 s at 65536 (fewer pages and WAL frames per row, each a write
 * and a checksum); 5,000 files of 100 rows 5.81, 5.54 and 5.73 s of CPU, and
 * at 65536 the slowest wall time: each group commit writes again the last,
 * part-filled page of the table, of its index and of the load markers, and
 * those are 64 KiB each there. 16384 takes most of the large files' gain and
 * costs small files nothing.
 */
const DEFAULT_PAGE_SIZE = 16_384

/** WAL bytes between checkpoints (see open()). */
const WAL_CHECKPOINT_BYTES = 10_000 * 4096

export function sqlite(options: SqliteDestinationOptions): Destination {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE
  if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65_536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new FiledgeError('CONFIG_INVALID', `sqlite({ pageSize }): expected a power of two from 512 to 65536; got ${String(options.pageSize)}`)
  }
  let db: SqliteDatabase | undefined = options.client
  let file = options.path
  const lock = createMutex()
  const group = createGroupCommit(() => connection(), lock)
  const inserter = new Inserter(() => connection())
  const deletes = new Map<string, Statement>()
  let logger: Logger | undefined

  const connection = (): SqliteDatabase => {
    if (db === undefined) throw new FiledgeError('INTERNAL', `sqlite destination ${file} used before open()`)
    return db
  }

  /**
   * This file's rows from an earlier, interrupted or lost-lease load: replaced,
   * never doubled. Both conditions: tables made before the index was on the
   * hash's prefix have it on the whole hash, and each kind finds its own.
   */
  function deleteFile(table: TableSpec): Statement {
    let statement = deletes.get(table.name)
    if (statement === undefined) {
      statement = connection().prepare(`DELETE FROM ${quoteIdentifier(table.name)} WHERE ${HASH_KEY} = substr(?, 1, 16) AND ${quoteIdentifier('_source_file_hash')} = ?`)
      deletes.set(table.name, statement)
    }
    return statement
  }

  return {
    name: 'sqlite',
    // 64 files in flight: a group commit holds at most the files in flight, and claims that reach the ledger in one turn
    // share its transaction. 16 per fsync took 5,000 small files from 17.5 s (at 4) to 12.6 s, when 64 was slower again;
    // since claims are batched and small files read synchronously, 64 is faster: over the same files 335 group COMMITs
    // (each an fsync of the WAL and a rewrite of the table's, index's and markers' last pages) became 95, and the run
    // went from 11.5 to 9.3 s wall and 7.7 to 6.8 s CPU (medians of 4 alternating runs, load 4.5; 128 measured as 64).
    // Files waiting for their turn hold at most their kept bytes (up to 1 MiB each, core/runner/file.ts): peak RSS of
    // that run 176 → 198 MB.
    capabilities: { transactions: true, writeModes: ['append', 'truncate', 'cdc'], concurrency: 64 },
    describe: () => `sqlite ${file}`,

    async open({ config, logger: log }: DestinationContext) {
      logger = log
      if (db === undefined) {
        file = path.resolve(config.root, options.path)
        mkdirSync(path.dirname(file), { recursive: true })
        const { default: Database } = await import('better-sqlite3')
        db = new Database(file)
        // Before journal_mode: switching to WAL writes the header of a new database, and with it the page size.
        db.pragma(`page_size = ${pageSize}`)
        db.pragma('journal_mode = WAL')
        db.pragma('busy_timeout = 100')
        // Checkpoints every ~40 MB of WAL rather than 4 MB: each stalls the event loop (better-sqlite3 is synchronous) for
        // its page writes and two fsyncs, and pages a group of small files rewrites (the table's last page, the index's,
        // the markers') are written back once per checkpoint. 5,000 small files: 580 fsyncs in the run, 355 with this and
        // the ledger's alike (core/ledger/sqlite/store.ts). Durability is the WAL's, whatever the checkpoints do. Counted in
        // pages, so as many bytes whatever the page size (10,000 of SQLite's 4096 bytes; 16384-byte pages would let the WAL
        // grow to 160 MB).
        db.pragma(`wal_autocheckpoint = ${Math.round(WAL_CHECKPOINT_BYTES / (db.pragma('page_size', { simple: true }) as number))}`)
      }
      // Also on a client passed in: a connection opened on a WAL database starts at NORMAL (better-sqlite3
      // builds with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1), which would silently void the durable default.
      db.pragma(`synchronous = ${options.durability === 'fast' ? 'NORMAL' : 'FULL'}`)
    },

    async healthcheck({ config }: DestinationContext) {
      if (db !== undefined) {
        db.prepare('SELECT 1').get()
        return
      }
      const target = path.resolve(config.root, options.path)
      if (!existsSync(target)) return assertCreatable(target, `sqlite ${target}`)
      const { default: Database } = await import('better-sqlite3')
      // Read-only, and the schema read: a file that is not a database (or is damaged) says so here.
      const probe = new Database(target, { readonly: true, fileMustExist: true })
      try {
        probe.prepare('SELECT count(*) FROM sqlite_schema').get()
      } catch (error) {
        throw new FiledgeError('PLUGIN_ERROR', `sqlite ${target}: ${(error as Error).message}`)
      } finally {
        probe.close()
      }
    },

    async prepare(table, writeMode) {
      await prepareMarkers()
      await prepareTable(table)
      if (writeMode === undefined || writeMode.kind === 'append') return
      if (writeMode.kind === 'cdc') await prepareTable(cdcTombstoneSpec(table, writeMode))
      const side = sideObjects(table, writeMode, SQLITE_TYPES)
      const db = connection()
      const exists = (name: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type IN ('table', 'index') AND name = ?").get(name) !== undefined
      if (side.names.every(exists)) return
      await lock.run(async () => {
        group.flush()
        await beginImmediate(db, new AbortController().signal)
        try {
          for (const statement of side.ddl) db.exec(statement)
          db.exec('COMMIT')
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK')
          if (writeMode.kind === 'cdc' && /UNIQUE constraint failed/.test((error as Error).message)) {
            throw new FiledgeError('SCHEMA_DRIFT', `table ${table.name} in ${file} has several rows for one key (${writeMode.keys.join(', ')}); a cdc table holds one row per key: ${(error as Error).message}`)
          }
          throw error
        }
      })
    },

    write(job: WriteJob) {
      // Truncate and cdc: their own transaction around a plain insert loop (write-modes.ts); below, append, the hot path.
      if (job.writeMode.kind !== 'append') {
        return lock.run(() => {
          group.flush()
          return writeMode(connection(), job, { begin: beginImmediate, inserter, types: SQLITE_TYPES, logger })
        })
      }
      // Small append files share transactions (group-commit.ts); a large one has its own, so it holds back nobody's commit.
      const grouped = job.file.size <= GROUP_MAX_FILE_BYTES
      if (grouped) group.queued()
      return lock.run(async () => {
        const db = connection()
        const fill = async () => {
          deleteFile(job.table).run(job.file.hash, job.file.hash)
          const rows = await inserter.insert(job.table, job.batches, { hash: job.file.hash, ingestedAt: job.ingestedAt })
          writeMarker(db, job, rows)
          await job.assertLease()
          return { rows }
        }
        if (grouped) return group.join(() => beginImmediate(db, job.signal), fill)
        group.flush()
        await beginImmediate(db, job.signal)
        try {
          const result = await fill()
          db.exec('COMMIT')
          return { result, durable: Promise.resolve() }
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK')
          throw error
        }
      }).then(async ({ result, durable }) => {
        // Outside the mutex: the next files join the group while this one waits for its COMMIT.
        await durable
        return result
      })
    },

    hasLoaded({ pipeline, table, writeMode, hash }) {
      // Under the mutex, with the open group committed first: this connection must not read a marker whose transaction may still roll back.
      return lock.run(async (): Promise<LoadMarker | null> => {
        group.flush()
        const db = connection()
        const marker = readMarker(db, pipeline, hash)
        if (marker === null || writeMode.kind !== 'truncate') return marker
        const log = quoteIdentifier(truncateLogTable(table.name))
        if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(truncateLogTable(table.name)) === undefined) return marker
        const loads = (
          db.prepare(`SELECT applied, file_hash, file_path, rows FROM ${log} WHERE file_hash = ? OR applied = (SELECT max(applied) FROM ${log})`).all(hash) as {
            applied: number
            file_hash: string
            file_path: string
            rows: number
          }[]
        ).map((row): TruncateLoad => ({ applied: row.applied, fileHash: row.file_hash, filePath: row.file_path, rows: row.rows }))
        return truncateMarker(marker, hash, loads, table.name)
      })
    },

    async close() {
      // Every grouped write awaits its COMMIT, so nothing is open here after a run; a write abandoned mid-way must not leave the write lock held.
      if (db?.open) await lock.run(async () => group.flush())
      if (db !== undefined && options.client === undefined && db.open) db.close()
      if (options.client === undefined) db = undefined
      inserter.clear()
      deletes.clear()
    },
  }

  /** The load marker table (core/load-marker.ts), created once per database. */
  async function prepareMarkers(): Promise<void> {
    const db = connection()
    const name = quoteIdentifier(LOAD_MARKER_TABLE)
    const existing = db.prepare(`SELECT name FROM pragma_table_info(?)`).all(LOAD_MARKER_TABLE) as { name: string }[]
    // A marker table from an earlier filedge gets the columns added since (nullable: its old markers have none).
    const missing = existing.length === 0 ? [] : LOAD_MARKER_ADDED_COLUMNS.filter((column) => !existing.some((found) => found.name === column.name))
    if (missing.length > 0) {
      await lock.run(async () => {
        group.flush()
        await beginImmediate(db, new AbortController().signal)
        try {
          const now = db.prepare(`SELECT name FROM pragma_table_info(?)`).all(LOAD_MARKER_TABLE) as { name: string }[]
          for (const column of missing) if (!now.some((found) => found.name === column.name)) db.exec(`ALTER TABLE ${name} ADD COLUMN ${definitions([column], SQLITE_TYPES)}`)
          db.exec('COMMIT')
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK')
          throw error
        }
      })
    }
    if (existing.length === 0) {
      await lock.run(async () => {
        group.flush()
        await beginImmediate(db, new AbortController().signal)
        try {
          db.exec(`CREATE TABLE IF NOT EXISTS ${name} (${definitions(LOAD_MARKER_COLUMNS, SQLITE_TYPES)}, PRIMARY KEY (${quoteIdentifier('pipeline')}, ${quoteIdentifier('file_hash')})) STRICT`)
          db.exec('COMMIT')
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK')
          throw error
        }
      })
    }
  }

  /** Creates `table` (declared columns, provenance, an index on the file hash) unless it exists, then checks it for drift. */
  async function prepareTable(table: TableSpec): Promise<void> {
    const db = connection()
    const name = quoteIdentifier(table.name)
    const index = `${table.name}__source_file_hash`
    const columns = [...table.columns, ...PROVENANCE_COLUMNS]
    const definitions = columns.map((column) => `${quoteIdentifier(column.name)} ${SQLITE_TYPES[column.type]}${column.required ? ' NOT NULL' : ''}`)
    const readColumns = () =>
      (db.prepare(`PRAGMA table_xinfo(${name})`).all() as { name: string; type: string; notnull: number; hidden: number }[])
        .filter((column) => column.hidden === 0)
        .map((column): ActualColumn => ({ name: column.name, type: column.type || '(none)', notNull: column.notnull === 1 }))
    const hasIndex = () => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?").get(index) !== undefined
    // Read first, write only when something is missing: a worker starting while another holds the
    // write lock for a long file (or is frozen holding it) must still be able to start, claim and skip.
    let actual = readColumns()
    if (actual.length === 0 || !hasIndex()) {
      await lock.run(async () => {
        group.flush()
        await beginImmediate(db, new AbortController().signal)
        try {
          db.exec(`CREATE TABLE IF NOT EXISTS ${name} (${definitions.join(', ')}) STRICT`)
          db.exec(`CREATE INDEX IF NOT EXISTS ${quoteIdentifier(index)} ON ${name} (${HASH_KEY})`)
          db.exec('COMMIT')
        } catch (error) {
          if (db.inTransaction) db.exec('ROLLBACK')
          throw error
        }
      })
      actual = readColumns()
    }
    assertNoDrift(table, actual, driftCheck, `${table.name} in ${file}`)
  }
}

export default sqlite
