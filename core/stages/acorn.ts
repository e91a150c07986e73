import { createRequire } from 'node:module'
import type * as Acorn from 'acorn'

let loaded: typeof Acorn | undefined

/**
 * acorn, loaded the first time a stage is hashed: a run without stages never
 * parses code, and importing acorn was 14 ms of every start. Synchronously
 * (`require`, acorn ships CommonJS too), because hashing a pipeline's code is
 * synchronous wherever it is asked for.
 */
export function acorn(): typeof Acorn {
  loaded ??= createRequire(import.meta.url)('acorn') as typeof Acorn
  return loaded
}
