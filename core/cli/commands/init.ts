import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { CONFIG_SEARCH_PLACES } from '../../config/places.js'
import { usageError } from '../../errors.js'
import { detectFormat } from '../../formats/registry.js'
import { print, type CliIo } from '../io.js'

const PRESETS = {
  local: { module: 'filedge/presets/local', call: 'local()', what: 'a SQLite ledger and a DuckDB warehouse under .filedge/' },
  postgres: { module: 'filedge/presets/postgres', call: 'postgresPreset()', what: 'a Postgres ledger and warehouse from DATABASE_URL' },
} as const

interface InitFlags {
  readonly preset: string
  readonly source: string
  readonly table?: string
}

/** A TypeScript string literal in the house style (single quotes). */
function tsString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
}

/** The config file already in `dir`, if any (a `filedge` key in package.json counts). */
function existingConfig(dir: string): string | undefined {
  return CONFIG_SEARCH_PLACES.find((name) => {
    const file = path.join(dir, name)
    if (!existsSync(file)) return false
    if (name !== 'package.json') return true
    try {
      return 'filedge' in (JSON.parse(readFileSync(file, 'utf8')) as object)
    } catch {
      return false
    }
  })
}

async function columnsFor(sourceDir: string, io: CliIo): Promise<{ block: string; from?: string }> {
  const sample = existsSync(sourceDir)
    ? (await import('fast-glob')).default.sync('**/*', { cwd: sourceDir, onlyFiles: true, dot: false }).sort().find((file) => detectFormat(file) !== undefined)
    : undefined
  if (sample !== undefined) {
    const display = path.relative(io.cwd, path.join(sourceDir, sample))
    try {
      const [{ sampleFile }, { columnsBlock, inferColumns }] = await Promise.all([import('../../inspect/sample.js'), import('../../inspect/infer.js')])
      const { fields, records } = await sampleFile(path.join(sourceDir, sample), display, 1000)
      return { block: columnsBlock(inferColumns(fields, records)), from: display }
    } catch {
      // An unreadable sample is no reason to refuse to scaffold: fall back to the placeholder.
    }
  }
  return { block: "columns: {\n  id: { type: 'string', required: true },\n}," }
}

export function registerInit(program: Command, io: CliIo): void {
  program
    .command('init')
    .description('scaffold filedge.config.ts, a source folder and a .gitignore entry (never overwrites a config)')
    .option('--preset <name>', `${Object.keys(PRESETS).join(' or ')}`, 'local')
    .option('--source <dir>', 'folder files land in', 'incoming')
    .option('--table <name>', 'destination table (default: the source folder name)')
    .addHelpText(
      'after',
      `\nPresets:\n${Object.entries(PRESETS).map(([name, preset]) => `  ${name.padEnd(9)} ${preset.what}`).join('\n')}\n\nIf the source folder already holds a data file, the columns are inferred from it (as \`filedge inspect\` would).\n\nExamples:\n  $ filedge init\n  $ filedge init --preset postgres --source drops/orders --table orders`,
    )
    .action(async (flags: InitFlags) => {
      const preset = PRESETS[flags.preset as keyof typeof PRESETS]
      if (preset === undefined) throw usageError(`--preset: expected one of ${Object.keys(PRESETS).join(', ')}; got "${flags.preset}"`)
      const existing = existingConfig(io.cwd)
      if (existing !== undefined) throw usageError(`${existing} already exists; filedge init never overwrites a config`)

      const sourceDir = path.resolve(io.cwd, flags.source)
      const source = path.relative(io.cwd, sourceDir).split(path.sep).join('/')
      const name = (flags.table ?? path.basename(sourceDir)).replace(/[^A-Za-z0-9_.-]+/g, '_') || 'files'
      const { block, from } = await columnsFor(sourceDir, io)
      const columns = block.split('\n').map((line, index) => (index === 0 ? line : `      ${line}`)).join('\n')
      const config = `import { defineConfig } from 'filedge'
import { ${preset.call.replace('()', '')} } from '${preset.module}'

export default defineConfig({
  presets: [${preset.call}],
  pipelines: [
    {
      name: ${tsString(name)},
      source: ${tsString(source)},
      table: ${tsString(flags.table ?? name)},
      // ${from ? `Inferred from ${from} by \`filedge inspect\`; check the types.` : 'Replace with the block `npx filedge inspect <a file>` prints.'}
      ${columns}
    },
  ],
})
`
      writeFileSync(path.join(io.cwd, 'filedge.config.ts'), config)
      print(io.stdout, 'created filedge.config.ts')
      if (!existsSync(sourceDir)) {
        mkdirSync(sourceDir, { recursive: true })
        writeFileSync(path.join(sourceDir, '.gitkeep'), '')
        print(io.stdout, `created ${source}/`)
      }
      const gitignore = path.join(io.cwd, '.gitignore')
      const ignored = existsSync(gitignore) ? readFileSync(gitignore, 'utf8') : ''
      if (!ignored.split(/\r?\n/).some((line) => line.trim() === '.filedge/' || line.trim() === '.filedge')) {
        writeFileSync(gitignore, `${ignored}${ignored === '' || ignored.endsWith('\n') ? '' : '\n'}.filedge/\n`)
        print(io.stdout, `${ignored === '' ? 'created' : 'updated'} .gitignore (.filedge/)`)
      }
      print(io.stdout, from === undefined ? `\nnext: put a file in ${source}/, check the columns, then run \`npx filedge\`` : `\nnext: check the columns inferred from ${from}, then run \`npx filedge\``)
    })
}
