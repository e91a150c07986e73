import type { ResolvedPipeline } from '../config/types.js'
import type { FileRef } from '../destination.js'
import type { Plugin } from '../plugin.js'
import type { RowBatch } from '../rows.js'
import { cutOf, runStages, type Cut, type StageCache } from './run.js'

/** What a load decided by a cut hands its stages instead of the file's rows: they never read it. */
const NO_BATCHES: AsyncIterable<RowBatch> = { async *[Symbol.asyncIterator]() {} }

/**
 * Built in: a pipeline's stages run as its first transform. Pipelines
 * without stages get their rows back untouched, so their destinations may
 * still read files natively (DuckDB's read_csv).
 *
 * With stages declared `cache: true` and a cache plugin, the cut is found
 * when the file is loaded, before anything opens the file or replays its
 * parsed rows: when kept outputs cut every way from the parsed rows to the
 * last stage, the load answers with the stages' output read from them, and
 * the file's own rows are never read (a retry whose last stage was kept
 * used to check and open its parsed rows' entry, 70 MB for 1M rows, and let
 * it go unread).
 */
export function stagesPlugin(): Plugin {
  return {
    name: 'filedge:stages',
    apply({ hooks, config }) {
      if (!config.pipelines.some((pipeline) => pipeline.stages.length > 0)) return
      const cacheOf = (pipeline: ResolvedPipeline, file: FileRef): StageCache | undefined =>
        pipeline.stages.some((stage) => stage.cache) && (hooks.stageRows.taps.length > 0 || hooks.stageOutput.taps.length > 0)
          ? {
              find: async (stage, hash) => hooks.stageRows.promise({ pipeline, file, stage: stage.name, hash }),
              keep: (stage, hash, rows) => hooks.stageOutput.call(rows, { pipeline, file, stage: stage.name, hash }),
            }
          : undefined
      /** What each load asked of the cache, by file and pipeline, until the file's transform takes it: a cut, or none. */
      const decided = new WeakMap<FileRef, Map<ResolvedPipeline, { readonly cut: Cut | undefined }>>()

      hooks.load.tapPromise({ name: 'filedge:stages', stage: -200 }, async ({ pipeline, file, validating }) => {
        // `filedge validate` reads the file itself; a quarantine writes its sidecar as the file's records are coerced.
        if (pipeline.stages.length === 0 || validating === true || pipeline.quarantine !== undefined) return undefined
        const cache = cacheOf(pipeline, file)
        if (cache === undefined) return undefined
        const cut = await cutOf(pipeline, cache)
        let loads = decided.get(file)
        if (loads === undefined) decided.set(file, (loads = new Map()))
        loads.set(pipeline, { cut })
        if (cut === undefined) return undefined
        // The last stage's kept output is the table's rows as they are: handed on without a generator around it.
        return { replayed: cut.kept.get(pipeline.stages.at(-1)!.name) ?? runStages(NO_BATCHES, pipeline, file, cache, { cut }) }
      })

      hooks.transform.tapPromise({ name: 'filedge:stages', stage: -100 }, async (batches, { pipeline, file }) => {
        if (pipeline.stages.length === 0) return batches
        const loads = decided.get(file)
        const decision = loads?.get(pipeline)
        loads?.delete(pipeline)
        // Loaded from a cut: the batches are the stages' output already.
        if (decision?.cut !== undefined) return batches
        return runStages(batches, pipeline, file, cacheOf(pipeline, file), decision)
      })
    },
  }
}
