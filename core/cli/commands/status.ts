import type { Command } from 'commander'
import { printable } from '../../printable.js'
import { count } from '../../reporters/format.js'
import { redact } from '../../secrets.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'

export function registerStatus(program: Command, io: CliIo): void {
  program
    .command('status')
    .description('files per state for each pipeline, and the most recent failures')
    .option('-c, --config <path>', 'config file')
    .option('--failures <n>', 'how many recent failures to list', '10')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge status\n  $ filedge status --json | jq .pipelines')
    .action(async (flags: ConfigOption & { json?: boolean; failures: string }) => {
      const config = await configFor(flags, io)
      const attempts = (name: string) => config.pipelines.find((pipeline) => pipeline.name === name)?.retry.attempts ?? 3
      const report = await withLedger(config, async (ledger) => (ledger ? ledger.status(attempts, Number(flags.failures) || 10) : { pipelines: [], recentFailures: [] }))
      const ledgerName = config.ledger.kind === 'sqlite' ? `sqlite:${config.ledger.path}` : `${redact(config.ledger.url)} (schema ${config.ledger.schema})`
      if (flags.json) {
        printJson(io.stdout, { ledger: ledgerName, ...report })
        return
      }
      print(io.stdout, `ledger ${ledgerName}`)
      if (report.pipelines.length === 0) {
        print(io.stdout, 'no files recorded yet; run `filedge` to load some')
        return
      }
      const rows = [['pipeline', 'pending', 'processing', 'committed', 'failed', 'terminal', 'rows']]
      for (const p of report.pipelines) {
        const processing = p.expired > 0 ? `${p.PROCESSING} (${p.expired} expired)` : String(p.PROCESSING)
        rows.push([p.pipeline, String(p.PENDING), processing, String(p.COMMITTED), String(p.FAILED), String(p.terminal), count(p.rows)])
      }
      print(io.stdout, table(rows))
      if (report.recentFailures.length > 0) {
        print(io.stdout, '\nrecent failures:')
        for (const file of report.recentFailures) {
          const cap = attempts(file.pipeline)
          const state = file.attempts >= cap ? 'terminal' : 'will retry'
          print(io.stdout, `  ${file.pipeline} ${printable(file.path)} ${file.hash.slice(0, 12)} attempt ${file.attempts}/${cap} (${state})\n    ${printable(file.error ?? '')}`)
        }
      }
    })
}
