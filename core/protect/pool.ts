import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { pseudonymBytes, sealBytes, type SealJob, type SealResult } from './seal.js'

/**
 * Where protected values are sealed: one worker thread for the process,
 * started on first use, so the crypto runs on another core while this one
 * parses the file and writes the destination (batches are protected ahead
 * of the destination's reads: columns.ts). On the bench's 1,000,000 rows
 * with two encrypted columns, sealing on the loading thread cost it about
 * 1 µs a value; handing the values over and taking the frames back costs
 * it a fraction of that. One worker, not a pool: a load has one thread
 * producing batches, and the cores are shared with the destination's.
 *
 * Without a worker (one cannot start), values are sealed on the calling
 * thread, the same way: the frames do not depend on where they were made.
 */

type Pending = { resolve: (result: SealResult) => void; reject: (error: Error) => void }

let worker: Worker | undefined
let unavailable = false
/** Key ids the current worker holds. */
let sent = new Set<string>()
const pending = new Map<number, Pending>()
let next = 0

function start(): Worker | undefined {
  if (worker !== undefined || unavailable) return worker
  // Beside this module when it is tsc's output (dist/core/protect/); bundled, this module is in a chunk (dist/bundle/chunks/)
  // or an entry (dist/bundle/core/) and the worker is its own entry, dist/bundle/core/protect/worker.js. Run from the
  // TypeScript sources (as in-process tests do) there is none: without one, a worker would fail its first jobs, so
  // values are sealed here instead.
  const script = [new URL('./worker.js', import.meta.url), new URL('../core/protect/worker.js', import.meta.url)].find(
    (candidate) => candidate.protocol === 'file:' && existsSync(fileURLToPath(candidate)),
  )
  if (script === undefined) {
    unavailable = true
    return undefined
  }
  try {
    const started = new Worker(script)
    started.on('message', (message: { id: number; error?: string } & Partial<SealResult>) => {
      const job = pending.get(message.id)
      if (job === undefined) return
      pending.delete(message.id)
      if (pending.size === 0) started.unref()
      if (message.error !== undefined) job.reject(new Error(`sealing values failed: ${message.error}`))
      else job.resolve({ out: message.out!, ends: message.ends! })
    })
    // A worker that dies takes its jobs with it: they fail (their files fail and retry), and the next batch runs here.
    started.on('error', (error) => retire(started, error))
    started.on('exit', (code) => retire(started, new Error(`the protection worker exited (code ${code})`)))
    started.unref()
    worker = started
    sent = new Set()
  } catch {
    unavailable = true
  }
  return worker
}

function retire(dead: Worker, error: Error): void {
  if (worker !== dead) return
  worker = undefined
  unavailable = true
  for (const job of pending.values()) job.reject(error)
  pending.clear()
}

/** Seals or hashes one batch's values, on the worker when there is one. `plain` and `ends` must be packTexts' (their buffers are transferred). */
export function protectValues(job: Omit<SealJob, 'id'>): Promise<SealResult> {
  const thread = start()
  if (thread === undefined) {
    try {
      return Promise.resolve(job.kind === 'encrypt' ? sealBytes({ ...job, id: 0 }) : pseudonymBytes({ ...job, id: 0 }))
    } catch (error) {
      return Promise.reject(error)
    }
  }
  const id = next++
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject })
    // Held while it has work: the run waits for its answers.
    thread.ref()
    if (!sent.has(job.keyId)) {
      thread.postMessage({ key: job.keyId, bytes: Uint8Array.from(job.key) })
      sent.add(job.keyId)
    }
    // The texts' buffers move to the worker (packTexts gives them buffers of their own, never Buffer's shared pool).
    thread.postMessage({ id, kind: job.kind, keyId: job.keyId, plain: job.plain, ends: job.ends }, [job.plain.buffer as ArrayBuffer, job.ends.buffer as ArrayBuffer])
  })
}
