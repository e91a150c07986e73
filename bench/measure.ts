import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface Timed {
  readonly ms: number
  /** Peak resident set size of the command, in MiB (from /usr/bin/time). */
  readonly maxRssMb: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command under /usr/bin/time: wall time and peak RSS of the real process. Throws on a non-zero exit. */
export function timed(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Timed> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-time-'))
  const report = path.join(scratch, 'time')
  const started = performance.now()
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/time', ['-f', '%M', '-o', report, command, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      const ms = performance.now() - started
      const rssKb = Number(readFileSync(report, 'utf8').trim().split('\n').at(-1))
      rmSync(scratch, { recursive: true, force: true })
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || error.message}`))
      else resolve({ ms, maxRssMb: rssKb / 1024, stdout, stderr })
    })
  })
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * Runs A and B `reps` times each, alternating which goes first, so drift in
 * the machine (other load, caches, thermal) hits both sides alike.
 */
export async function alternate<A, B>(reps: number, a: () => Promise<A>, b: () => Promise<B>): Promise<{ a: A[]; b: B[] }> {
  const results = { a: [] as A[], b: [] as B[] }
  for (let rep = 0; rep < reps; rep++) {
    if (rep % 2 === 0) {
      results.a.push(await a())
      results.b.push(await b())
    } else {
      results.b.push(await b())
      results.a.push(await a())
    }
  }
  return results
}
