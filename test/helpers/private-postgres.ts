import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

/**
 * A PostgreSQL server of a test's own, on a free loopback port, for the tests
 * that crash the server (`pg_ctl stop -m immediate`): crashing the machine's
 * shared cluster would break every other suite running beside them. Built
 * from the machine's own PostgreSQL binaries with initdb, as the `postgres`
 * user when the tests run as root (initdb refuses root).
 */

const run = promisify(execFile)

export interface PrivatePostgres {
  readonly url: string
  /** `pg_ctl stop -m immediate`: the server dies as in a power cut (no checkpoint, no flush of what was not flushed). */
  crash(): Promise<void>
  start(): Promise<void>
  remove(): Promise<void>
}

/** Why a private server cannot be made here, or undefined when it can. */
export function privatePostgresUnavailable(): string | undefined {
  if (binDir() === undefined) return 'no PostgreSQL server binaries under /usr/lib/postgresql'
  if (process.getuid?.() !== 0) return 'initdb must run as the postgres user, and these tests are not root (they use runuser)'
  return undefined
}

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a))
  return versions.map((version) => path.join(root, version, 'bin')).find((dir) => existsSync(path.join(dir, 'initdb')))
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/**
 * Creates and starts the server. `settings` are extra `-c name=value` server
 * settings, e.g. a long `wal_writer_delay`, so that what a synchronous commit
 * did not flush is reliably lost by a crash.
 */
export async function privatePostgres(settings: Record<string, string> = {}): Promise<PrivatePostgres> {
  const bin = binDir()!
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-pg-'))
  const { uid, gid } = await run('id', ['-u', 'postgres']).then(async ({ stdout }) => ({ uid: Number(stdout), gid: Number((await run('id', ['-g', 'postgres'])).stdout) }))
  chownSync(dir, uid, gid)
  const data = path.join(dir, 'data')
  const asPostgres = (command: string, args: string[]) => run('runuser', ['-u', 'postgres', '--', path.join(bin, command), ...args])
  await asPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions'])
  const port = await freePort()
  const options = ['-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`])].join(' ')
  const start = () => asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']).then(() => undefined)
  await start()
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    crash: () => asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).then(() => undefined),
    start,
    async remove() {
      await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
