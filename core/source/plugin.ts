import type { ResolvedPipeline } from '../config/types.js'
import type { Plugin } from '../plugin.js'
import type { Source } from '../source.js'

/**
 * Each pipeline's source object becomes a plugin, the way destinations do:
 * it connects before the run and answers the source hooks for its
 * pipelines. One source object shared by two pipelines connects once. A
 * third party replaces a source by tapping the same hooks at `pre`.
 */
export function sourcePlugins(pipelines: readonly ResolvedPipeline[]): Plugin[] {
  const owners = new Map<Source, ResolvedPipeline[]>()
  for (const pipeline of pipelines) {
    const list = owners.get(pipeline.source) ?? []
    list.push(pipeline)
    owners.set(pipeline.source, list)
  }
  const names = new Map<string, number>()
  return [...owners].map(([source, owned]) => {
    const seen = names.get(source.name) ?? 0
    names.set(source.name, seen + 1)
    const name = `source:${seen === 0 ? source.name : `${source.name}#${seen + 1}`}`
    const mine = new Set(owned.map((pipeline) => pipeline.name))
    const ours = (request: { readonly pipeline: ResolvedPipeline }) => mine.has(request.pipeline.name)
    return {
      name,
      apply({ hooks, config, logger }) {
        /*
         * `connect` fails its own pipelines, not the run. It used to throw from
         * beforeRun, which aborted the whole run: one S3 server down (or wrong
         * credentials) and no other pipeline of the config loaded a file, though
         * `run` promises that a source that cannot list fails its pipeline alone.
         * The failure is now thrown by this source's listings (reported per
         * pipeline, counted in `sourceErrors`), and a listing after a failed
         * connect connects again: a watcher's next poll recovers once the store
         * is back.
         */
        let connecting: Promise<void> | undefined
        const connect = () => (connecting ??= (async () => source.connect?.({ config, logger, defaultInclude: owned[0].defaultInclude }))())
        /** Connected, or this source's listing fails: with the error of the failed connect once, then connecting again. */
        const connected = async (): Promise<void> => {
          const attempt = connect()
          try {
            await attempt
          } catch (error) {
            if (connecting === attempt) connecting = undefined
            throw error
          }
        }
        hooks.beforeRun.tapPromise(name, async () => {
          // Connected before anything lists; a failure is kept for the listing to report.
          await connect().catch(() => undefined)
        })
        hooks.list.tapPromise(name, async (request) => {
          if (!ours(request)) return undefined
          await connected()
          return source.list(request)
        })
        if (source.watch !== undefined) {
          const watch = source.watch.bind(source)
          hooks.watch.tapPromise(name, async (request) => {
            if (!ours(request)) return undefined
            await connected()
            return watch(request)
          })
        }
        if (source.stat !== undefined) {
          const stat = source.stat.bind(source)
          hooks.stat.tapPromise(name, async (request) => (ours(request) ? ((await stat(request.path)) ?? null) : undefined))
        }
        hooks.read.tapPromise(name, async (request) => (ours(request) ? source.read(request.entry, request) : undefined))
        if (source.localPath !== undefined) {
          const localPath = source.localPath.bind(source)
          hooks.locate.tapPromise(name, async (request) => (ours(request) ? localPath(request.path) : undefined))
        }
        if (source.archive !== undefined) {
          const archive = source.archive.bind(source)
          hooks.archive.tapPromise(name, async (request) => (ours(request) ? archive(request.entry, request.action) : undefined))
        }
        hooks.close.tapPromise(name, async () => {
          await source.close?.()
        })
      },
    } satisfies Plugin
  })
}
