import type { ResolvedPipeline } from '../config/types.js'
import { explainChange, hashStage } from './hash.js'

/**
 * The code a pipeline's rows are produced under: each stage's hash (its
 * code, what it reaches in its module, its declared inputs and columns, its
 * parent's hash), and the pipeline's code, the last stage's hash, which
 * chains them all. The ledger records the code of every load; a committed
 * file whose code is not the pipeline's current one is stale.
 */

export interface StageVersion {
  readonly name: string
  readonly hash: string
  /** What went into the hash, part by part, so a change can be named. */
  readonly components: Readonly<Record<string, string>>
}

export interface PipelineCode {
  readonly code: string
  readonly stages: readonly StageVersion[]
}

const computed = new WeakMap<ResolvedPipeline, PipelineCode>()

/** The pipeline's code, or undefined for a pipeline without stages. Throws CONFIG_INVALID for an input that cannot be hashed. */
export function pipelineCode(pipeline: ResolvedPipeline): PipelineCode | undefined {
  if (pipeline.stages.length === 0) return undefined
  const known = computed.get(pipeline)
  if (known !== undefined) return known
  const stages: StageVersion[] = []
  for (const stage of pipeline.stages) {
    const parent = stages[stages.length - 1]
    const { hash, components } = hashStage({
      name: stage.name,
      run: stage.run,
      ...(stage.definedIn === undefined ? {} : { definedIn: stage.definedIn }),
      options: { from: stage.from, columns: stage.declared ? stage.columns.map(({ name, type, required, precision, scale }) => ({ name, type, required, precision, scale })) : null },
      inputs: stage.inputs,
      parents: parent === undefined ? [] : [parent.hash],
    })
    stages.push({ name: stage.name, hash, components })
  }
  const code: PipelineCode = { code: stages[stages.length - 1]!.hash, stages }
  computed.set(pipeline, code)
  return code
}

/**
 * Why a stage's output under `then` (a code the ledger recorded) is not what
 * it is now: the parts of its hash that changed, or of the first stage before
 * it that changed (a parent's change makes its descendants stale).
 */
export function whyStale(now: PipelineCode, then: readonly StageVersion[] | undefined, stage: string): string[] {
  const index = now.stages.findIndex((version) => version.name === stage)
  if (index < 0) return []
  if (then === undefined) return ['the files were loaded before the pipeline had these stages (or by a filedge that did not record them)']
  const lines: string[] = []
  for (let i = 0; i <= index; i++) {
    const current = now.stages[i]!
    const before = then.find((version) => version.name === current.name)
    if (before === undefined) {
      lines.push(`stage "${current.name}" is new`)
      continue
    }
    if (before.hash === current.hash) continue
    const own = explainChange(before.components, current.components).filter((line) => !line.startsWith('parent stage'))
    for (const line of own) lines.push(i === index ? line : `stage "${current.name}": ${line}`)
  }
  const removed = then.filter((version) => !now.stages.some((current) => current.name === version.name)).map((version) => `stage "${version.name}" was removed`)
  return [...lines, ...removed]
}

/** Committed files of pipelines with stages whose rows were produced under other code than the pipeline's now, by pipeline. */
export async function staleFiles(
  ledger: { committed(pipelines?: readonly string[]): Promise<readonly { readonly pipeline: string; readonly code: string | null; readonly hash: string; readonly path: string }[]> },
  pipelines: readonly ResolvedPipeline[],
): Promise<Map<string, { readonly pipeline: string; readonly code: string | null; readonly hash: string; readonly path: string }[]>> {
  const staged = pipelines.filter((pipeline) => pipeline.stages.length > 0)
  const stale = new Map(staged.map((pipeline) => [pipeline.name, [] as { pipeline: string; code: string | null; hash: string; path: string }[]]))
  if (staged.length === 0) return stale
  const current = new Map(staged.map((pipeline) => [pipeline.name, pipelineCode(pipeline)!.code]))
  // A truncate table holds its latest file alone: only that file's rows can be stale (reloading older snapshots would replace it).
  const latestOnly = new Set(staged.filter((pipeline) => pipeline.writeMode.kind === 'truncate').map((pipeline) => pipeline.name))
  const latest = new Map<string, { readonly pipeline: string; readonly code: string | null; readonly hash: string; readonly path: string }>()
  // Oldest commit first: the last one seen for a pipeline is its latest.
  for (const file of await ledger.committed(staged.map((pipeline) => pipeline.name))) {
    if (latestOnly.has(file.pipeline)) latest.set(file.pipeline, file)
    else if (file.code !== current.get(file.pipeline)) stale.get(file.pipeline)!.push(file)
  }
  for (const [pipeline, file] of latest) if (file.code !== current.get(pipeline)) stale.get(pipeline)!.push(file)
  return stale
}
