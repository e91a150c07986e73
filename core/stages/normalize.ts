import type { Options, Program, Token } from 'acorn'
import { acorn } from './acorn.js'

/**
 * Code as a stage hash sees it: what the program means, not how it is laid
 * out. Comments, whitespace, quote style, number spelling, optional
 * semicolons, trailing commas and redundant parentheses do not count; the
 * contents of strings, templates and regexes count exactly.
 *
 * Decision: code acorn can parse (a `run` function, which jiti has already
 * turned into JavaScript; a .js module) is normalized as its syntax tree
 * without positions, not as a token list. A token list cannot tell a
 * redundant pair of parentheses from a needed one, nor `a = b;\n(c)` from
 * `a = b\n(c)` once semicolons are dropped, and prettier adds and removes
 * both (`(r) => (r.ok ? 1 : 2)`, `(a && b) || c`, `semi: false`). The tree
 * already resolved all of that: `(a + b) * c` and `a + b * c` stay apart,
 * `x => x` and `(x) => x` do not. Literals count by value (`'x'` = `"x"`,
 * `0x10` = `16`, `1.0` = `1`: the program cannot tell them apart), except
 * templates, whose raw text counts too (String.raw sees it), and regexes,
 * by pattern and flags. Non-computed property keys count by name
 * (`{ 'a': 1 }` = `{ a: 1 }`, prettier's quoteProps). Empty statements in a
 * statement list are dropped (prettier's `;[a, b].forEach(…)` guard).
 *
 * Code acorn can only tokenize (TypeScript: its annotations are tokens, not
 * syntax acorn knows) is normalized as its token list, one token a line: a
 * newline cannot occur in a token as written here (strings and templates
 * are JSON-quoted). There a trailing comma before `)`, `]`, `}` and a `;`
 * before `}` or at the end are dropped (never a comma after `[` or `,`: an
 * array hole counts); other semicolons and all parentheses count, so a
 * semicolon-style change in a TypeScript module is a false "stale", once.
 */
export interface NormalizedCode {
  readonly text: string
  /** Specifiers of the static imports, re-exports, literal dynamic imports and `require` calls. */
  readonly imports: readonly string[]
  /** The syntax tree, when acorn could parse the code (not only tokenize it). */
  readonly tree?: Program
}

type ValuedToken = Token & { value?: unknown }

export const PARSE_OPTIONS: Options = {
  ecmaVersion: 'latest',
  allowHashBang: true,
  allowAwaitOutsideFunction: true,
  allowImportExportEverywhere: true,
  // An arrow written inside a class may use `super` and `this.#field`: its source alone must still parse.
  allowSuperOutsideMethod: true,
  checkPrivateFields: false,
}

/**
 * Function.prototype.toString of a method shorthand (`run(rows) { … }`) is
 * not a program, nor is an anonymous `function (rows) { … }`: a function's
 * source is tried as written, then inside an object literal, then in
 * parentheses (a method with its `{` on the next line and no `return`
 * parses as written, as a call and a block: still one hash for one text).
 * A module's only as written: wrapping a TypeScript module would only
 * triple the parses that fail before it is tokenized.
 */
const WRAPPERS = {
  function: [['', ''], ['({', '\n})'], ['(', '\n)']],
  module: [['', '']],
} as const satisfies Record<string, readonly (readonly [string, string])[]>

/** Normalized `source`, as hashStage normalizes run's (see above); throws acorn's SyntaxError when acorn cannot even tokenize it. */
export function normalizeCode(source: string): string {
  const text = withoutBom(source)
  return (normalizeParsed(text, 'function') ?? normalizeTokens(text)).text
}

/** Normalized text and imports of `source`, or undefined when acorn cannot tokenize it (the caller hashes the raw text). */
export function normalizeSource(source: string, kind: keyof typeof WRAPPERS): NormalizedCode | undefined {
  const text = withoutBom(source)
  try {
    return normalizeParsed(text, kind) ?? normalizeTokens(text)
  } catch {
    return undefined
  }
}

function withoutBom(source: string): string {
  return source.charCodeAt(0) === 0xfeff ? source.slice(1) : source
}

function normalizeParsed(text: string, kind: keyof typeof WRAPPERS): NormalizedCode | undefined {
  for (const [open, close] of WRAPPERS[kind]) {
    for (const sourceType of ['module', 'script'] as const) {
      const tokens: Token[] = []
      let program
      try {
        program = acorn().parse(open + text + close, { ...PARSE_OPTIONS, sourceType, onToken: tokens })
      } catch {
        continue
      }
      return { text: normalizeTree(program), imports: importsOf(tokens), tree: program }
    }
  }
  return undefined
}

function normalizeTokens(text: string): NormalizedCode {
  const tokens = [...acorn().tokenizer(text, { ...PARSE_OPTIONS, sourceType: 'module' })]
  return { text: tokenTexts(tokens, text).join('\n'), imports: importsOf(tokens) }
}

/** Import specifiers found by a pattern, for a file acorn cannot tokenize: over-matches (comments too), never misses a plain one. */
export function scanImports(source: string): string[] {
  return [...source.matchAll(/\b(?:from|import|require)\s*\(?\s*(['"])([^'"\n]+)\1/g)].map((match) => match[2])
}

/** A syntax tree (or part of one) as normalized text: see above. */
export function normalizeTree(node: unknown): string {
  const out: string[] = []
  writeTree(node, out)
  return out.join('')
}

export const POSITION_KEYS = new Set(['type', 'start', 'end', 'loc', 'range'])
const KEYED_NODES = new Set(['Property', 'MethodDefinition', 'PropertyDefinition', 'AccessorProperty'])

function writeTree(value: unknown, out: string[]): void {
  if (value === null || typeof value !== 'object') {
    out.push(typeof value === 'string' ? JSON.stringify(value) : String(value))
    return
  }
  if (Array.isArray(value)) {
    out.push('[')
    for (const item of value) {
      if ((item as { type?: unknown } | null)?.type === 'EmptyStatement') continue
      writeTree(item, out)
      out.push(',')
    }
    out.push(']')
    return
  }
  const node = value as Record<string, unknown>
  out.push(typeof node.type === 'string' ? node.type : '', '{')
  for (const key of Object.keys(node)) {
    if (POSITION_KEYS.has(key)) continue
    // A literal counts by its value; a template element's raw text (value.raw) is not this and still counts.
    if (key === 'raw' && node.type === 'Literal') continue
    // A regex's value is a RegExp object and a bigint's a BigInt: their `regex` and `bigint` fields say it as text.
    if (key === 'value' && (node.regex !== undefined || node.bigint !== undefined)) continue
    out.push(key, ':')
    const name = key === 'key' && KEYED_NODES.has(node.type as string) && node.computed === false ? keyName(node.key) : undefined
    if (name === undefined) writeTree(node[key], out)
    else out.push(JSON.stringify(name))
    out.push(',')
  }
  out.push('}')
}

/** `a`, `'a'` and `"a"` name the same property; so do `1`, `1.0` and `'1'`. A private `#a` stays a node. */
function keyName(key: unknown): string | undefined {
  const node = key as { type: string; name?: string; value?: unknown }
  if (node.type === 'Identifier') return node.name
  if (node.type === 'Literal') return String(node.value)
  return undefined
}

const CLOSERS = new Set([')', ']', '}'])

function tokenTexts(tokens: readonly ValuedToken[], source: string): string[] {
  const texts = tokens.map((token) => tokenText(token, source))
  const kept: string[] = []
  texts.forEach((text, i) => {
    const next = texts[i + 1]
    const previous = kept.at(-1)
    if (text === ',' && next !== undefined && CLOSERS.has(next) && previous !== '[' && previous !== ',') return
    if (text === ';' && (next === undefined || next === '}')) return
    kept.push(text)
  })
  return kept
}

function tokenText(token: ValuedToken, source: string): string {
  const tt = acorn().tokTypes
  switch (token.type) {
    case tt.string:
      return JSON.stringify(token.value)
    case tt.template:
    case tt.invalidTemplate:
      return '`' + JSON.stringify(source.slice(token.start, token.end).replace(/\r\n?/g, '\n'))
    case tt.num:
      return typeof token.value === 'bigint' ? `${token.value}n` : String(token.value)
    case tt.regexp: {
      const { pattern, flags } = token.value as { pattern: string; flags: string }
      return `/${pattern}/${flags}`
    }
    case tt.name:
      return String(token.value)
    case tt.privateId:
      return `#${String(token.value)}`
    default:
      return source.slice(token.start, token.end)
  }
}

function importsOf(tokens: readonly ValuedToken[]): string[] {
  const tt = acorn().tokTypes
  const found: string[] = []
  tokens.forEach((token, i) => {
    const next = tokens[i + 1]
    const direct = next?.type === tt.string ? next : undefined
    const called = next?.type === tt.parenL && tokens[i + 2]?.type === tt.string ? tokens[i + 2] : undefined
    const word = token.type === tt._import ? 'import' : token.type === tt.name ? token.value : undefined
    const specifier = word === 'import' ? (direct ?? called) : word === 'from' ? direct : word === 'require' ? called : undefined
    if (specifier !== undefined) found.push(String(specifier.value))
  })
  return found
}
