import type { ResolvedConfig } from '../config/types.js'
import type { LedgerStore } from './types.js'

/** Opens the configured ledger. Store modules load lazily: a SQLite user never loads `pg`. */
export async function openLedger(config: ResolvedConfig): Promise<LedgerStore> {
  if (config.ledger.kind === 'sqlite') {
    const { openSqliteLedger } = await import('./sqlite/store.js')
    return openSqliteLedger(config.ledger.path)
  }
  const { openPostgresLedger } = await import('./postgres/store.js')
  return openPostgresLedger(config.ledger.url, { schema: config.ledger.schema })
}
