import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Command } from 'commander'
import { selectPipelines } from '../../config/pipelines.js'
import { configKeys, keysFromEnv } from '../../config/row-controls.js'
import { FiledgeError, usageError } from '../../errors.js'
import { printable } from '../../printable.js'
import { count } from '../../reporters/format.js'
import { workerId } from '../../runner/worker.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'

interface KeyFlags {
  readonly keyEnv?: string[]
}

function sidecarArgument(io: CliIo, file: string): string {
  const absolute = path.resolve(io.cwd, file)
  if (!existsSync(absolute)) throw usageError(`no such file: ${file}`)
  return absolute
}

export function registerQuarantine(program: Command, io: CliIo): void {
  const quarantine = program
    .command('quarantine')
    .description('records that quarantines set aside: list the sidecars, show one, replay the fixed records')
    .addHelpText('after', '\nSee docs/row-controls.md.\n\nExamples:\n  $ filedge quarantine list\n  $ filedge quarantine show .filedge/quarantine/orders/9f86d081….ndjson\n  $ filedge quarantine replay .filedge/quarantine/orders/9f86d081….ndjson')

  quarantine
    .command('list')
    .description('committed files whose load set records aside, with their sidecars')
    .option('-c, --config <path>', 'config file')
    .option('-p, --pipeline <name...>', 'only these pipelines')
    .option('--json', 'machine-readable output')
    .action(async (flags: ConfigOption & { pipeline?: string[]; json?: boolean }) => {
      const config = await configFor(flags, io)
      const chosen = selectPipelines(config, flags.pipeline).map((pipeline) => pipeline.name)
      const files = (await withLedger(config, async (ledger) => (ledger ? ledger.committed(chosen) : []))).filter((file) => (file.quarantined ?? 0) > 0)
      const listed = files.map(({ pipeline, path: file, hash, rows, quarantined, sidecar, committedAt }) => ({ pipeline, path: file, hash, rows, quarantined, sidecar, committedAt }))
      if (flags.json) {
        printJson(io.stdout, { files: listed })
        return
      }
      if (listed.length === 0) {
        print(io.stdout, 'no committed file has quarantined records')
        return
      }
      print(io.stdout, table([['pipeline', 'path', 'rows', 'quarantined', 'sidecar'], ...listed.map((file) => [file.pipeline, printable(file.path), count(file.rows ?? 0), count(file.quarantined ?? 0), printable(file.sidecar ?? '')])]))
    })

  quarantine
    .command('show')
    .argument('<sidecar>', 'a sidecar (.ndjson, or gzipped)')
    .description("a sidecar's records: line, row, column and reason; with --records the records themselves")
    .option('-c, --config <path>', 'config file (its quarantine keys open sealed records)')
    .option('--records', 'print each record as the file wrote it (sealed ones opened with the key)')
    .option('--key-env <name...>', 'environment variables holding keys that open sealed records (default: the config’s)')
    .option('--json', 'machine-readable output: one object per record')
    .action(async (file: string, flags: ConfigOption & KeyFlags & { records?: boolean; json?: boolean }) => {
      const absolute = sidecarArgument(io, file)
      const [{ readSidecar }, { isFrame, openFrame }] = await Promise.all([import('../../quarantine/sidecar.js'), import('../../protect/frame.js')])
      const { header, entries } = readSidecar(absolute)
      const sealed = header.sealed !== undefined && flags.records === true
      const keys = !sealed ? [] : flags.keyEnv !== undefined ? keysFromEnv(flags.keyEnv) : configKeys((await configFor(flags, io)).pipelines)
      const recordOf = (record: string | null) => (record === null || !flags.records ? undefined : sealed && isFrame(record) ? openFrame(record, keys) : record)
      const shown = entries.map((entry) => ({ ...entry, record: recordOf(entry.record) }))
      if (flags.json) {
        printJson(io.stdout, { header, records: shown })
        return
      }
      print(io.stdout, `${header.pipeline} ${printable(header.file)} ${header.hash.slice(0, 12)} load ${header.loadId.slice(0, 8)}: ${count(entries.length)} record${entries.length === 1 ? '' : 's'} set aside${header.sealed === undefined ? '' : ` (sealed with key ${header.sealed})`}`)
      for (const entry of shown) {
        const reasons = entry.errors.map((error) => `${error.column === undefined ? '' : `column ${error.column}: `}${error.reason}`).join('; ')
        print(io.stdout, `  line ${entry.line} (row ${entry.row}): ${printable(reasons)}`)
        if (entry.record !== undefined) print(io.stdout, `    ${printable(entry.record)}`)
      }
    })

  quarantine
    .command('replay')
    .argument('<sidecar>', 'a sidecar whose records were fixed in place (.ndjson, or gzipped)')
    .description('write the fixed records of a sidecar as a new input file next to the original; the next run loads it')
    .option('-c, --config <path>', 'config file')
    .option('--out <path>', 'write here instead of next to the original (a source with no local folder needs it)')
    .option('--key-env <name...>', 'more environment variables holding keys that open sealed records (a rotated quarantine key)')
    .option('--force', 'replay a sidecar that was replayed before')
    .option('--dry-run', 'check the records and name the file; write nothing')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      "\nFix the records in the sidecar first: each line's \"record\" is the record as the file wrote it; correct it, or delete the line of a record that must not load. Every record is checked against the pipeline's columns before anything is written.\n\nExamples:\n  $ filedge quarantine replay .filedge/quarantine/orders/9f86d081….ndjson\n  $ filedge quarantine replay fixed.ndjson --dry-run",
    )
    .action(async (file: string, flags: ConfigOption & KeyFlags & { out?: string; force?: boolean; dryRun?: boolean; json?: boolean }) => {
      const absolute = sidecarArgument(io, file)
      const config = await configFor(flags, io)
      const [{ readSidecar }, { replaySidecar }, { formatHooks }] = await Promise.all([import('../../quarantine/sidecar.js'), import('../../quarantine/replay.js'), import('../../runner/validate.js')])
      const { header } = readSidecar(absolute)
      const pipeline = config.pipelines.find((candidate) => candidate.name === header.pipeline)
      const keys = header.sealed === undefined ? [] : [...(pipeline === undefined ? [] : configKeys([pipeline])), ...keysFromEnv(flags.keyEnv ?? [])]
      if (header.sealed !== undefined && keys.length === 0) {
        const name = pipeline?.quarantine?.key?.name
        throw new FiledgeError('KEY_INVALID', `the sidecar's records are sealed with key ${header.sealed}: ${name === undefined ? 'give --key-env NAME' : `set ${name} (the pipeline's quarantine key), or give --key-env NAME`}`)
      }
      const hooks = await formatHooks(config)
      try {
        const result = await withLedger(config, async (ledger) => {
          if (ledger === undefined) throw usageError(`no ledger at ${config.ledger.kind === 'sqlite' ? config.ledger.path : 'the configured URL'}: nothing was loaded, so there is nothing to replay`)
          return replaySidecar(config, ledger, hooks, { sidecar: absolute, keys, ...(flags.out === undefined ? {} : { out: path.resolve(io.cwd, flags.out) }), force: flags.force === true, dryRun: flags.dryRun === true, worker: workerId() })
        })
        if (flags.json) {
          printJson(io.stdout, result)
          return
        }
        const what = `${count(result.records)} record${result.records === 1 ? '' : 's'} of ${printable(result.from.file)} (load ${result.from.loadId.slice(0, 8)})`
        if (!result.written) print(io.stdout, `would write ${printable(result.path)}: ${what}, all valid`)
        else print(io.stdout, `wrote ${printable(result.path)} (${result.hash.slice(0, 12)}): ${what}; the next \`filedge\` run loads it`)
      } finally {
        await hooks.close.promise()
      }
    })
}
