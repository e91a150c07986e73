import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(REPO_ROOT, 'bin/filedge.js')

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface Workspace {
  readonly dir: string
  file(relative: string): string
  write(relative: string, content: string | Buffer): string
  /** Runs the real CLI in this workspace. */
  cli(args?: readonly string[], options?: { env?: NodeJS.ProcessEnv }): Promise<CliResult>
  /** Starts the real CLI without waiting (for SIGKILL tests). */
  spawn(args?: readonly string[], options?: { env?: NodeJS.ProcessEnv }): ChildProcess
  /** Query a SQLite database of the workspace (read-only). */
  query<T = Record<string, unknown>>(database: string, sql: string, ...params: unknown[]): T[]
  exists(relative: string): boolean
  remove(): void
}

/**
 * A throwaway project directory: files on disk, `node_modules/filedge`
 * pointing at this repository (so configs `import from 'filedge'` exactly as
 * users do), and the real CLI run as a child process.
 */
export function workspace(files: Record<string, string | Buffer> = {}): Workspace {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-test-'))
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true })
  symlinkSync(REPO_ROOT, path.join(dir, 'node_modules', 'filedge'), 'dir')
  const write = (relative: string, content: string | Buffer) => {
    const target = path.join(dir, relative)
    mkdirSync(path.dirname(target), { recursive: true })
    writeFileSync(target, content)
    return target
  }
  for (const [relative, content] of Object.entries(files)) write(relative, content)
  const env = (extra?: NodeJS.ProcessEnv) => ({ ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...extra })
  return {
    dir,
    file: (relative) => path.join(dir, relative),
    write,
    cli(args = [], options = {}) {
      return new Promise((resolve) => {
        execFile(process.execPath, [BIN, ...args], { cwd: dir, env: env(options.env), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr })
        })
      })
    },
    spawn(args = [], options = {}) {
      return spawn(process.execPath, [BIN, ...args], { cwd: dir, env: env(options.env), stdio: ['ignore', 'pipe', 'pipe'] })
    },
    query(database, sql, ...params) {
      const db = new Database(path.join(dir, database), { readonly: true, fileMustExist: true })
      try {
        return db.prepare(sql).all(...params) as never[]
      } finally {
        db.close()
      }
    },
    exists: (relative) => existsSync(path.join(dir, relative)),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** A config file for a single SQLite-destination pipeline, the common case in tests. */
export function sqliteConfig(options: {
  columns: string
  table?: string
  include?: string
  extra?: string
  plugins?: string
  imports?: string
  top?: string
}): string {
  return `import { defineConfig } from 'filedge'
import { sqlite } from 'filedge/plugins/sqlite'
${options.imports ?? ''}
export default defineConfig({
  ${options.top ?? ''}
  plugins: [${options.plugins ?? ''}],
  pipelines: [{
    name: 'orders',
    source: { dir: 'incoming'${options.include ? `, include: [${options.include}]` : ''} },
    destination: sqlite({ path: 'warehouse.db' }),
    table: ${JSON.stringify(options.table ?? 'orders')},
    columns: ${options.columns},
    ${options.extra ?? ''}
  }],
})
`
}

export function waitFor(check: () => boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (check()) return resolve()
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for ${what}`))
      setTimeout(tick, 25)
    }
    tick()
  })
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode })
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
}
