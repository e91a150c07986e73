/**
 * Identifiers are always quoted, never interpolated raw: a column named
 * `a"b; drop table x` is just a column. Values always travel as parameters.
 */
export function quoteIdentifier(name: string): string {
  if (name.includes('\0')) throw new Error(`identifier contains a NUL character: ${JSON.stringify(name)}`)
  return `"${name.replace(/"/g, '""')}"`
}

/** The part of a pooled connection a transaction needs (`pg`'s pool clients have it). */
export interface TransactionClient {
  query(text: string): Promise<unknown>
  release(destroy?: Error | boolean): void
  /** `pg` clients are event emitters: a lost connection is emitted as 'error' besides failing the query in flight. */
  on?(event: 'error', listener: (error: Error) => void): unknown
  off?(event: 'error', listener: (error: Error) => void): unknown
}

/**
 * Runs `fn` between `begin` (`BEGIN`, `BEGIN READ ONLY`, …) and `COMMIT` on a
 * connection of its own from `pool`. On an error it rolls back and rethrows;
 * a connection whose ROLLBACK fails is in an unknown state, so it is dropped
 * instead of going back to the pool.
 *
 * A connection lost mid-transaction (the server ended the session, the
 * network went away) also fails the statement in flight, which is how `fn`
 * learns of it; the client's 'error' event is listened to meanwhile, because
 * unheard it would crash the whole worker (measured: a write session ended
 * by the server took its worker down with an unhandled EPIPE).
 */
export async function inTransaction<C extends TransactionClient, T>(pool: { connect(): Promise<C> }, begin: string, fn: (client: C) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  const lost = () => undefined
  client.on?.('error', lost)
  try {
    await client.query(begin)
    const result = await fn(client)
    await client.query('COMMIT')
    client.off?.('error', lost)
    client.release()
    return result
  } catch (error) {
    const broken = await client.query('ROLLBACK').then(
      () => undefined,
      (rollbackError: Error) => rollbackError,
    )
    client.off?.('error', lost)
    client.release(broken)
    throw error
  }
}

/** The part of a Postgres client `createSchemaIfMissing` uses (`pg`'s clients have it). */
export interface SchemaClient {
  query(text: string, values?: readonly unknown[]): Promise<{ rows: readonly unknown[] }>
}

/**
 * Creates a Postgres schema unless it exists, inside the caller's
 * transaction, safe against other filedge processes creating it at the same
 * moment (workers preparing different tables of a new schema, a ledger and a
 * destination sharing one). `CREATE SCHEMA IF NOT EXISTS` alone is not: two
 * sessions that both find no schema both insert it, and the second fails on
 * pg_namespace's unique index. So the creation is serialised by one advisory
 * lock per schema name, the same key for the ledger and every destination,
 * held to the end of the transaction; whoever waited finds the schema made.
 * An existing schema is found in the catalog first, without the lock or the
 * CREATE privilege on the database that `CREATE SCHEMA` checks even when the
 * schema exists.
 */
export async function createSchemaIfMissing(client: SchemaClient, schema: string): Promise<void> {
  const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
  if (rows.length > 0) return
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended('filedge schema ' || $1, 0))`, [schema])
  await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(schema)}`)
}
