// A test plugin that holds a run at a chosen point, so a test can freeze the
// process there (SIGSTOP) or let the run take longer than its lease.
//
// PAUSE_AT=<point> writes `paused` (the process id) when the run reaches the
// point, then waits until a file `resume` exists:
//   load     after the claim, before the destination transaction begins
//   batch    after the first batch went into the destination's open transaction
//   commit   inside the destination's transaction, after its last statement, right before COMMIT
//            (the destination's lease check; the wrapper below)
//   written  after the destination committed, before the ledger hears of it
// SLOW_BATCH_MS=<ms> sleeps that long before handing each batch on (a long load).
// SPIN_BATCH_MS=<ms> works that long before handing each batch on, never giving the event loop a turn (a long load
// whose rows come without I/O, written by a destination that never waits, as SQLite's).
import { existsSync, writeFileSync } from 'node:fs'
import { withWrite } from './wrap-destination.mjs'

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function pause() {
  writeFileSync('paused', String(process.pid))
  while (!existsSync('resume')) await sleep(20)
}

export function pausePoints() {
  const at = process.env.PAUSE_AT
  const slow = Number(process.env.SLOW_BATCH_MS ?? 0)
  const spin = Number(process.env.SPIN_BATCH_MS ?? 0)
  return {
    name: 'pause-points',
    enforce: 'pre',
    apply({ hooks }) {
      if (at === 'load') hooks.load.tapPromise('pause-points', async () => void (await pause()))
      hooks.transform.tapPromise('pause-points', async (batches) =>
        (async function* () {
          let sent = 0
          for await (const batch of batches) {
            if (slow > 0) await sleep(slow)
            for (const until = performance.now() + spin; performance.now() < until; );
            if (sent === 0) writeFileSync('loading', String(process.pid))
            yield batch
            if (++sent === 1 && at === 'batch') await pause()
          }
        })(),
      )
    },
  }
}

/** Wraps a destination so `PAUSE_AT=commit` holds the run right before its COMMIT, and `PAUSE_AT=written` between its commit and the ledger update. */
export function pauseAfterWrite(inner) {
  return withWrite(inner, async (job) => {
    const held =
      process.env.PAUSE_AT === 'commit'
        ? {
            ...job,
            async assertLease() {
              await job.assertLease()
              await pause()
            },
          }
        : job
    const result = await inner.write(held)
    if (process.env.PAUSE_AT === 'written') await pause()
    return result
  })
}
