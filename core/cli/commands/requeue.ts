import type { Command } from 'commander'
import { usageError, notFound } from '../../errors.js'
import { printable } from '../../printable.js'
import { workerId } from '../../runner/worker.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'
import { findByRef } from './history.js'

interface RequeueFlags extends ConfigOption {
  readonly failed?: boolean
  readonly pipeline?: string[]
  readonly json?: boolean
}

export function registerRequeue(program: Command, io: CliIo): void {
  program
    .command('requeue')
    .argument('[ref]', 'a content hash (or its first 6+ characters) or a file path')
    .description('make a failed (or committed) file loadable again, with its attempts reset')
    .option('-c, --config <path>', 'config file')
    .option('--failed', 'every FAILED file')
    .option('-p, --pipeline <name...>', 'with --failed: only these pipelines')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge requeue incoming/orders_bad.csv\n  $ filedge requeue --failed --pipeline orders')
    .action(async (ref: string | undefined, flags: RequeueFlags) => {
      if ((ref === undefined) === !flags.failed) throw usageError('requeue: give a file (hash or path) or --failed, not both')
      const config = await configFor(flags, io)
      const result = await withLedger(config, async (ledger) => {
        if (ledger === undefined) return undefined
        if (flags.failed) return ledger.requeue({ failed: true, pipelines: flags.pipeline }, workerId())
        const files = await findByRef(ledger, config, ref!, io)
        return files.length === 0 ? undefined : ledger.requeue({ files }, workerId())
      })
      if (result === undefined) {
        if (flags.failed) {
          print(io.stdout, 'no failed files')
          return
        }
        throw notFound(`no file in the ledger matches "${ref}"`)
      }
      if (flags.json) {
        printJson(io.stdout, result)
        return
      }
      for (const file of result.requeued) print(io.stdout, `requeued ${file.pipeline} ${printable(file.path)} ${file.hash.slice(0, 12)}`)
      for (const { file, reason } of result.refused) print(io.stderr, `not requeued ${file.pipeline} ${printable(file.path)}: ${printable(reason)}`)
      if (result.requeued.length === 0 && result.refused.length === 0) print(io.stdout, 'no failed files')
      else if (result.requeued.length > 0) print(io.stdout, 'the next `filedge` run loads them')
    })
}
