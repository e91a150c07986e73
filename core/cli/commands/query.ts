import type { Command } from 'commander'
import { usageError } from '../../errors.js'
import { printable } from '../../printable.js'
import { redact } from '../../secrets.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'

const EXAMPLES = `
Tables: files, file_paths, events, pond_events; views: loads, pond_runs
(docs/audit.md lists their columns). Times are UTC.

Examples:
  $ filedge query "SELECT occurred_at::DATE AS day, count(*) AS failures FROM events WHERE event = 'file:failed' GROUP BY day ORDER BY day"
  $ filedge query "SELECT pipeline, count(*) AS files, sum(rows) AS rows FROM files WHERE state = 'COMMITTED' GROUP BY pipeline ORDER BY rows DESC"
  $ filedge query "SELECT pipeline, path, rows, committed_at - created_at AS took FROM files WHERE state = 'COMMITTED' ORDER BY took DESC LIMIT 10" --json`

/**
 * `filedge query "<sql>"`: read-only SQL over the ledger, through DuckDB
 * (core/audit/duck.ts). Human table by default; `--json` an array of
 * objects; `--csv` RFC 4180.
 */
export function registerQuery(program: Command, io: CliIo): void {
  program
    .command('query')
    .argument('<sql>', 'one SELECT (or WITH … SELECT, EXPLAIN) over the ledger tables')
    .description('read-only SQL over the ledger (files, events, loads, pond runs) through DuckDB')
    .option('-c, --config <path>', 'config file')
    .option('--json', 'an array of objects, one per row')
    .option('--csv', 'CSV (RFC 4180) with a header line')
    .addHelpText('after', EXAMPLES)
    .action(async (sql: string, flags: ConfigOption & { json?: boolean; csv?: boolean }) => {
      if (flags.json && flags.csv) throw usageError('query: --json and --csv are exclusive')
      // DuckDB's native library loads while the config does.
      const [config, { queryLedger }, output] = await Promise.all([configFor(flags, io), import('../../audit/duck.js'), import('../../audit/output.js')])
      const result = await withLedger(config, (ledger) => queryLedger(ledger, sql))
      if (flags.json) return printJson(io.stdout, output.toJson(result))
      // CSV is data: written as DuckDB rendered it, not through the terminal escaping of human output (secrets still redacted).
      if (flags.csv) return void io.stdout.write(redact(output.toCsv(result)))
      const cells = result.rows.map((row) => row.map((value) => printable(output.textOf(value) ?? 'NULL')))
      print(io.stdout, table([result.columns.map((column) => printable(column.name)), ...cells]))
      print(io.stdout, `(${result.rows.length} ${result.rows.length === 1 ? 'row' : 'rows'})`)
    })
}
