import type { Command } from 'commander'
import { printable } from '../../printable.js'
import { count } from '../../reporters/format.js'
import { redact } from '../../secrets.js'
import { staleFiles } from '../../stages/code.js'
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
      const { report, stale } = await withLedger(config, async (ledger) =>
        ledger
          ? { report: await ledger.status(attempts, Number(flags.failures) || 10), stale: await staleFiles(ledger, config.pipelines) }
          : { report: { pipelines: [], recentFailures: [] }, stale: new Map<string, unknown[]>() },
      )
      // Pipelines with stages: how many committed files hold rows an older version of the stages produced.
      const staleOf = (name: string) => stale.get(name)?.length
      const ledgerName = config.ledger.kind === 'sqlite' ? `sqlite:${config.ledger.path}` : `${redact(config.ledger.url)} (schema ${config.ledger.schema})`
      if (flags.json) {
        printJson(io.stdout, { ledger: ledgerName, ...report, pipelines: report.pipelines.map((p) => (staleOf(p.pipeline) === undefined ? p : { ...p, stale: staleOf(p.pipeline) })) })
        return
      }
      print(io.stdout, `ledger ${ledgerName}`)
      if (report.pipelines.length === 0) {
        print(io.stdout, 'no files recorded yet; run `filedge` to load some')
        return
      }
      const staged = stale.size > 0
      // Shown once a pipeline quarantines or has set records aside.
      const quarantining = report.pipelines.some((p) => p.quarantined > 0) || config.pipelines.some((pipeline) => pipeline.quarantine !== undefined)
      const rows = [['pipeline', 'pending', 'processing', 'committed', 'failed', 'terminal', 'rows', ...(quarantining ? ['quarantined'] : []), ...(staged ? ['stale'] : [])]]
      for (const p of report.pipelines) {
        const processing = p.expired > 0 ? `${p.PROCESSING} (${p.expired} expired)` : String(p.PROCESSING)
        rows.push([
          p.pipeline,
          String(p.PENDING),
          processing,
          String(p.COMMITTED),
          String(p.FAILED),
          String(p.terminal),
          count(p.rows),
          ...(quarantining ? [count(p.quarantined)] : []),
          ...(staged ? [String(staleOf(p.pipeline) ?? '-')] : []),
        ])
      }
      print(io.stdout, table(rows))
      const staleCount = [...stale.values()].reduce((sum, files) => sum + files.length, 0)
      if (staleCount > 0) print(io.stdout, `\n${staleCount} committed ${staleCount === 1 ? 'file holds rows' : 'files hold rows'} an older version of the stages produced; \`filedge stages\` says why, \`filedge reload --stale\` reloads ${staleCount === 1 ? 'it' : 'them'}`)
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
