import fs from 'node:fs'
import path from 'node:path'
import picomatch from 'picomatch'
import type { ResolvedPipeline } from '../config/types.js'
import type { FileCandidate } from '../hooks.js'

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
 * A `readdir` for fast-glob that will not walk into a directory that is one of
 * its own ancestors. Symbolic links are followed (a source may link in a
 * partner's mount or a `current -> 2024-05-01` folder), but a link back up the
 * tree (`incoming/loop -> .`) would otherwise make every file appear under
 * `loop/loop/loop/…` until the OS gives up at 40 levels, and two such links
 * multiply: the walk never ends and exhausts memory. Only true cycles are
 * cut: a second path to a directory that is not an ancestor is still walked,
 * and its files dedupe by hash like any other copy.
 */
function loopSafeReaddir(sourceDir: string, onLoop: (dir: string) => void): typeof fs.readdir {
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
  const readdir = (dir: string, ...rest: unknown[]) => {
    const callback = rest[rest.length - 1] as (error: NodeJS.ErrnoException | null, entries: unknown[]) => void
    const list = () => (fs.readdir as (...args: unknown[]) => void)(dir, ...rest)
    isLoop(dir).then((loop) => {
      if (!loop) return list()
      onLoop(dir)
      callback(null, [])
    }, list)
  }
  return readdir as unknown as typeof fs.readdir
}

/**
 * Lists a pipeline's candidate files, sorted by path so runs are deterministic.
 * With `source.readyMarker`, a file is a candidate only once its marker exists
 * (`orders.csv.ok` next to `orders.csv`). `warn` hears about what discovery
 * chose not to walk (symbolic link loops).
 */
export async function discover(pipeline: ResolvedPipeline, root: string, warn: (message: string) => void = () => {}): Promise<FileCandidate[]> {
  if (!fs.existsSync(pipeline.sourceDir)) {
    warn(`pipeline "${pipeline.name}": source directory ${toRelative(root, pipeline.sourceDir) || '.'} does not exist`)
    return []
  }
  // fast-glob loads here, not at the top: commands that only print paths (`history`) import this module too.
  const { default: fg } = await import('fast-glob')
  const onLoop = (dir: string) => warn(`${toRelative(root, dir)}: a symbolic link to one of its own parent directories; not followed (it would loop)`)
  const entries = await fg([...pipeline.include], {
    cwd: pipeline.sourceDir,
    ignore: excludes(pipeline),
    dot: false,
    onlyFiles: true,
    absolute: true,
    stats: true,
    followSymbolicLinks: true,
    fs: { readdir: loopSafeReaddir(pipeline.sourceDir, onLoop) },
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
