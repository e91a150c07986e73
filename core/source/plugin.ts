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
        const connect = async () => source.connect?.({ config, logger, defaultInclude: owned[0].defaultInclude })
        /**
         * A source that cannot connect (its server down, a wrong password, a
         * host key that does not match) fails its own pipelines, not the run:
         * thrown from beforeRun it stopped every pipeline before any file
         * loaded, a local one next to it too. The error is kept and each of
         * its pipelines' first listing throws it (`listInto` reports it and
         * counts a source error); a later listing (a watcher's poll) connects
         * again first, so a server back up is picked up without a restart.
         */
        let unconnected: { readonly error: unknown; readonly reported: Set<string> } | undefined
        const connected = async (pipeline: string) => {
          if (unconnected === undefined) return
          if (!unconnected.reported.has(pipeline)) {
            unconnected.reported.add(pipeline)
            throw unconnected.error
          }
          await connect()
          unconnected = undefined
        }
        hooks.beforeRun.tapPromise(name, async () => {
          try {
            await connect()
            unconnected = undefined
          } catch (error) {
            unconnected = { error, reported: new Set() }
          }
        })
        hooks.list.tapPromise(name, async (request) => {
          if (!ours(request)) return undefined
          await connected(request.pipeline.name)
          return source.list(request)
        })
        if (source.watch !== undefined) {
          const watch = source.watch.bind(source)
          // Unconnected, the watch fails (the core polls instead) and the poll's listing connects again.
          hooks.watch.tapPromise(name, async (request) => {
            if (!ours(request)) return undefined
            if (unconnected !== undefined) throw unconnected.error
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
