import { link, mkdir, open, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises'
import path from 'node:path'

/**
 * A short lock between processes on one host: a file created exclusively (`open(…, 'wx')`)
 * holding its holder's pid and the time. Meant for locks held a few milliseconds (the disk
 * cache holds one around a metadata swap, never while a value streams), so one whose holder is
 * dead, or that is older than STALE_MS, is taken over rather than waited on.
 *
 * Why not flock/fcntl: Node has no binding for them, and a native module for one lock is not
 * worth it. What a file lock gives up is exactness when a holder freezes past STALE_MS and
 * comes back: callers must only use it where that costs tidiness, not correctness.
 */

/** A lock this old belongs to a frozen or dead holder. */
export const STALE_MS = 10_000

export type Release = () => Promise<void>

export interface LockOptions {
  /** Epoch ms to give up at; null to give up at once if the lock is held. */
  readonly until: number | null
  /** Stops waiting (the caller is closing). */
  readonly signal: AbortSignal
  /** A fresh path, on the lock's file system, to move a stale lock aside to. */
  readonly aside: () => string
}

/** The lock's release, or who holds it (for the caller's message) if it could not be had in time. */
export async function lockFile(file: string, options: LockOptions): Promise<Release | string> {
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    if (await create(file)) return () => unlink(file).catch(ignore('ENOENT'))
    const holder = await takeOverIfStale(file, options.aside)
    if (holder === undefined) continue
    if (options.until === null || options.signal.aborted || Date.now() >= options.until) return holder
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}

/**
 * Removes the lock if its holder is dead or it is older than STALE_MS. Undefined if it is gone
 * now; else who holds it.
 */
export async function takeOverIfStale(file: string, aside: () => string): Promise<string | undefined> {
  let text: string
  let modified: number
  try {
    ;[text, modified] = await Promise.all([readFile(file, 'utf8'), stat(file).then((info) => info.mtimeMs)])
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined
    throw error
  }
  const holder = parseHolder(text)
  const stale = (holder !== undefined && !processAlive(holder.pid)) || Date.now() - (holder?.time ?? modified) > STALE_MS
  if (!stale) return holder === undefined ? 'a process still writing the lock file' : `process ${holder.pid}`
  // Moved aside, not unlinked: if another waiter took the stale lock over between our read and
  // now, what we moved is its fresh lock, and it goes back.
  const moved = aside()
  try {
    await rename(file, moved)
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined
    throw error
  }
  if ((await readFile(moved, 'utf8').catch(() => text)) !== text) await link(moved, file).catch(ignore('EEXIST'))
  await unlink(moved).catch(ignore('ENOENT'))
  return undefined
}

/** True if a process with this pid runs on this host (one we may not signal still runs). */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return codeOf(error) === 'EPERM'
  }
}

async function create(file: string): Promise<boolean> {
  let handle: FileHandle
  try {
    handle = await open(file, 'wx')
  } catch (error) {
    if (codeOf(error) === 'EEXIST') return false
    if (codeOf(error) !== 'ENOENT') throw error
    // Its directory was removed (a cache cleared by hand): made again.
    await mkdir(path.dirname(file), { recursive: true })
    return create(file)
  }
  try {
    // On a full disk the lock stays empty and is judged by its age: a delete, which frees
    // space, must still be able to take it.
    await handle.writeFile(JSON.stringify({ pid: process.pid, time: Date.now() })).catch(ignore('ENOSPC', 'EDQUOT'))
  } catch (error) {
    await handle.close()
    await unlink(file).catch(ignore('ENOENT'))
    throw error
  }
  await handle.close()
  return true
}

function parseHolder(text: string): { pid: number; time: number } | undefined {
  try {
    const holder = JSON.parse(text) as { pid?: unknown; time?: unknown }
    return Number.isSafeInteger(holder.pid) && Number.isFinite(holder.time) ? { pid: holder.pid as number, time: holder.time as number } : undefined
  } catch {
    return undefined
  }
}

function codeOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code
}

function ignore(...codes: string[]): (error: unknown) => undefined {
  return (error) => {
    if (codes.includes(codeOf(error) ?? '')) return undefined
    throw error
  }
}
