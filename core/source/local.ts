import fs from 'node:fs'
import { access, mkdir, open, rename, stat, unlink, copyFile } from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import path from 'node:path'
import { Readable } from 'node:stream'
import type { SymlinkPolicy } from '../config/types.js'
import { FiledgeError, fileGone } from '../errors.js'
import type { ArchiveAction, ListOptions, Source, SourceEntry, WatchOptions, Watching } from '../source.js'
import { boundary, confirmInside, isInside, linkedOutside, resolvesInside } from './links.js'
import { excludePatterns, sourceMatcher } from './match.js'

export interface LocalSourceOptions {
  /** Absolute. */
  readonly dir: string
  /** The project root: entry paths are relative to it (`incoming/a.csv`). */
  readonly root: string
  readonly include: readonly string[]
  readonly exclude: readonly string[]
  readonly readyMarker?: string
  readonly followSymlinks: SymlinkPolicy
}

export function toRelative(root: string, absPath: string): string {
  return path.relative(root, absPath).split(path.sep).join('/')
}

/** What a local file's stat says about this copy of its bytes: a rewrite, or another file renamed to the path, changes it. */
function versionOf(stats: fs.Stats): string {
  return `${stats.mtimeMs}:${stats.ino}`
}

/**
 * A read stream allocates a buffer of highWaterMark for every read: 1 MiB
 * for a 5 KB file adds up over thousands of files. 256 KiB at most: Node
 * decodes a chunk of about 1 MB or more into an external string, outside
 * V8's heap, and every field sliced from it keeps all of it alive until a
 * full GC. Loading the bench's 1 GB CSV into SQLite peaked at 250 MB RSS with
 * 1 MiB reads (~80 MB of it external strings), at 165 MB with 256 KiB.
 */
function readSize(size: number): number {
  return Math.max(64 * 1024, Math.min(256 * 1024, size + 1))
}

/**
 * Files up to this size are read whole, in one or two reads, and handed on
 * as one chunk: a read stream's machinery (its reads, end-of-stream and
 * close bookkeeping) cost more than the reading over thousands of small files.
 */
const SMALL = 256 * 1024

/**
 * A small file's bytes to its end, however much it has grown past `sizeHint`
 * since it was listed, read with synchronous calls on an open descriptor.
 *
 * Synchronous on purpose, like the stats below: each promise-based fs call
 * is a round trip through libuv's thread pool, and on this project's 2-core
 * VM that round trip (the hand-off and the wake-up) cost ~80–120 µs of the
 * event loop's time against 2–20 µs for the call itself. Over 5,000 small
 * files the open, two reads, close and two stats took 0.8–1.2 s of CPU as
 * promises and 0.13–0.2 s synchronously. A small local file is read from the
 * page cache or one disk read; a slow or hung mount would stall the thread
 * pool's four threads, and every file behind them, just as well.
 */
function readWhole(fd: number, sizeHint: number): Buffer {
  const chunks: Buffer[] = []
  let total = 0
  for (;;) {
    // One byte over the hint: a file that has not grown is read in one call, and the next finds its end.
    const buffer = Buffer.allocUnsafe(chunks.length === 0 ? sizeHint + 1 : 64 * 1024)
    const bytesRead = fs.readSync(fd, buffer, 0, buffer.length, null)
    if (bytesRead === 0) break
    chunks.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead))
    total += bytesRead
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total)
}

/** How many files the listing stats between two turns of the event loop (a watcher's heartbeats go on while it lists). */
const STAT_TURN = 1024

/** A file's stat, following links (synchronously: see readWhole); undefined when it is gone, unreadable or not a file. */
function statFile(absPath: string): fs.Stats | undefined {
  try {
    const stats = fs.statSync(absPath, { throwIfNoEntry: false })
    return stats?.isFile() ? stats : undefined
  } catch {
    return undefined
  }
}

/** `fs.openSync` with a file that is gone said as FILE_GONE. */
function openGone(absPath: string, file: string): number {
  try {
    return fs.openSync(absPath, 'r')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw fileGone(file, 'removed or renamed since it was listed')
    throw error
  }
}

/**
 * The built-in source: a directory on local disk (`source: 'incoming'` or
 * `{ dir, include, exclude, readyMarker, followSymlinks }`). Lists with
 * fast-glob, watches with chokidar, and never reads through a symbolic link
 * out of its directory unless told to (links.ts).
 */
export function localSource(options: LocalSourceOptions): Source {
  const { dir, root, readyMarker } = options
  const matches = sourceMatcher(options)
  const inside = boundary(dir, options.followSymlinks)
  const absOf = (file: string) => path.resolve(root, file)
  // path.relative for every listed file was a tenth of a no-op rerun's own work; a file under `dir` only needs dir's.
  const under = `${dir}${path.sep}`
  const dirPath = toRelative(root, dir)
  const pathOf = (absPath: string) => (absPath.startsWith(under) && path.sep === '/' ? `${dirPath === '' ? '' : `${dirPath}/`}${absPath.slice(under.length)}` : toRelative(root, absPath))
  const entryOf = (absPath: string, stats: fs.Stats): SourceEntry => ({
    path: pathOf(absPath),
    size: stats.size,
    version: versionOf(stats),
    modifiedAt: stats.mtimeMs,
  })
  const ready = (absPath: string) => readyMarker === undefined || fs.existsSync(absPath + readyMarker)
  const flat = options.include.every((pattern) => !pattern.includes('/') && !pattern.includes('**') && !pattern.startsWith('!'))
  const globbed = async (readdir: typeof fs.readdir) => {
    // fast-glob loads here, not at the top: commands that only print paths (`history`) import this module too.
    const { default: fg } = await import('fast-glob')
    return fg([...options.include], {
      cwd: dir,
      ignore: excludePatterns(options),
      dot: false,
      onlyFiles: true,
      absolute: true,
      followSymbolicLinks: true,
      fs: { readdir },
      suppressErrors: true,
      unique: true,
    })
  }
  /** Whether an absolute path is one this source lists (a watcher hears of every path under the directory). */
  const wanted = (absPath: string) => {
    const relative = path.relative(dir, absPath)
    return !relative.startsWith('..') && !path.isAbsolute(relative) && matches(relative.split(path.sep).join('/'))
  }

  return {
    name: 'local',
    describe: () => toRelative(root, dir) || '.',

    async *list({ warn }: ListOptions) {
      if (!fs.existsSync(dir)) {
        warn(`source directory ${toRelative(root, dir) || '.'} does not exist; nothing to load from it`)
        return
      }
      const guarded = guardedReaddir(dir, await inside(), root, wanted, warn)
      // Patterns that only name files in the directory itself (`*.csv`, `*.{csv,tsv}`): one read of the directory,
      // each name matched as every source matches (sourceMatcher). Over 5,000 files fast-glob took 0.10 s more,
      // cold, for the same names. Anything deeper is fast-glob's, which reads only the directories a pattern can reach.
      const found = flat
        ? (await guarded.list(dir)).filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && matches(entry.name)).map((entry) => path.join(dir, entry.name))
        : await globbed(guarded.readdir)
      // Names only: fast-glob's own stat of every file is a promise each (see readWhole), which made listing 5,000
      // files take 0.30 s against 0.17 s with a synchronous stat here; the event loop turns every STAT_TURN files.
      const entries: SourceEntry[] = []
      for (let index = 0; index < found.length; index++) {
        if (index > 0 && index % STAT_TURN === 0) await new Promise((resolve) => setImmediate(resolve))
        const absPath = found[index]
        // Gone or replaced by a directory since the walk saw it: not listed, as fast-glob dropped what it could not stat.
        const stats = statFile(absPath)
        if (stats !== undefined && ready(absPath)) entries.push(entryOf(absPath, stats))
      }
      yield* entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    },

    // Synchronous, as readWhole says why: a stat is asked twice of every file a run loads.
    async stat(file) {
      const absPath = absOf(file)
      const stats = statFile(absPath)
      return stats === undefined ? undefined : entryOf(absPath, stats)
    },

    async read(entry): Promise<Readable> {
      const absPath = absOf(entry.path)
      const limit = await inside()
      if (entry.size <= SMALL) {
        const fd = openGone(absPath, entry.path)
        try {
          if (limit !== undefined) await confirmInside(limit, fd, absPath, entry.path)
          return Readable.from([readWhole(fd, entry.size)], { objectMode: false })
        } finally {
          fs.closeSync(fd)
        }
      }
      const handle = await open(absPath, 'r').catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') throw fileGone(entry.path, 'removed or renamed since it was listed')
        throw error
      })
      try {
        if (limit !== undefined) await confirmInside(limit, handle.fd, absPath, entry.path)
      } catch (error) {
        await handle.close()
        throw error
      }
      return handle.createReadStream({ highWaterMark: readSize(entry.size) })
    },

    localPath: (file) => absOf(file),

    async healthcheck() {
      const where = `source directory ${toRelative(root, dir) || '.'}`
      const found = await stat(dir).catch((error: NodeJS.ErrnoException) => {
        throw new FiledgeError('PLUGIN_ERROR', error.code === 'ENOENT' ? `${where} does not exist` : `${where}: ${error.message}`)
      })
      if (!found.isDirectory()) throw new FiledgeError('PLUGIN_ERROR', `${where} is not a directory`)
      await access(dir, fsConstants.R_OK | fsConstants.X_OK).catch(() => {
        throw new FiledgeError('PLUGIN_ERROR', `${where} is not readable by this user`)
      })
    },

    async watch({ signal, settleMs, onEntry, warn }: WatchOptions): Promise<Watching> {
      const { watch } = await import('chokidar')
      const outside = new Set<string>()
      const report = async (absPath: string) => {
        if (!ready(absPath)) return
        // chokidar follows every link; the link rule is applied here, as the listing applies it.
        const limit = await inside()
        if (limit !== undefined && !(await resolvesInside(limit, absPath))) {
          if (!outside.has(absPath)) warn(linkedOutside(toRelative(root, absPath)))
          outside.add(absPath)
          return
        }
        outside.delete(absPath)
        const stats = await stat(absPath).catch(() => undefined)
        if (stats?.isFile() && !signal.aborted) onEntry(entryOf(absPath, stats))
      }
      const watcher = watch(dir, {
        ignoreInitial: true,
        awaitWriteFinish: { stabilityThreshold: settleMs, pollInterval: Math.max(10, Math.min(100, Math.floor(settleMs / 4))) },
        // Dot-directories and dotfiles are never data; not even descended into.
        ignored: (absPath: string) => absPath !== dir && toRelative(dir, absPath).split('/').some((part) => part.startsWith('.')),
      })
      const onPath = (absPath: string) => {
        const data = readyMarker !== undefined && absPath.endsWith(readyMarker) ? absPath.slice(0, -readyMarker.length) : absPath
        if (wanted(data)) void report(data)
      }
      watcher.on('add', onPath).on('change', onPath)
      watcher.on('error', (error) => warn(`watching ${toRelative(root, dir) || '.'}: ${(error as Error).message}`))
      await new Promise<void>((resolve) => watcher.once('ready', () => resolve()))
      return { close: () => watcher.close() }
    },

    async archive(entry, action: ArchiveAction) {
      const absPath = absOf(entry.path)
      const stats = await stat(absPath).catch(() => undefined)
      if (stats === undefined) return 'already gone'
      if (versionOf(stats) !== entry.version || stats.size !== entry.size) return 'left in place: the path holds a newer file now'
      const marker = readyMarker === undefined ? undefined : absPath + readyMarker
      if (action.kind === 'delete') {
        await unlink(absPath).catch(ignoreGone)
        if (marker !== undefined) await unlink(marker).catch(ignoreGone)
        return 'deleted'
      }
      const target = path.join(path.resolve(root, action.to), path.relative(dir, absPath))
      await mkdir(path.dirname(target), { recursive: true })
      await moveFile(absPath, target)
      if (marker !== undefined) await moveFile(marker, target + readyMarker).catch(ignoreGone)
      return `moved to ${toRelative(root, target)}`
    },
  }
}

function ignoreGone(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error
}

/** rename, or copy and unlink across filesystems (an archive on another mount). */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
    await copyFile(from, to)
    await unlink(from)
  }
}

/**
 * A `readdir` for fast-glob (and `list`, the same for the listing of one
 * directory by name) that cuts two kinds of symbolic links out of the walk
 * before fast-glob stats (follows) them.
 *
 * Links out of the source directory, unless the source follows all links
 * (`limit` undefined): see links.ts. Only entries that are links are
 * resolved (readdir's file types say which), one realpath each, so a folder of
 * plain files costs nothing more.
 *
 * Links back up the tree. Symbolic links are followed (a source may link in a
 * `current -> 2024-05-01` folder), but a link to an ancestor
 * (`incoming/loop -> .`) would otherwise make every file appear under
 * `loop/loop/loop/…` until the OS gives up at 40 levels, and two such links
 * multiply: the walk never ends and exhausts memory. Only true cycles are
 * cut: a second path to a directory that is not an ancestor is still walked,
 * and its files dedupe by hash like any other copy.
 */
function guardedReaddir(
  dir: string,
  limit: string | undefined,
  root: string,
  wanted: (absPath: string) => boolean,
  warn: (message: string) => void,
): { readonly readdir: typeof fs.readdir; list(folder: string): Promise<fs.Dirent[]> } {
  /** Whether the walk would have used the link: a name include picks, or a directory it would descend into. Others are cut without a word. */
  const wouldUse = async (link: string, name: string) =>
    !name.startsWith('.') && (wanted(link) || (await fs.promises.stat(link).then((stats) => stats.isDirectory(), () => false)))
  const ids = new Map<string, Promise<string | undefined>>()
  const idOf = (folder: string) => {
    let id = ids.get(folder)
    if (id === undefined) {
      id = fs.promises.stat(folder).then((stats) => `${stats.dev}:${stats.ino}`, () => undefined)
      ids.set(folder, id)
    }
    return id
  }
  const isLoop = async (folder: string): Promise<boolean> => {
    const own = await idOf(folder)
    if (own === undefined) return false
    for (let ancestor = path.dirname(folder); isInside(dir, ancestor); ancestor = path.dirname(ancestor)) {
      if ((await idOf(ancestor)) === own) return true
      if (ancestor === dir) break
    }
    return false
  }
  const list = async (folder: string): Promise<fs.Dirent[]> => {
    if (await isLoop(folder)) {
      warn(`${toRelative(root, folder)}: a symbolic link to one of its own parent directories; not followed (it would loop)`)
      return []
    }
    const entries = await fs.promises.readdir(folder, { withFileTypes: true })
    if (limit === undefined) return entries
    const kept = await Promise.all(
      entries.map(async (entry) => {
        if (!entry.isSymbolicLink()) return true
        const link = path.join(folder, entry.name)
        if (await resolvesInside(limit, link)) return true
        if (await wouldUse(link, entry.name)) warn(linkedOutside(toRelative(root, link)))
        return false
      }),
    )
    return entries.filter((_, index) => kept[index])
  }
  const readdir = (folder: string, ...rest: unknown[]) => {
    const callback = rest[rest.length - 1] as (error: NodeJS.ErrnoException | null, entries?: unknown[]) => void
    const withFileTypes = (rest[0] as { withFileTypes?: boolean } | undefined)?.withFileTypes === true
    list(folder).then(
      (entries) => callback(null, withFileTypes ? entries : entries.map((entry) => entry.name)),
      (error: NodeJS.ErrnoException) => callback(error),
    )
  }
  return { readdir: readdir as unknown as typeof fs.readdir, list }
}
