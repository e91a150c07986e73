import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { explainChange, hashStage, normalizeCode, STAGE_ABI, type StageHashInput } from '../core/stages/hash.js'
import { workspace, type Workspace } from './helpers/workspace.js'

let ws: Workspace | undefined
const cleanups: (() => void)[] = []
afterEach(() => {
  ws?.remove()
  ws = undefined
  for (const cleanup of cleanups.splice(0)) cleanup()
})

const stage = (run: StageHashInput['run'], rest: Partial<StageHashInput> = {}) => hashStage({ name: 'clean', run, ...rest })
const fromSource = (source: string) => new Function(`return (${source})`)() as StageHashInput['run']
const normalizedEqual = (a: string, b: string) => normalizeCode(a) === normalizeCode(b)

/**
 * Realistic stage functions, written with markers a style renders: ⟨;⟩ an
 * optional semicolon (ASI holds there), ⟨,⟩ an optional trailing comma.
 * Strings use single quotes so a style can swap them.
 */
const BASES = {
  dedupe: `(rows, ctx) => {
  const seen = new Set()⟨;⟩
  const out = []⟨;⟩
  for (const row of rows) {
    const key = \`\${row.id}:\${row.day}\`⟨;⟩
    if (seen.has(key)) continue⟨;⟩
    seen.add(key)⟨;⟩
    const cents = Math.round(Number(row.amount) * 100)⟨;⟩
    out.push({
      ...row,
      amount_cents: cents,
      currency: row.currency ?? 'EUR',
      flagged: cents > 10000 || row.note === 'manual check'⟨,⟩
    })⟨;⟩
  }
  ctx.log('kept ' + out.length + ' of ' + rows.length)⟨;⟩
  return out⟨;⟩
}`,
  emails: `run(rows, { log }) {
  const valid = rows.filter((r) => r.email && /^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$/i.test(r.email))⟨;⟩
  const byDomain = new Map()⟨;⟩
  for (const r of valid) {
    const domain = r.email.split('@')[1].toLowerCase()⟨;⟩
    byDomain.set(domain, (byDomain.get(domain) ?? 0) + 1)⟨;⟩
  }
  log(\`domains: \${byDomain.size}\`)⟨;⟩
  return valid.map((r) => ({
    id: r.id,
    email: r.email.trim().toLowerCase(),
    domain_count: byDomain.get(r.email.split('@')[1].toLowerCase()),
    tier: r.spend > 500 ? 'gold' : r.spend > 100 ? 'silver' : 'bronze'⟨,⟩
  }))⟨;⟩
}`,
  payloads: `async function run(rows, ctx) {
  const { limit = 1000, prefix = 'row-' } = ctx.options ?? {}⟨;⟩
  const batch = []⟨;⟩
  for await (const row of rows) {
    if (batch.length >= limit) break⟨;⟩
    try {
      const parsed = JSON.parse(row.payload)⟨;⟩
      batch.push({ id: prefix + row.id, kind: parsed?.kind ?? 'unknown', size: row.payload.length * 0.5 })⟨;⟩
    } catch (error) {
      ctx.warn(\`row \${row.id}: \${error.message}\`)⟨;⟩
    }
  }
  return batch⟨;⟩
}`,
}
type BaseName = keyof typeof BASES

interface Style {
  readonly semi?: boolean
  readonly comma?: boolean
  readonly quote?: '"' | "'"
}
const render = (template: string, style: Style = {}) =>
  template
    .replaceAll('⟨;⟩', style.semi === false ? '' : ';')
    .replaceAll('⟨,⟩', style.comma === true ? ',' : '')
    .replaceAll("'", style.quote ?? "'")

/** Applies `edit` to the code between string, template and regex literals only. */
const LITERALS = /('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`|\/\^(?:[^/\\\n]|\\.)+\/[a-z]*)/
const outsideLiterals = (source: string, edit: (code: string) => string) =>
  source
    .split(LITERALS)
    .map((part, i) => (i % 2 === 0 ? edit(part) : part))
    .join('')
const afterFirstLine = (source: string, inserted: string) => source.replace('\n', `\n${inserted}\n`)

/** Comment- and layout-only edits, the kind an editor, a reviewer or a formatter makes. */
const EDITS: Record<string, (template: string) => string> = {
  'no semicolons (ASI)': (t) => render(t, { semi: false }),
  'trailing commas': (t) => render(t, { comma: true }),
  'double quotes': (t) => render(t, { quote: '"' }),
  'prettier semi:false + trailing commas + double quotes': (t) => render(t, { semi: false, comma: true, quote: '"' }),
  'four-space indent': (t) => render(t).replace(/^ +/gm, (s) => s + s),
  'tab indent': (t) => render(t).replace(/^ +/gm, (s) => '\t'.repeat(s.length / 2)),
  'no indent': (t) => render(t).replace(/^[ \t]+/gm, ''),
  'blank line after every line': (t) => render(t).split('\n').join('\n\n'),
  'line comment with code-like text': (t) => afterFirstLine(render(t), `  // Keeps the first row of each key; "quotes", 'quotes', a } and return null;`),
  'trailing line comments': (t) => render(t).replace(/([;{,])$/gm, '$1 // note'),
  'block comments between tokens': (t) => outsideLiterals(render(t), (s) => s.replaceAll(' = ', ' = /* value */ ').replaceAll('return ', 'return /* result */ ')),
  'JSDoc block': (t) => afterFirstLine(render(t), '  /**\n   * Normalizes the batch.\n   * @param {Row[]} rows the rows (not "all")\n   */'),
  'CRLF line endings': (t) => render(t).replaceAll('\n', '\r\n'),
  'operators squeezed': (t) => outsideLiterals(render(t), (s) => s.replace(/ *([=+*<>|?:,]+) */g, '$1')),
  'spaces inside parentheses': (t) => outsideLiterals(render(t), (s) => s.replaceAll('(', '( ').replaceAll(')', ' )')),
  'one line': (t) =>
    render(t)
      .split('\n')
      .map((line) => line.trim())
      .join(' '),
  'all at once: tabs, no semicolons, trailing commas, comments': (t) =>
    afterFirstLine(render(t, { semi: false, comma: true, quote: '"' }).replace(/^ +/gm, (s) => '\t'.repeat(s.length / 2)), '\t/* TODO: ask finance about "EUR" */\n'),
  'commented-out code': (t) => render(t).replace(/\n}$/, '\n  // return rows.filter(Boolean);\n  /* } ) ] */\n}'),
}

/** Prettier-style reformatting that a token list would see: reflowed lines, arrow parens, redundant parens, quoted keys, number spelling. */
const REFORMATTED: Record<BaseName, readonly string[]> = {
  dedupe: [
    `(rows, ctx) => {
  const seen = new Set()
  const out = []
  for (const row of rows) {
    const key = \`\${row.id}:\${row.day}\`
    if (seen.has(key)) continue
    seen.add(key)
    const cents = Math.round((Number(row.amount) * 100))
    out.push({ ...row, amount_cents: cents, currency: row.currency ?? "EUR", flagged: (cents > 1e4) || (row.note === "manual check") })
  }
  ctx.log(("kept " + out.length) + " of " + rows.length)
  return (out)
}`,
    `(rows, ctx) => {
  const seen = new Set();
  const out = [];
  for (const row of rows) {
    const key = \`\${row.id}:\${row.day}\`;
    if (seen.has(key)) continue;
    seen.add(key);
    const cents = Math.round(Number(row.amount) * 1_00);
    out.push({
      ...row,
      'amount_cents': cents,
      "currency": row.currency ?? 'EUR',
      flagged:
        cents > 10_000 ||
        row.note === 'manual check',
    });
  }
  ctx.log(
    'kept ' +
      out.length +
      ' of ' +
      rows.length,
  );
  return out;
}`,
  ],
  emails: [
    `run(rows, { log }) {
  const valid = rows.filter(
    r => r.email && /^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$/i.test(r.email)
  )
  const byDomain = new Map()
  for (const r of valid) {
    const domain = r.email.split("@")[1].toLowerCase()
    byDomain.set(domain, (byDomain.get(domain) ?? 0) + 1)
  }
  log(\`domains: \${byDomain.size}\`)
  return valid.map(r => ({
    id: r.id,
    email: r.email.trim().toLowerCase(),
    domain_count: byDomain.get(r.email.split("@")[1].toLowerCase()),
    tier: r.spend > 500 ? "gold" : (r.spend > 100 ? "silver" : "bronze"),
  }))
}`,
    `run(rows, { log }) {
  const valid = rows.filter((r) => (r.email && /^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$/i.test(r.email)));
  const byDomain = new Map();
  for (const r of valid) {
    const domain = r.email
      .split('@')[1]
      .toLowerCase();
    byDomain.set(domain, ((byDomain.get(domain) ?? 0)) + 0x1);
  }
  log(\`domains: \${byDomain.size}\`);
  return valid.map((r) => ({ id: r.id, email: r.email.trim().toLowerCase(), domain_count: byDomain.get(r.email.split('@')[1].toLowerCase()), tier: r.spend > 5e2 ? 'gold' : r.spend > 100.0 ? 'silver' : 'bronze' }));
}`,
  ],
  payloads: [
    `async function run(rows, ctx) {
  const { limit = 1e3, prefix = "row-" } = (ctx.options ?? {})
  const batch = []
  for await (const row of rows) {
    if ((batch.length >= limit)) break
    try {
      const parsed = JSON.parse(row.payload)
      batch.push({
        id: prefix + row.id,
        kind: parsed?.kind ?? "unknown",
        size: row.payload.length * .5,
      })
    } catch (error) {
      ctx.warn(\`row \${row.id}: \${error.message}\`)
    }
  }
  return batch
}`,
    `async function run(rows, ctx) {
  const {
    limit = 1000,
    prefix = 'row-',
  } = ctx.options ?? {};;
  const batch = [];
  for await (const row of rows) {
    if (batch.length >= limit) break;
    try {
      const parsed = JSON.parse(row.payload);
      batch.push({ 'id': prefix + row.id, 'kind': parsed?.kind ?? 'unknown', 'size': row.payload.length * 0.50 });
    } catch (error) {
      ctx.warn(\`row \${row.id}: \${error.message}\`);
    };
  };
  return batch;
}`,
  ],
}

/**
 * Each variant as a function built from its source, so it is hashed through
 * Function.prototype.toString as a config's would be. (Not imported from a
 * temporary module: Vite's transform would rewrite the text under test.)
 */
const buildVariant = (base: BaseName, source: string) =>
  new Function(base === 'emails' ? `return ({\n${source}\n}).run` : `return (${source})`)() as StageHashInput['run']

describe('normalizeCode and the code of run', () => {
  it('identical code hashes the same, also from two separately built functions', () => {
    const source = render(BASES.dedupe)
    expect(stage(fromSource(source)).hash).toBe(stage(fromSource(source)).hash)
    expect(stage(fromSource(source)).components.code).toBe(stage(fromSource(source)).components.code)
    expect(stage(fromSource(source)).components.abi).toBe(String(STAGE_ABI))
  })

  it('a corpus of comment- and format-only edits makes no stage stale', () => {
    let compared = 0
    for (const base of Object.keys(BASES) as BaseName[]) {
      const variants = [...Object.values(EDITS).map((edit) => edit(BASES[base])), ...REFORMATTED[base]]
      const expected = stage(buildVariant(base, render(BASES[base]))).hash
      const functions = variants.map((source) => buildVariant(base, source))
      functions.forEach((run, i) => {
        const name = Object.keys(EDITS)[i] ?? `reformatted ${i - Object.keys(EDITS).length}`
        expect(Function.prototype.toString.call(run), `${base}: ${name} is hashed as written`).toBe(variants[i])
        expect(normalizeCode(variants[i]), `${base}: ${name}`).toBe(normalizeCode(render(BASES[base])))
        expect(stage(run).hash, `${base}: ${name}`).toBe(expected)
        compared++
      })
    }
    expect(compared).toBeGreaterThanOrEqual(50)
  })

  it('string and template contents count exactly; quote style does not', () => {
    expect(normalizedEqual('(r) => r.x === "a b"', '(r) => r.x === "ab"')).toBe(false)
    expect(normalizedEqual('(r) => r.x === "a  b"', '(r) => r.x === "a b"')).toBe(false)
    expect(normalizedEqual("(r) => r.x === 'x'", '(r) => r.x === "x"')).toBe(true)
    expect(normalizedEqual('(r) => `a ${r.x}`', '(r) => `a  ${r.x}`')).toBe(false)
    expect(normalizedEqual('(r) => `a\n${r.x}`', '(r) => `a ${r.x}`')).toBe(false)
    // Same cooked value, different raw text: String.raw sees the difference.
    expect(normalizedEqual('(r) => String.raw`a\\n`', '(r) => String.raw`a\\u000a`')).toBe(false)
    expect(normalizedEqual('(r) => /a b/g.test(r)', '(r) => /ab/g.test(r)')).toBe(false)
    expect(normalizedEqual('(r) => /a/g.test(r)', '(r) => /a/i.test(r)')).toBe(false)
  })

  it('a changed number, operator, identifier or statement is a change', () => {
    const base = render(BASES.dedupe)
    const changes = [
      base.replace('* 100', '* 1000'),
      base.replace('cents > 10000', 'cents >= 10000'),
      base.replace("' of ' + rows.length", "' of ' - rows.length"),
      base.replace('row.amount', 'row.amounts'),
      base.replace('return out;', 'out.reverse();\n  return out;'),
      base.replace('if (seen.has(key)) continue;', 'if (seen.has(key)) break;'),
      base.replace('const seen', 'let seen'),
    ]
    for (const changed of changes) {
      expect(changed).not.toBe(base)
      expect(stage(fromSource(changed)).hash, changed).not.toBe(stage(fromSource(base)).hash)
    }
  })

  it('keeps apart what layout and parentheses decide', () => {
    const pairs = [
      ['(a, b, c) => { a = b;\n(c) }', '(a, b, c) => { a = b\n(c) }'], // without the semicolon it is a call: b(c)
      ['(x) => { return\nx }', '(x) => { return x }'],
      ['(a, b, c) => (a + b) * c', '(a, b, c) => a + b * c'],
      ['(a) => (a?.b).c', '(a) => a?.b.c'],
      ['() => [,]', '() => []'],
      ['(a) => [a,,]', '(a) => [a,]'],
      ['(k) => ({ [k]: 1 })', '(k) => ({ k: 1 })'],
      ['() => 1e999', '() => Infinity'],
      ['() => 1n', '() => 1'],
      ["() => '1'", '() => 1'],
    ]
    for (const [a, b] of pairs) expect(normalizedEqual(a, b), `${a} vs ${b}`).toBe(false)
  })

  it('TypeScript acorn can only tokenize is compared token by token', () => {
    const ts = `export function trim(row: { name: string; tags: string[] }): Row {\n  return { ...row, name: row.name.trim(), tags: row.tags.map((t) => t.toLowerCase()) };\n}\n`
    const reformatted = `// trims\nexport function trim(\n  row: { name: string; tags: string[]; },\n): Row {\n  /* keep tags */\n  return { ...row, name: row.name.trim(), tags: row.tags.map((t) => t.toLowerCase()), }\n}`
    expect(normalizeCode(reformatted)).toBe(normalizeCode(ts))
    expect(normalizeCode(ts.replaceAll('"', "'"))).toBe(normalizeCode(ts))
    expect(normalizeCode(ts.replace('trim()', 'trimEnd()'))).not.toBe(normalizeCode(ts))
    expect(() => normalizeCode('@sealed class A {}')).toThrow()
  })

  it('refuses a run whose code cannot be read', () => {
    const bound = fromSource('(rows) => rows').bind(null)
    expect(() => stage(bound)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining('stage "clean": run is a bound or built-in function') }))
  })
})

describe('local modules and packages', () => {
  const CONFIG = `import { defineConfig } from 'filedge'\nimport { clean } from './lib/clean.js'\n\nexport default defineConfig({ pipelines: [] })\n`
  const CLEAN = `import { trim } from './util'\nimport { keyOf } from './keys/index.js'\nimport fp from 'fakepkg/fp'\nimport { readFileSync } from 'node:fs'\nimport path from 'path'\nimport type { Row } from '../filedge.config.js'\n\nexport const clean = (rows: Row[]) => rows.map(trim).filter((r) => fp.has(keyOf(r)))\n`
  const UTIL = `export const trim = (r: { name: string }) => ({ ...r, name: r.name.trim() })\n`
  const KEYS = `export const keyOf = (r: { id: string }): string => \`key:\${r.id}\`\n`
  const run = fromSource('(rows) => clean(rows)')

  const project = () => {
    ws = workspace({
      'filedge.config.ts': CONFIG,
      'lib/clean.ts': CLEAN,
      'lib/util.ts': UTIL,
      'lib/keys/index.ts': KEYS,
      'node_modules/fakepkg/package.json': JSON.stringify({ name: 'fakepkg', version: '1.0.0' }),
    })
    return { ws, hash: () => stage(run, { definedIn: ws!.file('filedge.config.ts') }) }
  }

  it('hashes the defining module, the local modules it reaches and their packages, by relative path', () => {
    const { hash } = project()
    expect(Object.keys(hash().components).sort()).toEqual(['abi', 'code', 'module:filedge.config.ts', 'module:lib/clean.ts', 'module:lib/keys/index.ts', 'module:lib/util.ts', 'package:fakepkg'])
    expect(hash().components['package:fakepkg']).toBe('1.0.0')
    expect(hash().hash).toBe(hash().hash)
  })

  it('an edit of a module imported two levels down is a change; a comment-only edit is not', () => {
    const { ws, hash } = project()
    const before = hash()
    ws.write('lib/util.ts', `// Trims names.\nexport const trim = (r: { name: string }) => ({\n  ...r,\n  name: r.name.trim(),\n});\n`)
    expect(hash().hash).toBe(before.hash)
    ws.write('lib/util.ts', UTIL.replace('trim()', 'trimStart()'))
    const after = hash()
    expect(after.hash).not.toBe(before.hash)
    expect(explainChange(before.components, after.components)).toEqual(['local module lib/util.ts changed'])
    // Same size, written right after: the file's times may not have ticked, and the hash must still see it.
    ws.write('lib/util.ts', UTIL.replace('trim()', 'trimRight()'))
    expect(hash().hash).not.toBe(after.hash)
  })

  it('an edit after the module hash was memoized is still seen', async () => {
    const { ws, hash } = project()
    await new Promise((resolve) => setTimeout(resolve, 2100))
    const memoized = hash()
    expect(hash().hash).toBe(memoized.hash)
    ws.write('lib/keys/index.ts', KEYS.replace('key:', 'id:')) // same size
    expect(explainChange(memoized.components, hash().components)).toEqual(['local module lib/keys/index.ts changed'])
  })

  it('a package version change is a change, and says which versions', () => {
    const { ws, hash } = project()
    const before = hash()
    ws.write('node_modules/fakepkg/package.json', JSON.stringify({ name: 'fakepkg', version: '1.0.1' }))
    const after = hash()
    expect(after.hash).not.toBe(before.hash)
    expect(explainChange(before.components, after.components)).toEqual(['package fakepkg 1.0.0 → 1.0.1'])
  })

  it('missing modules and packages count as missing; a module acorn cannot read counts by its bytes', () => {
    const { ws, hash } = project()
    ws.write('lib/util.ts', `import { gone } from './gone.js'\nimport nothing from 'nopkg'\n@sealed class Util {}\nexport const trim = gone\n`)
    const { components } = hash()
    expect(components['module:lib/gone.js']).toBe('missing')
    expect(components['package:nopkg']).toBe('missing')
    expect(components['module:lib/util.ts']).toMatch(/^raw:[0-9a-f]{64}$/)
  })

  it('follows #internal imports through package.json, every target of every condition', () => {
    ws = workspace({
      'package.json': JSON.stringify({ type: 'module', imports: { '#lib/*': './lib/*.ts', '#keys': { types: './lib/keys/index.d.ts', default: './lib/keys/index.ts' } } }),
      'filedge.config.ts': `import { trim } from '#lib/util'\nimport { keyOf } from '#keys'\nimport { nope } from '#nope'\n`,
      'lib/util.ts': UTIL,
      'lib/keys/index.ts': KEYS,
    })
    const hash = () => stage(run, { definedIn: ws!.file('filedge.config.ts') })
    const before = hash()
    expect(before.components).toMatchObject({ 'module:lib/util.ts': expect.any(String), 'module:lib/keys/index.ts': expect.any(String), 'module:lib/keys/index.d.ts': 'missing', 'module:#nope': 'missing' })
    ws.write('lib/util.ts', UTIL.replace('trim()', 'trimStart()'))
    expect(explainChange(before.components, hash().components)).toEqual(['local module lib/util.ts changed'])
  })

  it('hashes the same from another directory (no absolute paths)', () => {
    const { ws, hash } = project()
    const copy = mkdtempSync(path.join(os.tmpdir(), 'filedge-stage-copy-'))
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(ws.dir, copy, { recursive: true, verbatimSymlinks: true })
    expect(stage(run, { definedIn: path.join(copy, 'filedge.config.ts') }).hash).toBe(hash().hash)
    expect(stage(run, { definedIn: pathToFileURL(path.join(copy, 'filedge.config.ts')).href }).hash).toBe(hash().hash)
  })
})

describe('inputs, options and parents', () => {
  const run = fromSource('(rows, ctx) => rows.filter((r) => r.x > ctx.inputs.threshold)')
  const withInputs = (inputs: Record<string, unknown>) => stage(run, { inputs }).hash

  it('inputs change the hash, canonically', () => {
    expect(withInputs({ threshold: 10 })).not.toBe(withInputs({ threshold: 11 }))
    expect(withInputs({ rules: { a: 1, b: 2 } })).toBe(withInputs({ rules: { b: 2, a: 1 } }))
    expect(withInputs({ a: 1, b: 2 })).toBe(withInputs({ b: 2, a: 1 }))
    const apart: [unknown, unknown][] = [
      ['1', 1],
      [-0, 0],
      [Number.NaN, null],
      [Infinity, null],
      [undefined, null],
      [1n, 1],
      [new Date('2024-01-01T00:00:00Z'), '2024-01-01T00:00:00.000Z'],
      [/a/g, /a/i],
      [Buffer.from('ab'), new Uint8Array([97, 98])],
      [new Map([['a', 1], ['b', 2]]), new Map([['b', 2], ['a', 1]])],
      [new Set([1, 2]), [1, 2]],
      [[1, , 3], [1, undefined, 3]],
      [{ a: undefined }, {}],
    ]
    for (const [a, b] of apart) expect(withInputs({ v: a }), `${String(a)} vs ${String(b)}`).not.toBe(withInputs({ v: b }))
    expect(withInputs({ v: new Map([['k', new Set([1n])]]) })).toBe(withInputs({ v: new Map([['k', new Set([1n])]]) }))
    const shared = { x: 1 }
    expect(() => withInputs({ v: [shared, shared] })).not.toThrow()
  })

  it('refuses what it cannot hash faithfully, naming the stage and the path', () => {
    const cyclic: Record<string, unknown> = { name: 'a' }
    cyclic.self = cyclic
    class Rule {
      limit = 1
    }
    const refused: [Record<string, unknown>, string][] = [
      [{ rules: { list: [1, { fn: () => 1 }] } }, 'inputs.rules.list[1].fn is a function'],
      [{ tag: Symbol('x') }, 'inputs.tag is a symbol'],
      [{ rule: new Rule() }, 'inputs.rule is a Rule'],
      [{ pending: Promise.resolve(1) }, 'inputs.pending is a Promise'],
      [{ weak: new WeakMap() }, 'inputs.weak is a WeakMap'],
      [{ tree: cyclic }, 'inputs.tree.self refers back'],
      [{ lookup: new Map([['k', () => 1]]) }, 'inputs.lookup[entry 0].value is a function'],
      [{ 'odd key': { [Symbol('s')]: 1 } }, 'inputs["odd key"] has symbol keys'],
    ]
    for (const [inputs, says] of refused) {
      expect(() => stage(run, { inputs }), says).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringContaining(`stage "clean": ${says}`) }))
    }
  })

  it('options count canonically and are told apart from inputs', () => {
    const options = (value: unknown) => stage(run, { options: value })
    expect(options({ from: 'raw', columns: { a: 'string', b: 'integer' } }).hash).toBe(options({ columns: { b: 'integer', a: 'string' }, from: 'raw' }).hash)
    const before = options({ from: 'raw', columns: { a: 'string' } })
    const after = options({ from: 'raw', columns: { a: 'integer' } })
    expect(explainChange(before.components, after.components)).toEqual(['options changed (declared columns or from)'])
  })

  it("a parent's change reaches its children; a sibling's does not", () => {
    const parent = (source: string) => stage(fromSource(source)).hash
    const sibling = (source: string) => stage(fromSource(source), { parents: [parent('(rows) => rows')] })
    const child = (parentSource: string) => stage(run, { parents: [parent(parentSource)] })
    expect(child('(rows) => rows').hash).toBe(child('(rows) => rows').hash)
    const before = child('(rows) => rows')
    const after = child('(rows) => rows.slice(1)')
    expect(after.hash).not.toBe(before.hash)
    expect(explainChange(before.components, after.components)).toEqual(['parent stage 0 changed'])
    expect(sibling('(rows) => rows').hash).not.toBe(sibling('(rows) => rows.reverse()').hash)
    expect(child('(rows) => rows').hash).toBe(before.hash)
  })
})

describe('explainChange', () => {
  it('names each kind of change, and nothing when equal', () => {
    const before = { abi: '1', code: 'c1', 'module:lib/clean.ts': 'm1', 'module:lib/old.ts': 'o1', 'package:lodash': '4.17.20', options: 'p1', 'input:threshold': 't1', 'parent:0': 'h1' }
    const after = { abi: '2', code: 'c2', 'module:lib/clean.ts': 'm2', 'package:lodash': '4.17.21', 'package:dayjs': '1.11.0', options: 'p2', 'input:threshold': 't2', 'input:limit': 'l1', 'parent:0': 'h2', 'parent:1': 'h3' }
    expect(explainChange(before, after)).toEqual([
      "filedge's stage ABI changed 1 → 2",
      'the code of run changed',
      'local module lib/clean.ts changed',
      'local module lib/old.ts is no longer imported',
      'package lodash 4.17.20 → 4.17.21',
      'package dayjs is now imported (1.11.0)',
      'options changed (declared columns or from)',
      'input threshold changed',
      'input limit was added',
      'parent stage 0 changed',
      'parent stage 1 was added',
    ])
    expect(explainChange(after, after)).toEqual([])
    const real = stage(fromSource('(rows) => rows'), { inputs: { limit: 5 } })
    expect(explainChange(real.components, { ...real.components })).toEqual([])
    expect(explainChange(real.components, stage(fromSource('(rows) => rows')).components)).toEqual(['input limit was removed'])
  })
})
