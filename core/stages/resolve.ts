import type { ColumnInput, ResolvedColumn, ResolvedStage } from '../config/types.js'
import { PROVENANCE_COLUMNS } from '../rows.js'
import { PARSED, type Stage } from './stage.js'

/**
 * A pipeline's stages as they run. Each stage reads one or more others
 * (`from`: a name, or an array of names; `'parsed'` is the file's parsed
 * rows; by default the stage before it, and the first reads the parsed
 * rows), so the stages form a graph from the parsed rows to the table. Two
 * stages may read the same one (a branch) when a later stage reads both
 * (the branches rejoin): exactly one stage, the last, is read by no other,
 * and it feeds the table, so every stage is on the way to it. A `from` that
 * loops, names no stage, or leaves a stage read by nobody besides the last is
 * refused with the stages named. The table's columns are the last stage's.
 *
 * The stages come out in an order they can run in: each after the stages
 * it reads, otherwise in the order listed (a chain comes out as listed).
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
    if (stage.name === PARSED) problems.push(`${at}.stages[${position}].name: "${PARSED}" names the file's parsed rows (\`from: '${PARSED}'\`); name the stage otherwise`)
    else if (index.has(stage.name)) problems.push(`${at}.stages[${position}].name: "${stage.name}" is used by another stage of this pipeline`)
    else index.set(stage.name, position)
  })
  const parents = stages.map((stage, position): readonly string[] => {
    const from = stage.from === undefined ? [position === 0 ? PARSED : stages[position - 1]!.name] : typeof stage.from === 'string' ? [stage.from] : stage.from
    const seen = new Set<string>()
    for (const name of from) {
      if (seen.has(name)) problems.push(`${at}.stages[${position}].from: "${name}" is named twice`)
      seen.add(name)
      if (name !== PARSED && !index.has(name)) {
        problems.push(`${at}.stages[${position}].from: no stage is named "${name}" (stages: ${[...index.keys()].join(', ')}); "${PARSED}" reads the file's parsed rows`)
      }
    }
    return from
  })
  if (problems.length > before) return { stages: [], tableColumns: parsed }
  // Positions of the stages each one reads (the parsed rows are none).
  const read = parents.map((names) => names.filter((name) => name !== PARSED).map((name) => index.get(name)!))

  const cycle = findCycle(read)
  if (cycle !== undefined) {
    const names = cycle.map((position) => stages[position]!.name)
    problems.push(`${at}.stages: the stages form a cycle: ${[...names, names[0]].join(' → ')}`)
    return { stages: [], tableColumns: parsed }
  }
  // Without a cycle, following the stages that read a stage always ends at one read by no other: with exactly one such
  // stage, every stage is on the way to it. With several, the stages that lead only to the others are off the way.
  const isRead = new Set(read.flat())
  const sinks = stages.map((_, position) => position).filter((position) => !isRead.has(position))
  if (sinks.length !== 1) {
    const names = sinks.map((position) => `"${stages[position]!.name}"`)
    problems.push(
      `${at}.stages: the table is fed by one last stage, but ${names.slice(0, -1).join(', ')} and ${names.at(-1)} are each read by no other stage; join them in a stage that reads them all (\`from: [${sinks.map((position) => `'${stages[position]!.name}'`).join(', ')}]\`), or set \`from\` so that one reads the other`,
    )
    return { stages: [], tableColumns: parsed }
  }

  const columnsOf = new Map<string, readonly ResolvedColumn[]>([[PARSED, parsed]])
  const resolved: ResolvedStage[] = []
  for (const position of runOrder(read)) {
    const stage = stages[position]!
    const stageAt = `${at}.stages[${position}]`
    const from = parents[position]!
    const declared = stage.columns !== undefined
    let columns: readonly ResolvedColumn[]
    if (declared) {
      columns = Object.entries(stage.columns!).map(([name, input]) => {
        const column = toColumn(name, input)
        if (typeof input === 'object' && input.source !== undefined) problems.push(`${stageAt}.columns.${name}.source: a stage names the columns it returns; rename a column in run`)
        if (typeof input === 'object' && (input.encrypt !== undefined || input.hash !== undefined)) {
          problems.push(`${stageAt}.columns.${name}.${input.encrypt !== undefined ? 'encrypt' : 'hash'}: protect the column in the pipeline's columns; stages already receive it encrypted or hashed`)
        }
        if (PROVENANCE_COLUMNS.some((provenance) => provenance.name === name)) problems.push(`${stageAt}.columns.${name}: "${name}" is a provenance column filedge adds itself; rename it`)
        return Object.freeze({ ...column, source: name })
      })
    } else {
      const received = from.map((name) => columnsOf.get(name)!)
      columns = received[0]!
      const differ = received.some((list) => signature(list, true) !== signature(columns, true))
      if (differ) {
        // Named by column when the names differ, by column and type when only the types do.
        const typed = received.every((list) => signature(list, false) === signature(columns, false))
        const described = from.map((name, i) => `${name}: ${received[i]!.map((column) => (typed ? `${column.name} ${column.type}${column.required ? ' required' : ''}` : column.name)).join(', ')}`)
        problems.push(`${stageAt}.columns: stage "${stage.name}" reads stages whose columns differ (${described.join('; ')}); declare the columns it returns`)
      }
    }
    columnsOf.set(stage.name, columns)
    resolved.push(
      Object.freeze({
        name: stage.name,
        from: Object.freeze([...from]),
        keyed: Array.isArray(stage.from),
        columns: Object.freeze(columns),
        declared,
        // The shape of `from` says which of its two forms run takes; `keyed` tells the runner.
        run: stage.run as ResolvedStage['run'],
        inputs: Object.freeze({ ...(stage.inputs ?? {}) }),
        cache: stage.cache === true,
        ...(stage.definedIn === undefined ? {} : { definedIn: stage.definedIn }),
      }),
    )
  }
  return { stages: resolved, tableColumns: resolved.at(-1)!.columns }
}

/**
 * A cycle among the stages (`read[i]`: the positions stage i reads), in the
 * order rows would flow, or undefined. Walked from the first stage listed,
 * through each stage's parents in `from` order.
 */
function findCycle(read: readonly (readonly number[])[]): number[] | undefined {
  const done = new Set<number>()
  const way: number[] = []
  const visit = (position: number): number[] | undefined => {
    if (done.has(position)) return undefined
    const again = way.indexOf(position)
    // The way runs from a reader to what it reads: reversed, it is the flow.
    if (again >= 0) return way.slice(again).reverse()
    way.push(position)
    for (const parent of read[position]!) {
      const cycle = visit(parent)
      if (cycle !== undefined) return cycle
    }
    way.pop()
    done.add(position)
    return undefined
  }
  for (let position = 0; position < read.length; position++) {
    const cycle = visit(position)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

/** The positions in an order they can run in: each after the ones it reads, otherwise the first listed first. */
function runOrder(read: readonly (readonly number[])[]): number[] {
  const order: number[] = []
  const placed = new Set<number>()
  while (order.length < read.length) {
    const next = read.findIndex((parents, position) => !placed.has(position) && parents.every((parent) => placed.has(parent)))
    order.push(next)
    placed.add(next)
  }
  return order
}

/** A column list as a comparable string, ignoring order: names, or names and types. */
function signature(columns: readonly ResolvedColumn[], typed: boolean): string {
  return JSON.stringify(
    columns
      .map((column) => (typed ? [column.name, column.type, column.required, column.precision ?? null, column.scale ?? null] : [column.name]))
      .sort((a, b) => (String(a[0]) < String(b[0]) ? -1 : 1)),
  )
}

/**
 * `from` as the stage was declared: one name (null for the parsed rows) for
 * a stage reading one parent by name or by default, the array for one
 * declared with an array. Its hash and `--json` output read it so: a chain's
 * did not change when stages could read several.
 */
export function declaredFrom(stage: ResolvedStage): string | null | readonly string[] {
  if (stage.keyed) return stage.from
  return stage.from[0] === PARSED ? null : stage.from[0]!
}

/** What a stage reads, for a human: `the parsed rows`, `clean`, `clean and the parsed rows`. */
export function describeFrom(from: readonly string[]): string {
  const names = from.map((name) => (name === PARSED ? 'the parsed rows' : name))
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`
}
