import type { ResolvedPipeline, ResolvedStage } from '../config/types.js'
import { explainChange, hashStage } from './hash.js'
import { declaredFrom } from './resolve.js'
import { PARSED } from './stage.js'

/**
 * The code a pipeline's rows are produced under: each stage's hash (its
 * code, what it reaches in its module, its declared inputs and columns, the
 * hashes of the stages it reads), and the pipeline's code, the last stage's
 * hash, which covers them all. The ledger records the code of every load; a
 * committed file whose code is not the pipeline's current one is stale.
 */

export interface StageVersion {
  readonly name: string
  readonly hash: string
  /** The stages it reads, in `from` order (`'parsed'`: the parsed rows). Absent from what filedge recorded before stages could read several. */
  readonly from?: readonly string[]
  /** What went into the hash, part by part, so a change can be named. */
  readonly components: Readonly<Record<string, string>>
}

export interface PipelineCode {
  readonly code: string
  /** In the order the stages run: each after the stages it reads; the last feeds the table. */
  readonly stages: readonly StageVersion[]
}

const computed = new WeakMap<ResolvedPipeline, PipelineCode>()

/** The pipeline's code, or undefined for a pipeline without stages. Throws CONFIG_INVALID for an input that cannot be hashed. */
export function pipelineCode(pipeline: ResolvedPipeline): PipelineCode | undefined {
  if (pipeline.stages.length === 0) return undefined
  const known = computed.get(pipeline)
  if (known !== undefined) return known
  const hashes = new Map<string, string>()
  const stages: StageVersion[] = []
  // Resolved stages come each after the stages it reads: every parent's hash is known when its children are hashed.
  for (const stage of pipeline.stages) {
    const { hash, components } = hashStage({
      name: stage.name,
      run: stage.run,
      ...(stage.definedIn === undefined ? {} : { definedIn: stage.definedIn }),
      // `from` as declared: a chain's hashes did not move when stages could read several.
      options: { from: declaredFrom(stage), columns: stage.declared ? stage.columns.map(({ name, type, required, precision, scale }) => ({ name, type, required, precision, scale })) : null },
      inputs: stage.inputs,
      // The parsed rows have no hash (the file's is the cache key); `from`, in the options, says where they come in.
      parents: stage.from.filter((parent) => parent !== PARSED).map((parent) => hashes.get(parent)!),
    })
    hashes.set(stage.name, hash)
    stages.push({ name: stage.name, hash, from: stage.from, components })
  }
  const code: PipelineCode = { code: stages[stages.length - 1]!.hash, stages }
  computed.set(pipeline, code)
  return code
}

/** A stage and every stage it reads, directly or not, in the order they run. */
function lineage(code: PipelineCode, stage: string): StageVersion[] {
  const byName = new Map(code.stages.map((version) => [version.name, version]))
  const wanted = new Set<string>()
  const pending = [stage]
  while (pending.length > 0) {
    const name = pending.pop()!
    if (wanted.has(name) || !byName.has(name)) continue
    wanted.add(name)
    pending.push(...(byName.get(name)!.from ?? []))
  }
  return code.stages.filter((version) => wanted.has(version.name))
}

/**
 * Why a stage's output under `then` (a code the ledger recorded) is not what
 * it is now: the parts of its hash that changed, or of any stage it reads
 * from, directly or not (a parent's change makes its descendants stale).
 */
export function whyStale(now: PipelineCode, then: readonly StageVersion[] | undefined, stage: string): string[] {
  if (!now.stages.some((version) => version.name === stage)) return []
  if (then === undefined) return ['the files were loaded before the pipeline had these stages (or by a filedge that did not record them)']
  const lines: string[] = []
  for (const current of lineage(now, stage)) {
    const before = then.find((version) => version.name === current.name)
    if (before === undefined) {
      lines.push(`stage "${current.name}" is new`)
      continue
    }
    if (before.hash === current.hash) continue
    const own = explainChange(before.components, current.components).filter((line) => !line.startsWith('parent stage'))
    for (const line of own) lines.push(current.name === stage ? line : `stage "${current.name}": ${line}`)
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
