import type { Command } from 'commander'
import { selectPipelines } from '../../config/pipelines.js'
import { describeError } from '../../errors.js'
import { printable } from '../../printable.js'
import type { FileOrigin } from '../../source.js'
import { count } from '../../reporters/format.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'

/**
 * `filedge lineage`: what each pipeline's table is made of — every committed
 * file with its hash, rows, commit time and the names it arrived under. Every
 * row in the table carries its file's hash in `_source_file_hash`, so a row
 * leads back to its file, and a file here leads to its rows. A source that
 * knows where its files came from (`describeFile`: the fetch source's API
 * pages) adds that under each file.
 */
export function registerLineage(program: Command, io: CliIo): void {
  program
    .command('lineage')
    .description("the files each pipeline's table is made of: hash, rows, commit time and paths of every committed file")
    .option('-c, --config <path>', 'config file')
    .option('-p, --pipeline <name...>', 'only these pipelines')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      "\nEvery row in a destination table carries its file's hash in _source_file_hash:\n  SELECT * FROM orders WHERE _source_file_hash = '<hash>'\n\nExamples:\n  $ filedge lineage\n  $ filedge lineage --pipeline orders --json",
    )
    .action(async (flags: ConfigOption & { json?: boolean; pipeline?: string[] }) => {
      const config = await configFor(flags, io)
      const chosen = selectPipelines(config, flags.pipeline)
      const files = await withLedger(config, async (ledger) => (ledger ? ledger.committed(chosen.map((pipeline) => pipeline.name)) : []))
      const lineage = await Promise.all(
        chosen.map(async (pipeline) => {
          const mine = files.filter((file) => file.pipeline === pipeline.name)
          const originOf = async (file: string): Promise<FileOrigin | undefined> => {
            const { source } = pipeline
            if (source.describeFile === undefined) return undefined
            return source.describeFile(file, { root: config.root }).catch((error: unknown) => ({ summary: `origin unknown: ${describeError(error)}`, details: {} }))
          }
          return {
            pipeline: pipeline.name,
            destination: pipeline.destination.describe(),
            table: pipeline.table,
            writeMode: pipeline.writeMode.kind,
            files: await Promise.all(
              mine.map(async ({ hash, path, paths, rows, size, committedAt, quarantined, sidecar }) => {
                const origin = await originOf(path)
                return { hash, path, paths, rows, size, committedAt, ...(quarantined === null ? {} : { quarantined, sidecar }), ...(origin === undefined ? {} : { origin }) }
              }),
            ),
            rows: mine.reduce((sum, file) => sum + (file.rows ?? 0), 0),
          }
        }),
      )
      if (flags.json) {
        printJson(io.stdout, { pipelines: lineage })
        return
      }
      for (const [index, entry] of lineage.entries()) {
        if (index > 0) print(io.stdout, '')
        // In truncate mode only the newest file's rows are in the table; the others were replaced by it.
        const note = entry.writeMode === 'truncate' ? ' (truncate: the table holds the newest file; earlier ones were replaced)' : entry.writeMode === 'cdc' ? ' (cdc: changes applied in sequence order)' : ''
        print(io.stdout, `${entry.pipeline} → ${entry.destination} table ${entry.table}${note}`)
        if (entry.files.length === 0) {
          print(io.stdout, '  no committed files')
          continue
        }
        const rows = [['committed at', 'hash', 'rows', 'path']]
        for (const file of entry.files) {
          const aliases = file.paths.filter((alias) => alias !== file.path)
          const shown = printable(file.path)
          // Records a quarantine set aside are not in the table: said beside the rows that are.
          const aside = 'quarantined' in file ? ` (+${count(file.quarantined ?? 0)} quarantined)` : ''
          rows.push([file.committedAt ?? '', file.hash.slice(0, 12), `${count(file.rows ?? 0)}${aside}`, aliases.length > 0 ? `${shown} (also ${aliases.map((alias) => printable(alias)).join(', ')})` : shown])
        }
        // Each file's origin, when its source knows it, on the line under the file's.
        const lines = table(rows).split('\n')
        const withOrigins = lines.flatMap((line, index) => {
          const origin = index === 0 ? undefined : entry.files[index - 1].origin
          return origin === undefined ? [line] : [line, `  ↳ ${printable(origin.summary)}`]
        })
        print(io.stdout, withOrigins.join('\n').replace(/^/gm, '  '))
        print(io.stdout, `  ${count(entry.files.length)} file${entry.files.length === 1 ? '' : 's'} · ${count(entry.rows)} rows`)
      }
    })
}
