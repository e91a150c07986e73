import { definePreset, env, type MaybeEnv, type Preset } from '../../core/index.js'
import { postgres } from '../../plugins/postgres/index.js'

export interface PostgresPresetOptions {
  /** The warehouse. Default `env('DATABASE_URL')`. */
  url?: MaybeEnv
  /** The ledger. Default: the same database as `url`, in the `filedge` schema. */
  ledger?: MaybeEnv
  /** Schema of the destination tables. Default `public`. */
  schema?: string
}

/**
 * Many workers on many machines: a Postgres ledger (leases taken with
 * SKIP LOCKED) and a Postgres destination (COPY), from one environment
 * variable. Worker-friendly defaults: a 2-minute lease tolerates a long GC
 * pause or a network blip without another worker reclaiming a live load, and
 * two files in flight per worker leave CPU for the database on small machines
 * (start more workers rather than raising it).
 */
export function postgresPreset(options: PostgresPresetOptions = {}): Preset {
  const url = options.url ?? env('DATABASE_URL')
  return definePreset({
    name: 'filedge:postgres',
    ledger: options.ledger ?? url,
    lease: { ttl: '2m' },
    concurrency: 2,
    defaults: {
      destination: postgres({ url, ...(options.schema === undefined ? {} : { schema: options.schema }) }),
      retry: { attempts: 5 },
    },
  })
}

export default postgresPreset
