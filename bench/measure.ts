import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { redact } from '../core/secrets.js'

export interface Timed {
  readonly ms: number
  /** Peak resident set size of the command, in MiB (from /usr/bin/time). */
  readonly maxRssMb: number
  /** CPU time of the command and its children, user and system, in ms (from /usr/bin/time): what it cost, whatever else ran. */
  readonly cpuMs: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs a command under /usr/bin/time: wall time, CPU time and peak RSS of the real
 * process. Throws on a non-zero exit, with the command line redacted: psql
 * takes its connection URL, password and all, as an argument.
 */
export function timed(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Timed> {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'filedge-bench-time-'))
  const report = path.join(scratch, 'time')
  const started = performance.now()
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/time', ['-f', '%M %U %S', '-o', report, command, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      const ms = performance.now() - started
      const [rssKb, user, system] = (readFileSync(report, 'utf8').trim().split('\n').at(-1) ?? '').split(' ').map(Number)
      rmSync(scratch, { recursive: true, force: true })
      if (error) reject(new Error(redact(`${command} ${args.join(' ')} failed: ${stderr || error.message}`)))
      else resolve({ ms, maxRssMb: rssKb / 1024, cpuMs: Math.round((user + system) * 1000), stdout, stderr })
    })
  })
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

type Sides = Record<string, () => Promise<unknown>>
type Results<S extends Sides> = { [K in keyof S]: Awaited<ReturnType<S[K]>>[] }

/**
 * Runs every side `reps` times, rotating which goes first (A B C, B C A,
 * C A B, …), so drift in the machine (other load, caches, thermal) hits all
 * sides alike. With two sides that is plain A/B alternation.
 */
export async function alternate<S extends Sides>(reps: number, sides: S): Promise<Results<S>> {
  const names = Object.keys(sides) as (keyof S)[]
  const results = Object.fromEntries(names.map((name) => [name, []])) as unknown as Results<S>
  for (let rep = 0; rep < reps; rep++) {
    for (let turn = 0; turn < names.length; turn++) {
      const name = names[(rep + turn) % names.length]
      results[name].push((await sides[name]()) as Awaited<ReturnType<S[typeof name]>>)
    }
  }
  return results
}

/**
 * CPU time the whole machine has spent busy (user, nice, system, irq,
 * softirq), in ms, from /proc/stat; undefined where there is none. The
 * difference over a run is every process' work — filedge's and the
 * database server's — which is what bounds how far more workers can scale.
 */
export function machineBusyMs(): number | undefined {
  let stat: string
  try {
    stat = readFileSync('/proc/stat', 'utf8')
  } catch {
    return undefined
  }
  const [user, nice, system, , , irq, softirq] = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number)
  // Clock ticks of USER_HZ, 100 per second on Linux.
  return (user + nice + system + irq + softirq) * 10
}

/**
 * CPU time the processes of a local PostgreSQL server have spent (user and
 * system, the exited backends included: the postmaster reaps them), in ms,
 * from /proc; undefined where there is none. With the workers' own CPU time,
 * what a run cost the machine without what other programs on it did.
 */
export function postgresBusyMs(): number | undefined {
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return undefined
  }
  let ticks = 0
  let found = false
  for (const pid of pids) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue
    }
    if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== 'postgres') continue
    found = true
    // Fields 14-17 of /proc/<pid>/stat: utime, stime, cutime, cstime (after the comm, which may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
  }
  return found ? ticks * 10 : undefined
}

/** The 95th percentile (nearest rank). */
export function p95(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)]
}
