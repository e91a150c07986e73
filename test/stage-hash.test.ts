import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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
/** A function from its source, named `run` as one written as a stage's `run` is (an anonymous one is what a factory returns). */
const fromSource = (source: string) => new Function(`return ({ run: ${source} }).run`)() as StageHashInput['run']
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

  it('hashes the import run reaches, the local modules it leads to and their packages, by relative path', () => {
    const { hash } = project()
    // The config itself comes back through lib/clean.ts's `import type`: an imported module's imports are read from its tokens.
    expect(Object.keys(hash().components).sort()).toEqual(['abi', 'binding:clean', 'code', 'module:filedge.config.ts', 'module:lib/clean.ts', 'module:lib/keys/index.ts', 'module:lib/util.ts', 'package:fakepkg'])
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
    const hash = () => stage(fromSource('(rows) => rows.map(trim).filter((r) => keyOf(r) !== nope)'), { definedIn: ws!.file('filedge.config.ts') })
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

describe('what run reaches in its defining module', () => {
  /** Stage code as a config writes it, and as Function.prototype.toString gives it back for a module Node loads as written (a .js config). */
  const RUNS = {
    a: '(rows) => rows.map((r) => ({ ...r, tax: round(r.amount * RATE) }))',
    b: '(rows) => rows.filter((r) => r.amount > LIMIT && Math.abs(r.delta) < 1)',
  }
  const TOP = `import { defineConfig, stage } from 'filedge'

const RATE = 0.2
const LIMIT = 100
const DIGITS = 2
function round(n) {
  return Number(n.toFixed(DIGITS))
}
`
  const config = (runs: Record<string, string> = RUNS, top = TOP) => `${top}
export default defineConfig({
  pipelines: [{
    name: 'orders',
    stages: [
${Object.entries(runs)
  .map(([name, run]) => `      stage({ name: '${name}', run: ${run} }),`)
  .join('\n')}
    ],
  }],
})
`
  /** Hashes of a, b and c (b's child), from the config as it is on disk now and the stage code given. */
  const hashes = (runs: Record<string, string> = RUNS) => {
    const definedIn = ws!.file('filedge.config.ts')
    const [a, b] = ['a', 'b'].map((name) => hashStage({ name, run: fromSource(runs[name]), definedIn }))
    const c = hashStage({ name: 'c', run: fromSource('(rows) => rows.slice(0, 10)'), definedIn, parents: [b.hash] })
    return { a, b, c }
  }
  const write = (runs: Record<string, string> = RUNS, top = TOP) => ws!.write('filedge.config.ts', config(runs, top))
  const setup = (runs: Record<string, string> = RUNS, top = TOP, files: Record<string, string> = {}) => {
    ws = workspace({ ...files, 'filedge.config.ts': config(runs, top) })
    return hashes(runs)
  }

  it('counts the top-level declarations run reads, transitively; globals count for nothing', () => {
    const { a, b } = setup()
    expect(Object.keys(a.components).sort()).toEqual(['abi', 'binding:DIGITS', 'binding:RATE', 'binding:round', 'code'])
    expect(Object.keys(b.components).sort()).toEqual(['abi', 'binding:LIMIT', 'code'])
  })

  it("a statement changed in b's run moves b and its child c, not a", () => {
    const before = setup()
    const runs = { ...RUNS, b: RUNS.b.replace('r.amount > LIMIT', 'r.amount >= LIMIT') }
    write(runs)
    const after = hashes(runs)
    expect(after.a.hash).toBe(before.a.hash)
    expect(after.b.hash).not.toBe(before.b.hash)
    expect(after.c.hash).not.toBe(before.c.hash)
    expect(explainChange(before.b.components, after.b.components)).toEqual(['the code of run changed'])
  })

  it('a top-level constant counts for the stages that read it; a comment anywhere counts for none', () => {
    const before = setup()
    write(RUNS, TOP.replace('RATE = 0.2', 'RATE = 0.25'))
    const after = hashes()
    expect(after.b.hash).toBe(before.b.hash)
    expect(explainChange(before.a.components, after.a.components)).toEqual(['top-level RATE changed'])
    const commented = { ...RUNS, b: RUNS.b.replace('=> rows', '=> /* keep the big ones */ rows') }
    write(commented, `// Orders, taxed.\n${TOP.replace('const LIMIT = 100', 'const LIMIT = 100 // cents')}\n/** the end */`)
    const recommented = hashes(commented)
    expect(recommented.a.hash).toBe(before.a.hash)
    expect(recommented.b.hash).toBe(before.b.hash)
  })

  it('a top-level helper counts with what it reads in turn', () => {
    const before = setup()
    write(RUNS, TOP.replace('DIGITS = 2', 'DIGITS = 3'))
    const after = hashes()
    expect(after.b.hash).toBe(before.b.hash)
    expect(explainChange(before.a.components, after.a.components)).toEqual(['top-level DIGITS changed'])
    // One use more of a top-level name is a change; the helper's own edit too.
    write(RUNS, TOP.replace('n.toFixed(DIGITS)', 'n.toFixed(DIGITS + 1)'))
    expect(explainChange(before.a.components, hashes().a.components)).toEqual(['top-level round changed'])
  })

  it('an imported local module counts for the stage that uses it, a package version for the stage that imports it', () => {
    const top = `import { defineConfig, stage } from 'filedge'\nimport { clean } from './lib/clean.js'\nimport fp from 'fakepkg/fp'\nimport './lib/setup.js'\n`
    const runs = { a: '(rows) => clean(rows)', b: '(rows) => rows.filter(fp.identity)' }
    const before = setup(runs, top, {
      'lib/clean.ts': `import { trim } from './util.js'\nexport const clean = (rows) => rows.map(trim)\n`,
      'lib/util.ts': `export const trim = (r) => ({ ...r, name: r.name.trim() })\n`,
      'lib/setup.ts': 'globalThis.precision = 2\n',
      'node_modules/fakepkg/package.json': JSON.stringify({ name: 'fakepkg', version: '1.0.0' }),
    })
    // A side-effect import runs with the module, as a top-level statement: every stage counts it, and its module.
    expect(Object.keys(before.a.components).sort()).toEqual(['abi', 'binding:clean', 'code', 'module:lib/clean.ts', 'module:lib/setup.ts', 'module:lib/util.ts', 'statements'])
    expect(Object.keys(before.b.components).sort()).toEqual(['abi', 'binding:fp', 'code', 'module:lib/setup.ts', 'package:fakepkg', 'statements'])
    ws!.write('lib/util.ts', `export const trim = (r) => ({ ...r, name: r.name.trimStart() })\n`)
    const edited = hashes(runs)
    expect(edited.b.hash).toBe(before.b.hash)
    expect(explainChange(before.a.components, edited.a.components)).toEqual(['local module lib/util.ts changed'])
    ws!.write('node_modules/fakepkg/package.json', JSON.stringify({ name: 'fakepkg', version: '1.0.1' }))
    const bumped = hashes(runs)
    expect(bumped.a.hash).toBe(edited.a.hash)
    expect(explainChange(edited.b.components, bumped.b.components)).toEqual(['package fakepkg 1.0.0 → 1.0.1'])
    // Which binding an import makes counts too, not only its module.
    write(runs, top.replace('{ clean }', '{ cleanAll as clean }'))
    expect(explainChange(bumped.a.components, hashes(runs).a.components)).toEqual(['top-level clean changed'])
  })

  it('top-level statements that are not declarations count for every stage', () => {
    const top = `${TOP}const RULES = []\nRULES.push(LIMIT)\n`
    const runs = { ...RUNS, b: '(rows) => rows.filter((r) => RULES.includes(r.kind))' }
    const before = setup(runs, top)
    expect(before.a.components.statements).toBeDefined()
    write(runs, top.replace('RULES.push(LIMIT)', 'RULES.push(LIMIT, 0)'))
    const after = hashes(runs)
    expect(explainChange(before.a.components, after.a.components)).toEqual(['a top-level statement (not a declaration) changed'])
    expect(explainChange(before.b.components, after.b.components)).toEqual(['a top-level statement (not a declaration) changed'])
  })

  it('a run that reads a name the module does not declare at the top (a closure made by a factory) counts the whole module', () => {
    const top = `${TOP}const taxed = (rate) => (rows) => rows.map((r) => ({ ...r, tax: r.amount * rate }))\n`
    const runs = { a: 'taxed(RATE)', b: RUNS.b }
    ws = workspace({ 'filedge.config.ts': config(runs, top) })
    const definedIn = ws.file('filedge.config.ts')
    // What taxed(RATE) returns: its text reads `rate`, and says nothing of RATE.
    const run = fromSource('(rows) => rows.map((r) => ({ ...r, tax: r.amount * rate }))')
    const before = hashStage({ name: 'a', run, definedIn })
    expect(before.components['whole-module']).toBe('run reads rate, neither a top-level binding of the module nor a global')
    const anonymous = new Function('return (rows) => rows.map((r) => ({ ...r, tax: r.amount * RATE }))')() as StageHashInput['run']
    expect(hashStage({ name: 'a', run: anonymous, definedIn }).components['whole-module']).toMatch(/^run has no name/)
    expect(before.components['module:filedge.config.ts']).toBeDefined()
    ws.write('filedge.config.ts', config(runs, top.replace('RATE = 0.2', 'RATE = 0.25')))
    expect(explainChange(before.components, hashStage({ name: 'a', run, definedIn }).components)).toEqual(['local module filedge.config.ts changed'])
    // The stage beside it still counts only what it reads.
    expect(Object.keys(hashStage({ name: 'b', run: fromSource(RUNS.b), definedIn }).components).sort()).toEqual(['abi', 'binding:LIMIT', 'code'])
  })

  it('a run that reads a name the module binds both at the top and inside a function counts the whole module', () => {
    const top = `${TOP}const limit = 10\nconst take = (limit) => ({ run: (rows) => rows.slice(0, limit) })\n`
    ws = workspace({ 'filedge.config.ts': config({ b: RUNS.b }, top).replace('stages: [', 'stages: [\n      stage({ name: \'a\', ...take(5) }),') })
    const definedIn = ws.file('filedge.config.ts')
    const run = fromSource('(rows) => rows.slice(0, limit)')
    const before = hashStage({ name: 'a', run, definedIn })
    expect(before.components['whole-module']).toBe('run reads limit, which the module also binds inside a function')
    // The value it reads is set where take is called: take(5) → take(6) is a change.
    ws.write('filedge.config.ts', readFileSync(definedIn, 'utf8').replace('take(5)', 'take(6)'))
    expect(hashStage({ name: 'a', run, definedIn }).hash).not.toBe(before.hash)
  })

  it('a module acorn cannot parse counts whole, for every stage; TypeScript that is only erased does not stop it', () => {
    const typed = TOP.replace('function round(n) {', 'function round(n: number): number {')
    const before = setup(RUNS, typed)
    expect(before.a.components['whole-module']).toBe('filedge.config.ts is not JavaScript acorn can parse')
    const runs = { ...RUNS, b: RUNS.b.replace('r.amount > LIMIT', 'r.amount >= LIMIT') }
    write(runs, typed)
    const after = hashes(runs)
    expect(explainChange(before.a.components, after.a.components)).toEqual(['local module filedge.config.ts changed'])
    const erasable = `import { defineConfig, stage, type StageRow } from 'filedge'\nimport type { UserConfig } from 'filedge'\n${TOP.replace(/^import .*\n/, '').replace('const RATE = 0.2', 'const RATE = 0.2 as const')}\nconst limits = { low: 1 } satisfies Record<string, number>\n`
    write(RUNS, erasable)
    const precise = hashes()
    expect(precise.a.components['whole-module']).toBeUndefined()
    expect(explainChange(after.a.components, precise.a.components)).toContain('only what run reaches in its module counts now')
    write(runs, erasable)
    expect(hashes(runs).a.hash).toBe(precise.a.hash)
  })

  it('a stage defined in its own module counts that module, whatever the config around it', () => {
    const stageModule = `import { stage } from 'filedge'\n\nconst KEEP = ['id', 'amount']\nconst pick = (row) => Object.fromEntries(KEEP.map((key) => [key, row[key]]))\n\nexport const slim = stage({ name: 'slim', run: (rows) => rows.map(pick) })\n`
    ws = workspace({ 'stages/slim.ts': stageModule, 'filedge.config.ts': config({ b: RUNS.b }, `${TOP}import { slim } from './stages/slim.js'\n`) })
    const run = fromSource('(rows) => rows.map(pick)')
    const hash = () => hashStage({ name: 'slim', run, definedIn: ws!.file('stages/slim.ts') })
    const before = hash()
    expect(Object.keys(before.components).sort()).toEqual(['abi', 'binding:KEEP', 'binding:pick', 'code'])
    ws.write('filedge.config.ts', config({ b: RUNS.b }, `${TOP.replace('LIMIT = 100', 'LIMIT = 200')}import { slim } from './stages/slim.js'\n`))
    expect(hash().hash).toBe(before.hash)
    ws.write('stages/slim.ts', stageModule.replace("'amount'", "'amount', 'day'"))
    expect(explainChange(before.components, hash().components)).toEqual(['top-level KEEP changed'])
  })

  it('through jiti, as a TypeScript config is loaded: the imports it rewrites are still followed', async () => {
    const top = `import { clean } from './lib/clean.ts'\nimport fp from 'fakepkg'\nconst LIMIT = 100\n`
    const body = (bRun: string) => `${top}\nexport default [\n  { name: 'a', run: (rows) => clean(rows) },\n  { name: 'b', run: ${bRun} },\n]\n`
    ws = workspace({
      'filedge.config.ts': body(RUNS.b.replace('Math.abs(r.delta) < 1', 'fp.ok(r)')),
      'lib/clean.ts': 'export const clean = (rows) => rows.filter(Boolean)\n',
      'node_modules/fakepkg/package.json': JSON.stringify({ name: 'fakepkg', version: '1.0.0', main: 'index.js' }),
      'node_modules/fakepkg/index.js': 'exports.ok = () => true\n',
    })
    const definedIn = ws.file('filedge.config.ts')
    const load = async () => {
      const { createJiti } = await import('jiti')
      const stages = (await createJiti(definedIn, { moduleCache: false, interopDefault: true }).import(definedIn, { default: true })) as { name: string; run: StageHashInput['run'] }[]
      return Object.fromEntries(stages.map(({ name, run }) => [name, hashStage({ name, run, definedIn })]))
    }
    const before = await load()
    expect(Object.keys(before.a!.components).sort()).toEqual(['abi', 'binding:clean', 'code', 'module:lib/clean.ts'])
    expect(Object.keys(before.b!.components).sort()).toEqual(['abi', 'binding:LIMIT', 'binding:fp', 'code', 'package:fakepkg'])
    ws.write('lib/clean.ts', 'export const clean = (rows) => rows.filter((row) => row.ok)\n')
    const edited = await load()
    expect(edited.b!.hash).toBe(before.b!.hash)
    expect(explainChange(before.a!.components, edited.a!.components)).toEqual(['local module lib/clean.ts changed'])
    ws.write('filedge.config.ts', body('(rows) => rows.slice(LIMIT)'))
    const rewritten = await load()
    expect(rewritten.a!.hash).toBe(edited.a!.hash)
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
    const before = { abi: '1', code: 'c1', 'binding:RATE': 'r1', 'binding:old': 'x1', 'module:lib/clean.ts': 'm1', 'module:lib/old.ts': 'o1', 'package:lodash': '4.17.20', options: 'p1', 'input:threshold': 't1', 'parent:0': 'h1' }
    const after = { abi: '2', code: 'c2', 'binding:RATE': 'r2', 'binding:round': 'd1', statements: 's1', 'module:lib/clean.ts': 'm2', 'package:lodash': '4.17.21', 'package:dayjs': '1.11.0', options: 'p2', 'input:threshold': 't2', 'input:limit': 'l1', 'parent:0': 'h2', 'parent:1': 'h3' }
    expect(explainChange(before, after)).toEqual([
      "filedge's stage ABI changed 1 → 2",
      'the code of run changed',
      'top-level RATE changed',
      'run now reaches top-level round',
      'run no longer reaches top-level old',
      'the module now has top-level statements besides declarations',
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
    const whole = { abi: '1', code: 'c1', 'whole-module': 'filedge.config.ts is not JavaScript acorn can parse', 'module:filedge.config.ts': 'f1' }
    expect(explainChange({ abi: '1', code: 'c1', 'binding:RATE': 'r1' }, whole)).toEqual([
      'its whole module counts: filedge.config.ts is not JavaScript acorn can parse',
      'run no longer reaches top-level RATE',
      'local module filedge.config.ts is now imported',
    ])
    expect(explainChange(whole, { abi: '1', code: 'c1', 'binding:RATE': 'r1' })[0]).toBe('only what run reaches in its module counts now')
    const real = stage(fromSource('(rows) => rows'), { inputs: { limit: 5 } })
    expect(explainChange(real.components, { ...real.components })).toEqual([])
    expect(explainChange(real.components, stage(fromSource('(rows) => rows')).components)).toEqual(['input limit was removed'])
  })
})
