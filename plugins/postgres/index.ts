import { createHash } from 'node:crypto'
import type { Writable } from 'node:stream'
import {
  assertNoDrift,
  cdcTombstoneSpec,
  cdcTombstoneTable,
  createSchemaIfMissing,
  describeError,
  destinationLocked,
  FiledgeError,
  inTransaction,
  isEnvRef,
  isFiledgeError,
  LOAD_MARKER_ADDED_COLUMNS,
  LOAD_MARKER_COLUMNS,
  LOAD_MARKER_TABLE,
  PROVENANCE_COLUMNS,
  quoteIdentifier,
  readEnv,
  redact,
  rowInvalid,
  toMs,
  truncateLogTable,
  truncateMarker,
  TRUNCATE_LOG_COLUMNS,
  type ActualColumn,
  type ColumnType,
  type Destination,
  type DestinationContext,
  type DriftCheck,
  type Duration,
  type Logger,
  type MaybeEnv,
  type ResolvedCdc,
  type RowBatch,
  type TableColumn,
  type TableSpec,
  type TruncateLoad,
  type WriteJob,
} from '../../core/index.js'
import { BINARY_HEADER, BINARY_TRAILER, binaryCopyFits, binaryEncoder } from './copy-binary.js'
import { encodeBatch } from './copy-text.js'
import { fileHashIndexDdl, modeWrite, readMarker, writeMarker } from './write-modes.js'

/** The unique index on a cdc table's keys. */
function keyIndexName(table: string): string {
  return `${table}__filedge_keys`
}

/** The part of a `pg` client we use (described, not imported, so any compatible version works). */
export interface PgClient {
  query(text: string, values?: readonly unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  /** `pg` runs a `pg-copy-streams` query when handed one. */
  query<T extends Writable>(submittable: T): T
  release(destroy?: Error | boolean): void
}

/** The part of a `pg.Pool` we use. */
export interface PgPool {
  connect(): Promise<PgClient>
  end(): Promise<void>
}

export interface PostgresDestinationOptions {
  /** `postgres://user:password@host:port/database`; use `env('DATABASE_URL')` so the password stays out of the config. Required unless `client` is given. */
  url?: MaybeEnv
  /** Schema of the tables (created if missing). Default `public`. */
  schema?: string
  /** Connections this worker opens, which is also how many files it can write at once. Default 4. */
  poolSize?: number
  /** TLS, passed to `pg`: `true`, or `{ rejectUnauthorized, ca, cert, key }`. Default: as the URL's `sslmode` says. */
  ssl?: boolean | { rejectUnauthorized?: boolean; ca?: string; cert?: string; key?: string; servername?: string }
  /**
   * `'durable'` (default): every file's transaction commits with
   * `synchronous_commit = on`, so its rows are on the server's disk before the
   * ledger records COMMITTED, whatever the server's default. `'fast'`:
   * `synchronous_commit = off` — commits return before the WAL is flushed, and
   * a crash of the Postgres server (not of a worker) can lose the last files'
   * rows while the ledger says COMMITTED; those files would not be loaded again.
   */
  durability?: 'durable' | 'fast'
  /** A `pg.Pool` (or anything with `connect()`/`end()`) to use instead of `url`. filedge does not end it. */
  client?: PgPool
  /**
   * How long one wait for a lock lasts (`lock_timeout`) before filedge looks
   * at who holds it. A session still writing a file this worker now holds the
   * lease of is a worker that lost it (frozen, partitioned away): it is
   * terminated, and the wait starts again. Default `'5s'`.
   */
  lockTimeout?: Duration
  /**
   * How long a file may wait, in all, for locks that live sessions hold (a
   * truncate or cdc file waiting for another file's apply) before it is given
   * back to the ledger for a later run, without counting an attempt.
   * Default `'2m'`.
   */
  lockWait?: Duration
  /**
   * `idle_in_transaction_session_timeout` of the write transactions: the
   * server ends a write session that sits idle inside its transaction this
   * long (a worker frozen between two statements), releasing its locks.
   * Default `'5m'`; a source that can stall longer between two batches needs more.
   */
  idleTimeout?: Duration
}

/** Postgres identifiers longer than this are silently truncated, which would make filedge look for a table that is not there. */
const MAX_IDENTIFIER_BYTES = 63

function pgType(column: TableColumn): string {
  switch (column.type) {
    case 'string':
      return 'text'
    case 'integer':
      return 'bigint'
    case 'float':
      return 'double precision'
    case 'decimal':
      return `numeric(${column.precision ?? 38},${column.scale ?? 9})`
    case 'boolean':
      return 'boolean'
    case 'date':
      return 'date'
    case 'timestamp':
      return 'timestamptz'
    case 'json':
      return 'jsonb'
  }
}

const EXPECTED_NAMES: Record<ColumnType, string> = {
  string: 'text',
  integer: 'bigint',
  float: 'double precision',
  decimal: 'numeric',
  boolean: 'boolean',
  date: 'date',
  timestamp: 'timestamp with time zone',
  json: 'jsonb',
}

/**
 * Whether an existing column stores every value of the declared type exactly.
 * Narrower types (integer for bigint, real for double, timestamp without time
 * zone) are drift: they would fail or change some values later, mid-load.
 * `character varying(n)` is accepted for strings (a too-long value fails its
 * file with the row and column), and a numeric wide enough for the declared
 * precision and scale for decimals.
 */
function driftCheckFor(table: TableSpec): DriftCheck {
  const declared = new Map([...table.columns, ...PROVENANCE_COLUMNS].map((column) => [column.name, column]))
  return {
    expectedType: (type) => EXPECTED_NAMES[type],
    compatible(actual, type) {
      const found = actual.type
      switch (type) {
        case 'string':
          return found === 'text' || /^character varying(\(\d+\))?$/.test(found)
        case 'json':
          return found === 'jsonb' || found === 'json'
        case 'decimal': {
          if (found === 'numeric') return true
          const match = /^numeric\((\d+),(\d+)\)$/.exec(found)
          const column = declared.get(actual.name)
          if (match === null || column === undefined) return false
          const [precision, scale] = [Number(match[1]), Number(match[2])]
          const wantScale = column.scale ?? 9
          return scale >= wantScale && precision - scale >= (column.precision ?? 38) - wantScale
        }
        default:
          return found === EXPECTED_NAMES[type]
      }
    },
  }
}

/** Maps COPY's row number in a file's stream back to the row's line in the source file. */
function lineMap() {
  let lines = new Int32Array(4096)
  let size = 0
  return {
    add(batch: readonly number[]) {
      if (size + batch.length > lines.length) {
        const grown = new Int32Array(Math.max(lines.length * 2, size + batch.length))
        grown.set(lines.subarray(0, size))
        lines = grown
      }
      for (let i = 0; i < batch.length; i++) lines[size++] = batch[i]
    },
    /** `copyLine` is 1-based, as Postgres reports it. */
    lineOf: (copyLine: number): number | undefined => (copyLine >= 1 && copyLine <= size ? lines[copyLine - 1] : undefined),
  }
}

interface PgError extends Error {
  code?: string
  where?: string
  column?: string
}

/**
 * A value Postgres refused during COPY (class 22 data exception, 23 integrity
 * violation) becomes ROW_INVALID naming the file's line and column, like a
 * coercion error; anything else is passed on as it is.
 */
function rowError(error: unknown, file: string, lineOf: (copyLine: number) => number | undefined): unknown {
  const { code, where, column, message } = error as PgError
  if (typeof code !== 'string' || !/^2[23]/.test(code) || typeof where !== 'string') return error
  const match = /COPY [^\n]*?, line (\d+)(?:, column ([^:\n]+))?/.exec(where)
  const line = match === null ? undefined : lineOf(Number(match[1]))
  if (line === undefined) return error
  return rowInvalid(file, line, column ?? match![2] ?? '?', undefined, `Postgres refused the value: ${message}`)
}

/** A 64-bit advisory lock key for a name, as a SQL integer literal (the first 8 bytes of its SHA-256). */
function lockKey(name: string): string {
  return createHash('sha256').update(name).digest().readBigInt64BE(0).toString()
}

/** `pg_locks` shows a bigint advisory key as two oids: its high and low 32 bits. */
function lockParts(key: string): [string, string] {
  const value = BigInt.asUintN(64, BigInt(key))
  return [(value >> 32n).toString(), (value & 0xffffffffn).toString()]
}

/** A lock wait that ran out (`lock_timeout`). */
function lockTimedOut(error: unknown): boolean {
  return (error as PgError | undefined)?.code === '55P03'
}

function onceSettled(stream: Writable, event: 'finish' | 'close'): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      stream.off(event, onDone)
      reject(error)
    }
    const onDone = () => {
      stream.off('error', onError)
      resolve()
    }
    stream.once(event, onDone)
    stream.once('error', onError)
  })
}

/**
 * Hands one chunk to the COPY stream and waits until it is on the socket (or
 * the socket drained). Writing only after the previous write completed keeps
 * pg-copy-streams from ever holding buffered chunks when the server reports
 * an error, which it cannot recover from.
 */
function writeChunk(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error)
    stream.once('error', onError)
    stream.write(chunk, (error) => {
      stream.off('error', onError)
      if (error) reject(error)
      else resolve()
    })
  })
}

export function postgres(options: PostgresDestinationOptions): Destination {
  const schema = options.schema ?? 'public'
  const durable = options.durability !== 'fast'
  const lockTimeoutMs = toMs(options.lockTimeout ?? '5s')
  const lockWaitMs = toMs(options.lockWait ?? '2m')
  const idleMs = toMs(options.idleTimeout ?? '5m')
  const shown = options.client !== undefined ? 'client' : isEnvRef(options.url) ? String(options.url) : redact(options.url ?? '(no url)')
  const where = `${shown} schema ${schema}`
  let pool: PgPool | undefined = options.client
  let logger: Logger | undefined
  let copyFrom: ((sql: string) => Writable) | undefined

  const connection = (): PgPool => {
    if (pool === undefined) throw new FiledgeError('INTERNAL', `postgres destination ${where} used before open()`)
    return pool
  }
  const qualified = (table: string) => `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`
  const markers = qualified(LOAD_MARKER_TABLE)

  const transaction = <T>(begin: string, fn: (client: PgClient) => Promise<T>): Promise<T> => inTransaction(connection(), begin, fn)

  /** COPYs the file's batches into `into` (default: the job's table); returns the row count. Started on the first row, so an empty file sends no COPY. */
  async function copyRows(client: PgClient, job: WriteJob, into = qualified(job.table.name)): Promise<number> {
    const { table, file } = job
    const columns = [...table.columns, ...PROVENANCE_COLUMNS].map((column) => quoteIdentifier(column.name)).join(', ')
    const binary = binaryCopyFits(table.columns)
    const sql = `COPY ${into} (${columns}) FROM STDIN${binary ? ' (FORMAT binary)' : ''}`
    const suffix = `${job.file.hash}\t${job.ingestedAt}\t`
    const encode = binary ? binaryEncoder(table.columns, file.hash, job.ingestedAt, file.path) : (batch: RowBatch) => Buffer.from(encodeBatch(batch, table.columns, suffix, file.path), 'utf8')
    const lines = lineMap()
    let stream: Writable | undefined
    let serverError: Error | undefined
    let total = 0
    try {
      for await (const batch of job.batches) {
        if (batch.rows.length === 0) continue
        let chunk = encode(batch)
        if (serverError !== undefined) throw serverError
        if (stream === undefined) {
          stream = client.query(copyFrom!(sql))
          stream.on('error', (error: Error) => {
            serverError ??= error
          })
          if (binary) chunk = Buffer.concat([BINARY_HEADER, chunk])
        }
        lines.add(batch.lines)
        total += batch.rows.length
        await writeChunk(stream, chunk)
      }
      if (stream !== undefined && binary) await writeChunk(stream, BINARY_TRAILER)
      if (stream !== undefined) {
        stream.end()
        await onceSettled(stream, 'finish')
      }
      return total
    } catch (error) {
      if (stream !== undefined && serverError === undefined && !stream.destroyed) {
        // Sends CopyFail: the server abandons the COPY (the transaction is rolled back by our caller).
        const closed = onceSettled(stream, 'close').catch(() => undefined)
        stream.destroy()
        await closed
      }
      throw serverError !== undefined && error === serverError ? rowError(serverError, file.path, lines.lineOf) : error
    }
  }

  /** Creates `table` unless it exists (with `created`: statements run right after its creation), then checks it for drift. */
  async function prepareTable(table: TableSpec, created: (target: string) => string[] = () => []): Promise<void> {
    for (const name of [table.name, ...table.columns.map((column) => column.name)]) {
      if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
        throw new FiledgeError('CONFIG_INVALID', `postgres destination: ${JSON.stringify(name)} is longer than Postgres' ${MAX_IDENTIFIER_BYTES}-byte identifier limit`)
      }
    }
    const target = qualified(table.name)
    const columns = [...table.columns, ...PROVENANCE_COLUMNS]
    await transaction('BEGIN', async (client) => {
      // Workers starting together must not race CREATE TABLE (IF NOT EXISTS is not safe against a concurrent create), nor
      // CREATE SCHEMA, which two different tables (two different locks here) of a new schema both need.
      await client.query(`SELECT pg_advisory_xact_lock(${lockKey(`filedge prepare ${target}`)})`)
      await createSchemaIfMissing(client, schema)
      const { rows: tables } = await client.query(`SELECT to_regclass($1) IS NOT NULL AS found`, [target])
      if (tables[0].found === true) return
      await client.query(`CREATE TABLE ${target} (${columns.map((column) => `${quoteIdentifier(column.name)} ${pgType(column)}${column.required ? ' NOT NULL' : ''}`).join(', ')})`)
      // Unnamed: Postgres picks a free name (a derived one could collide after the 63-byte cut). Created only with the table.
      await client.query(fileHashIndexDdl(target))
      for (const statement of created(target)) await client.query(statement)
    })
    // Introspection filtered by schema: a table of the same name elsewhere on the search_path is not ours.
    const { rows } = await transaction('BEGIN READ ONLY', (client) =>
      client.query(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum`,
        [schema, table.name],
      ),
    )
    const actual = rows.map((row): ActualColumn => ({ name: String(row.name), type: String(row.type), notNull: row.not_null === true }))
    assertNoDrift(table, actual, driftCheckFor(table), `${schema}.${table.name} in postgres ${shown}`)
  }

  /**
   * Takes a table's advisory lock (truncate and cdc files apply one at a
   * time), waiting `lockTimeout` at a time inside a savepoint, so that a
   * timeout rolls back nothing but the wait: a cdc file has staged its
   * changes by then. The holder is another file's write, maybe a long one, so
   * it is waited for (checking this worker still holds its own lease between
   * waits) up to `lockWait` in all; then the file goes back to the ledger.
   */
  const tableLocker = (client: PgClient, job: WriteJob) => async (target: string) => {
    const started = Date.now()
    for (;;) {
      await client.query('SAVEPOINT filedge_table_lock')
      try {
        await client.query(`SELECT pg_advisory_xact_lock(${lockKey(`filedge table ${target}`)})`)
        await client.query('RELEASE SAVEPOINT filedge_table_lock')
        return
      } catch (error) {
        if (!lockTimedOut(error)) throw error
        await client.query('ROLLBACK TO SAVEPOINT filedge_table_lock')
      }
      await job.assertLease()
      if (Date.now() - started >= lockWaitMs) throw lockedOut(job, started)
    }
  }
  const lockedOut = (job: WriteJob, since: number) =>
    destinationLocked(
      `postgres table ${schema}.${job.table.name}`,
      `another session has held a lock ${job.file.path} needs for ${Math.round((Date.now() - since) / 1000)} s (lockWait); the file goes back to the ledger for a later run`,
    )
  const stageDdl = (spec: TableSpec) =>
    `CREATE TEMP TABLE ${quoteIdentifier(spec.name)} (${[...spec.columns, ...PROVENANCE_COLUMNS].map((column) => `${quoteIdentifier(column.name)} ${pgType(column)}`).join(', ')}) ON COMMIT DROP`

  /**
   * What truncate and cdc need beside the table: the load log; the tombstones
   * (unique on the keys) and a unique index on the table's keys, which both
   * makes per-key lookups cheap and holds the table to one row per key.
   * Checked in the catalog first: CREATE INDEX IF NOT EXISTS would still lock
   * the table against writers, and another worker may be loading into it.
   */
  async function prepareSideTables(table: TableSpec, writeMode: ResolvedCdc | { kind: 'truncate' }): Promise<void> {
    const side = writeMode.kind === 'cdc' ? [cdcTombstoneTable(table.name), keyIndexName(table.name)] : [truncateLogTable(table.name)]
    for (const name of side) {
      if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
        throw new FiledgeError(
          'CONFIG_INVALID',
          `postgres destination: the ${writeMode.kind} write mode keeps ${JSON.stringify(name)} beside table ${JSON.stringify(table.name)}, longer than Postgres' ${MAX_IDENTIFIER_BYTES}-byte identifier limit; shorten the table name to ${MAX_IDENTIFIER_BYTES - (Buffer.byteLength(name) - Buffer.byteLength(table.name))} bytes`,
        )
      }
    }
    const target = qualified(table.name)
    if (writeMode.kind === 'truncate') {
      const log = qualified(truncateLogTable(table.name))
      const definitions = TRUNCATE_LOG_COLUMNS.map((column) => `${quoteIdentifier(column.name)} ${pgType(column)} NOT NULL`).join(', ')
      await transaction('BEGIN', async (client) => {
        await client.query(`SELECT pg_advisory_xact_lock(${lockKey(`filedge prepare ${log}`)})`)
        await client.query(`CREATE TABLE IF NOT EXISTS ${log} (${definitions}, PRIMARY KEY (file_hash), UNIQUE (applied))`)
      })
      return
    }
    const keys = writeMode.keys.map(quoteIdentifier).join(', ')
    await prepareTable(cdcTombstoneSpec(table, writeMode), (tombstones) => [`CREATE UNIQUE INDEX ON ${tombstones} (${keys})`])
    const index = `${quoteIdentifier(schema)}.${quoteIdentifier(keyIndexName(table.name))}`
    const { rows } = await transaction('BEGIN READ ONLY', (client) => client.query('SELECT to_regclass($1) IS NOT NULL AS found', [index]))
    if (rows[0].found === true) return
    await transaction('BEGIN', async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(${lockKey(`filedge prepare ${target}`)})`)
      await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${quoteIdentifier(keyIndexName(table.name))} ON ${target} (${keys})`)
    }).catch((error: PgError) => {
      if (error.code !== '23505') throw error
      throw new FiledgeError('SCHEMA_DRIFT', `table ${schema}.${table.name} has several rows for one key (${writeMode.keys.join(', ')}); a cdc table holds one row per key: ${error.message}`)
    })
  }

  /** The load marker table (core/load-marker.ts), created once per schema. */
  async function prepareMarkers(): Promise<void> {
    const { rows } = await transaction('BEGIN READ ONLY', (client) => client.query('SELECT to_regclass($1) IS NOT NULL AS found', [markers]))
    const definition = (column: TableColumn) => `${quoteIdentifier(column.name)} ${pgType(column)}${column.required ? ' NOT NULL' : ''}`
    if (rows[0].found === true) {
      // A marker table from an earlier filedge gets the columns added since (nullable: its old markers have none). Asked
      // first without a lock: ALTER TABLE takes an exclusive one, which would wait behind any session holding the table
      // (a frozen worker's open transaction).
      const { rows: present } = await transaction('BEGIN READ ONLY', (client) =>
        client.query('SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2', [schema, LOAD_MARKER_TABLE]),
      )
      const missing = LOAD_MARKER_ADDED_COLUMNS.filter((column) => !present.some((row) => row.column_name === column.name))
      if (missing.length > 0) {
        await transaction('BEGIN', async (client) => {
          for (const column of missing) await client.query(`ALTER TABLE ${markers} ADD COLUMN IF NOT EXISTS ${definition(column)}`)
        })
      }
      return
    }
    const definitions = LOAD_MARKER_COLUMNS.map(definition).join(', ')
    await transaction('BEGIN', async (client) => {
      await client.query(`SELECT pg_advisory_xact_lock(${lockKey(`filedge prepare ${markers}`)})`)
      await client.query(`CREATE TABLE IF NOT EXISTS ${markers} (${definitions}, PRIMARY KEY (pipeline, file_hash))`)
    })
  }

  /**
   * Ends every other session that holds `key`, the lock a write of this
   * worker's leased file takes: such a session writes a file whose lease it
   * lost (its worker froze, or lost the network, past the lease), so its work
   * can never commit, and while it lives it blocks the new holder. The caller
   * checked its own lease first. Returns how many sessions were ended.
   */
  async function evict(key: string): Promise<number> {
    const [high, low] = lockParts(key)
    const client = await connection().connect()
    try {
      const { rows } = await client.query(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS ended FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND classid = $1::oid AND objid = $2::oid AND objsubid = 1 AND pid <> pg_backend_pid()`,
        [high, low],
      )
      return Number(rows[0].ended)
    } catch (error) {
      // Not allowed to end it (another role, without pg_signal_backend): wait for it like for any live holder.
      logger?.warn(`postgres ${where}: cannot end the session that still writes a file this worker holds: ${describeError(error)}`)
      return 0
    } finally {
      client.release()
    }
  }

  /** The URL to connect to, or a config error saying what is missing. */
  function urlOf(): string {
    const url = readEnv(options.url)
    if (url === undefined) {
      throw new FiledgeError(
        'CONFIG_INVALID',
        isEnvRef(options.url)
          ? `postgres destination: environment variable ${options.url.name} (url) is not set`
          : "postgres destination: set url (e.g. url: env('DATABASE_URL')) or pass a pg.Pool as client",
      )
    }
    return url
  }

  return {
    name: 'postgres',
    capabilities: { transactions: true, writeModes: ['append', 'truncate', 'cdc'] },
    describe: () => `postgres ${where}`,

    async open({ logger: log }: DestinationContext) {
      logger = log
      copyFrom ??= (await import('pg-copy-streams')).from as (sql: string) => Writable
      if (pool !== undefined) return
      const url = urlOf()
      const { default: pg } = await import('pg')
      // Keepalives both ways: a worker whose host vanished (power, network) has its session ended by the server, and its locks released.
      const created = new pg.Pool({
        connectionString: url,
        max: options.poolSize ?? 4,
        ssl: options.ssl,
        application_name: 'filedge',
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
        options: '-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3',
      })
      // An idle connection the server dropped is discarded by pg and replaced on demand; unhandled, the event would crash the worker.
      created.on('error', () => undefined)
      pool = created as unknown as PgPool
    },

    prepare(table, writeMode) {
      // Say which server a connection or catalog error came from (the URL without its password).
      return (async () => {
        await prepareTable(table)
        await prepareMarkers()
        if (writeMode?.kind === 'cdc' || writeMode?.kind === 'truncate') await prepareSideTables(table, writeMode)
      })().catch((error: unknown) => {
        if (isFiledgeError(error) || !(error instanceof Error)) throw error
        throw Object.assign(error, { message: redact(`postgres ${where}: ${error.message}`) })
      })
    },

    async write(job: WriteJob) {
      const target = qualified(job.table.name)
      // Two locks per file, held until COMMIT. `rows` (table, hash): two writes
      // of the same hash at once (a lease that expired while its holder was
      // still loading) would both delete (nothing yet) and insert under READ
      // COMMITTED: duplicate rows. The lock makes the second wait; its DELETE, a
      // later statement with a new snapshot, then sees and replaces the first
      // one's rows. The DELETE must not be the statement that takes the lock:
      // its snapshot would predate the wait. `lease` (table, pipeline, hash):
      // held only by a session writing for this pipeline's lease on the file,
      // so another session found holding it when this worker holds the lease is
      // a stale writer (see evict); the table is in the key because advisory
      // locks are database-wide, and another project (another ledger) may load
      // the same bytes under the same pipeline name into another schema. Both
      // ride in the BEGIN round trip (literal keys, so no parameters are
      // needed). Truncate and cdc also lock the whole table (write-modes.ts).
      const lease = lockKey(`filedge lease ${target} ${job.pipeline} ${job.file.hash}`)
      const rows = lockKey(`filedge write ${target} ${job.file.hash}`)
      const begin = [
        'BEGIN',
        `SET LOCAL synchronous_commit TO ${durable ? 'on' : 'off'}`,
        `SET LOCAL lock_timeout = ${lockTimeoutMs}`,
        `SET LOCAL idle_in_transaction_session_timeout = ${idleMs}`,
        `SELECT pg_advisory_xact_lock(${lease}), pg_advisory_xact_lock(${rows})`,
      ].join('; ')
      let begun = false
      const attempt = () =>
        transaction(begin, async (client) => {
          begun = true
          const mode = modeWrite({ client, qualified, lockTable: tableLocker(client, job), stageDdl, markers, logger }, job)
          const done = await mode.before()
          if (done !== undefined) return done
          const copied = await copyRows(client, { ...job, table: mode.target, batches: mode.batches }, mode.into)
          const result = await mode.after(copied)
          await writeMarker(client, markers, job, result.rows)
          await job.assertLease()
          return result
        })
      const started = Date.now()
      for (;;) {
        try {
          return await attempt()
        } catch (error) {
          if (isFiledgeError(error)) throw error
          if (!lockTimedOut(error)) throw error instanceof Error ? Object.assign(error, { message: redact(error.message) }) : error
          // Some other lock wait ran out, after the file's rows were read: give the file back rather than fail it.
          if (begun) throw lockedOut(job, started)
          // BEGIN's locks (nothing of the file read yet): end a stale writer of this file, or wait on.
          await job.assertLease()
          if (job.signal.aborted) throw job.signal.reason
          const evicted = await evict(lease)
          if (evicted > 0) logger?.warn(`${job.file.path}: ended ${evicted} database session(s) still writing it for a worker whose lease had expired`)
          else if (Date.now() - started >= lockWaitMs) throw lockedOut(job, started)
        }
      }
    },

    async hasLoaded({ pipeline, table, writeMode, hash }) {
      const client = await connection().connect()
      try {
        const marker = await readMarker(client, markers, pipeline, hash)
        if (marker === null || writeMode.kind !== 'truncate') return marker
        const log = qualified(truncateLogTable(table.name))
        const { rows } = await client.query(`SELECT applied, file_hash, file_path, rows FROM ${log} WHERE file_hash = $1 OR applied = (SELECT max(applied) FROM ${log})`, [hash])
        const loads = rows.map((row): TruncateLoad => ({ applied: Number(row.applied), fileHash: String(row.file_hash), filePath: String(row.file_path), rows: Number(row.rows) }))
        return truncateMarker(marker, hash, loads, table.name)
      } finally {
        client.release()
      }
    },

    async healthcheck() {
      // The open pool (or the one handed in) when there is one; else a connection of its own, given up on after 10 s.
      if (pool !== undefined) {
        const client = await pool.connect()
        try {
          await client.query('SELECT 1')
        } finally {
          client.release()
        }
        return
      }
      const { default: pg } = await import('pg')
      const client = new pg.Client({ connectionString: urlOf(), ssl: options.ssl, application_name: 'filedge healthcheck', connectionTimeoutMillis: 10_000 })
      client.on('error', () => undefined)
      try {
        await client.connect()
        await client.query('SELECT 1')
      } catch (error) {
        throw new FiledgeError('PLUGIN_ERROR', `postgres ${where}: ${describeError(error)}`)
      } finally {
        await client.end().catch(() => undefined)
      }
    },

    async close() {
      if (pool !== undefined && options.client === undefined) await pool.end()
      if (options.client === undefined) pool = undefined
    },
  }
}

export default postgres
