import { existsSync } from 'node:fs'
import type { ResolvedLedger } from '../config/types.js'
import { describeError, FiledgeError } from '../errors.js'
import { assertCreatable } from '../health.js'
import { redact } from '../secrets.js'

/**
 * The ledger as messages name it: a Postgres URL without its user and
 * password (the URL itself usually comes from the environment, and every
 * value read from there is blanked whole from output).
 */
export function ledgerName(ledger: ResolvedLedger): string {
  if (ledger.kind === 'sqlite') return `sqlite:${ledger.path}`
  try {
    const url = new URL(ledger.url)
    return `${url.protocol}//${url.host}${url.pathname} (schema ${ledger.schema})`
  } catch {
    return `${redact(ledger.url)} (schema ${ledger.schema})`
  }
}

/**
 * Whether the ledger answers, for `filedge healthcheck`, without opening a
 * store: opening one migrates, and a healthcheck writes nothing. Reads the
 * ledger's migration version on a connection of its own. Returns what it
 * found (`migration 7`, `not created yet`); throws when the ledger cannot
 * be reached or read, saying why, without secrets.
 */
export async function probeLedger(ledger: ResolvedLedger): Promise<string> {
  if (ledger.kind === 'sqlite') {
    if (!existsSync(ledger.path)) {
      await assertCreatable(ledger.path, `ledger sqlite:${ledger.path}`)
      return 'not created yet: the first run creates it'
    }
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(ledger.path, { readonly: true, fileMustExist: true })
    try {
      const found = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'filedge_migrations'").get() as { n: number }
      if (found.n === 0) return 'no tables yet: the first run creates them'
      return `migration ${(db.prepare('SELECT max(version) AS version FROM filedge_migrations').get() as { version: number }).version}`
    } catch (error) {
      throw new FiledgeError('PLUGIN_ERROR', `ledger sqlite:${ledger.path}: ${describeError(error)}`)
    } finally {
      db.close()
    }
  }
  const where = `ledger ${ledgerName(ledger)}`
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: ledger.url, application_name: 'filedge healthcheck', connectionTimeoutMillis: 10_000 })
  client.on('error', () => undefined)
  try {
    await client.connect()
    const { rows } = await client.query<{ found: boolean }>('SELECT to_regclass(format($1::text, $2::text)) IS NOT NULL AS found', ['%I.filedge_migrations', ledger.schema])
    if (!rows[0].found) return `no schema ${ledger.schema} yet: the first run creates it`
    const version = await client.query<{ version: number }>(`SELECT max(version) AS version FROM "${ledger.schema.replace(/"/g, '""')}".filedge_migrations`)
    return `migration ${version.rows[0].version}`
  } catch (error) {
    throw new FiledgeError('PLUGIN_ERROR', `${where}: ${describeError(error)}`)
  } finally {
    await client.end().catch(() => undefined)
  }
}
