import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import type { ResolvedFormat } from '../../config/types.js'
import { usageError } from '../../errors.js'
import { BUILTIN_FORMATS, formatAlias } from '../../formats/registry.js'
import { printable } from '../../printable.js'
import { count } from '../../reporters/format.js'
import { print, printJson, type CliIo } from '../io.js'

interface InspectFlags {
  readonly rows: string
  readonly format?: string
  readonly delimiter?: string
  readonly json?: boolean
}

export function registerInspect(program: Command, io: CliIo): void {
  program
    .command('inspect')
    .argument('<file>', 'a data file (csv, tsv, ndjson, jsonl, json, parquet; gzipped too)')
    .description('sample a file and print a ready-to-paste `columns` block, with a confidence tier per column')
    .option('--rows <n>', 'records to sample', '1000')
    .option('--format <type>', 'csv, tsv, ndjson, json or parquet (default: from the extension)')
    .option('--delimiter <char>', 'CSV delimiter (default ,)')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nTiers: high (every sampled value fits), low (fits, but nulls seen or values nested), ambiguous (more than one reading, or odd values).\n\nExamples:\n  $ filedge inspect incoming/orders-2024-05-01.csv\n  $ filedge inspect events.ndjson.gz --rows 10000 --json',
    )
    .action(async (file: string, flags: InspectFlags) => {
      const rows = Number(flags.rows)
      if (!Number.isInteger(rows) || rows < 1) throw usageError(`--rows: expected a positive integer; got "${flags.rows}"`)
      let format: ResolvedFormat | undefined
      if (flags.format !== undefined) {
        format = formatAlias(flags.format) ?? (flags.format in BUILTIN_FORMATS ? { type: flags.format, options: {} } : undefined)
        if (format === undefined) throw usageError(`--format: expected one of ${[...Object.keys(BUILTIN_FORMATS), 'tsv'].join(', ')}; got "${flags.format}"`)
      }
      if (flags.delimiter !== undefined) {
        if (flags.delimiter.length !== 1) throw usageError('--delimiter: expected a single character')
        format = { type: 'csv', options: { ...(format?.options ?? {}), delimiter: flags.delimiter } }
      }
      const absPath = path.resolve(io.cwd, file)
      if (!existsSync(absPath)) throw usageError(`no such file: ${file}`)
      const [{ sampleFile }, { columnsBlock, inferColumns }] = await Promise.all([import('../../inspect/sample.js'), import('../../inspect/infer.js')])
      const sample = await sampleFile(absPath, file, rows, format)
      const guesses = inferColumns(sample.fields, sample.records)
      if (flags.json) {
        printJson(io.stdout, { file, format: sample.format, rows: sample.records.length, columns: guesses })
        return
      }
      print(io.stdout, `// ${printable(file)}: ${count(sample.records.length)} rows sampled (${sample.format})`)
      print(io.stdout, columnsBlock(guesses))
    })
}
