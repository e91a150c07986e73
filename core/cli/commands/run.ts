import type { Command } from 'commander'
import { usageError } from '../../errors.js'
import { REPORTERS, type ReporterName } from '../../reporters/names.js'
import { configFor, type ConfigOption } from '../context.js'
import type { CliIo } from '../io.js'
import { untilStopped } from '../signals.js'

interface RunFlags extends ConfigOption {
  readonly pipeline?: string[]
  readonly concurrency?: string
  readonly reporter?: string
  readonly json?: boolean
  readonly watch?: boolean
}

export function registerRun(program: Command, io: CliIo, exit: (code: number) => void): void {
  program
    .command('run', { isDefault: true })
    .description('load every new file of every pipeline (the default command)')
    .option('-c, --config <path>', 'config file (default: search filedge.config.* from the current directory)')
    .option('-p, --pipeline <name...>', 'only these pipelines')
    .option('--concurrency <n>', 'files in flight per pipeline (default: config, else 4)')
    .option('--reporter <name>', `output: ${REPORTERS.join(', ')}`, 'default')
    .option('--json', 'same as --reporter json: one JSON object per event, the summary last')
    .option('-w, --watch', 'keep running: load files as they land, reload the config when it changes (or `watch: true` in the config)')
    .addHelpText(
      'after',
      '\nStop a run or a watcher with Ctrl-C (or SIGTERM): files in flight roll back and are released for the next run, and it exits 0. A second signal exits at once (their leases expire and another run reclaims them).\n\nExamples:\n  $ filedge\n  $ filedge --pipeline orders --reporter simple\n  $ filedge --json > run.ndjson\n  $ filedge --watch',
    )
    .action(async (flags: RunFlags) => {
      const reporter = (flags.json ? 'json' : (flags.reporter ?? 'default')) as ReporterName
      if (!REPORTERS.includes(reporter)) throw usageError(`--reporter: expected one of ${REPORTERS.join(', ')}; got "${flags.reporter}"`)
      const concurrency = flags.concurrency === undefined ? undefined : Number(flags.concurrency)
      if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1)) throw usageError(`--concurrency: expected a positive integer; got "${flags.concurrency}"`)
      // The runner and reporters load only once a run is really going to happen: `--help` and usage errors stay fast.
      const [config, { createReporter }, { run }] = await Promise.all([configFor(flags, io), import('../../reporters/index.js'), import('../../runner/run.js')])
      const watching = flags.watch === true || config.watch.enabled
      await untilStopped(async (signal) => {
        const options = {
          config,
          pipelines: flags.pipeline,
          concurrency,
          signal,
          plugins: [createReporter(reporter, io)],
        }
        if (watching) {
          const { watch } = await import('../../watch/watch.js')
          const summary = await watch({ ...options, reload: () => configFor(flags, io) })
          // A watcher's failed files were reported as they happened; stopping it is not a failure.
          exit(summary.aborted ? 1 : 0)
        } else {
          const summary = await run(options)
          exit(summary.aborted || summary.failed > 0 || summary.sourceErrors > 0 ? 1 : 0)
        }
      })
    })
}
