import { fstat, readlinkSync } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { fileChanged } from '../errors.js'

/**
 * Symbolic links in a drop folder, on rsync's `--safe-links` model. Whoever
 * can write to the folder can place a link, and a link to `/etc/passwd` named
 * `orders.csv` would be hashed, parsed, and its first line quoted in an error
 * kept in the ledger for good. So by default (`source.followSymlinks:
 * 'inside'`) a link is followed only when its real path is inside the
 * source directory (`current -> 2024-05-01` keeps working); a link out of it
 * is skipped with a warning naming the link, and its target is never opened.
 * `'all'` follows every link, for a folder that links in a partner's mount.
 */

/** The warning for a path that leads out of the source directory through a symbolic link. */
export function linkedOutside(link: string): string {
  return `${link}: a symbolic link that leads outside the source directory; not followed (source.followSymlinks: 'all' follows it)`
}

/**
 * The real path of a source directory, for a source that follows only the
 * links inside it; undefined when its links may lead anywhere. Resolved on
 * first use and kept; a directory that does not exist yet is resolved again
 * next time.
 */
export function boundary(dir: string, followSymlinks: 'inside' | 'all'): () => Promise<string | undefined> {
  if (followSymlinks === 'all') return () => Promise.resolve(undefined)
  let found: Promise<string> | undefined
  return () => {
    found ??= realpath(dir).catch((error: unknown) => {
      found = undefined
      throw error
    })
    return found.catch(() => dir)
  }
}

export function isInside(dir: string, realPath: string): boolean {
  return realPath === dir || realPath.startsWith(dir.endsWith(path.sep) ? dir : `${dir}${path.sep}`)
}

/** The real path of `absPath` is inside `dir`; a path that does not resolve (a broken link) is left to the caller, which finds no file there. */
export async function resolvesInside(dir: string, absPath: string): Promise<boolean> {
  const real = await realpath(absPath).catch(() => undefined)
  return real === undefined || isInside(dir, real)
}

const fstatOf = promisify(fstat)

/**
 * Whether the file open as `fd` (opened from `absPath`) really is inside
 * `dir`. Checked on the descriptor, after the open and before any read:
 * discovery checked the path, but a writer to the drop folder can swap a file
 * for a link between that check and the open. Linux names an open file in
 * /proc/self/fd; elsewhere the path is resolved again and must lead inside
 * `dir` to the same inode as the descriptor.
 *
 * The /proc readlink is synchronous on purpose: procfs answers from memory,
 * never from a disk, and over 5,000 small files the synchronous call cost no
 * measurable CPU where the promise one cost ~120 µs per file (as much as the
 * open, read and close of the file together).
 */
async function openedInside(fd: number, absPath: string, dir: string): Promise<boolean> {
  const opened = procPath(fd)
  if (opened !== undefined) return isInside(dir, opened)
  const resolved = await realpath(absPath).catch(() => undefined)
  if (resolved === undefined || !isInside(dir, resolved)) return false
  const [now, held] = await Promise.all([stat(resolved).catch(() => undefined), fstatOf(fd)])
  return now !== undefined && now.ino === held.ino && now.dev === held.dev
}

const OPENED_OUTSIDE =
  "opened outside the source directory (replaced by, or reached through, a symbolic link out of it after it was listed); not read (source.followSymlinks: 'all' follows such links)"

/**
 * `openedInside` as the check the local source runs on each descriptor it
 * opens: FILE_CHANGED naming `file` when the path was swapped for a link out
 * of the source directory after the listing looked at it.
 */
export async function confirmInside(dir: string, fd: number, absPath: string, file: string): Promise<void> {
  if (!(await openedInside(fd, absPath, dir))) throw fileChanged(file, OPENED_OUTSIDE)
}

function procPath(fd: number): string | undefined {
  try {
    const opened = readlinkSync(`/proc/self/fd/${fd}`)
    return path.isAbsolute(opened) ? opened : undefined
  } catch {
    return undefined
  }
}
