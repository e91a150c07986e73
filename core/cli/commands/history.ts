import path from 'node:path'
import type { Command } from 'commander'
import type { ResolvedConfig } from '../../config/types.js'
import { notFound } from '../../errors.js'
import type { LedgerFile, LedgerStore } from '../../ledger/types.js'
import { printable } from '../../printable.js'
import { toRelative } from '../../source/local.js'
import { configFor, withLedger, type ConfigOption } from '../context.js'
import { print, printJson, type CliIo } from '../io.js'

/** A ref is a hash (or prefix) or a path: as recorded (relative to the project root) or relative to the current directory. */
export async function findByRef(ledger: LedgerStore, config: ResolvedConfig, ref: string, io: CliIo): Promise<LedgerFile[]> {
  const direct = await ledger.find(ref)
  if (direct.length > 0) return direct
  const relative = toRelative(config.root, path.resolve(io.cwd, ref))
  return relative === ref ? [] : ledger.find(relative)
}

export function registerHistory(program: Command, io: CliIo): void {
  program
    .command('history')
    .argument('<ref>', 'a content hash (or its first 6+ characters) or a file path')
    .description("a file's record and every event in its history")
    .option('-c, --config <path>', 'config file')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  $ filedge history incoming/orders-2024-05-01.csv\n  $ filedge history 9f86d081 --json')
    .action(async (ref: string, flags: ConfigOption & { json?: boolean }) => {
      const config = await configFor(flags, io)
      const found = await withLedger(config, async (ledger) => {
        if (ledger === undefined) return []
        const files = await findByRef(ledger, config, ref, io)
        return Promise.all(
          files.map(async (file) => {
            // A file `filedge quarantine replay` wrote: the file whose quarantined records it holds.
            const replayOf = (await ledger.replaysTo(file.path)).map((event) => ({ pipeline: event.pipeline, hash: event.hash, at: event.at, note: event.error }))
            return { file, events: await ledger.events(file.pipeline, file.hash), ...(replayOf.length === 0 ? {} : { replayOf }) }
          }),
        )
      })
      if (found.length === 0) throw notFound(`no file in the ledger matches "${ref}"`)
      if (flags.json) {
        printJson(io.stdout, found)
        return
      }
      for (const { file, events, replayOf } of found) {
        const aliases = file.paths.filter((p) => p !== file.path)
        print(io.stdout, `${file.pipeline} ${file.hash}`)
        print(io.stdout, `  path ${printable(file.path)}${aliases.length > 0 ? ` (also seen as ${aliases.map((alias) => printable(alias)).join(', ')})` : ''}`)
        const aside = file.quarantined === null ? '' : ` · quarantined ${file.quarantined} → ${printable(file.sidecar ?? '?')}`
        print(io.stdout, `  ${file.state} · attempts ${file.attempts} · rows ${file.rows ?? '-'}${aside} · ${file.size} bytes${file.error ? `\n  error: ${printable(file.error)}` : ''}`)
        for (const origin of replayOf ?? []) print(io.stdout, `  replays quarantined records of ${origin.pipeline} ${origin.hash} (${printable(origin.note ?? '')})`)
        for (const event of events) {
          const move = event.fromState === event.toState ? (event.toState ?? '') : `${event.fromState ?? '∅'} → ${event.toState ?? '∅'}`
          const extra = [event.attempt === null ? '' : `attempt ${event.attempt}`, event.worker ?? '', event.path ?? '', event.error ?? '', event.quarantined === null ? '' : `${event.quarantined} quarantined`]
            .filter(Boolean)
            .map((part) => printable(part))
            .join(' · ')
          print(io.stdout, `  ${event.at}  ${event.event.padEnd(16)} ${move.padEnd(24)} ${extra}`)
        }
      }
    })
}
