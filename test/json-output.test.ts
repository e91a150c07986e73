import { afterEach, describe, expect, it } from 'vitest'
import { readLedger } from './helpers/invariants.js'
import { exited, sqliteConfig, workspace, type Workspace } from './helpers/workspace.js'

/**
 * `--json` is for schedulers and log shippers reading a pipe. Regressions
 * found by the crash loop on a loaded machine: the CLI exited before a slow
 * reader had taken its output, dropping the tail (run:summary included); and
 * a reader that goes away early killed the load halfway.
 */

// Enough output to overrun the pipe's buffer even when the reporter writes it in few, large writes (one per
// event-loop turn): a Node child's stdout is a socketpair, whose buffer (~200 KiB of small writes' worth)
// held all of 300 files' lines once they came in batches, so the CLI could exit with nothing left to wait for.
const FILES = 1500

let ws: Workspace | undefined
afterEach(() => ws?.remove())

function project(): Workspace {
  return workspace({
    'filedge.config.ts': sqliteConfig({ columns: "{ id: 'string' }" }),
    ...Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`incoming/f${String(i).padStart(3, '0')}.csv`, `id\nrow-${i}\n`])),
  })
}

describe('--json through a pipe', () => {
  it('is complete, up to run:summary, however slowly the reader reads', async () => {
    ws = project()
    const child = ws.spawn(['--json'])
    // Read nothing until well after the run is done: far more than a pipe buffer (64 KiB) waits to be read.
    child.stdout!.pause()
    await new Promise((resolve) => setTimeout(resolve, 4_000))
    let stdout = ''
    child.stdout!.on('data', (chunk) => (stdout += chunk))
    child.stdout!.resume()
    expect(await exited(child)).toEqual({ code: 0, signal: null })
    const events = stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; committed?: number })
    expect(stdout.length).toBeGreaterThan(512 * 1024)
    expect(events.filter((event) => event.event === 'file:committed')).toHaveLength(FILES)
    expect(events.at(-1)).toMatchObject({ event: 'run:summary', committed: FILES })
  })

  it('a reader that goes away after the first line does not stop the load', async () => {
    ws = project()
    const child = ws.spawn(['--json'])
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()))
    child.stdout!.destroy()
    const exit = await exited(child)
    expect(exit).toEqual({ code: 0, signal: null })
    const ledger = readLedger(ws.dir)
    expect(ledger.files.filter((file) => file.state === 'COMMITTED')).toHaveLength(FILES)
  })
})
