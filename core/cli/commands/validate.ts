import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import type { ResolvedConfig, ResolvedPipeline } from '../../config/types.js'
import { usageError } from '../../errors.js'
import { printable } from '../../printable.js'
import { count, rowCount } from '../../reporters/format.js'
import type { FileValidation } from '../../runner/validate.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'

interface ValidateFlags extends ConfigOption {
  readonly pipeline?: string
  readonly json?: boolean
  readonly maxFailures: string
}

/** The pipeline a file belongs to: named, the only one, or the one whose source picks the file up. */
async function pipelineFor(config: ResolvedConfig, absPath: string, name: string | undefined): Promise<ResolvedPipeline> {
  const names = config.pipelines.map((pipeline) => `"${pipeline.name}"`).join(', ')
  if (name !== undefined) {
    const named = config.pipelines.find((pipeline) => pipeline.name === name)
    if (named === undefined) throw usageError(`--pipeline: unknown pipeline "${name}"; the config has ${names}`)
    return named
  }
  if (config.pipelines.length === 1) return config.pipelines[0]
  // Local sources only: `validate` reads a file on this disk.
  const owners: ResolvedPipeline[] = []
  for (const pipeline of config.pipelines) {
    const { source } = pipeline
    if (source.localPath === undefined) continue
    for await (const entry of source.list({ signal: new AbortController().signal, warn: () => {} })) {
      if (source.localPath(entry.path) === absPath) {
        owners.push(pipeline)
        break
      }
    }
  }
  if (owners.length === 1) return owners[0]
  const why = owners.length === 0 ? "is not in any pipeline's source" : `is in the source of ${owners.map((pipeline) => `"${pipeline.name}"`).join(' and ')}`
  throw usageError(`${path.relative(process.cwd(), absPath) || absPath} ${why}; choose one with --pipeline (${names})`)
}

function printFile(io: CliIo, report: FileValidation): void {
  const where = `${printable(report.path)} (${report.pipeline}, ${report.format ?? 'unknown format'})`
  const total = report.failures.length + report.more
  if (total === 0) {
    print(io.stdout, `✓ ${where}: ${count(report.rows)} rows valid`)
    return
  }
  const rows = report.stopped ? `reading stopped after ${count(report.rows)} rows` : `${count(report.failedRows)} of ${count(report.rows)} rows`
  const { quarantine } = report
  // A quarantine that would set the bad records aside: the file loads, and the records are listed all the same.
  const mark = quarantine?.loads === true ? '✓' : '✗'
  print(io.stdout, `${mark} ${where}: ${count(total)} failure${total === 1 ? '' : 's'}, ${rows}`)
  for (const failure of report.failures) print(io.stdout, `  ${printable(failure.message)}`)
  if (report.more > 0) print(io.stdout, `  … and ${count(report.more)} more (raise --max-failures to list them)`)
  if (quarantine !== undefined) {
    const limits = [quarantine.maxRows === undefined ? '' : `maxRows ${count(quarantine.maxRows)}`, quarantine.maxFraction === undefined ? '' : `maxFraction ${quarantine.maxFraction}`].filter(Boolean).join(', ')
    const aside = `${count(quarantine.records)} record${quarantine.records === 1 ? '' : 's'} would be quarantined (${limits})`
    print(io.stdout, `  quarantine: ${aside}; ${quarantine.loads ? `the file would load ${rowCount(report.rows - quarantine.records)}` : 'the file would fail whole'}`)
  }
}

export function registerValidate(program: Command, io: CliIo, exit: (code: number) => void): void {
  program
    .command('validate')
    .argument('<file...>', 'files to check')
    .description("parse and coerce files with a pipeline's format and columns; list every bad row and column; write nothing")
    .option('-c, --config <path>', 'config file')
    .option('-p, --pipeline <name>', "the pipeline whose columns apply (default: the only one, or the one whose source holds the file)")
    .option('--max-failures <n>', 'list at most this many failures per file (the rest are counted); 0: all', '0')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExit code: 0 every file is valid (or would load, its bad records quarantined), 1 some row or file failed, 2 usage or config error.\n\nExamples:\n  $ filedge validate incoming/orders-2024-05-01.csv\n  $ filedge validate drops/*.ndjson --pipeline events --json')
    .action(async (files: string[], flags: ValidateFlags) => {
      const maxFailures = Number(flags.maxFailures)
      if (!Number.isInteger(maxFailures) || maxFailures < 0) throw usageError(`--max-failures: expected 0 or a positive integer; got "${flags.maxFailures}"`)
      const config = await configFor(flags, io)
      const targets = files.map((file) => path.resolve(io.cwd, file))
      const missing = targets.filter((target) => !existsSync(target))
      if (missing.length > 0) throw usageError(`no such file: ${missing.map((target) => path.relative(io.cwd, target)).join(', ')}`)
      const owners = await Promise.all(targets.map((target) => pipelineFor(config, target, flags.pipeline)))
      // The parsers and hooks load only when there is something to validate, not for `--help`.
      const { formatHooks, loads, validateFile } = await import('../../runner/validate.js')
      const hooks = await formatHooks(config)
      const reports: FileValidation[] = []
      try {
        for (const [index, target] of targets.entries()) reports.push(await validateFile(hooks, config, owners[index], target, maxFailures))
      } finally {
        await hooks.close.promise()
      }
      // A file a quarantine would load despite its bad records is not a failure (its records are listed all the same).
      const failed = reports.filter((report) => !loads(report))
      exit(failed.length > 0 ? 1 : 0)
      if (flags.json) {
        printJson(io.stdout, { ok: failed.length === 0, files: reports }, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))
        return
      }
      for (const report of reports) printFile(io, report)
      if (reports.length > 1) {
        const rows = reports.reduce((sum, report) => sum + report.rows, 0)
        print(io.stdout, `${count(reports.length)} files · ${count(failed.length)} failed · ${count(rows)} rows`)
      }
    })
}
