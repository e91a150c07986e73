import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import type { ResolvedFormat, ResolvedPipeline } from '../../config/types.js'
import type { Sample } from '../../inspect/sample.js'
import { usageError } from '../../errors.js'
import { BUILTIN_FORMATS, detectFormat, formatAlias } from '../../formats/registry.js'
import { printable } from '../../printable.js'
import { count } from '../../reporters/format.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'

interface InspectFlags extends ConfigOption {
  readonly rows: string
  readonly format?: string
  readonly delimiter?: string
  readonly sheet?: string
  readonly header?: string
  readonly pipeline?: string
  readonly json?: boolean
}

export function registerInspect(program: Command, io: CliIo): void {
  program
    .command('inspect')
    .argument('<file>', 'a data file (csv, tsv, ndjson, jsonl, json, parquet, xlsx; gzipped too)')
    .description('sample a file and print a ready-to-paste `columns` block, with a confidence tier per column')
    .option('--rows <n>', 'records to sample', '1000')
    .option('--format <type>', 'csv, tsv, ndjson, json, parquet or xlsx (default: from the extension)')
    .option('--delimiter <char>', 'CSV delimiter (default ,)')
    .option('--sheet <name|n>', 'Excel: the sheet, by name or 1-based position (default: the first)')
    .option('--header <n>', 'Excel: the 1-based row that names the columns (default 1)')
    .option('-p, --pipeline <name>', "read the file with this pipeline's format and its options (a fixed-width layout)")
    .option('-c, --config <path>', 'config file, for --pipeline')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      '\nTiers: high (every sampled value fits), low (fits, but nulls seen or values nested), ambiguous (more than one reading, or odd values).\n\nExamples:\n  $ filedge inspect incoming/orders-2024-05-01.csv\n  $ filedge inspect events.ndjson.gz --rows 10000 --json\n  $ filedge inspect export.xlsx --sheet Orders --header 3\n  $ filedge inspect drops/accounts.dat --pipeline accounts',
    )
    .action(async (file: string, flags: InspectFlags) => {
      const rows = Number(flags.rows)
      if (!Number.isInteger(rows) || rows < 1) throw usageError(`--rows: expected a positive integer; got "${flags.rows}"`)
      let format: ResolvedFormat | undefined
      let pipeline: ResolvedPipeline | undefined
      if (flags.pipeline !== undefined) {
        const config = await configFor(flags, io)
        pipeline = config.pipelines.find((candidate) => candidate.name === flags.pipeline)
        if (pipeline === undefined) throw usageError(`--pipeline: unknown pipeline "${flags.pipeline}"; the config has ${config.pipelines.map((candidate) => `"${candidate.name}"`).join(', ')}`)
        format = pipeline.format
      }
      if (flags.format !== undefined && flags.format !== format?.type) {
        // A fixed-width file has no fields without its layout, which lives in a pipeline's format.
        if (flags.format === 'fixed') throw usageError("--format fixed: a fixed-width file is read by its layout; name the pipeline whose format holds it with --pipeline")
        format = formatAlias(flags.format) ?? (flags.format in BUILTIN_FORMATS ? { type: flags.format, options: {} } : undefined)
        if (format === undefined) throw usageError(`--format: expected one of ${[...Object.keys(BUILTIN_FORMATS).filter((type) => type !== 'fixed'), 'tsv'].join(', ')}; got "${flags.format}"`)
      }
      if (flags.delimiter !== undefined) {
        if (flags.delimiter.length !== 1) throw usageError('--delimiter: expected a single character')
        format = { type: 'csv', options: { ...(format?.options ?? {}), delimiter: flags.delimiter } }
      }
      if (flags.sheet !== undefined || flags.header !== undefined) {
        const excel = (format ?? detectFormat(file))?.type === 'xlsx'
        if (!excel) throw usageError(`${flags.sheet !== undefined ? '--sheet' : '--header'}: only Excel files have sheets and header rows; the file is not .xlsx (use --format xlsx if it is one)`)
        const header = flags.header === undefined ? undefined : Number(flags.header)
        if (header !== undefined && !(Number.isInteger(header) && header >= 1)) throw usageError(`--header: expected a row number, 1 or more; got "${flags.header}"`)
        // Digits pick a sheet by position, as `sheet: 2` does in a config.
        const sheet = flags.sheet === undefined ? undefined : /^\d+$/.test(flags.sheet) ? Number(flags.sheet) : flags.sheet
        if (sheet === 0) throw usageError('--sheet: positions start at 1')
        format = { type: 'xlsx', options: { ...(format?.options ?? {}), ...(sheet === undefined ? {} : { sheet }), ...(header === undefined ? {} : { header }) } }
      }
      const absPath = path.resolve(io.cwd, file)
      if (!existsSync(absPath)) throw usageError(`no such file: ${file}`)
      const [{ sampleFile }, { columnsBlock, inferColumns }] = await Promise.all([import('../../inspect/sample.js'), import('../../inspect/infer.js')])
      const sample = await sampleFile(absPath, file, rows, format)
      // The pipeline's protected columns, by the field they read: their values are never shown, and the block keeps their protection.
      const protections = new Map(
        (pipeline?.columns ?? []).flatMap((column) => (column.protect === undefined ? [] : [[column.source, { kind: column.protect.kind, variable: column.protect.key.name }] as const])),
      )
      const guesses = inferColumns(sample.fields, sample.records, { withheld: new Set(protections.keys()) })
      const quarantine = pipeline?.quarantine === undefined ? undefined : await sampledQuarantine(pipeline, sample, file)
      if (flags.json) {
        printJson(io.stdout, {
          file,
          format: sample.format,
          rows: sample.records.length,
          columns: guesses.map((guess) => ({ ...guess, ...(protections.has(guess.name) ? { protect: protections.get(guess.name) } : {}) })),
          ...(quarantine === undefined ? {} : { quarantine }),
        })
        return
      }
      print(io.stdout, `// ${printable(file)}: ${count(sample.records.length)} rows sampled (${sample.format})`)
      if (quarantine !== undefined) print(io.stdout, `// ${printable(quarantine.summary)}`)
      print(io.stdout, columnsBlock(guesses, protections))
    })
}

/**
 * What the pipeline's quarantine would make of the sampled records, coerced
 * with its columns as a load coerces them: how many it would set aside, and
 * whether that share would pass `maxFraction` (`maxRows` counts a whole
 * file, which a sample is not). A header no column fits fails the file
 * whatever the quarantine.
 */
async function sampledQuarantine(pipeline: ResolvedPipeline, sample: Sample, file: string): Promise<{ records: number; sampled: number; summary: string }> {
  const { coerceRows } = await import('../../columns/coerce.js')
  const quarantine = pipeline.quarantine!
  let records = 0
  try {
    const raw = { fields: sample.fields, batches: (async function* () { yield { records: sample.records as unknown[][], lines: sample.records.map((_, index) => index + 2) } })() }
    for await (const batch of coerceRows(raw, pipeline.columns, { file, unknownColumns: pipeline.unknownColumns, onReject: () => void records++ })) void batch
  } catch (error) {
    return { records: 0, sampled: sample.records.length, summary: `quarantine: the file would fail whole, whatever its records: ${(error as Error).message}` }
  }
  const sampled = sample.records.length
  const share = sampled === 0 ? 0 : records / sampled
  const limit = quarantine.maxFraction === undefined ? '' : share > quarantine.maxFraction ? `, more than maxFraction ${quarantine.maxFraction}: a file like it would fail whole` : `, within maxFraction ${quarantine.maxFraction}`
  const rowsNote = quarantine.maxRows === undefined ? '' : ` (maxRows ${count(quarantine.maxRows)} counts the whole file)`
  return { records, sampled, summary: `quarantine: ${count(records)} of ${count(sampled)} sampled records would be set aside${limit}${rowsNote}` }
}
