import type { ResolvedPipeline } from '../config/types.js'
import type { LedgerStore } from '../ledger/types.js'
import { servedBy, type Plugin } from '../plugin.js'

/**
 * Each pipeline's source object becomes a plugin, the way destinations are:
 * it answers the source hooks for its pipelines. One source object shared by
 * two pipelines connects once. A third party replaces a source by tapping
 * the same hooks at `pre`.
 *
 * A source starts connecting when the run starts but is not waited for
 * there: a bucket that does not exist or a server that refuses the
 * credentials fails its own pipelines' listing, and the other pipelines
 * run. A failed connect is tried again on the next use (a watcher's next
 * poll).
 */
export function sourcePlugins(pipelines: readonly ResolvedPipeline[], ledger: LedgerStore): Plugin[] {
  return servedBy(pipelines, (pipeline) => pipeline.source).map(({ server: source, pipelines: owned, name: own }) => {
    const name = `source:${own}`
    const mine = new Set(owned.map((pipeline) => pipeline.name))
    const ours = (request: { readonly pipeline: ResolvedPipeline }) => mine.has(request.pipeline.name)
    return {
      name,
      apply({ hooks, config, logger, worker }) {
        let connecting: Promise<void> | undefined
        const context = { config, logger, defaultInclude: owned[0].defaultInclude, pipelines: owned.map((pipeline) => pipeline.name), ledger, worker }
        const connect = () => (connecting ??= Promise.resolve().then(() => source.connect?.(context)))
        /** Connected, or the error of the connect that failed (once: the next use connects again). */
        const connected = async () => {
          const attempt = connect()
          try {
            await attempt
          } catch (error) {
            if (connecting === attempt) connecting = undefined
            throw error
          }
        }
        // Started early, while the destinations prepare (loading an SDK and a TLS handshake take a while), never awaited:
        // whether it failed is the first use's to say.
        hooks.beforeRun.tap(name, () => void connect().catch(() => undefined))
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
