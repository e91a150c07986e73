import { createHash } from 'node:crypto'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { configInvalid } from '../errors.js'
import { hashModules, readCached } from './modules.js'
import { normalizeSource, type NormalizedCode } from './normalize.js'
import { reach, readTopLevel, referencesOf } from './reach.js'
import { hashValue, member } from './values.js'

export { normalizeCode } from './normalize.js'

/**
 * A stage's hash: everything its output is computed from, so that output is
 * stale exactly when the hash moves. Each part is hashed on its own and kept
 * in `components`, so the runtime can say what changed (`explainChange`).
 *
 * The stage's name is not part of it: the name says where the output is
 * kept, the hash what it was computed from.
 */

/** Bump when filedge changes what a stage receives or returns: every stage's output is then stale. */
export const STAGE_ABI = 1

export interface StageHashInput {
  readonly name: string
  /** Hashed by its normalized source (Function.prototype.toString; see normalizeCode). */
  readonly run: (...args: never[]) => unknown
  /**
   * Absolute path (or file: URL) of the module that called stage(), if known:
   * the top-level declarations in it that `run` reaches, the local modules
   * those import (transitively) and the versions of the packages they import
   * are part of the hash (see reach.ts); when that cannot be told, its whole
   * text and all its imports. Module paths in `components` are relative to
   * its directory.
   */
  readonly definedIn?: string
  /** JSON-able options that shape the output (the declared columns, `from`): hashed canonically (key order does not matter). */
  readonly options?: unknown
  /** Values the stage closes over, declared by the user: hashed; one that cannot be hashed faithfully is refused (CONFIG_INVALID). */
  readonly inputs?: Readonly<Record<string, unknown>>
  /** Hashes of the parent stages, in order. */
  readonly parents?: readonly string[]
}

export interface StageHash {
  /** sha256 hex of the components. */
  readonly hash: string
  /**
   * What went in, each part hashed separately so a change can be named:
   * `abi`, `code`, `binding:<name>` (a top-level declaration of the defining
   * module that run reaches), `statements` (its top-level statements that
   * are not declarations), `module:<path>`, `package:<name>` (its version),
   * `options`, `input:<key>`, `parent:<index>`; `whole-module` (why the
   * defining module counts whole, as `module:<its path>`) instead of
   * `binding:` and `statements` when what run reaches cannot be told. A
   * value `raw:<sha>` is text acorn could not tokenize, hashed as it is;
   * `missing` is a module or package that was not found.
   */
  readonly components: Readonly<Record<string, string>>
}

export function hashStage(input: StageHashInput): StageHash {
  const refuse = (path: string, reason: string): never => {
    throw configInvalid(`stage "${input.name}": ${path} ${reason}`)
  }
  const run = readRun(input.run, refuse)
  const components: Record<string, string> = { abi: String(STAGE_ABI), code: run.hash }
  if (input.definedIn !== undefined) {
    const definedIn = input.definedIn.startsWith('file:') ? fileURLToPath(input.definedIn) : input.definedIn
    Object.assign(components, hashDefiningModule(definedIn, run.normalized, input.run.name))
  }
  if (input.options !== undefined) components.options = hashValue(input.options, 'options', refuse)
  for (const key of Object.keys(input.inputs ?? {})) components[`input:${key}`] = hashValue(input.inputs?.[key], `inputs${member(key)}`, refuse)
  input.parents?.forEach((parent, i) => {
    components[`parent:${i}`] = parent
  })
  const entries = Object.keys(components)
    .sort()
    .map((key) => [key, components[key]])
  return { hash: sha256(JSON.stringify(entries)), components: Object.freeze(components) }
}

function readRun(run: StageHashInput['run'], refuse: (path: string, reason: string) => never): { hash: string; normalized: NormalizedCode | undefined } {
  if (typeof run !== 'function') refuse('run', 'is not a function')
  const source = Function.prototype.toString.call(run)
  // Every bound or built-in function prints as this: hashing it would make them all one function.
  if (/\{\s*\[native code\]\s*\}$/.test(source)) refuse('run', 'is a bound or built-in function, whose code cannot be read; pass the function itself')
  const normalized = normalizeSource(source, 'function')
  return { hash: normalized === undefined ? `raw:${sha256(source)}` : sha256(normalized.text), normalized }
}

/** The `binding:`, `statements`, `module:` and `package:` components: what run reaches of its defining module, or (`whole-module`) all of it. */
function hashDefiningModule(definedIn: string, run: NormalizedCode | undefined, name: string): Record<string, string> {
  const topLevel = readCached('top-level', definedIn, (text) => readTopLevel(text) ?? null)
  const file = basename(definedIn)
  const reached =
    topLevel === undefined ? { whole: `${file} is missing` }
    : topLevel === null ? { whole: `${file} is not JavaScript acorn can parse` }
    : run?.tree === undefined ? { whole: 'the code of run could not be parsed' }
    : reach(referencesOf(run.tree), name, topLevel)
  if ('whole' in reached) return { 'whole-module': reached.whole, ...hashModules(definedIn) }
  const components: Record<string, string> = {}
  for (const [binding, declaration] of reached.bindings) components[`binding:${binding}`] = declaration.hash
  if (reached.effects !== undefined) components.statements = reached.effects.hash
  return Object.assign(components, hashModules(definedIn, reached.specifiers))
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** The kinds of component, in the order their changes are told. */
const KINDS = ['abi', 'code', 'whole-module', 'binding', 'statements', 'module', 'package', 'options', 'input', 'parent']

/**
 * What changed between two `components`, one line each, for a human:
 * `top-level RATE changed`, `local module lib/clean.ts changed`,
 * `package lodash 4.17.20 → 4.17.21`, `input limit was added`…; [] when
 * they are equal.
 */
export function explainChange(before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>): string[] {
  const keys = [...new Set([...Object.keys(after), ...Object.keys(before)])]
  const rank = (key: string): number => {
    const kind = KINDS.indexOf(key.split(':')[0])
    return kind === -1 ? KINDS.length : kind
  }
  return keys
    .filter((key) => before[key] !== after[key])
    .sort((a, b) => rank(a) - rank(b))
    .map((key) => describeChange(key, before[key], after[key]))
}

function describeChange(key: string, was: string | undefined, now: string | undefined): string {
  const colon = key.indexOf(':')
  const kind = colon === -1 ? key : key.slice(0, colon)
  const name = key.slice(colon + 1)
  const added = was === undefined
  const removed = now === undefined
  switch (kind) {
    case 'abi':
      return `filedge's stage ABI changed ${was ?? 'none'} → ${now ?? 'none'}`
    case 'code':
      return 'the code of run changed'
    case 'whole-module':
      return removed ? 'only what run reaches in its module counts now' : `its whole module counts: ${now}`
    case 'binding':
      return added ? `run now reaches top-level ${name}` : removed ? `run no longer reaches top-level ${name}` : `top-level ${name} changed`
    case 'statements':
      return added ? 'the module now has top-level statements besides declarations' : removed ? 'the module no longer has top-level statements besides declarations' : 'a top-level statement (not a declaration) changed'
    case 'module':
      if (added) return `local module ${name} is now imported`
      if (removed) return `local module ${name} is no longer imported`
      return now === 'missing' ? `local module ${name} is missing` : `local module ${name} changed`
    case 'package':
      if (added) return `package ${name} is now imported (${now})`
      if (removed) return `package ${name} is no longer imported`
      return `package ${name} ${was} → ${now}`
    case 'options':
      return 'options changed (declared columns or from)'
    case 'input':
      return added ? `input ${name} was added` : removed ? `input ${name} was removed` : `input ${name} changed`
    case 'parent':
      return added ? `parent stage ${name} was added` : removed ? `parent stage ${name} was removed` : `parent stage ${name} changed`
    default:
      return `${key} changed`
  }
}
