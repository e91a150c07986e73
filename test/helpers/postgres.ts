import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { describe, it } from 'vitest'
import { redact } from '../../core/index.js'

/**
 * The machine's PostgreSQL for the Postgres suites: real server, no mocks.
 * `FILEDGE_TEST_PG_URL` overrides the URL (always name the user: `USER` may
 * be unset). When the server is unreachable the suites are skipped with a
 * loud message, unless `FILEDGE_TEST_PG_REQUIRED=1` (CI sets it), in which
 * case they fail.
 */
export const PG_URL = process.env.FILEDGE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REQUIRED = process.env.FILEDGE_TEST_PG_REQUIRED === '1'

async function probe(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  } finally {
    await client.end().catch(() => undefined)
  }
}

const unreachable = await probe()

/** `describe` for a suite that needs the server: skipped loudly, or failing under FILEDGE_TEST_PG_REQUIRED=1, when it is down. */
export function describePostgres(name: string, body: () => void): void {
  if (unreachable === undefined) {
    describe(name, body)
    return
  }
  const message = redact(`PostgreSQL at ${PG_URL} is unreachable (${unreachable})`)
  if (REQUIRED) {
    describe(name, () => {
      it('reaches the PostgreSQL server (FILEDGE_TEST_PG_REQUIRED=1)', () => {
        throw new Error(`${message}; start it with \`pg_ctlcluster 15 main start\` or set FILEDGE_TEST_PG_URL`)
      })
    })
    return
  }
  console.warn(`\n${'!'.repeat(78)}\n!! SKIPPING "${name}": ${message}.\n!! Set FILEDGE_TEST_PG_REQUIRED=1 to make this a failure.\n${'!'.repeat(78)}\n`)
  describe.skip(name, body)
}

/** A schema name no other test uses, so test files can run in parallel against one database. */
export function freshSchema(prefix = 'filedge_test'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`
}

/** Runs statements against the test database on a short-lived connection. */
export async function pgQuery<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({ connectionString: PG_URL })
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await pgQuery(`DROP SCHEMA IF EXISTS "${schema.replace(/"/g, '""')}" CASCADE`)
}

/** The test URL with `?schema=` for a Postgres ledger. */
export function ledgerUrl(schema: string): string {
  const url = new URL(PG_URL)
  url.searchParams.set('schema', schema)
  return url.toString()
}

/**
 * A config file for one pipeline with a Postgres ledger and a Postgres
 * destination. The URLs travel in environment variables, as users are told to
 * do (`FILEDGE_LEDGER_URL`, `FILEDGE_DEST_URL`); see `postgresEnv`.
 */
export function postgresConfig(options: { destSchema: string; columns: string; top?: string; plugins?: string; imports?: string; extra?: string; wrapDestination?: string }): string {
  const destination = `postgres({ url: env('FILEDGE_DEST_URL'), schema: ${JSON.stringify(options.destSchema)} })`
  return `import { defineConfig, env } from 'filedge'
import { postgres } from 'filedge/plugins/postgres'
${options.imports ?? ''}
export default defineConfig({
  ledger: env('FILEDGE_LEDGER_URL'),
  ${options.top ?? ''}
  plugins: [${options.plugins ?? ''}],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming' },
    destination: ${options.wrapDestination ? `${options.wrapDestination}(${destination})` : destination},
    table: 'orders',
    columns: ${options.columns},
    ${options.extra ?? ''}
  }],
})
`
}

export function postgresEnv(ledgerSchema: string): NodeJS.ProcessEnv {
  return { FILEDGE_LEDGER_URL: ledgerUrl(ledgerSchema), FILEDGE_DEST_URL: PG_URL }
}
