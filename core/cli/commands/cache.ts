import type { Command } from 'commander'
import path from 'node:path'
import { configFor, type ConfigOption } from '../context.js'
import { usageError } from '../../errors.js'
import type { Plugin } from '../../plugin.js'
import { print, printJson, table, type CliIo } from '../io.js'

/** The part of the cache plugin (filedge/plugins/cache) this command uses; described here so the core does not import a plugin. */
interface CacheLike {
  readonly location: string
  stats(): Promise<{ location: string; entries: number; bytes: number; maxEntries: number | null; maxBytes: number | null; corrupt: number; expired: number }>
  prune(): Promise<{ removed: number; bytes: number }>
  clear(): Promise<{ removed: number; bytes: number }>
  close(): Promise<void>
}

type CachePluginLike = Plugin & { open(root: string): CacheLike }

function isCachePlugin(plugin: Plugin): plugin is CachePluginLike {
  return typeof (plugin as { open?: unknown }).open === 'function' && plugin.name === 'filedge:cache'
}

interface CacheFlags extends ConfigOption {
  readonly dir?: string
  readonly json?: boolean
}

export function bytes(count: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = count
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${count} B` : `${value.toFixed(1)} ${units[unit]}`
}

async function openCache(flags: CacheFlags, io: CliIo): Promise<CacheLike> {
  if (flags.dir !== undefined) {
    const { createCache } = (await import('filedge/plugins/cache')) as { createCache(options: { dir: string }): CacheLike }
    return createCache({ dir: path.resolve(io.cwd, flags.dir) })
  }
  const config = await configFor(flags, io)
  const plugin = config.plugins.find(isCachePlugin)
  if (plugin === undefined) throw usageError('cache: the config has no cache plugin (add cache() from filedge/plugins/cache to plugins), or name a directory with --dir')
  return plugin.open(config.root)
}

export function registerCache(program: Command, io: CliIo): void {
  const command = program.command('cache').description("the cache plugin's store: how full it is, pruning it, clearing it")
  const action = (what: 'stats' | 'prune' | 'clear') => async (flags: CacheFlags) => {
    const cache = await openCache(flags, io)
    try {
      if (what === 'stats') {
        const stats = await cache.stats()
        if (flags.json) return printJson(io.stdout, stats)
        const limit = (value: number | null, shown: (n: number) => string) => (value === null ? 'no limit' : shown(value))
        print(
          io.stdout,
          table([
            ['location', stats.location],
            ['entries', `${stats.entries} (limit: ${limit(stats.maxEntries, String)})`],
            ['stored', `${bytes(stats.bytes)} (limit: ${limit(stats.maxBytes, bytes)})`],
          ]),
        )
        return
      }
      const result = what === 'prune' ? await cache.prune() : await cache.clear()
      if (flags.json) return printJson(io.stdout, { location: cache.location, ...result })
      print(io.stdout, `${what === 'prune' ? 'pruned' : 'cleared'} ${cache.location}: ${result.removed} ${result.removed === 1 ? 'entry' : 'entries'} removed, ${bytes(result.bytes)} freed`)
    } finally {
      await cache.close()
    }
  }
  const sub = (name: 'stats' | 'prune' | 'clear', description: string, example: string) =>
    command
      .command(name)
      .description(description)
      .option('-c, --config <path>', 'config file')
      .option('--dir <path>', 'a cache directory, instead of the config\'s cache plugin')
      .option('--json', 'machine-readable output')
      .addHelpText('after', `\nExamples:\n  $ filedge cache ${name}\n  $ ${example}`)
      .action(action(name))
  sub('stats', 'entries and bytes stored, against the limits', 'filedge cache stats --json')
  sub('prune', 'remove expired and damaged entries and leftovers of dead writers, then evict down to the limits', 'filedge cache prune --dir .filedge/cache')
  sub('clear', 'remove every entry', 'filedge cache clear --json')
}
