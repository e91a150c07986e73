import fs from 'node:fs'
import path from 'node:path'
import picomatch from 'picomatch'
import type { ResolvedPipeline } from '../config/types.js'
import type { FileCandidate } from '../hooks.js'
import { boundaryOf, linkedOutside, resolvesInside } from './links.js'

/**
 * Names that are never data: files a producer is still writing under a
 * temporary name. Dotfiles and dot-directories are skipped too (fast-glob's
 * `dot: false`). A pipeline adds its own with `source.exclude`.
 */
export const DEFAULT_EXCLUDES = ['**/*.tmp', '**/*.part', '**/*.partial', '**/*.crdownload', '**/*.filepart', '**/*.swp']

/** The default excludes, the pipeline's own, and its ready markers (a marker is never data). */
function excludes(pipeline: ResolvedPipeline): string[] {
  const marker = pipeline.readyMarker?.replace(/[*?[\]{}()!@+|]/g, '\\$&')
  return [...DEFAULT_EXCLUDES, ...pipeline.exclude, ...(marker === undefined ? [] : [`**/*${marker}`])]
}

export function toRelative(root: string, absPath: string): string {
  return path.relative(root, absPath).split(path.sep).join('/')
}

/**
 * A `readdir` for fast-glob that cuts two kinds of symbolic links out of the
 * walk before fast-glob stats (follows) them.
 *
 * Links out of the source directory, unless the pipeline follows all links
 * (`boundary` undefined): see links.ts. Only entries that are links are
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
function guardedReaddir(pipeline: ResolvedPipeline, boundary: string | undefined, root: string, warn: (message: string) => void): typeof fs.readdir {
  const { sourceDir } = pipeline
  const matches = sourceMatcher(pipeline)
  /** Whether the walk would have used the link: a name include picks, or a directory it would descend into. Others are cut without a word. */
  const wouldUse = async (link: string, name: string) =>
    !name.startsWith('.') && (matches(link) || (await fs.promises.stat(link).then((stats) => stats.isDirectory(), () => false)))
  const ids = new Map<string, Promise<string | undefined>>()
  const idOf = (dir: string) => {
    let id = ids.get(dir)
    if (id === undefined) {
      id = fs.promises.stat(dir).then((stats) => `${stats.dev}:${stats.ino}`, () => undefined)
      ids.set(dir, id)
    }
    return id
  }
  const isLoop = async (dir: string): Promise<boolean> => {
    const own = await idOf(dir)
    if (own === undefined) return false
    for (let ancestor = path.dirname(dir); ancestor.startsWith(sourceDir); ancestor = path.dirname(ancestor)) {
      if ((await idOf(ancestor)) === own) return true
      if (ancestor === sourceDir) break
    }
    return false
  }
  const list = async (dir: string): Promise<fs.Dirent[]> => {
    if (await isLoop(dir)) {
      warn(`${toRelative(root, dir)}: a symbolic link to one of its own parent directories; not followed (it would loop)`)
      return []
    }
    const entries = await fs.promises.readdir(dir, { withFileTypes: true })
    if (boundary === undefined) return entries
    const kept = await Promise.all(
      entries.map(async (entry) => {
        if (!entry.isSymbolicLink()) return true
        const link = path.join(dir, entry.name)
        if (await resolvesInside(boundary, link)) return true
        if (await wouldUse(link, entry.name)) warn(linkedOutside(toRelative(root, link)))
        return false
      }),
    )
    return entries.filter((_, index) => kept[index])
  }
  const readdir = (dir: string, ...rest: unknown[]) => {
    const callback = rest[rest.length - 1] as (error: NodeJS.ErrnoException | null, entries?: unknown[]) => void
    const withFileTypes = (rest[0] as { withFileTypes?: boolean } | undefined)?.withFileTypes === true
    list(dir).then(
      (entries) => callback(null, withFileTypes ? entries : entries.map((entry) => entry.name)),
      (error: NodeJS.ErrnoException) => callback(error),
    )
  }
  return readdir as unknown as typeof fs.readdir
}

/**
 * Lists a pipeline's candidate files, sorted by path so runs are deterministic.
 * With `source.readyMarker`, a file is a candidate only once its marker exists
 * (`orders.csv.ok` next to `orders.csv`). `warn` hears about what discovery
 * chose not to walk (symbolic link loops, links out of the source directory).
 */
export async function discover(pipeline: ResolvedPipeline, root: string, warn: (message: string) => void = () => {}): Promise<FileCandidate[]> {
  if (!fs.existsSync(pipeline.sourceDir)) {
    warn(`pipeline "${pipeline.name}": source directory ${toRelative(root, pipeline.sourceDir) || '.'} does not exist`)
    return []
  }
  // fast-glob loads here, not at the top: commands that only print paths (`history`) import this module too.
  const [{ default: fg }, boundary] = await Promise.all([import('fast-glob'), boundaryOf(pipeline)])
  const entries = await fg([...pipeline.include], {
    cwd: pipeline.sourceDir,
    ignore: excludes(pipeline),
    dot: false,
    onlyFiles: true,
    absolute: true,
    stats: true,
    followSymbolicLinks: true,
    fs: { readdir: guardedReaddir(pipeline, boundary, root, warn) },
    suppressErrors: true,
    unique: true,
  })
  const marker = pipeline.readyMarker
  return entries
    .filter((entry) => marker === undefined || fs.existsSync(entry.path + marker))
    .map((entry) => ({
      pipeline,
      path: toRelative(root, entry.path),
      absPath: entry.path,
      size: entry.stats!.size,
      mtimeMs: entry.stats!.mtimeMs,
      ino: entry.stats!.ino,
      dev: entry.stats!.dev,
    }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/**
 * Whether a path (absolute) would be discovered by the pipeline: inside its
 * source directory, matched by `include`, not by the default or the
 * pipeline's excludes, and not a dotfile or inside a dot-directory. The same
 * rules as `discover`, for a watcher that hears about one path at a time.
 */
export function sourceMatcher(pipeline: ResolvedPipeline): (absPath: string) => boolean {
  const include = picomatch([...pipeline.include], { dot: false })
  const exclude = picomatch(excludes(pipeline), { dot: true })
  return (absPath) => {
    const relative = path.relative(pipeline.sourceDir, absPath)
    if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) return false
    const posix = relative.split(path.sep).join('/')
    return include(posix) && !exclude(posix)
  }
}
