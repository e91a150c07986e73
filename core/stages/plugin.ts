import type { Plugin } from '../plugin.js'
import { runStages, type StageCache } from './run.js'

/**
 * Built in: a pipeline's stages run as its first transform. Pipelines
 * without stages get their rows back untouched, so their destinations may
 * still read files natively (DuckDB's read_csv).
 */
export function stagesPlugin(): Plugin {
  return {
    name: 'filedge:stages',
    apply({ hooks, config }) {
      if (!config.pipelines.some((pipeline) => pipeline.stages.length > 0)) return
      hooks.transform.tapPromise({ name: 'filedge:stages', stage: -100 }, async (batches, { pipeline, file }) => {
        if (pipeline.stages.length === 0) return batches
        const cached = pipeline.stages.some((stage) => stage.cache) && (hooks.stageRows.taps.length > 0 || hooks.stageOutput.taps.length > 0)
        const cache: StageCache | undefined = cached
          ? {
              find: async (stage, hash) => hooks.stageRows.promise({ pipeline, file, stage: stage.name, hash }),
              keep: (stage, hash, rows) => hooks.stageOutput.call(rows, { pipeline, file, stage: stage.name, hash }),
            }
          : undefined
        return runStages(batches, pipeline, file, cache)
      })
    },
  }
}
