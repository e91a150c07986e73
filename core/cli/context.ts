import { existsSync } from 'node:fs'
import type { ResolvedConfig } from '../config/types.js'
import { openLedger } from '../ledger/open.js'
import type { LedgerStore } from '../ledger/types.js'
import { print, type CliIo } from './io.js'

export interface ConfigOption {
  readonly config?: string
}

export async function configFor(options: ConfigOption, io: CliIo): Promise<ResolvedConfig> {
  // Config loading pulls in cosmiconfig, jiti and zod: only commands that need a config pay for them.
  const { loadConfig } = await import('../config/load.js')
  const { config } = await loadConfig({ cwd: io.cwd, configFile: options.config })
  for (const warning of config.warnings) print(io.stderr, `[filedge] warning: ${warning}`)
  return config
}

/**
 * Opens the ledger for a read-mostly command. A SQLite ledger that does not
 * exist yet is not created just to report that it is empty.
 */
export async function withLedger<T>(config: ResolvedConfig, use: (ledger: LedgerStore | undefined) => Promise<T>): Promise<T> {
  if (config.ledger.kind === 'sqlite' && !existsSync(config.ledger.path)) return use(undefined)
  const ledger = await openLedger(config)
  try {
    return await use(ledger)
  } finally {
    await ledger.close()
  }
}
