import { definePreset, type Preset } from '../../core/index.js'
import { duckdb } from '../../plugins/duckdb/index.js'

export interface LocalPresetOptions {
  /** SQLite ledger file, relative to the config file. Default `.filedge/ledger.db`. */
  ledger?: string
  /** DuckDB warehouse file, relative to the config file. Default `.filedge/warehouse.duckdb`. */
  warehouse?: string
}

/**
 * One machine, zero setup: a SQLite ledger and a DuckDB warehouse, both under
 * `.filedge/`. Every pipeline loads into the warehouse unless it names its own
 * destination.
 */
export function local(options: LocalPresetOptions = {}): Preset {
  return definePreset({
    name: 'filedge:local',
    ledger: `sqlite:${options.ledger ?? '.filedge/ledger.db'}`,
    defaults: {
      destination: duckdb({ path: options.warehouse ?? '.filedge/warehouse.duckdb' }),
      retry: { attempts: 3 },
    },
  })
}

export default local
