import type { Command } from 'commander'
import { selectPipelines } from '../../config/pipelines.js'
import type { ResolvedConfig, ResolvedPipeline } from '../../config/types.js'
import { notFound, usageError } from '../../errors.js'
import { untilStopped } from '../signals.js'
import { printable } from '../../printable.js'
import { workerId } from '../../runner/worker.js'
import { pipelineCode, staleFiles, whyStale, type StageVersion } from '../../stages/code.js'
import { declaredFrom, describeFrom } from '../../stages/resolve.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, table, type CliIo } from '../io.js'
import { REPORTERS, type ReporterName } from '../../reporters/names.js'

interface StagesFlags extends ConfigOption {
  readonly pipeline?: string[]
  readonly json?: boolean
  readonly why?: string
}

/** The pipelines `--pipeline` names (a name the config lacks is a usage error) that have stages. */
function staged(config: ResolvedConfig, only: readonly string[] | undefined): ResolvedPipeline[] {
  return selectPipelines(config, only).filter((pipeline) => pipeline.stages.length > 0)
}

export function registerStages(program: Command, io: CliIo, exit: (code: number) => void): void {
  program
    .command('stages')
    .description("each pipeline's stages with their hashes, how many committed files are stale, and why")
    .option('-c, --config <path>', 'config file')
    .option('-p, --pipeline <name...>', 'only these pipelines')
    .option('--why <stage>', "what changed in a stage (or in the stages it reads from) since the stale files' rows were produced")
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge stages\n  $ filedge stages --why enrich\n  $ filedge stages --json | jq ".pipelines[].stale"')
    .action(async (flags: StagesFlags) => {
      const config = await configFor(flags, io)
      const pipelines = staged(config, flags.pipeline)
      if (flags.why !== undefined && !pipelines.some((pipeline) => pipeline.stages.some((stage) => stage.name === flags.why))) {
        throw notFound(`--why: no stage is named "${flags.why}"${pipelines.length === 0 ? '' : ` (stages: ${[...new Set(pipelines.flatMap((pipeline) => pipeline.stages.map((stage) => stage.name)))].join(', ')})`}`)
      }
      const report = await withLedger(config, async (ledger) => {
        const stale = ledger === undefined ? new Map<string, { code: string | null; hash: string; path: string }[]>() : await staleFiles(ledger, pipelines)
        return Promise.all(
          pipelines.map(async (pipeline) => {
            const now = pipelineCode(pipeline)!
            const files = stale.get(pipeline.name) ?? []
            const byCode = new Map<string | null, number>()
            for (const file of files) byCode.set(file.code, (byCode.get(file.code) ?? 0) + 1)
            const why =
              flags.why === undefined || !pipeline.stages.some((stage) => stage.name === flags.why)
                ? undefined
                : await Promise.all(
                    [...byCode].map(async ([code, count]) => {
                      const recorded = code === null || ledger === undefined ? undefined : await ledger.codeOf(pipeline.name, code)
                      const then = recorded === undefined ? undefined : (JSON.parse(recorded) as StageVersion[])
                      return { code, files: count, changes: whyStale(now, then, flags.why!) }
                    }),
                  )
            return {
              pipeline: pipeline.name,
              code: now.code,
              // `from` as declared (a name, null for the parsed rows, or an array), as before stages could read several; `parents` always a list.
              stages: pipeline.stages.map((stage, index) => ({
                name: stage.name,
                from: declaredFrom(stage),
                parents: stage.from,
                hash: now.stages[index]!.hash,
                cache: stage.cache,
                columns: stage.columns.map((column) => column.name),
              })),
              stale: files.length,
              ...(why === undefined ? {} : { why }),
            }
          }),
        )
      })
      if (flags.json) return printJson(io.stdout, { pipelines: report })
      if (report.length === 0) return print(io.stdout, 'no pipeline has stages')
      for (const pipeline of report) {
        print(io.stdout, `${pipeline.pipeline}: code ${pipeline.code.slice(0, 12)}, ${pipeline.stale} stale ${pipeline.stale === 1 ? 'file' : 'files'}`)
        print(io.stdout, table(pipeline.stages.map((stage) => ['  ' + stage.name, stage.hash.slice(0, 12), stage.cache ? 'cached' : '', `from ${describeFrom(stage.parents)}`, `→ ${stage.columns.join(', ')}`])))
        for (const group of pipeline.why ?? []) {
          const label = group.code === null ? 'loaded without stages' : `loaded under code ${group.code.slice(0, 12)}`
          print(io.stdout, `  ${group.files} ${group.files === 1 ? 'file' : 'files'} ${label}; for stage "${flags.why}":`)
          for (const change of group.changes.length === 0 ? [`nothing changed in "${flags.why}" or before it (a stage it does not read from changed)`] : group.changes) print(io.stdout, `    - ${printable(change)}`)
        }
      }
    })

  program
    .command('reload')
    .description('load again, atomically, the committed files whose rows an older version of the stages produced')
    .option('-c, --config <path>', 'config file')
    .option('--stale', 'the files `filedge stages` counts as stale (required)')
    .option('-p, --pipeline <name...>', 'only these pipelines')
    .option('--reporter <name>', `output: ${REPORTERS.join(', ')}`, 'default')
    .option('--json', 'same as --reporter json')
    .addHelpText(
      'after',
      "\nEach file's old rows are replaced by its new ones in one transaction: a reload stopped or killed leaves every file either old or new.\n\nExamples:\n  $ filedge reload --stale\n  $ filedge reload --stale --pipeline orders --json",
    )
    .action(async (flags: ConfigOption & { stale?: boolean; pipeline?: string[]; reporter?: string; json?: boolean }) => {
      if (flags.stale !== true) throw usageError('reload: give --stale (the files an edit of the stages made stale)')
      const reporter = (flags.json ? 'json' : (flags.reporter ?? 'default')) as ReporterName
      if (!REPORTERS.includes(reporter)) throw usageError(`--reporter: expected one of ${REPORTERS.join(', ')}; got "${flags.reporter}"`)
      const config = await configFor(flags, io)
      const pipelines = staged(config, flags.pipeline)
      const { stale, unfinished } = await withLedger(config, async (ledger) => {
        if (ledger === undefined) return { stale: [], unfinished: [] }
        const files = [...(await staleFiles(ledger, pipelines)).values()].flat()
        if (files.length > 0) await ledger.requeue({ files: files.map(({ pipeline, hash }) => ({ pipeline, hash })) }, workerId())
        // A reload stopped or killed before it finished left files PENDING (or PROCESSING until their lease expires): this one finishes them.
        const { pipelines: states } = await ledger.status((name) => config.pipelines.find((pipeline) => pipeline.name === name)?.retry.attempts ?? 3)
        return { stale: files, unfinished: states.filter((state) => pipelines.some((pipeline) => pipeline.name === state.pipeline) && state.PENDING + state.PROCESSING > 0).map((state) => state.pipeline) }
      })
      if (stale.length === 0 && unfinished.length === 0) {
        if (reporter !== 'json' && reporter !== 'silent') print(io.stdout, 'no stale files')
        return
      }
      const [{ createReporter }, { run }] = await Promise.all([import('../../reporters/index.js'), import('../../runner/run.js')])
      // Ctrl-C (or SIGTERM) stops as a run does: files in flight roll back to their old rows; a second signal exits at once.
      let stopped = false
      const summary = await untilStopped(async (signal) => {
        const result = await run({ config, pipelines: [...new Set([...stale.map((file) => file.pipeline), ...unfinished])], signal, plugins: [createReporter(reporter, io)] })
        stopped = signal.aborted
        return result
      })
      if (stopped) {
        print(io.stderr, '[filedge] reload stopped: files in flight kept their old rows; `filedge reload --stale` finishes the rest')
        return exit(summary.failed > 0 ? 1 : 0)
      }
      // A stale file the source no longer lists (moved, deleted, archived) was not reloaded: its old rows stay, and it waits PENDING for its bytes.
      const left = await withLedger(config, async (ledger) => {
        const states = await Promise.all(stale.map(async (file) => ({ file, state: (await ledger!.find(file.hash)).find((found) => found.pipeline === file.pipeline)?.state })))
        return states.filter(({ state }) => state === 'PENDING').map(({ file }) => file)
      })
      if (left.length > 0) {
        print(io.stderr, `[filedge] ${left.length} stale ${left.length === 1 ? 'file was' : 'files were'} not reloaded: the source no longer lists ${left.length === 1 ? 'it' : 'them'} (${left.slice(0, 5).map((file) => printable(file.path)).join(', ')}${left.length > 5 ? ', …' : ''}); ${left.length === 1 ? 'its' : 'their'} rows stay as they were until the same bytes land again`)
      }
      exit(summary.failed > 0 || summary.aborted !== undefined || summary.sourceErrors > 0 || left.length > 0 ? 1 : 0)
    })
}
