import type { Plugin } from '../plugin.js'
import { runStages } from './run.js'

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
      hooks.transform.tapPromise({ name: 'filedge:stages', stage: -100 }, async (batches, { pipeline, file }) =>
        pipeline.stages.length === 0 ? batches : runStages(batches, pipeline, file),
      )
    },
  }
}
