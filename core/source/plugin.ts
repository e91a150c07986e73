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
        let connecting: Promise<void> | undefined
        const connected = () => {
          connecting ??= Promise.resolve(source.connect?.({ config, logger, defaultInclude: owned[0].defaultInclude })).catch((error: unknown) => {
            connecting = undefined
            throw error
          })
          return connecting
        }
        /** Answers for this source's pipelines only, once it is connected. */
        const answer = <R, T>(call: (request: R) => T | Promise<T>) => async (request: R & { readonly pipeline: ResolvedPipeline }) => {
          if (!ours(request)) return undefined
          await connected()
          return call(request)
        }
        hooks.list.tapPromise(name, answer((request) => source.list(request)))
        if (source.watch !== undefined) {
          const watch = source.watch.bind(source)
          hooks.watch.tapPromise(name, answer(watch))
        }
        if (source.stat !== undefined) {
          const stat = source.stat.bind(source)
          hooks.stat.tapPromise(name, answer(async (request) => (await stat(request.path)) ?? null))
        }
        hooks.read.tapPromise(name, answer((request) => source.read(request.entry, request)))
        if (source.localPath !== undefined) {
          const localPath = source.localPath.bind(source)
          hooks.locate.tapPromise(name, answer((request) => localPath(request.path)))
        }
        if (source.archive !== undefined) {
          const archive = source.archive.bind(source)
          hooks.archive.tapPromise(name, answer((request) => archive(request.entry, request.action)))
        }
        hooks.close.tapPromise(name, async () => {
          if (connecting !== undefined) await source.close?.()
        })
      },
    } satisfies Plugin
  })
}
