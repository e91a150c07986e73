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
