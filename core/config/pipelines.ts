import { usageError } from '../errors.js'
import type { ResolvedConfig, ResolvedPipeline } from './types.js'

/** The pipelines `--pipeline` names (all of them when it names none); a name the config lacks is a usage error. */
export function selectPipelines(config: ResolvedConfig, wanted: readonly string[] | undefined): readonly ResolvedPipeline[] {
  if (wanted === undefined) return config.pipelines
  const unknown = wanted.filter((name) => !config.pipelines.some((pipeline) => pipeline.name === name))
  if (unknown.length > 0) throw usageError(`unknown pipeline ${unknown.map((name) => `"${name}"`).join(', ')}; the config has ${config.pipelines.map((pipeline) => `"${pipeline.name}"`).join(', ')}`)
  return config.pipelines.filter((pipeline) => wanted.includes(pipeline.name))
}
