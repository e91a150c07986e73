// A test plugin that SIGKILLs its own process at a chosen moment of a run.
//
// FILEDGE_CRASH=<point>:<nth>:<delayMicros>[:<path prefix>]
//   hash    when the nth file is about to be hashed
//   claim   when the nth claim is about to reach the ledger (lands before, inside
//           or just after the claim's SQLite transaction)
//   batch   when the nth batch is handed to the destination, inside its open
//           transaction (lands among the INSERTs of that batch)
//   commit  right after the nth destination commit, before the ledger hears of it
//   timer   nth is ignored: delayMicros after the run starts, wherever the run is
//
// With a path prefix, only files whose path starts with it count toward nth.
//
// The kill comes from a helper thread that waits `delayMicros` on its own clock
// and then sends SIGKILL, so it lands in whatever the main thread is doing at
// that instant, including inside synchronous SQLite calls no hook can reach.
// A real SIGKILL: no handler, no cleanup, no flush. Before arming, the plugin
// writes `crash-armed` so the test knows the point was reached.
import { writeFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { withWrite } from './wrap-destination.mjs'

const KILLER = `
const shared = require('node:worker_threads').workerData
while (Atomics.load(shared, 0) === 0) Atomics.wait(shared, 0, 0)
const until = process.hrtime.bigint() + BigInt(Atomics.load(shared, 1)) * 1000n
while (process.hrtime.bigint() < until) {}
process.kill(process.pid, 'SIGKILL')
`

function parse(spec) {
  if (!spec) return undefined
  const [point, nth, delay, prefix = ''] = spec.split(':')
  return { point, nth: Number(nth), delay: Number(delay), prefix }
}

function armKiller(plan) {
  const shared = new Int32Array(new SharedArrayBuffer(8))
  const worker = new Worker(KILLER, { eval: true, workerData: shared })
  worker.unref()
  return () => {
    writeFileSync('crash-armed', `${plan.point}:${plan.nth}:${plan.delay}`)
    Atomics.store(shared, 1, plan.delay)
    Atomics.store(shared, 0, 1)
    Atomics.notify(shared, 0)
  }
}

export function crashPoints() {
  const plan = parse(process.env.FILEDGE_CRASH)
  return {
    name: 'crash-points',
    enforce: 'pre',
    apply({ hooks }) {
      if (plan === undefined) return
      const fire = armKiller(plan)
      let seen = 0
      const reached = (path) => path.startsWith(plan.prefix) && ++seen === plan.nth && (fire(), true)
      switch (plan.point) {
        case 'timer':
          hooks.beforeRun.tapPromise('crash-points', async () => void fire())
          break
        case 'hash':
          hooks.beforeHash.tapPromise('crash-points', async (candidate) => void reached(candidate.path))
          break
        case 'claim':
          hooks.claim.tapPromise('crash-points', async (request) => void reached(request.file.path))
          break
        case 'batch':
          hooks.transform.tapPromise('crash-points', async (batches, { file }) =>
            (async function* () {
              for await (const batch of batches) {
                reached(file.path)
                yield batch
              }
            })(),
          )
          break
        case 'commit':
          break
        default:
          throw new Error(`FILEDGE_CRASH: unknown point ${plan.point}`)
      }
      crashPoints.afterWrite = plan.point === 'commit' ? reached : () => false
    },
  }
}
crashPoints.afterWrite = () => false

/** Wraps a destination so the `commit` point fires between its commit and the ledger update. */
export function crashAfterWrite(inner) {
  return withWrite(inner, async (job) => {
    const result = await inner.write(job)
    crashPoints.afterWrite(job.file.path)
    return result
  })
}

/**
 * Wraps a destination so that, with FILEDGE_FAIL_AFTER_WRITE=1, a write that
 * committed still reports an error: what a worker sees when the connection
 * drops while COMMIT is in flight (the outcome is unknown to it, and the
 * rows are in fact committed).
 */
export function failAfterWrite(inner) {
  return withWrite(inner, async (job) => {
    const result = await inner.write(job)
    if (process.env.FILEDGE_FAIL_AFTER_WRITE === '1') throw new Error('Connection terminated unexpectedly (while COMMIT was in flight)')
    return result
  })
}
