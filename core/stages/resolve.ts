import type { ColumnInput, ResolvedColumn, ResolvedStage } from '../config/types.js'
import { PROVENANCE_COLUMNS } from '../rows.js'
import type { Stage } from './stage.js'

/**
 * A pipeline's stages as they run. Each stage reads one other (`from`, by
 * default the one before it; the first reads the parsed rows), so the stages
 * that feed the table form one chain from the parsed rows to the last stage:
 * a stage nobody reads besides the last, or a `from` that loops, is refused
 * with the stages named. The table's columns are the last stage's.
 */
export function resolveStages(
  stages: readonly Stage[],
  parsed: readonly ResolvedColumn[],
  writeMode: string,
  at: string,
  problems: string[],
  toColumn: (name: string, input: ColumnInput) => ResolvedColumn,
): { stages: ResolvedStage[]; tableColumns: readonly ResolvedColumn[] } {
  if (stages.length === 0) return { stages: [], tableColumns: parsed }
  if (writeMode === 'cdc') {
    problems.push(`${at}.stages: a cdc pipeline cannot have stages yet (its change records are applied by key, op and sequence as they are parsed); transform the file before it lands, or load it in append mode`)
    return { stages: [], tableColumns: parsed }
  }
  const before = problems.length
  const index = new Map<string, number>()
  stages.forEach((stage, position) => {
    if (index.has(stage.name)) problems.push(`${at}.stages[${position}].name: "${stage.name}" is used by another stage of this pipeline`)
    else index.set(stage.name, position)
  })
  const parent = stages.map((stage, position): number | null => {
    if (stage.from === undefined) return position === 0 ? null : position - 1
    const found = index.get(stage.from)
    if (found === undefined) {
      problems.push(`${at}.stages[${position}].from: no stage is named "${stage.from}" (stages: ${[...index.keys()].join(', ')})`)
      return null
    }
    return found
  })
  if (problems.length > before) return { stages: [], tableColumns: parsed }

  // A `from` that leads back to a stage already on the way is a cycle, named in the order rows would flow.
  for (let start = 0; start < stages.length; start++) {
    const way = [start]
    for (let current = parent[start] ?? null; current !== null; current = parent[current] ?? null) {
      const again = way.indexOf(current)
      if (again >= 0) {
        const names = way.slice(again).reverse().map((position) => stages[position]!.name)
        problems.push(`${at}.stages: the stages form a cycle: ${[...names, names[0]].join(' → ')}`)
        return { stages: [], tableColumns: parsed }
      }
      way.push(current)
    }
  }
  const read = new Set(parent.filter((position): position is number => position !== null))
  const sinks = stages.map((_, position) => position).filter((position) => !read.has(position))
  if (sinks.length !== 1) {
    problems.push(`${at}.stages: the table is fed by one last stage, but ${sinks.map((position) => `"${stages[position]!.name}"`).join(' and ')} are each read by no other stage; set \`from\` so that one reads the other`)
    return { stages: [], tableColumns: parsed }
  }
  const chain: number[] = []
  for (let position: number | null = sinks[0]!; position !== null; position = parent[position] ?? null) chain.unshift(position)
  const off = stages.map((_, position) => position).filter((position) => !chain.includes(position))
  if (off.length > 0) {
    problems.push(`${at}.stages: ${off.map((position) => `"${stages[position]!.name}"`).join(', ')} ${off.length === 1 ? 'is' : 'are'} not on the way to the table (the last stage is "${stages[sinks[0]!]!.name}")`)
    return { stages: [], tableColumns: parsed }
  }

  let columns = parsed
  const resolved: ResolvedStage[] = []
  for (const position of chain) {
    const stage = stages[position]!
    const stageAt = `${at}.stages[${position}]`
    const declared = stage.columns !== undefined
    if (declared) {
      columns = Object.entries(stage.columns!).map(([name, input]) => {
        const column = toColumn(name, input)
        if (typeof input === 'object' && input.source !== undefined) problems.push(`${stageAt}.columns.${name}.source: a stage names the columns it returns; rename a column in run`)
        if (PROVENANCE_COLUMNS.some((provenance) => provenance.name === name)) problems.push(`${stageAt}.columns.${name}: "${name}" is a provenance column filedge adds itself; rename it`)
        return Object.freeze({ ...column, source: name })
      })
    }
    resolved.push(
      Object.freeze({
        name: stage.name,
        from: parent[position] === null ? null : stages[parent[position]!]!.name,
        columns: Object.freeze(columns),
        declared,
        run: stage.run,
        inputs: Object.freeze({ ...(stage.inputs ?? {}) }),
        cache: stage.cache === true,
        ...(stage.definedIn === undefined ? {} : { definedIn: stage.definedIn }),
      }),
    )
  }
  return { stages: resolved, tableColumns: columns }
}
