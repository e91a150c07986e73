import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { timed, type Timed } from './measure.js'

/** The repository root, from dist/bench/ at run time. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = path.join(REPO_ROOT, 'bin/filedge.js')

export const ORDERS_COLUMNS = `{
  order_id: { type: 'string', required: true },
  customer_id: { type: 'integer', required: true },
  amount: { type: 'float', required: true },
  order_date: { type: 'date', required: true },
  status: 'string',
  note: 'string',
}`

export interface Project {
  readonly dir: string
  /** Runs the real CLI (`--reporter json`) and returns its timing and the run summary. */
  run(args?: readonly string[]): Promise<Timed & { summary: Record<string, number> }>
  /** Deletes the ledger and the destination files, keeping the config. */
  reset(): void
  remove(): void
}

export interface ProjectOptions {
  readonly sourceDir: string
  readonly include: string
  /** The pipeline's source as code (an `s3({ … })` call), instead of `sourceDir` and `include`. */
  readonly source?: string
  /** Import lines of the config file, besides `defineConfig`. */
  readonly imports: string
  /** The pipeline's destination, as code; omitted when a preset supplies it. */
  readonly destination?: string
  readonly columns?: string
  /** More keys of the pipeline, as code. */
  readonly extra?: string
  /** Top-level keys of the config (ledger, presets, watch), as code. */
  readonly config?: string
  /** Environment of every run: where the config's `env()` references find their URLs. */
  readonly env?: NodeJS.ProcessEnv
  /** Files and folders, relative to the project, that `reset()` deletes besides `.filedge`. */
  readonly state: readonly string[]
}

/**
 * A throwaway project like a user's: a config file, `node_modules/filedge`
 * pointing at this repository, and the real CLI run as a child process, so
 * what is measured includes startup, config loading, the ledger and
 * provenance — everything a user waits for.
 */
export function project(options: ProjectOptions): Project {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-'))
  mkdirSync(path.join(dir, 'node_modules'))
  symlinkSync(REPO_ROOT, path.join(dir, 'node_modules', 'filedge'), 'dir')
  writeFileSync(
    path.join(dir, 'filedge.config.ts'),
    `import { defineConfig } from 'filedge'
${options.imports}
export default defineConfig({
  ${options.config ?? ''}
  pipelines: [{
    name: 'orders',
    source: ${options.source ?? `{ dir: ${JSON.stringify(options.sourceDir)}, include: [${JSON.stringify(options.include)}] }`},
    ${options.destination === undefined ? '' : `destination: ${options.destination},`}
    table: 'orders',
    columns: ${options.columns ?? ORDERS_COLUMNS},
    ${options.extra ?? ''}
  }],
})
`,
  )
  const reset = () => {
    for (const entry of ['.filedge', ...options.state]) rmSync(path.join(dir, entry), { recursive: true, force: true })
  }
  return {
    dir,
    async run(args = []) {
      const result = await timed(process.execPath, [BIN, '--reporter', 'json', ...args], { cwd: dir, env: options.env })
      const last = result.stdout.trim().split('\n').at(-1) ?? '{}'
      const summary = JSON.parse(last) as Record<string, number>
      if (summary.failed > 0) throw new Error(`filedge failed a file: ${result.stdout}`)
      return { ...result, summary }
    },
    reset,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/**
 * `filedge --watch --reporter json` run in `dir`: whether it is watching yet,
 * and when each file committed (`performance.now()` on arrival, keyed by the
 * file's base name: the same clock as the writes a bench times it against).
 */
export function watcher(dir: string, what: string, timeoutMs: number) {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/filedge.js'), '--watch', '--reporter', 'json'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  const committed = new Map<string, number>()
  let ready = false
  let buffer = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    let newline
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const event = JSON.parse(buffer.slice(0, newline)) as { event: string; path?: string; message?: string }
      buffer = buffer.slice(newline + 1)
      if (event.event === 'log' && event.message?.includes('Ctrl-C to stop')) ready = true
      if (event.event === 'file:committed' && event.path !== undefined) committed.set(path.basename(event.path), performance.now())
    }
  })
  return {
    committed,
    get ready() {
      return ready
    },
    /** Waits (polling every 2 ms) until `check` holds; fails past the timeout. */
    async until(check: () => boolean, waitingFor: string): Promise<void> {
      const deadline = performance.now() + timeoutMs
      while (!check()) {
        if (performance.now() > deadline) throw new Error(`${what}: timed out waiting for ${waitingFor}`)
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    },
    async stop(): Promise<void> {
      child.kill('SIGTERM')
      await new Promise((resolve) => child.once('exit', resolve))
    },
  }
}
