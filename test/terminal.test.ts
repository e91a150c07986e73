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

const ledger = (w: Workspace) => (w.exists('.filedge/ledger.db') ? w.query<{ state: string; attempts: number }>('.filedge/ledger.db', 'SELECT state, attempts FROM files') : [])

describe('filedge --watch in a terminal', () => {
  it('Ctrl-C during a load: the file is rolled back and released (its attempt does not count), the summary is printed, exit 0', async () => {
    ws = workspace({
      'slow.mjs': SLOW,
      'incoming/a.csv': `id,n\n${Array.from({ length: 200 }, (_, i) => `r${i},${i}`).join('\n')}\n`,
      'filedge.config.ts': sqliteConfig({ columns: COLUMNS, imports: "import { slow } from './slow.mjs'", plugins: 'slow()', top: "watch: { settle: '200ms' }, lease: { ttl: '30s' },", extra: 'batchSize: 10,' }),
    })
    const w = ws
    const session = inTerminal(w, ['--watch'])
    terminal = session.child
    await waitFor(() => ledger(w).some((file) => file.state === 'PROCESSING') && session.screen().includes('incoming/a.csv'), 30_000, 'the load to start, drawn in the live view')
    // The live view, not plain lines: the pipeline's line with its counters.
    expect(session.screen()).toMatch(/orders: 0 committed · 0 failed · 0 skipped · 0 rows/)

    session.type('\x03')
    expect(await exited(session.child)).toEqual({ code: 0, signal: null })
    expect(session.screen()).toMatch(/committed 0 · failed 0 · skipped 0 · new 1 · .* released 1/)
    // Claimable again at once, and the interrupted attempt was not counted.
    expect(ledger(w)).toEqual([{ state: 'PENDING', attempts: 0 }])

    const rerun = await w.cli(['--reporter', 'simple'])
    expect(rerun.code).toBe(0)
    expect(w.query('warehouse.db', 'SELECT count(*) AS n FROM orders')).toEqual([{ n: 200 }])
  })
})
