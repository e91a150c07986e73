import type { Command } from 'commander'
import type { ResolvedConfig, ResolvedPipeline } from '../../config/types.js'
import { printable } from '../../printable.js'
import { redact } from '../../secrets.js'
import { declaredFrom, describeFrom } from '../../stages/resolve.js'
import { configFor, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'

function ledgerOf(config: ResolvedConfig): string {
  return config.ledger.kind === 'sqlite' ? `sqlite:${config.ledger.path}` : `${redact(config.ledger.url)} (schema ${config.ledger.schema})`
}

function writeModeOf(pipeline: ResolvedPipeline): string {
  const mode = pipeline.writeMode
  if (mode.kind === 'append') return 'append'
  if (mode.kind === 'truncate') return mode.allowEmpty ? 'truncate (allowEmpty)' : 'truncate'
  return `cdc (keys ${mode.keys.join(', ')}; op ${mode.op}; sequence ${mode.sequence})`
}

/** The resolved config as data: what a run uses, with where each set value came from. Secrets redacted. */
function described(config: ResolvedConfig) {
  const from = (key: string) => config.origins[key] ?? 'default'
  return {
    configFile: config.configFile ?? null,
    root: config.root,
    ledger: { value: ledgerOf(config), from: from('ledger') },
    lease: { ttlMs: config.lease.ttlMs, heartbeatMs: config.lease.heartbeatMs, from: { ttl: from('lease.ttl'), heartbeat: from('lease.heartbeat') } },
    concurrency: { value: config.concurrency, from: from('concurrency') },
    watch: { ...config.watch, from: from('watch') },
    plugins: config.plugins.map((plugin) => ({ name: plugin.name, enforce: plugin.enforce ?? null, from: from(`plugins.${plugin.name}`) })),
    disabledBuiltins: config.disabledBuiltins,
    pipelines: config.pipelines.map((pipeline, index) => {
      const at = (key: string) => from(`pipelines[${index}].${key}`)
      return {
        name: pipeline.name,
        source: { name: pipeline.source.name, where: redact(pipeline.source.describe()), from: at('source') },
        onCommitted: { value: pipeline.onCommitted ?? { kind: 'keep' }, from: at('onCommitted') },
        format: { value: pipeline.format ?? null, from: at('format') },
        destination: { name: pipeline.destination.name, where: redact(pipeline.destination.describe()), from: at('destination') },
        table: pipeline.table,
        writeMode: { value: writeModeOf(pipeline), from: at('writeMode') },
        columns: pipeline.columns.map((column) => ({ ...column, from: at(`columns.${column.name}`) })),
        stages: pipeline.stages.map((stage) => ({ name: stage.name, from: declaredFrom(stage), parents: stage.from, columns: stage.declared ? stage.columns.map((column) => column.name) : 'as received' })),
        unknownColumns: { value: pipeline.unknownColumns, from: at('unknownColumns') },
        retry: { ...pipeline.retry, from: at('retry') },
        batchSize: { value: pipeline.batchSize, from: at('batchSize') },
        concurrency: pipeline.concurrency,
        limits: pipeline.limits,
        quarantine: { value: pipeline.quarantine ?? null, from: at('quarantine') },
      }
    }),
  }
}

export function registerConfig(program: Command, io: CliIo): void {
  program
    .command('config')
    .description('the resolved config: presets applied, defaults filled in, secrets redacted, and where each value came from')
    .option('-c, --config <path>', 'config file')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge config\n  $ filedge config --json | jq ".pipelines[0].destination"')
    .action(async (flags: ConfigOption & { json?: boolean }) => {
      const config = await configFor(flags, io)
      const view = described(config)
      if (flags.json) {
        printJson(io.stdout, view)
        return
      }
      const line = (key: string, value: string, from?: string) => print(io.stdout, `${key.padEnd(18)} ${printable(value)}${from === undefined || from === 'default' ? '' : `  ← ${from}`}`)
      print(io.stdout, `config ${view.configFile ?? '(none)'} (root ${view.root})`)
      line('ledger', view.ledger.value, view.ledger.from)
      line('lease', `ttl ${view.lease.ttlMs} ms, heartbeat ${view.lease.heartbeatMs} ms`, [view.lease.from.ttl, view.lease.from.heartbeat].find((by) => by !== 'default'))
      line('concurrency', String(view.concurrency.value), view.concurrency.from)
      line('watch', `${view.watch.enabled ? 'on' : 'off'}, settle ${view.watch.settleMs} ms, poll ${view.watch.pollMs} ms`, view.watch.from)
      line('plugins', view.plugins.map((plugin) => `${plugin.name}${plugin.from === 'default' ? '' : ` (${plugin.from})`}`).join(', ') || '(none)')
      if (view.disabledBuiltins.length > 0) line('disabled', view.disabledBuiltins.join(', '))
      for (const pipeline of view.pipelines) {
        print(io.stdout, `\npipeline ${printable(pipeline.name)}`)
        const field = (key: string, value: string, from?: string) => line(`  ${key}`, value, from)
        field('source', `${pipeline.source.where} (${pipeline.source.name})`, pipeline.source.from)
        field('format', pipeline.format.value === null ? 'by extension' : pipeline.format.value.type, pipeline.format.from)
        field('destination', pipeline.destination.where, pipeline.destination.from)
        field('table', pipeline.table)
        field('writeMode', pipeline.writeMode.value, pipeline.writeMode.from)
        for (const column of pipeline.columns) {
          const renamed = column.source === column.name ? '' : ` ← field "${column.source}"`
          // A protected column: how, and which variable holds its key (never the key).
          const protect = column.protect === undefined ? '' : ` ${column.protect.kind} (key ${column.protect.key.name}${column.protect.keyId === undefined ? ', not set' : ` ${column.protect.keyId}`})`
          field(`  ${column.name}`, `${column.type}${column.required ? ' required' : ''}${protect}${renamed}`, column.from)
        }
        for (const stage of pipeline.stages) field(`stage ${printable(stage.name)}`, `from ${describeFrom(stage.parents)} → ${Array.isArray(stage.columns) ? stage.columns.join(', ') : stage.columns}`)
        field('unknown', `${pipeline.unknownColumns.value} (unknownColumns)`, pipeline.unknownColumns.from)
        field('retry', `${pipeline.retry.attempts} attempts, ${pipeline.retry.lapses} lapses`, pipeline.retry.from)
        field('batchSize', String(pipeline.batchSize.value), pipeline.batchSize.from)
        const quarantine = pipeline.quarantine.value
        if (quarantine !== null) {
          const limits = [quarantine.maxRows === undefined ? '' : `maxRows ${quarantine.maxRows}`, quarantine.maxFraction === undefined ? '' : `maxFraction ${quarantine.maxFraction}`].filter(Boolean).join(', ')
          const sealed = quarantine.key === undefined ? '' : `, sealed (key ${quarantine.key.name}${quarantine.keyId === undefined ? ', not set' : ` ${quarantine.keyId}`})`
          field('quarantine', `${limits} → ${quarantine.dir}${sealed}`, pipeline.quarantine.from)
        }
        field('onCommitted', pipeline.onCommitted.value.kind === 'move' ? `move to ${pipeline.onCommitted.value.to}` : pipeline.onCommitted.value.kind, pipeline.onCommitted.from)
      }
    })
}
