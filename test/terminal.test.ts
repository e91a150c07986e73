import { spawn, type ChildProcess } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { BIN, exited, sqliteConfig, waitFor, workspace, type Workspace } from './helpers/workspace.js'

/**
 * `filedge --watch` as a person runs it: in a real terminal. script(1)
 * gives the CLI a pseudo-terminal (120×30), so it draws the live view, and
 * Ctrl-C is the byte a keyboard sends (^C), turned into SIGINT by the
 * terminal's line discipline for the whole foreground process group.
 */

const COLUMNS = `{ id: { type: 'string', required: true }, n: 'integer' }`
/** Holds each batch 300 ms: a 200-row file in batches of 10 loads for ~6 s, long enough to interrupt. */
const SLOW = `export const slow = () => ({ name: 'slow', apply({ hooks }) {
  hooks.transform.tapPromise('slow', async (batches) => (async function* () {
    for await (const batch of batches) { await new Promise((resolve) => setTimeout(resolve, 300)); yield batch }
  })())
} })`

let ws: Workspace | undefined
let terminal: ChildProcess | undefined
afterEach(async () => {
  if (terminal !== undefined && terminal.exitCode === null && terminal.signalCode === null) {
    terminal.kill('SIGKILL')
    await exited(terminal)
  }
  ws?.remove()
})

const plain = (screen: string) => screen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '')

/** The CLI on a pseudo-terminal; `type` sends keys, `screen` is everything drawn so far. */
function inTerminal(w: Workspace, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn('script', ['-qfec', `stty cols 120 rows 30; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ${args.join(' ')}`, '/dev/null'], {
    cwd: w.dir,
    env: { ...process.env, TERM: 'xterm-256color', NO_COLOR: '', FORCE_COLOR: '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let screen = ''
  child.stdout!.on('data', (chunk) => (screen += chunk))
  child.stderr!.on('data', (chunk) => (screen += chunk))
  return { child, type: (keys: string) => child.stdin!.write(keys), screen: () => plain(screen) }
}

/** The ledger's files; none while the watcher is still creating it (the file exists before its tables do). */
function ledger(w: Workspace): { state: string; attempts: number }[] {
  try {
    return w.query<{ state: string; attempts: number }>('.filedge/ledger.db', 'SELECT state, attempts FROM files')
  } catch {
    return []
  }
}

describe('filedge --watch in a terminal', () => {
  it('Ctrl-C during a load: the file is rolled back and released (its attempt does not count), the summary is printed, exit 0', async () => {
    ws = workspace({
      'slow.mjs': SLOW,
      'incoming/a.csv': `id,n\n${Array.from({ length: 200 }, (_, i) => `r${i},${i}`).join('\n')}\n`,
      // One file at a time: these two wait for a.csv's slot.
      'incoming/b.csv': 'id,n\nb,1\n',
      'incoming/c.csv': 'id,n\nc,1\n',
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, imports: "import { slow } from './slow.mjs'", plugins: 'slow()', top: "watch: { settle: '200ms' }, lease: { ttl: '30s' }, concurrency: 1,", extra: 'batchSize: 10,' }),
    })
    const w = ws
    const session = inTerminal(w, ['--watch'])
    terminal = session.child
    await waitFor(() => ledger(w).some((file) => file.state === 'PROCESSING') && session.screen().includes('incoming/a.csv'), 30_000, 'the load to start, drawn in the live view')
    // The live view, not plain lines: the pipeline's line with its counters, and what waits for a slot.
    await waitFor(() => /orders: 0 committed · 0 failed · 0 skipped · 0 rows · 0 rows\/s · 2 waiting/.test(session.screen()), 10_000, 'the two waiting files to be drawn')

    session.type('\x03')
    expect(await exited(session.child)).toEqual({ code: 0, signal: null })
    expect(session.screen()).toMatch(/committed 0 · failed 0 · skipped 0 · new 1 · .* released 1/)
    // Claimable again at once, and the interrupted attempt was not counted.
    expect(ledger(w)).toEqual([{ state: 'PENDING', attempts: 0 }])

    const rerun = await w.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    expect(w.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 202 }])
  })
})

describe('the live view', () => {
  it('shows state, not history; failures with their reason; a reload that fails as it happens; the pipeline ends red', async () => {
    ws = workspace({
      'incoming/a.csv': 'id,n\na,1\n',
      'incoming/b.csv': 'id,n\nb,2\nc,3\n',
      'incoming/bad.csv': 'id,n\nx,not-a-number\n',
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, top: "watch: { settle: '200ms' }," }),
    })
    const w = ws
    const session = inTerminal(w, ['--watch'])
    terminal = session.child
    const committed = () => {
      try {
        return w.query<{ n: number }>('warehouse.db', 'SELECT count(*) AS n FROM orders')[0].n
      } catch {
        return 0 // not created yet
      }
    }
    await waitFor(() => committed() === 3 && session.screen().includes('incoming/bad.csv:2 column n'), 30_000, 'the first files, and the bad one')
    for (const name of ['d', 'e']) {
      w.write(`incoming/${name}.csv`, `id,n\n${name},9\n`)
      await waitFor(() => session.screen().includes(`✓ incoming/${name}.csv 1 row`), 30_000, `${name}.csv to be drawn committed`)
    }
    // A broken edit is reported while the watcher runs, not when it exits.
    w.write('filedge.config.ts', sqliteConfig({ columns: "{ id: { type: 'string', required: true }, n: 'intger' }", top: "watch: { settle: '200ms' }," }))
    await waitFor(() => session.screen().includes('config not reloaded, keeping the previous one'), 30_000, 'the broken config to be reported')
    expect(session.child.exitCode).toBe(null)

    // The last frame drawn: each file once, the failure with its reason, counts that add up.
    const frames = session.screen().split(/(?=[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] orders:)/)
    const last = frames.at(-1)!.split('error: ')[0]
    expect(last).toMatch(/orders: 4 committed · 1 failed · \d+ skipped · 5 rows/)
    for (const name of ['a', 'b', 'd', 'e']) expect(last.split(`✓ incoming/${name}.csv`).length - 1, `${name}.csv once in the frame`).toBeLessThanOrEqual(1)
    expect(last.match(/✗ incoming\/bad\.csv:2 column n: .*not-a-number/g)).toHaveLength(1)
    expect(last).not.toMatch(/⟳/)

    session.type('\x03')
    expect(await exited(session.child)).toEqual({ code: 0, signal: null })
    const end = session.screen().slice(session.screen().lastIndexOf('orders:') - 2)
    expect(end).toMatch(/✖ orders: 1 failed/)
    expect(end).toMatch(/committed 4 · failed 1 · /)
  })
})
