/**
 * Test plugins that freeze a real CLI at a chosen moment (when PAUSE is set),
 * written into a workspace as `pause.mjs` so a test can SIGKILL the process
 * there. Shared by the SQLite and Postgres crash tests.
 */

// Pauses forever after the first batch has gone into the destination's open transaction.
export const PAUSE_IN_COMMIT = `
import { writeFileSync } from 'node:fs'
export const pauseInCommit = () => ({
  name: 'pause-in-commit',
  apply({ hooks }) {
    hooks.transform.tapPromise('pause-in-commit', async (batches) => (async function* () {
      let sent = 0
      for await (const batch of batches) {
        yield batch
        if (process.env.PAUSE && ++sent === 1) {
          writeFileSync('paused', String(process.pid))
          await new Promise(() => {})
        }
      }
    })())
  },
})
`

// Lets the destination commit, then pauses before the ledger hears about it.
export const PAUSE_AFTER_WRITE = `
import { writeFileSync } from 'node:fs'
export const pauseAfterWrite = (inner) => ({
  name: inner.name,
  capabilities: inner.capabilities,
  describe: () => inner.describe(),
  open: (ctx) => inner.open(ctx),
  prepare: (table) => inner.prepare(table),
  hasLoaded: (query) => inner.hasLoaded(query),
  close: () => inner.close(),
  async write(job) {
    const result = await inner.write(job)
    if (process.env.PAUSE) {
      writeFileSync('paused', String(process.pid))
      await new Promise(() => {})
    }
    return result
  },
})
`
