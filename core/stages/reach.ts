import { createHash } from 'node:crypto'
import { basename, extname } from 'node:path'
import type { Token } from 'acorn'
import { acorn } from './acorn.js'
import { normalizeTree, PARSE_OPTIONS, POSITION_KEYS } from './normalize.js'

/**
 * What `run` can reach in the module that defined it: the top-level
 * declarations it reads, those they read in turn, and the imports among
 * them. Only these count for its stage, so an edit to one stage of a config
 * that defines many makes that stage stale, not its neighbours.
 *
 * Decisions:
 * - By name, not by value: the names `run` reads and does not bind itself
 *   are looked up among the module's top-level bindings (`const`/`let`/`var`
 *   with destructuring, `function`, `class`, imports, their `export`ed
 *   forms). A declaration counts as its whole statement, normalized. Inside
 *   a top-level declaration every name counts (a local that shadows a
 *   top-level name only reaches a little more); `run` itself is walked with
 *   its scopes, because a name it reads from anywhere else means it is not
 *   what it seems (below).
 * - A name `run` reads that is neither a top-level binding nor a global is
 *   a value this analysis cannot see: a closure made by a factory
 *   (`run: makeRun(RATE)` reads a parameter of makeRun), a function written
 *   in another module, or a helper a loader injected. The caller then counts
 *   the whole module, as before. So it does when that name is also bound
 *   inside some function of the module (`const take = (limit) => ({ run:
 *   (rows) => rows.slice(0, limit) })` beside a top-level `limit` or a
 *   global `limit`: which one `run` reads cannot be told), when `run` is
 *   named after a function the module does not declare (`run: lib.clean`),
 *   when it has no name (a function written as a stage's `run` is named
 *   `run`; one a factory returns is not), and when acorn cannot parse the
 *   module.
 * - Not seen: a `run` written in another module whose every name happens to
 *   be declared here too, handed over under the name `run` (`...lib.stage`,
 *   a factory there returning `{ run }`): it is hashed against this module's
 *   names. Handed over under its own name (`run: dedupe`), its module
 *   counts whole.
 * - jiti, which loads TypeScript configs, turns `import { clean } from
 *   './lib/clean.js'` into `var _clean = require(…)` and `clean(rows)` in
 *   `run` into `(0, _clean.clean)(rows)`: `run`'s text names `_clean`, which
 *   the source does not declare. Such a name (a `_`, the module's base name
 *   as an identifier, maybe a number) reaches every import of a module of
 *   that base name; one that matches none is not resolved (whole module).
 * - Top-level statements that are not declarations (`RULES.push(…)`,
 *   `globalThis.rate = …`) and side-effect imports (`import './setup.js'`)
 *   run when the module loads and may change what `run` reads: every stage
 *   counts them. Not seen: a top-level value changed while another
 *   declaration, or `export default`, is evaluated (`const n = fill(RULES)`).
 * - TypeScript: acorn parses JavaScript only. Before giving up on a module,
 *   the TypeScript that is only erased is blanked out: `import type …`,
 *   `type` import specifiers, `as const` and `satisfies Name<…>`. Anything
 *   else (annotations, interfaces, enums) leaves the module unparsed, and
 *   the whole of it counts. Decision: not jiti's transform of the module,
 *   which would parse all of it, but make its hashes change with jiti's
 *   output (its helpers, its `exports.x = x` lines) and follow every
 *   exported function into every stage.
 */

/** A syntax tree node, read loosely: the walks below visit every child without a table of node types. */
interface Node {
  readonly type: string
  readonly [key: string]: unknown
}

/** What some code reads: names it does not bind, and the modules it imports by a literal `import()` or `require()`. */
export interface References {
  readonly names: ReadonlySet<string>
  readonly specifiers: readonly string[]
  /** The names it binds in the scopes it makes (parameters, locals). */
  readonly bound: ReadonlySet<string>
}

export interface Declaration {
  /** sha256 of its normalized statements. */
  readonly hash: string
  readonly references: References
}

export interface TopLevel {
  /** Every top-level name, with the statement(s) that declare it; an import's `specifiers` name its module. */
  readonly bindings: ReadonlyMap<string, Declaration>
  /** Import bindings by the alias key of their module's base name (see aliasKey). */
  readonly aliases: ReadonlyMap<string, readonly string[]>
  /** The statements that are not declarations, and side-effect imports, as one; undefined when there are none. */
  readonly effects: Declaration | undefined
  /** Names bound anywhere below the top level: a parameter, a local. */
  readonly inner: ReadonlySet<string>
}

export type Reach =
  | { readonly bindings: ReadonlyMap<string, Declaration>; readonly effects: Declaration | undefined; readonly specifiers: readonly string[] }
  | { readonly whole: string }

/** The top-level bindings of a module's source, or undefined when acorn cannot parse it (even with its erasable TypeScript blanked out). */
export function readTopLevel(source: string): TopLevel | undefined {
  const program = parseModule(source) ?? parseModule(eraseTypes(source))
  if (program === undefined) return undefined
  const statements = program.body as Node[]
  const read = new Map(statements.map((statement) => [statement, referencesOf(statement)]))
  const declaring = new Map<string, Node[]>()
  const aliases = new Map<string, string[]>()
  const effects: Node[] = []
  for (const statement of statements) {
    const names = declaredBy(statement)
    if (names === undefined) {
      effects.push(statement)
      continue
    }
    for (const name of names) declaring.set(name, [...(declaring.get(name) ?? []), statement])
    if (statement.type === 'ImportDeclaration' && names.length > 0) {
      const source = String((statement.source as Node).value)
      const key = aliasKey(basename(source, extname(source)))
      if (key !== '') aliases.set(key, [...(aliases.get(key) ?? []), ...names])
    }
  }
  const declaration = (declared: readonly Node[]): Declaration => {
    const hash = createHash('sha256').update(normalizeTree(declared)).digest('hex')
    const imported = declared.filter((statement) => statement.type === 'ImportDeclaration').map((statement) => String((statement.source as Node).value))
    const references = declared.filter((statement) => statement.type !== 'ImportDeclaration').map((statement) => read.get(statement)!)
    const names = new Set(references.flatMap((reference) => [...reference.names]))
    return { hash, references: { names, specifiers: [...imported, ...references.flatMap((reference) => reference.specifiers)], bound: new Set() } }
  }
  return {
    bindings: new Map([...declaring].map(([name, declared]) => [name, declaration(declared)])),
    aliases,
    effects: effects.length === 0 ? undefined : declaration(effects),
    inner: new Set([...read.values()].flatMap((references) => [...references.bound])),
  }
}

/**
 * The top-level declarations `run` reaches, transitively, with the modules
 * they import; or, when a name `run` reads cannot be resolved, why the
 * whole module must count.
 * `name` is the function's own name: one other than `run` (what a
 * function written as the `run` of a stage is called) must be a top-level
 * binding, whose declaration then counts (it may be an import: `run:
 * dedupe`).
 */
export function reach(run: References, name: string, topLevel: TopLevel): Reach {
  const queue: string[] = []
  if (topLevel.bindings.has(name)) queue.push(name)
  else if (name === '') return { whole: 'run has no name: a function made by other code (a factory?), whose values cannot be told' }
  else if (name !== 'run') return { whole: `run is the function ${name}, which the module does not declare` }
  for (const read of run.names) {
    const found = resolve(read, topLevel)
    if (found === undefined) return { whole: `run reads ${read}, neither a top-level binding of the module nor a global` }
    if (topLevel.inner.has(read)) return { whole: `run reads ${read}, which the module also binds inside a function` }
    queue.push(...found)
  }
  const { effects } = topLevel
  const specifiers = [...run.specifiers, ...(effects?.references.specifiers ?? [])]
  for (const read of effects?.references.names ?? []) if (topLevel.bindings.has(read)) queue.push(read)
  const bindings = new Map<string, Declaration>()
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    const declaration = topLevel.bindings.get(next)
    if (declaration === undefined || bindings.has(next)) continue
    bindings.set(next, declaration)
    specifiers.push(...declaration.references.specifiers)
    queue.push(...declaration.references.names)
  }
  return { bindings, effects, specifiers }
}

/** Names that are neither top-level nor globals, yet defined where a module runs under jiti (as CommonJS). */
const MODULE_SCOPE = new Set(['require', 'module', 'exports', '__filename', '__dirname'])

function resolve(name: string, topLevel: TopLevel): readonly string[] | undefined {
  if (topLevel.bindings.has(name)) return [name]
  const aliased = name.startsWith('_') ? topLevel.aliases.get(aliasKey(name)) : undefined
  if (aliased !== undefined) return aliased
  if (name in globalThis || MODULE_SCOPE.has(name)) return []
  return undefined
}

/**
 * `_clean`, `_clean2`, `_myPkg` (as Babel names the module `./lib/clean.js`,
 * `@scope/my-pkg`) and the base names `clean`, `my-pkg` all key as letters
 * and digits in lower case, without a trailing number. Loose on purpose: a
 * key two imports share reaches both.
 */
function aliasKey(name: string): string {
  return name
    .replace(/[^A-Za-z0-9]/g, '')
    .replace(/\d+$/, '')
    .toLowerCase()
}

/** The names a top-level statement declares; undefined for one that only runs (an expression, a side-effect import); [] for one that neither declares nor runs anything `run` can read (`export { a }`, `export default …`). */
function declaredBy(statement: Node): string[] | undefined {
  switch (statement.type) {
    case 'ImportDeclaration': {
      const specifiers = statement.specifiers as Node[]
      return specifiers.length === 0 ? undefined : specifiers.map((specifier) => (specifier.local as Node).name as string)
    }
    case 'ExportNamedDeclaration':
    case 'ExportDefaultDeclaration': {
      const declared = statement.declaration as Node | null
      return declared === null ? [] : (declaredBy(declared) ?? [])
    }
    case 'ExportAllDeclaration':
    case 'EmptyStatement':
      return []
    case 'VariableDeclaration':
    case 'FunctionDeclaration':
    case 'ClassDeclaration':
      return [...declaredIn([statement])]
    default:
      return undefined
  }
}

function parseModule(source: string | undefined): Node | undefined {
  if (source === undefined) return undefined
  try {
    return acorn().parse(source, { ...PARSE_OPTIONS, sourceType: 'module' }) as unknown as Node
  } catch {
    return undefined
  }
}

/**
 * `source` with the TypeScript that compiles to nothing blanked out (see
 * above; newlines kept, so automatic semicolons stay where they were), or
 * undefined when there is none or acorn cannot tokenize it.
 */
function eraseTypes(source: string): string | undefined {
  const tt = acorn().tokTypes
  let tokens: (Token & { value?: unknown })[]
  try {
    tokens = [...acorn().tokenizer(source, { ...PARSE_OPTIONS, sourceType: 'module' })]
  } catch {
    return undefined
  }
  const word = (i: number) => (tokens[i]?.type === tt.name ? tokens[i].value : undefined)
  const erased: [number, number][] = []
  let inImport = false
  for (let i = 0; i < tokens.length; i++) {
    const { type } = tokens[i]
    if (type === tt._import && word(i + 1) === 'type' && word(i + 2) !== 'from' && tokens[i + 2]?.type !== tt.comma) {
      // `import type … from '…'` (not a default import named `type`): up to the module's name.
      let end = i + 2
      while (end < tokens.length && !(tokens[end].type === tt.string && word(end - 1) === 'from')) end++
      if (end === tokens.length) return undefined
      erased.push([tokens[i].start, tokens[end].end])
      i = end
    } else if (type === tt._import) inImport = true
    else if (type === tt.braceR || type === tt.semi || word(i) === 'from') inImport = false
    else if (inImport && word(i) === 'type' && (tokens[i - 1].type === tt.braceL || tokens[i - 1].type === tt.comma) && word(i + 1) !== undefined && (tokens[i + 2]?.type === tt.comma || tokens[i + 2]?.type === tt.braceR)) {
      // `import { type Row, stage }`: the specifier, and its comma.
      const end = tokens[i + 2].type === tt.comma ? i + 2 : i + 1
      erased.push([tokens[i].start, tokens[end].end])
      i = end
    } else if (word(i) === 'as' && tokens[i + 1]?.type === tt._const) {
      erased.push([tokens[i].start, tokens[i + 1].end])
      i++
    } else if (word(i) === 'satisfies' && word(i + 1) !== undefined) {
      let end = i + 1
      while (tokens[end + 1]?.type === tt.dot && word(end + 2) !== undefined) end += 2
      // Type arguments (`Record<string, Rule>`): to the `>` that closes the first `<`.
      const angles = (at: number) => {
        const text = source.slice(tokens[at].start, tokens[at].end)
        return /^[<>]+$/.test(text) ? text.split('<').length - text.split('>').length : 0
      }
      if (source.slice(tokens[end + 1]?.start, tokens[end + 1]?.end) === '<') {
        let depth = 0
        do depth += angles(++end)
        while (depth > 0 && end + 1 < tokens.length)
        if (depth !== 0) return undefined
      }
      erased.push([tokens[i].start, tokens[end].end])
      i = end
    }
  }
  if (erased.length === 0) return undefined
  let out = ''
  let at = 0
  for (const [start, end] of erased) {
    out += source.slice(at, start) + source.slice(start, end).replace(/[^\n]/g, ' ')
    at = end
  }
  return out + source.slice(at)
}

interface Scope {
  readonly names: Set<string>
  readonly parent: Scope | undefined
}

/**
 * The names `root` reads and does not bind itself, found by walking its
 * scopes (function, block, `for`, `catch`, class). Not modelled: a `var`
 * hoisted out of its block, which is then taken to be read from outside:
 * more names, never fewer.
 */
export function referencesOf(root: unknown): References {
  const names = new Set<string>()
  const specifiers: string[] = []
  const declared = new Set<string>()
  const bound = (scope: Scope | undefined, name: string): boolean => scope !== undefined && (scope.names.has(name) || bound(scope.parent, name))
  const inner = (scope: Scope | undefined, names: Iterable<string> = []): Scope => {
    for (const name of names) declared.add(name)
    return { names: new Set(names), parent: scope }
  }
  const children = (node: Node, scope: Scope | undefined): void => {
    for (const key of Object.keys(node)) if (!POSITION_KEYS.has(key)) visit(node[key], scope)
  }
  const visit = (value: unknown, scope: Scope | undefined): void => {
    if (Array.isArray(value)) {
      for (const item of value) visit(item, scope)
      return
    }
    if (!isNode(value)) return
    const node = value
    switch (node.type) {
      case 'Identifier':
        if (!bound(scope, node.name as string)) names.add(node.name as string)
        return
      case 'MemberExpression':
        visit(node.object, scope)
        if (node.computed === true) visit(node.property, scope)
        return
      case 'Property':
      case 'MethodDefinition':
      case 'PropertyDefinition':
      case 'AccessorProperty':
        if (node.computed === true) visit(node.key, scope)
        visit(node.value, scope)
        return
      case 'LabeledStatement':
        visit(node.body, scope)
        return
      case 'BreakStatement':
      case 'ContinueStatement':
      case 'MetaProperty':
        return
      case 'FunctionDeclaration':
      case 'FunctionExpression':
      case 'ArrowFunctionExpression': {
        // Parameters first, in their own scope: a default value does not see the body's declarations.
        const own = patternNames(node.params as Node[])
        if (node.type === 'FunctionExpression' && node.id !== null) own.push((node.id as Node).name as string)
        if (node.type !== 'ArrowFunctionExpression') own.push('arguments')
        const params = inner(scope, own)
        visit(node.params, params)
        const body = node.body as Node
        if (body.type === 'BlockStatement') visit(body.body, inner(params, declaredIn(body.body as Node[])))
        else visit(body, params)
        return
      }
      case 'ClassDeclaration':
      case 'ClassExpression':
        // A declaration's name is bound where it stands (declaredIn); an expression's, inside it only.
        visit(node.superClass, scope)
        visit(node.body, inner(scope, node.type === 'ClassExpression' && node.id !== null ? [(node.id as Node).name as string] : []))
        return
      case 'Program':
      case 'BlockStatement':
      case 'StaticBlock':
        visit(node.body, inner(scope, declaredIn(node.body as Node[])))
        return
      case 'SwitchStatement':
        visit(node.discriminant, scope)
        visit(node.cases, inner(scope, declaredIn((node.cases as Node[]).flatMap((branch) => branch.consequent as Node[]))))
        return
      case 'ForStatement':
      case 'ForInStatement':
      case 'ForOfStatement':
        children(node, inner(scope, declaredIn([(node.init ?? node.left) as Node | null])))
        return
      case 'CatchClause':
        children(node, inner(scope, node.param === null ? [] : patternNames([node.param as Node])))
        return
      case 'ImportExpression':
        if (isString(node.source)) specifiers.push(node.source.value)
        break
      case 'CallExpression': {
        const [first] = node.arguments as Node[]
        if ((node.callee as Node).type === 'Identifier' && (node.callee as Node).name === 'require' && isString(first)) specifiers.push(first.value)
        break
      }
    }
    children(node, scope)
  }
  visit(root, undefined)
  return { names, specifiers, bound: declared }
}

/** Names the declarations among `statements` bind in their scope (not a `var` nested in a block: see referencesOf). */
function declaredIn(statements: readonly (Node | null)[]): Set<string> {
  const names = new Set<string>()
  for (const statement of statements) {
    const declared = statement?.type === 'ExportNamedDeclaration' || statement?.type === 'ExportDefaultDeclaration' ? (statement.declaration as Node | null) : statement
    if (declared?.type === 'VariableDeclaration') for (const name of patternNames((declared.declarations as Node[]).map((declarator) => declarator.id as Node))) names.add(name)
    else if ((declared?.type === 'FunctionDeclaration' || declared?.type === 'ClassDeclaration') && declared.id !== null) names.add((declared.id as Node).name as string)
  }
  return names
}

function patternNames(patterns: readonly (Node | null)[]): string[] {
  return patterns.flatMap((pattern): string[] => {
    switch (pattern?.type) {
      case 'Identifier':
        return [pattern.name as string]
      case 'ObjectPattern':
        return patternNames((pattern.properties as Node[]).map((property) => (property.type === 'RestElement' ? property : (property.value as Node))))
      case 'ArrayPattern':
        return patternNames(pattern.elements as (Node | null)[])
      case 'RestElement':
        return patternNames([pattern.argument as Node])
      case 'AssignmentPattern':
        return patternNames([pattern.left as Node])
      default:
        return []
    }
  })
}

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string'
}

function isString(value: unknown): value is Node & { readonly value: string } {
  return isNode(value) && value.type === 'Literal' && typeof value.value === 'string'
}
